"""User files (the attachments of notes) in an S3 bucket, through boto3. boto3 blocks: its calls run in
threads. Every failure becomes StorageUnavailable or MissingObject with a one-line reason (no stack trace
in a response or a log line); an empty S3_BUCKET_NAME turns file storage off (StorageDisabled)."""

import asyncio
import hashlib
import re
import time

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

# the key of an attachment: notes/<note id>/<name>; names are plain file names
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


class StorageDisabled(Exception):
    """No bucket is configured."""


class StorageUnavailable(Exception):
    """The bucket cannot be reached or refuses the request; str() says why in one line."""


class MissingObject(Exception):
    """The bucket has no such object."""


def key(note_id, name):
    return f"notes/{note_id}/{name}"


def reason(exc, bucket):
    """One line for a failed S3 call: what an operator needs to fix it."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchBucket", "404") or (status == 404 and not code):
            return f"bucket {bucket} does not exist"
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch") or status == 403:
            return (f"access to bucket {bucket} denied ({code or status}): check S3_ACCESS_KEY, S3_SECRET_KEY and that "
                    "the bucket exists")
        return f"bucket {bucket}: {code or status}"
    return f"endpoint unreachable ({type(exc).__name__})"


class Storage:
    # /health asks at most this often (S3 bills requests; a load balancer may ask every second per worker)
    CHECK_SECONDS = 5

    def __init__(self, settings, client=None, clock=time.monotonic):
        self.bucket = settings.s3_bucket_name
        self.enabled = bool(self.bucket)
        self.client = client
        self._clock = clock
        self._checked = (None, "")  # (when, answer)
        if self.enabled and client is None:
            self.client = boto3.client(
                "s3",
                region_name=settings.s3_region or None,
                endpoint_url=settings.s3_endpoint_url or None,
                aws_access_key_id=settings.s3_access_key or None,
                aws_secret_access_key=settings.s3_secret_key or None,
                verify=settings.s3_ca_bundle or None,
                config=Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"},
                              s3={"addressing_style": settings.s3_addressing_style}),
            )

    async def _call(self, method, **kwargs):
        if not self.enabled:
            raise StorageDisabled()
        try:
            return await asyncio.to_thread(getattr(self.client, method), Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey",) or (
                    method == "get_object" and exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404
                    and exc.response.get("Error", {}).get("Code") != "NoSuchBucket"):
                raise MissingObject(kwargs.get("Key")) from None
            raise StorageUnavailable(reason(exc, self.bucket)) from None
        except BotoCoreError as exc:
            raise StorageUnavailable(reason(exc, self.bucket)) from None

    async def check(self):
        """'ok', 'disabled', or 'error: <reason>' (for /health and the start-up line); an answer less than
        CHECK_SECONDS old is given again."""
        if not self.enabled:
            return "disabled"
        when, answer = self._checked
        if when is not None and self._clock() - when < self.CHECK_SECONDS:
            return answer
        try:
            await asyncio.wait_for(self._call("head_bucket"), timeout=3)
            answer = "ok"
        except StorageUnavailable as exc:
            answer = f"error: {exc}"
        except asyncio.TimeoutError:
            answer = "error: endpoint did not answer in 3 s"
        self._checked = (self._clock(), answer)
        return answer

    async def put(self, object_key, data, content_type):
        digest = hashlib.sha256(data).hexdigest()
        await self._call("put_object", Key=object_key, Body=data, ContentType=content_type,
                         Metadata={"sha256": digest})
        return digest

    async def get(self, object_key):
        """(bytes, content type) of the object."""
        response = await self._call("get_object", Key=object_key)
        try:
            body = await asyncio.to_thread(response["Body"].read)
        except BotoCoreError as exc:
            raise StorageUnavailable(reason(exc, self.bucket)) from None
        return body, response.get("ContentType") or "application/octet-stream"

    async def delete(self, object_key):
        await self._call("delete_object", Key=object_key)
