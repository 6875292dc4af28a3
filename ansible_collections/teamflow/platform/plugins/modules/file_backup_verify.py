#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: TeamFlow platform engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: file_backup_verify
short_description: Prove that the off-site copy of an S3 bucket has every object and that they restore intact
version_added: 0.3.0
description:
  - Lists the bucket (O(source)) and the copy (O(copy)) with rclone, then restores every object of the copy, or
    O(sample) of them chosen at random, into a scratch directory and compares each restored file's MD5 with the
    bucket's object (its ETag, or the object read again where the bucket has no MD5 for it).
  - Fails, naming the objects, when an object of the bucket is missing from the copy, when the copy's object has
    another size, when it cannot be restored (an encrypted copy whose object was altered fails to decrypt) or when
    its content differs.
  - Objects the bucket changed after O(copied_at) (the start of the last successful copy) are not expected in the
    copy yet; they are counted in RV(newer).
  - The scratch directory is removed at the end, also when something failed. Nothing is written to either bucket.
  - Made for role R(teamflow.platform.file_backup,ansible_collections.teamflow.platform.file_backup_role), whose
    C(teamflow-rclone) wrapper knows the remotes C(source) and C(copy); works with any rclone remotes.
author:
  - TeamFlow platform engineering (@teamflow)
options:
  source:
    description: The bucket, as an rclone remote path (C(source:BUCKET)).
    type: str
    required: true
  copy:
    description: The copy of the bucket, as an rclone remote path (C(copy:current)).
    type: str
    default: copy:current
  rclone:
    description: The rclone command (a wrapper that gives it its configuration).
    type: path
    default: /usr/local/sbin/teamflow-rclone
  sample:
    description: How many objects to restore and compare; C(0) restores every object.
    type: int
    default: 0
  copied_at:
    description: Unix time the last successful copy started; objects the bucket changed later are not expected in the copy.
    type: float
  scratch_base:
    description: Directory under which the scratch directory is made (it needs room for the restored objects).
    type: path
    default: /var/tmp
  transfers:
    description: Objects restored at the same time.
    type: int
    default: 8
notes:
  - Check mode runs the whole verification (it only reads the buckets and writes the scratch directory).
requirements:
  - rclone 1.60 or newer on the host.
seealso:
  - name: rclone crypt
    description: The encrypted remote the role's copy uses.
    link: https://rclone.org/crypt/
"""

EXAMPLES = r"""
- name: Restore every object of the off-site copy and compare it with the bucket
  teamflow.platform.file_backup_verify:
    source: source:teamflow-storage

- name: Restore 100 objects chosen at random
  teamflow.platform.file_backup_verify:
    source: source:teamflow-storage
    sample: 100
"""

RETURN = r"""
objects:
  description: Objects in the bucket.
  returned: always
  type: int
newer:
  description: Objects the bucket changed after O(copied_at), not expected in the copy yet.
  returned: always
  type: int
copied:
  description: Objects in the copy.
  returned: always
  type: int
restored:
  description: Objects restored and compared.
  returned: always
  type: int
missing:
  description: Keys of the bucket's objects the copy lacks.
  returned: always
  type: list
  elements: str
differs:
  description: Keys whose copy has another size or, restored, another MD5.
  returned: always
  type: list
  elements: str
unreadable:
  description: Keys whose copy could not be restored (rclone's error for it in RV(errors)).
  returned: always
  type: list
  elements: str
errors:
  description: rclone's error lines of the restore.
  returned: always
  type: list
  elements: str
seconds:
  description: How long the verification took.
  returned: always
  type: float
"""

import datetime
import hashlib
import json
import os
import random
import re
import shutil
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule

SHOWN = 20
_RFC3339 = re.compile(r"^(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?P<fraction>\.\d+)?(?P<zone>Z|[+-]\d\d:\d\d)$")


def modified(entry):
    """Unix time of an rclone lsjson entry's ModTime (RFC 3339 with up to nanoseconds); 0 when it has none."""
    match = _RFC3339.match(entry.get("ModTime", ""))
    if not match:
        return 0.0
    zone = "+00:00" if match["zone"] == "Z" else match["zone"]
    return datetime.datetime.fromisoformat(match["time"] + zone).timestamp() + float("0" + (match["fraction"] or ""))


def md5_of(path):
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Verification:
    def __init__(self, module):
        self.module = module
        self.params = module.params

    def rclone(self, *args, check=True):
        rc, out, err = self.module.run_command([self.params["rclone"], *args])
        if check and rc != 0:
            self.module.fail_json(msg=f"rclone {' '.join(args)} failed (exit {rc}): {err.strip()[-2000:]}")
        return rc, out, err

    def listing(self, remote, hashes=False):
        args = ["lsjson", "-R", "--files-only", "--no-mimetype"] + (["--hash", "--hash-type", "MD5"] if hashes else [])
        rc, out, err = self.rclone(*args, remote, check=False)
        if rc == 3:  # no such directory: an empty bucket or copy
            return {}
        if rc != 0:
            self.module.fail_json(msg=f"cannot list {remote} (rclone exit {rc}): {err.strip()[-2000:]}")
        return {entry["Path"]: entry for entry in json.loads(out or "[]")}

    def run(self):
        started = time.monotonic()
        source = self.listing(self.params["source"], hashes=True)
        copy = self.listing(self.params["copy"])
        copied_at = self.params["copied_at"]
        expected = {key: entry for key, entry in source.items()
                    if copied_at is None or modified(entry) <= copied_at}
        missing = sorted(key for key in expected if key not in copy)
        differs = sorted(key for key in expected if key in copy and copy[key]["Size"] != expected[key]["Size"])
        candidates = sorted(key for key in expected if key in copy and key not in differs)
        sample = self.params["sample"]
        chosen = sorted(random.sample(candidates, sample)) if 0 < sample < len(candidates) else candidates
        unreadable, errors = [], []
        scratch = tempfile.mkdtemp(prefix="file-backup-verify.", dir=self.params["scratch_base"])
        try:
            if chosen:
                listed = os.path.join(scratch, "objects.txt")
                with open(listed, "w", encoding="utf-8") as handle:
                    handle.write("".join(key + "\n" for key in chosen))
                restored_dir = os.path.join(scratch, "restored")
                _rc, _out, err = self.rclone("copy", self.params["copy"], restored_dir, "--files-from-raw", listed,
                                             "--transfers", str(self.params["transfers"]), "--retries", "1", check=False)
                errors = [line for line in err.splitlines() if "ERROR" in line][:SHOWN]
                no_md5 = []
                for key in chosen:
                    path = os.path.join(restored_dir, key)
                    if not os.path.isfile(path):
                        unreadable.append(key)
                        continue
                    want = (expected[key].get("Hashes") or {}).get("md5", "")
                    if not want:
                        no_md5.append(key)
                    elif md5_of(path) != want:
                        differs.append(key)
                differs.extend(self.compare_read_again(no_md5, restored_dir, scratch))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        result = dict(changed=False, objects=len(source), newer=len(source) - len(expected), copied=len(copy),
                      restored=len(chosen) - len(unreadable), missing=missing, differs=sorted(differs),
                      unreadable=unreadable, errors=errors, seconds=round(time.monotonic() - started, 2))
        problems = [f"{len(keys)} {what}: {', '.join(keys[:SHOWN])}{' ...' if len(keys) > SHOWN else ''}"
                    for what, keys in (("missing from the copy", missing), ("differ from the bucket", result["differs"]),
                                       ("cannot be restored", unreadable)) if keys]
        if problems:
            self.module.fail_json(msg="the off-site copy of " + self.params["source"] + " fails verification: "
                                  + "; ".join(problems), **result)
        self.module.exit_json(**result)

    def compare_read_again(self, keys, restored_dir, scratch):
        """The keys (without an MD5 in the bucket's listing) whose bucket object, read again, differs."""
        if not keys:
            return []
        listed = os.path.join(scratch, "again.txt")
        with open(listed, "w", encoding="utf-8") as handle:
            handle.write("".join(key + "\n" for key in keys))
        _rc, out, _err = self.rclone("md5sum", "--download", "--files-from-raw", listed, self.params["source"])
        sums = {}
        for line in out.splitlines():
            digest, _sep, key = line.partition("  ")
            sums[key] = digest
        return [key for key in keys if sums.get(key) != md5_of(os.path.join(restored_dir, key))]


def main():
    module = AnsibleModule(
        argument_spec=dict(
            source=dict(type="str", required=True),
            copy=dict(type="str", default="copy:current"),
            rclone=dict(type="path", default="/usr/local/sbin/teamflow-rclone"),
            sample=dict(type="int", default=0),
            copied_at=dict(type="float"),
            scratch_base=dict(type="path", default="/var/tmp"),
            transfers=dict(type="int", default=8),
        ),
        supports_check_mode=True,
    )
    if module.params["sample"] < 0:
        module.fail_json(msg=f"sample must be 0 (every object) or more, not {module.params['sample']}")
    if module.params["transfers"] < 1:
        module.fail_json(msg=f"transfers must be 1 or more, not {module.params['transfers']}")
    Verification(module).run()


if __name__ == "__main__":
    main()
