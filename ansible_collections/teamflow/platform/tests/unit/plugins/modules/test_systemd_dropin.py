"""Unit tests of teamflow.platform.systemd_dropin, on a temporary directory in place of /etc/systemd/system.

The tests run as root (as `make test` does): the module makes root the owner of what it writes.
"""

from __future__ import annotations

import json
import os

import pytest

from ansible.module_utils.testing import patch_module_args
from ansible_collections.teamflow.platform.plugins.modules import systemd_dropin

CONTENT = "[Service]\nRestart=on-failure\n"


@pytest.fixture
def run(tmp_path, capsys):
    def run(check_mode=False, diff=False, **params):
        args = {"units": ["nginx.service", "postgresql@.service"], "name": "50-restart.conf", "content": CONTENT,
                "path": str(tmp_path), "_ansible_check_mode": check_mode, "_ansible_diff": diff}
        args.update(params)
        with patch_module_args(args):
            with pytest.raises(SystemExit):
                systemd_dropin.main()
        return json.loads(capsys.readouterr().out)
    return run


def test_writes_the_drop_in_of_every_unit_then_changes_nothing(run, tmp_path):
    first = run()
    assert first["changed"] and first["changed_units"] == ["nginx.service", "postgresql@.service"]
    for unit in ("nginx.service", "postgresql@.service"):
        target = tmp_path / f"{unit}.d" / "50-restart.conf"
        assert target.read_text() == CONTENT
        assert oct(target.stat().st_mode & 0o7777) == "0o644"
        assert oct(target.parent.stat().st_mode & 0o7777) == "0o755"
    assert run()["changed"] is False


def test_check_mode_reports_the_change_with_its_diff_and_writes_nothing(run, tmp_path):
    result = run(check_mode=True, diff=True)
    assert result["changed"] and len(result["diff"]) == 2
    assert result["diff"][0]["after"] == CONTENT and result["diff"][0]["before"] == ""
    assert list(tmp_path.iterdir()) == []


def test_a_changed_content_or_mode_is_put_back(run, tmp_path):
    run()
    target = tmp_path / "nginx.service.d" / "50-restart.conf"
    target.write_text("[Service]\nRestart=no\n")
    os.chmod(tmp_path / "postgresql@.service.d" / "50-restart.conf", 0o600)
    result = run(diff=True)
    assert result["changed_units"] == ["nginx.service", "postgresql@.service"]
    assert result["diff"][0]["before"] == "[Service]\nRestart=no\n"
    assert target.read_text() == CONTENT
    assert oct((tmp_path / "postgresql@.service.d" / "50-restart.conf").stat().st_mode & 0o7777) == "0o644"


@pytest.mark.parametrize("params, message", [
    ({"units": ["nginx"]}, "units: not a unit name"),
    ({"name": "../escape.conf"}, "name: a file name ending in .conf"),
    ({"name": "restart"}, "name: a file name ending in .conf"),
    ({"mode": "rw-r--r--"}, "mode: an octal mode"),
])
def test_a_bad_parameter_fails_naming_it_and_writes_nothing(run, tmp_path, params, message):
    result = run(**params)
    assert result["failed"] and message in result["msg"]
    assert list(tmp_path.iterdir()) == []
