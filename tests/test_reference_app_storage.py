"""Unit tests of the reference app's file storage (reference-app/backend/teamflow_app/storage.py).

The S3 client is a fake that answers as botocore does (the layer's own logic is under test: the one-line
reasons, what a missing object or a missing bucket becomes); the app on a real SeaweedFS bucket is what the
app and site scenarios test.
"""

import asyncio
import dataclasses
import sys

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from conftest import ROOT

sys.path.insert(0, str(ROOT / "reference-app" / "backend"))
from teamflow_app import storage  # noqa: E402

pytestmark = pytest.mark.unit


@dataclasses.dataclass
class Settings:
    s3_bucket_name: str = "files"


def client_error(code, status, operation="HeadBucket"):
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


class FakeS3:
    def __init__(self, error=None):
        self.error = error
        self.objects = {}

    def _answer(self):
        if self.error is not None:
            raise self.error

    def head_bucket(self, Bucket):
        self._answer()

    def put_object(self, Bucket, Key, Body, ContentType, Metadata):
        self._answer()
        self.objects[Key] = (Body, ContentType, Metadata)

    def get_object(self, Bucket, Key):
        self._answer()
        if Key not in self.objects:
            raise client_error("NoSuchKey", 404, "GetObject")
        body, content_type, _ = self.objects[Key]
        return {"Body": type("Body", (), {"read": lambda self: body})(), "ContentType": content_type}

    def delete_object(self, Bucket, Key):
        self._answer()
        self.objects.pop(Key, None)


def run(coro):
    return asyncio.run(coro)


def test_an_object_is_stored_with_its_sha256_and_read_back():
    s3 = FakeS3()
    files = storage.Storage(Settings(), client=s3)
    digest = run(files.put("notes/1/a.txt", b"hello", "text/plain"))
    assert digest == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert s3.objects["notes/1/a.txt"][2] == {"sha256": digest}
    assert run(files.get("notes/1/a.txt")) == (b"hello", "text/plain")
    run(files.delete("notes/1/a.txt"))
    with pytest.raises(storage.MissingObject):
        run(files.get("notes/1/a.txt"))


@pytest.mark.parametrize(("error", "expected"), [
    (client_error("404", 404), "error: bucket files does not exist"),
    (client_error("NoSuchBucket", 404), "error: bucket files does not exist"),
    (client_error("403", 403), "error: access to bucket files denied (403): check S3_ACCESS_KEY, S3_SECRET_KEY "
                               "and that the bucket exists"),
    (client_error("SignatureDoesNotMatch", 403), "error: access to bucket files denied (SignatureDoesNotMatch): "
                                                 "check S3_ACCESS_KEY, S3_SECRET_KEY and that the bucket exists"),
    (EndpointConnectionError(endpoint_url="https://s3:8333"), "error: endpoint unreachable (EndpointConnectionError)"),
])
def test_the_check_names_the_fault_in_one_line(error, expected):
    assert run(storage.Storage(Settings(), client=FakeS3(error)).check()) == expected


def test_the_check_asks_the_bucket_at_most_every_five_seconds():
    now = [100.0]
    s3 = FakeS3()
    asked = []
    s3.head_bucket = lambda Bucket: asked.append(now[0])
    files = storage.Storage(Settings(), client=s3, clock=lambda: now[0])
    assert run(files.check()) == "ok"
    now[0] += 4.9
    s3.head_bucket = lambda Bucket: (_ for _ in ()).throw(EndpointConnectionError(endpoint_url="https://s3:8333"))
    assert run(files.check()) == "ok"
    now[0] += 0.2
    assert run(files.check()) == "error: endpoint unreachable (EndpointConnectionError)"
    assert asked == [100.0]


def test_a_failed_call_raises_storage_unavailable_with_its_reason():
    files = storage.Storage(Settings(), client=FakeS3(EndpointConnectionError(endpoint_url="https://s3:8333")))
    with pytest.raises(storage.StorageUnavailable, match=r"^endpoint unreachable \(EndpointConnectionError\)$"):
        run(files.put("notes/1/a.txt", b"x", "text/plain"))


def test_a_missing_bucket_on_get_is_not_a_missing_object():
    files = storage.Storage(Settings(), client=FakeS3(client_error("NoSuchBucket", 404, "GetObject")))
    with pytest.raises(storage.StorageUnavailable, match="bucket files does not exist"):
        run(files.get("notes/1/a.txt"))


def test_no_bucket_turns_file_storage_off():
    files = storage.Storage(Settings(s3_bucket_name=""))
    assert run(files.check()) == "disabled"
    with pytest.raises(storage.StorageDisabled):
        run(files.put("notes/1/a.txt", b"x", "text/plain"))


@pytest.mark.parametrize(("name", "valid"), [
    ("report.pdf", True), ("a", True), ("2026-12_notes.tar.gz", True),
    (".hidden", False), ("../etc/passwd", False), ("a/b", False), ("", False), ("x" * 201, False), ("é.txt", False), ("a.txt\n", False),
])
def test_attachment_names_are_plain_file_names(name, valid):
    assert bool(storage.NAME.fullmatch(name)) is valid
