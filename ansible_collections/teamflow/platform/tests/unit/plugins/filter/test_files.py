"""Unit tests of teamflow.platform.found_files and as_file (plugins/filter/files.py).

The molecule scenarios common, hardening and node_exporter show the roles that
use them skipping what is in place and still putting back what drifted.
"""

from __future__ import annotations

import hashlib

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.teamflow.platform.plugins.filter.files import FilterModule, as_file, found_files

SHA1 = hashlib.sha1(b"Authorized use only.\n").hexdigest()


def found(path, **stat):
    entry = {"path": path, "mode": "0644", "pw_name": "root", "gr_name": "root", "isdir": False, "checksum": SHA1}
    entry.update(stat)
    return entry


def test_a_file_that_holds_the_content_is_in_place():
    files = found_files([found("/etc/issue")])
    assert files["/etc/issue"] == as_file("Authorized use only.\n", "0644")


@pytest.mark.parametrize("stat, text, mode, group", [
    ({}, "Authorized use only.", "0644", "root"),                # content (no newline)
    ({"mode": "0664"}, "Authorized use only.\n", "0644", "root"),  # mode
    ({"gr_name": "adm"}, "Authorized use only.\n", "0644", "root"),  # group
    ({}, "Authorized use only.\n", "0640", "prometheus"),        # what the task asks for differs
])
def test_any_difference_in_content_mode_or_owner_shows(stat, text, mode, group):
    assert found_files([found("/etc/issue", **stat)])["/etc/issue"] != as_file(text, mode, group=group)


def test_the_owner_counts_too():
    assert found_files([found("/etc/issue", pw_name="nobody")])["/etc/issue"] != as_file("Authorized use only.\n", "0644")


def test_a_directory_is_marked_and_never_equals_a_file():
    entry = found("/etc/modprobe.d", isdir=True, mode="0755")
    del entry["checksum"]
    state = found_files([entry])["/etc/modprobe.d"]
    assert state == "directory 0755 root:root"
    assert state != as_file("", "0755")


def test_a_link_or_a_file_read_without_checksum_never_equals_a_file():
    state = found_files([found("/etc/issue", checksum=None, islnk=True)])["/etc/issue"]
    assert state.startswith("- ")
    assert state != as_file("Authorized use only.\n", "0644")


def test_content_is_hashed_as_utf8():
    assert as_file("Grüße\n", "0644").split()[0] == hashlib.sha1("Grüße\n".encode()).hexdigest()


def test_owner_and_group_default_to_root_and_can_be_given():
    assert as_file("x", "0640").endswith(" 0640 root:root")
    assert as_file("x", "0640", owner="node", group="prometheus").endswith(" 0640 node:prometheus")


def test_nothing_found_is_an_empty_index():
    assert found_files([]) == {}


@pytest.mark.parametrize("value", [{"files": []}, "x", None])
def test_found_files_wants_finds_files_list(value):
    with pytest.raises(AnsibleFilterError, match="found_files expects"):
        found_files(value)


@pytest.mark.parametrize("content", [{"a": 1}, 3, None])
def test_as_file_wants_text(content):
    with pytest.raises(AnsibleFilterError, match="as_file expects the text"):
        as_file(content, "0644")


@pytest.mark.parametrize("mode", ["644", "u=rw", 420, "06444", "0899"])
def test_as_file_wants_a_four_digit_octal_mode(mode):
    with pytest.raises(AnsibleFilterError, match="four-digit octal mode"):
        as_file("x", mode)


def test_the_filters_are_registered_under_their_names():
    assert FilterModule().filters() == {"found_files": found_files, "as_file": as_file}
