#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: TeamFlow platform engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: systemd_dropin
short_description: Write one systemd drop-in file, the same, for several units in one run
version_added: 0.1.0
description:
  - Writes O(content) to C(O(path)/UNIT.d/O(name)) for every unit of O(units), making each unit's drop-in
    directory when it is missing. A unit that is not installed yet gets its drop-in too, which systemd reads
    once the unit is installed.
  - One run of the module instead of a loop of M(ansible.builtin.file) and M(ansible.builtin.template) over
    the units, which costs two module runs per unit and host.
  - Files are written atomically and only when their content, owner, group or mode differ. It does not
    reload systemd; notify a handler that does when the module reports a change.
  - Supports check mode and diff mode (one diff per file that changes).
author:
  - TeamFlow platform engineering (@teamflow)
options:
  units:
    description: Full unit names (C(nginx.service), a template's C(postgresql@.service)).
    type: list
    elements: str
    required: true
  name:
    description: File name of the drop-in in each unit's directory; ends in C(.conf).
    type: str
    required: true
  content:
    description: Content of the drop-in.
    type: str
    required: true
  path:
    description: Directory that holds the units' drop-in directories.
    type: path
    default: /etc/systemd/system
  mode:
    description: Mode of the drop-in files (the directories are C(0755)). Owner and group are root.
    type: str
    default: "0644"
seealso:
  - module: ansible.builtin.systemd_service
"""

EXAMPLES = r"""
- name: Have systemd restart each long-running service after a crash
  teamflow.platform.systemd_dropin:
    units: [nginx.service, redis-server.service, postgresql@.service]
    name: 50-teamflow-restart.conf
    content: |
      [Service]
      Restart=on-failure
  notify: Reload systemd's units
"""

RETURN = r"""
changed_units:
  description: Units whose drop-in was written (or would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [nginx.service]
"""

import os
import re
import tempfile

from ansible.module_utils.basic import AnsibleModule

UNIT_NAME = re.compile(r"^[A-Za-z0-9:_.\\@-]+\.(service|socket|timer|target|path|mount|slice|scope)$")


def read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def needs_attributes(path, mode, is_dir):
    status = os.stat(path)
    wanted = 0o755 if is_dir else mode
    return (status.st_mode & 0o7777) != wanted or status.st_uid != 0 or status.st_gid != 0


def main():
    module = AnsibleModule(
        argument_spec=dict(
            units=dict(type="list", elements="str", required=True),
            name=dict(type="str", required=True),
            content=dict(type="str", required=True),
            path=dict(type="path", default="/etc/systemd/system"),
            mode=dict(type="str", default="0644"),
        ),
        supports_check_mode=True,
    )
    units, name, path = module.params["units"], module.params["name"], module.params["path"]
    bad = [unit for unit in units if not UNIT_NAME.match(unit)]
    if bad:
        module.fail_json(msg=f"units: not a unit name with its type (such as nginx.service): {', '.join(bad)}")
    if "/" in name or not name.endswith(".conf"):
        module.fail_json(msg=f"name: a file name ending in .conf, not {name!r}")
    try:
        mode = int(module.params["mode"], 8)
    except ValueError:
        module.fail_json(msg=f"mode: an octal mode such as 0644, not {module.params['mode']!r}")
    content = module.params["content"].encode()

    changed_units, diffs = [], []
    for unit in dict.fromkeys(units):
        directory = os.path.join(path, unit + ".d")
        target = os.path.join(directory, name)
        before = read(target)
        dir_exists = os.path.isdir(directory)
        differs = (before != content or not dir_exists or needs_attributes(directory, mode, True)
                   or needs_attributes(target, mode, False))
        if not differs:
            continue
        changed_units.append(unit)
        diffs.append({"before_header": target, "after_header": target,
                      "before": (before or b"").decode(errors="replace"), "after": content.decode()})
        if module.check_mode:
            continue
        if not dir_exists:
            os.makedirs(directory, mode=0o755)
        os.chown(directory, 0, 0)
        os.chmod(directory, 0o755)
        if before != content:
            fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
            module.atomic_move(temporary, target)
        os.chown(target, 0, 0)
        os.chmod(target, mode)

    result = {"changed": bool(changed_units), "changed_units": changed_units}
    if module._diff:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
