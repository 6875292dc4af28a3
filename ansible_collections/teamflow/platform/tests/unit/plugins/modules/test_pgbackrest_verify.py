"""Unit tests of teamflow.platform.pgbackrest_verify and its module_utils.

The pgBackRest and PostgreSQL commands are faked (run_command), with JSON
captured from a real stanza (fixtures/) as pgBackRest's answers. The molecule
scenario pgbackrest runs the module against a real repository.
"""

from __future__ import annotations

import json
import os
import pathlib
import pwd

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args
from ansible_collections.teamflow.platform.plugins.module_utils import pgbackrest as pgbr
from ansible_collections.teamflow.platform.plugins.modules import pgbackrest_verify

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
INFO = (FIXTURES / "info_two_repos.json").read_text()
REPO_LS = (FIXTURES / "repo_ls_archive.json").read_text()
ME = pwd.getpwuid(os.geteuid()).pw_name
# when the fixtures were captured: the incremental of repo1 had ended 60 s earlier
NOW = 1795671572 + 60


# --- module_utils ----------------------------------------------------------------

def entry():
    return pgbr.parse_info(INFO, "teamflow")


def test_parse_info_finds_the_stanza():
    assert entry()["name"] == "teamflow"
    assert pgbr.stanza_status(entry()) == (0, "ok")


@pytest.mark.parametrize("text, message", [
    ("not json", "did not return JSON"),
    ('{"name": "teamflow"}', "not a list"),
    ('[{"name": "other"}]', "stanza 'teamflow' is not in"),
])
def test_parse_info_rejects_what_is_not_an_info(text, message):
    with pytest.raises(pgbr.CheckFailed, match=message):
        pgbr.parse_info(text, "teamflow")


def test_backups_of_one_repository_oldest_first():
    repo1 = pgbr.backups(entry(), 1)
    assert [b["label"] for b in repo1] == ["20261126-053746F", "20261126-053746F_20261126-053929I"]
    assert [b["type"] for b in repo1] == ["full", "incr"]
    assert repo1[0]["archive_start"] == "000000010000000000000002"
    assert repo1[0]["size"] == 30886825
    assert [b["label"] for b in pgbr.backups(entry(), 2)] == ["20261126-053750F"]
    assert len(pgbr.backups(entry())) == 3


def test_archive_range_and_ids():
    assert pgbr.archive_range(entry(), 1) == ("000000010000000000000001", "00000001000000000000000B")
    assert pgbr.archive_id(entry()) == "15-1"
    assert pgbr.pg_version(entry()) == "15"


def test_ages_within_limits():
    ages = pgbr.check_ages(pgbr.backups(entry(), 1), NOW, 3600, 3600)
    assert ages["newest_full_label"] == "20261126-053746F"
    assert ages["newest_full_age"] == NOW - 1795671469
    assert ages["newest_label"] == "20261126-053746F_20261126-053929I"
    assert ages["newest_age"] == 60


def test_a_full_backup_older_than_max_full_age_fails():
    with pytest.raises(pgbr.CheckFailed, match=r"newest full backup 20261126-053746F is 163 s old, more than max_full_age 100 s"):
        pgbr.check_ages(pgbr.backups(entry(), 1), NOW, 100, 3600)


def test_a_newest_backup_older_than_max_age_fails():
    with pytest.raises(pgbr.CheckFailed, match=r"newest backup .*I is 60 s old, more than max_age 30 s"):
        pgbr.check_ages(pgbr.backups(entry(), 1), NOW, 3600, 30)


def test_no_full_backup_fails():
    incr_only = [b for b in pgbr.backups(entry(), 1) if b["type"] == "incr"]
    with pytest.raises(pgbr.CheckFailed, match="no full backup"):
        pgbr.check_ages(incr_only, NOW, 3600, 3600)


def test_an_errored_backup_does_not_count():
    backups = pgbr.backups(entry(), 1)
    backups[-1]["error"] = True
    assert pgbr.check_ages(backups, NOW, 3600, 3600)["newest_label"] == "20261126-053746F"


def test_the_captured_archive_is_continuous():
    segments = pgbr.archived_segments(REPO_LS)
    assert len(segments) == 11
    assert pgbr.check_archive_continuity(segments, "000000010000000000000002", "00000001000000000000000B") == 10


def test_a_missing_segment_is_a_gap():
    listing = json.loads(REPO_LS)
    del listing[next(k for k in listing if "/000000010000000000000007-" in k)]
    with pytest.raises(pgbr.CheckFailed, match="gap between 000000010000000000000002 and 00000001000000000000000B: missing 000000010000000000000007"):
        pgbr.check_archive_continuity(pgbr.archived_segments(json.dumps(listing)),
                                      "000000010000000000000002", "00000001000000000000000B")


def test_the_gap_check_crosses_log_files():
    # 16 MB segments: ...0000FF is followed by ...000100000000
    segments = {"0000000100000000000000FE", "0000000100000000000000FF", "000000010000000100000000"}
    assert pgbr.check_archive_continuity(segments, "0000000100000000000000FE", "000000010000000100000000") == 3
    with pytest.raises(pgbr.CheckFailed, match="missing 000000010000000100000000"):
        pgbr.check_archive_continuity(segments - {"000000010000000100000000"} | {"000000010000000100000001"},
                                      "0000000100000000000000FE", "000000010000000100000001")


def test_an_empty_archive_fails():
    with pytest.raises(pgbr.CheckFailed, match="archive range is unknown"):
        pgbr.check_archive_continuity(set(), None, None)


def test_backup_files_and_history_are_not_segments():
    listing = {"0000000100000000/000000010000000000000002.00000028.backup": {"type": "file"},
               "00000002.history": {"type": "file"}, "0000000100000000": {"type": "path"}}
    assert pgbr.archived_segments(json.dumps(listing)) == set()


def test_query_results_are_compared_trimmed():
    assert pgbr.compare_query("42\n", "42")
    assert not pgbr.compare_query("41\n", "42")


def test_metrics_lines():
    text = pgbr.metrics("teamflow", 2, True, 1000, 7.5)
    assert 'pgbackrest_verify_success{stanza="teamflow",repo="2"} 1' in text
    assert 'pgbackrest_verify_restore_duration_seconds{stanza="teamflow",repo="2"} 7.500' in text
    assert "restore_duration" not in pgbr.metrics("teamflow", 1, False, 1000, None)


# --- the module, with a fake command line ------------------------------------------------

class FakeCli:
    """Answers the commands the module runs, and records them."""

    def __init__(self, info=INFO, repo_ls=REPO_LS, verify=(0, "", ""), restore_rc=0, start_rc=0, query_output="42"):
        self.info, self.repo_ls, self.verify = info, repo_ls, verify
        self.restore_rc, self.start_rc, self.query_output = restore_rc, start_rc, query_output
        self.calls = []
        self.running = False

    def __call__(self, module, argv, **kwargs):
        self.calls.append(argv)
        command = os.path.basename(argv[0])
        if command == "pgbackrest":
            if argv[-1] == "info":
                return 0, self.info, ""
            if argv[-1] == "repo-ls":
                return 0, self.repo_ls, ""
            if "archive/teamflow/15-1" in argv:
                return 0, self.repo_ls, ""
            if argv[-1] == "verify":
                return self.verify
            if argv[-1] == "restore":
                data = next(a.split("=", 1)[1] for a in argv if a.startswith("--pg1-path="))
                os.makedirs(data)
                pathlib.Path(data, "PG_VERSION").write_text("15\n")
                return self.restore_rc, "", "" if self.restore_rc == 0 else "ERROR: [039]: invalid checksum"
        if command == "pg_controldata":
            return 0, "max_connections setting:              121\nmax_worker_processes setting:         8\n", ""
        if command == "pg_ctl":
            if "start" in argv:
                data = argv[argv.index("-D") + 1]
                log = argv[argv.index("-l") + 1]
                pathlib.Path(log).write_text("LOG:  starting PostgreSQL 15\nFATAL:  could not locate a valid checkpoint record\n")
                self.running = self.start_rc == 0
                self.data = data
                return self.start_rc, "", "" if self.start_rc == 0 else "pg_ctl: could not start server"
            if "stop" in argv:
                self.running = False
                return 0, "", ""
        if command == "psql":
            sql = argv[argv.index("-c") + 1]
            if sql == "SELECT pg_is_in_recovery()":
                return 0, "f\n", ""
            return 0, self.query_output + "\n", ""
        raise AssertionError("unexpected command %s" % argv)


def run_module(monkeypatch, tmp_path, cli, **params):
    args = {"stanza": "teamflow", "pg_user": ME, "scratch_base": str(tmp_path), "max_full_age": 3600, "max_age": 3600}
    args.update(params)

    def run_command(module, argv, **kwargs):
        return cli(module, argv, **kwargs)

    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    monkeypatch.setattr(pgbackrest_verify.time, "time", lambda: NOW)
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            pgbackrest_verify.main()


@pytest.fixture
def output(capsys):
    def read():
        return json.loads(capsys.readouterr().out)
    return read


def test_read_only_checks_pass(monkeypatch, tmp_path, output):
    run_module(monkeypatch, tmp_path, FakeCli())
    result = output()
    assert not result.get("failed"), result
    assert result["stanza_status"] == {"code": 0, "message": "ok"}
    assert result["archive"]["segments_checked"] == 10
    assert result["ages"]["newest_age"] == 60


def test_a_stanza_that_is_not_ok_fails(monkeypatch, tmp_path, output):
    info = json.loads(INFO)
    info[0]["status"] = {"code": 2, "message": "no valid backups"}
    run_module(monkeypatch, tmp_path, FakeCli(info=json.dumps(info)))
    result = output()
    assert result["failed"] and result["failed_check"] == "stanza"
    assert "no valid backups" in result["msg"]


def test_old_backups_fail_the_age_check(monkeypatch, tmp_path, output):
    run_module(monkeypatch, tmp_path, FakeCli(), max_age=10)
    result = output()
    assert result["failed_check"] == "age"
    assert result["msg"].startswith("age check failed: the newest backup")


def test_a_gap_fails_the_archive_check(monkeypatch, tmp_path, output):
    listing = json.loads(REPO_LS)
    del listing[next(k for k in listing if "/000000010000000000000005-" in k)]
    run_module(monkeypatch, tmp_path, FakeCli(repo_ls=json.dumps(listing)))
    result = output()
    assert result["failed_check"] == "archive"
    assert "missing 000000010000000000000005" in result["msg"]


def test_pgbackrest_verify_problems_fail(monkeypatch, tmp_path, output):
    cli = FakeCli(verify=(0, "", "P00   WARN: invalid checksum for backup file pg_data/base/1/1255"))
    run_module(monkeypatch, tmp_path, cli, pgbackrest_verify=True)
    result = output()
    assert result["failed_check"] == "verify"
    assert "invalid checksum" in result["msg"]


def test_a_restore_test_runs_the_queries_and_cleans_up(monkeypatch, tmp_path, output):
    cli = FakeCli(query_output="42")
    run_module(monkeypatch, tmp_path, cli, restore_test=True, textfile_dir=str(tmp_path / "textfile"),
               queries=[{"name": "rows", "sql": "SELECT count(*) FROM t", "expected": "42", "database": "teamflow"}])
    result = output()
    assert not result.get("failed"), result
    assert result["restore"]["label"] == "20261126-053746F_20261126-053929I"
    assert result["queries"] == [{"name": "rows", "database": "teamflow", "expected": "42", "actual": "42", "passed": True}]
    restore = next(c for c in cli.calls if c[-1] == "restore")
    assert "--archive-mode=off" in restore and "--set=20261126-053746F_20261126-053929I" in restore
    start = next(c for c in cli.calls if "start" in c and "pg_ctl" in c[0])
    assert "-c archive_mode=off" in start[start.index("-o") + 1]
    assert not cli.running
    assert [p.name for p in tmp_path.iterdir()] == ["textfile"]
    metrics = (tmp_path / "textfile" / "pgbackrest_verify_teamflow_repo1.prom").read_text()
    assert 'pgbackrest_verify_success{stanza="teamflow",repo="1"} 1' in metrics


def test_a_query_without_expected_result_is_reported(monkeypatch, tmp_path, output):
    cli = FakeCli(query_output="1795730000.25")
    run_module(monkeypatch, tmp_path, cli, restore_test=True,
               queries=[{"name": "newest row", "sql": "SELECT extract(epoch FROM max(ts)) FROM t"}])
    result = output()
    assert not result.get("failed"), result
    assert result["queries"] == [{"name": "newest row", "database": "postgres", "expected": None,
                                  "actual": "1795730000.25", "passed": True}]


def test_a_wrong_query_result_fails_and_cleans_up(monkeypatch, tmp_path, output):
    cli = FakeCli(query_output="41")
    run_module(monkeypatch, tmp_path, cli, restore_test=True,
               queries=[{"name": "rows", "sql": "SELECT count(*) FROM t", "expected": "42"}])
    result = output()
    assert result["failed_check"] == "query"
    assert "query 'rows' returned '41', expected '42'" in result["msg"]
    assert not cli.running and list(tmp_path.iterdir()) == []


def test_a_failed_restore_fails_and_cleans_up(monkeypatch, tmp_path, output):
    cli = FakeCli(restore_rc=39)
    run_module(monkeypatch, tmp_path, cli, restore_test=True)
    result = output()
    assert result["failed_check"] == "restore"
    assert "invalid checksum" in result["msg"]
    assert not any("pg_ctl" in c[0] for c in cli.calls)
    assert list(tmp_path.iterdir()) == []


def test_a_server_that_does_not_start_fails_with_its_log(monkeypatch, tmp_path, output):
    cli = FakeCli(start_rc=1)
    run_module(monkeypatch, tmp_path, cli, restore_test=True)
    result = output()
    assert result["failed_check"] == "start"
    assert "could not locate a valid checkpoint record" in result["msg"]
    assert any("stop" in c for c in cli.calls if "pg_ctl" in c[0])
    assert list(tmp_path.iterdir()) == []


def test_a_point_in_time_lets_pgbackrest_pick_the_backup(monkeypatch, tmp_path, output):
    cli = FakeCli()
    run_module(monkeypatch, tmp_path, cli, restore_test=True, restore_target="2026-11-26 05:39:00+00")
    assert not output().get("failed")
    restore = next(c for c in cli.calls if c[-1] == "restore")
    assert "--type=time" in restore and "--target=2026-11-26 05:39:00+00" in restore
    assert not any(a.startswith("--set=") for a in restore)


def test_check_mode_plans_the_restore_without_running_it(monkeypatch, tmp_path, output):
    cli = FakeCli()
    run_module(monkeypatch, tmp_path, cli, restore_test=True, _ansible_check_mode=True)
    result = output()
    assert result["restore_plan"]["set"] == "20261126-053746F_20261126-053929I"
    assert "restore" not in result
    assert not any(c[-1] == "restore" for c in cli.calls)


def test_set_and_target_together_are_refused(monkeypatch, tmp_path, output):
    run_module(monkeypatch, tmp_path, FakeCli(), restore_test=True, restore_set="x", restore_target="y")
    assert "not both" in output()["msg"]
