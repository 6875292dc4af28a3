"""The backup verification module against the scenario's repositories.

Rows are written, an incremental backup is taken (from the replica, in both
repositories), more rows are written and archived; then playbooks/backup_verify.yml
(the AWX entry point) runs the module against repository 1 on the primary. Every
test takes `host`, so pytest keeps them in file order; each failure test puts the
repository back as it found it.
"""

import json
import time

import pytest
from scenario_helpers import PROJECT, ansible_playbook

testinfra_hosts = ["ansible://pgbr-db"]

STANZA = "teamflow"
REPO = "/var/lib/pgbackrest"
COUNT = "SELECT count(*) FROM verify_probe"
DIGEST = "SELECT md5(string_agg(id || ':' || note, ',' ORDER BY id)) FROM verify_probe"


def sql(host, query):
    return host.check_output("runuser -u postgres -- psql -XAtq -d teamflow -c %s", query)


def pgbackrest(host, *args):
    argv = ["runuser", "-u", "postgres", "--", "pgbackrest", f"--stanza={STANZA}", *args]
    return host.check_output(" ".join(["%s"] * len(argv)), *argv)


def verify(**extra):
    """Run playbooks/backup_verify.yml on pgbr-db; the module's result (a dict, failed or not)."""
    run = ansible_playbook(PROJECT / "playbooks" / "backup_verify.yml", "-e", json.dumps(extra),
                           env={"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1"})
    report = json.loads(run.stdout)
    task = next(t for t in report["plays"][0]["tasks"] if t["task"]["name"].startswith("Verify repository"))
    return task["hosts"]["pgbr-db"]


def assert_clean(host):
    """No scratch directory and no throwaway server left behind."""
    assert host.run("ls -d /var/tmp/pgbackrest-verify-* 2>/dev/null").stdout == ""
    # [p]: so that pgrep does not find the shell that runs it
    assert host.run("pgrep -af '[p]gbackrest-verify-'").rc == 1


def newest_backup(host):
    """The newest backup in repository 1 (REPO), the one playbooks/backup_verify.yml verifies by default."""
    return json.loads(pgbackrest(host, "--repo=1", "--output=json", "info"))[0]["backup"][-1]


@pytest.fixture(scope="module", autouse=True)
def data_written_backed_up_and_archived(host):
    """100 rows, an incremental backup, 50 more rows in two further archived WAL segments."""
    sql(host, "CREATE TABLE IF NOT EXISTS verify_probe (id serial PRIMARY KEY, note text NOT NULL)")
    sql(host, "INSERT INTO verify_probe (note) SELECT 'before the backup ' || g FROM generate_series(1, 100) g")
    host.run_expect([0], "systemctl start pgbackrest-backup@incr.service")
    sql(host, "INSERT INTO verify_probe (note) SELECT 'after the backup ' || g FROM generate_series(1, 25) g")
    pgbackrest(host, "check")
    sql(host, "INSERT INTO verify_probe (note) SELECT 'later still ' || g FROM generate_series(1, 25) g")
    pgbackrest(host, "check")
    return {"count": sql(host, COUNT), "digest": sql(host, DIGEST)}


def queries(expected_count, expected_digest):
    return [{"name": "rows", "database": "teamflow", "sql": COUNT, "expected": expected_count},
            {"name": "digest", "database": "teamflow", "sql": DIGEST, "expected": expected_digest}]


def test_the_restore_finds_every_row_written_before_the_verification(host, data_written_backed_up_and_archived):
    expected = data_written_backed_up_and_archived
    assert expected["count"] == "150"
    result = verify(verify_queries=queries(expected["count"], expected["digest"]))
    assert not result.get("failed"), result.get("msg")
    assert [q["passed"] for q in result["queries"]] == [True, True]
    assert result["queries"][1]["actual"] == expected["digest"]
    assert result["restore"]["duration_seconds"] > 0
    assert result["stanza_status"]["message"] == "ok"
    assert result["archive"]["segments_checked"] >= 3
    metrics = host.file(f"/var/lib/prometheus/node-exporter/pgbackrest_verify_{STANZA}_repo1.prom").content_string
    assert f'pgbackrest_verify_success{{stanza="{STANZA}",repo="1"}} 1' in metrics
    assert "pgbackrest_verify_restore_duration_seconds" in metrics
    assert_clean(host)


def test_a_backup_older_than_the_threshold_fails(host):
    time.sleep(2)
    result = verify(verify_max_age_hours=1 / 3600, verify_restore_test=False)
    assert result["failed"] and result["failed_check"] == "age"
    assert "more than max_age 1 s" in result["msg"]
    metrics = host.file(f"/var/lib/prometheus/node-exporter/pgbackrest_verify_{STANZA}_repo1.prom").content_string
    assert f'pgbackrest_verify_success{{stanza="{STANZA}",repo="1"}} 0' in metrics


def test_a_wrong_query_result_fails(host, data_written_backed_up_and_archived):
    result = verify(verify_queries=queries("151", data_written_backed_up_and_archived["digest"]))
    assert result["failed"] and result["failed_check"] == "query"
    assert "query 'rows' returned '150', expected '151'" in result["msg"]
    assert_clean(host)


def test_a_corrupted_file_of_the_newest_backup_fails_the_restore(host):
    label = newest_backup(host)["label"]
    # the largest file the newest backup stored (encrypted and compressed)
    size, target = host.check_output(
        "find %s/backup/%s/%s/pg_data -type f -printf '%%s %%p\\n' | sort -n | tail -n 1", REPO, STANZA, label).split()
    host.run_expect([0], "cp -p %s /tmp/pristine", target)
    try:
        # overwrite 64 bytes in its middle
        host.run_expect([0], "dd if=/dev/urandom of=%s bs=1 seek=%s count=64 conv=notrunc status=none", target, str(int(size) // 2))
        result = verify()
    finally:
        host.run_expect([0], "cp -p /tmp/pristine %s", target)
    assert result["failed"] and result["failed_check"] == "restore"
    assert f"restore of {label} failed" in result["msg"]
    assert_clean(host)


def test_a_missing_wal_segment_fails(host):
    backup = newest_backup(host)
    # the archive's id: PostgreSQL's major version and the stanza's database id (15-1 on Debian 12, 17-1 on 13)
    archive_id = host.check_output("ls %s/archive/%s", REPO, STANZA).split()[0]
    archive_dir = f"{REPO}/archive/{STANZA}/{archive_id}/{backup['archive']['stop'][:16]}"
    # the first segment after the backup: recovery to the end of the archive needs it
    after = "%s%08X" % (backup["archive"]["stop"][:16], int(backup["archive"]["stop"][16:], 16) + 1)
    segment = host.check_output("ls %s/%s-* 2>/dev/null", archive_dir, after)
    host.run_expect([0], "mv %s /tmp/moved-segment", segment)
    try:
        result = verify()
    finally:
        host.run_expect([0], "mv /tmp/moved-segment %s", segment)
    assert result["failed"] and result["failed_check"] == "archive"
    assert f"missing {after}" in result["msg"]
    assert_clean(host)


def test_check_mode_plans_the_restore_and_restores_nothing(host):
    run = ansible_playbook(PROJECT / "playbooks" / "backup_verify.yml", "--check")
    assert run.returncode == 0, run.stdout[-3000:]
    assert "restored and checked" not in run.stdout
    assert_clean(host)
