# -*- coding: utf-8 -*-
# Copyright: TeamFlow platform engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters for reading a role's files once before writing them (docs: found_files.yml, as_file.yml).

A role finds the files it writes with one ansible.builtin.find (get_checksum), turns
the result into {path: state} with found_files, and runs each template or copy only
where that state is not the one `as_file` gives for what it would write.
"""

from __future__ import annotations

import hashlib

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_bytes


def _state(checksum, mode, owner, group):
    return f"{checksum} {mode} {owner}:{group}"


def found_files(files):
    """ansible.builtin.find's `files` -> {path: "sha1 mode owner:group"}.

    A directory's state starts with "directory", anything else without a checksum with "-".
    """
    if not isinstance(files, list):
        raise AnsibleFilterError(f"found_files expects the `files` list of ansible.builtin.find, got {type(files).__name__}")
    return {
        entry["path"]: _state("directory" if entry.get("isdir") else entry.get("checksum") or "-",
                              entry.get("mode", "-"), entry.get("pw_name", "-"), entry.get("gr_name", "-"))
        for entry in files
    }


def as_file(content, mode, owner="root", group="root"):
    """What found_files reports for a regular file holding CONTENT (text, written as UTF-8) with these attributes."""
    if not isinstance(content, str):
        raise AnsibleFilterError(f"as_file expects the text of the file, got {type(content).__name__}")
    mode = str(mode)
    if not (len(mode) == 4 and set(mode) <= set("01234567")):
        raise AnsibleFilterError(f"as_file expects a four-digit octal mode such as '0644', got {mode!r}")
    return _state(hashlib.sha1(to_bytes(content, errors="surrogate_or_strict")).hexdigest(), mode, owner, group)


class FilterModule:
    def filters(self):
        return {"found_files": found_files, "as_file": as_file}
