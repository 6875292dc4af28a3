"""pgBackRest with a posix and an S3 repository (molecule scenario `pgbackrest`).

The tests run on the database host. The S3 bucket is listed with boto3 from
the test process itself, over TLS with the scenario's test CA. Every test takes
`host`, so pytest keeps them in file order.
"""

import json
import os
import pathlib
import time

import boto3
from scenario_helpers import scenario_host

testinfra_hosts = ["ansible://pgbr-db"]

STANZA = "teamflow"
PKI = pathlib.Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", ".")) / "pki"


def info(host, repo=None):
    """pgbackrest info of the stanza (one repository, or all)."""
    repo_arg = [f"--repo={repo}"] if repo else []
    args = ["runuser", "-u", "postgres", "--", "pgbackrest", f"--stanza={STANZA}", *repo_arg, "--output=json", "info"]
    out = host.check_output(" ".join(["%s"] * len(args)), *args)
    return json.loads(out)[0]


def backups(host, repo, kind):
    return [b for b in info(host)["backup"] if b["database"]["repo-key"] == repo and b["type"] == kind]


def sql(host, query):
    return host.check_output("runuser -u postgres -- psql -XAtq -d postgres -c %s", query)


def test_the_stanza_is_ok_in_both_encrypted_repositories(host):
    stanza = info(host)
    assert stanza["status"]["code"] == 0, stanza["status"]
    repos = {repo["key"]: repo for repo in stanza["repo"]}
    assert sorted(repos) == [1, 2]
    for repo in repos.values():
        assert repo["status"]["code"] == 0, repo
        assert repo["cipher"] == "aes-256-cbc"


def test_converge_and_its_rerun_took_exactly_one_full_backup_per_repository(host):
    # idempotence ran the role a second time before these tests
    for repo in (1, 2):
        assert len(backups(host, repo, "full")) == 1


def test_postgresql_archives_through_pgbackrest(host):
    assert sql(host, "SHOW archive_mode") == "on"
    assert sql(host, "SHOW archive_command") == f"pgbackrest --stanza={STANZA} archive-push %p"
    assert sql(host, "SHOW archive_timeout") == "30s"


def test_a_switched_wal_segment_reaches_both_repositories_within_archive_timeout(host):
    sql(host, "CREATE TABLE IF NOT EXISTS archive_probe (at timestamptz DEFAULT now()); INSERT INTO archive_probe DEFAULT VALUES")
    segment = sql(host, "SELECT pg_walfile_name(pg_switch_wal())")
    deadline = time.monotonic() + 60 + 10
    missing = {1, 2}
    while missing and time.monotonic() < deadline:
        for repo in sorted(missing):
            archive = info(host, repo)["archive"]
            if archive and archive[0]["max"] >= segment:
                missing.discard(repo)
        time.sleep(1)
    assert not missing, f"segment {segment} not archived in repo(s) {sorted(missing)}"


def test_the_timers_run_on_the_configured_calendars(host):
    full = host.check_output("systemctl show -p TimersCalendar --value pgbackrest-backup-full.timer")
    incr = host.check_output("systemctl show -p TimersCalendar --value pgbackrest-backup-incr.timer")
    assert "OnCalendar=*-*-* 01:00:00" in full
    assert "OnCalendar=*-*-* *:30:00" in incr
    for timer in ("pgbackrest-backup-full.timer", "pgbackrest-backup-incr.timer"):
        assert host.service(timer).is_enabled and host.service(timer).is_running
        assert host.check_output("systemctl show -p Persistent --value %s", timer) == "yes"
    assert not host.file("/etc/systemd/system/pgbackrest-backup-diff.timer").exists


def test_the_incremental_unit_takes_an_incremental_backup_in_both_repositories(host):
    before = {repo: len(backups(host, repo, "incr")) for repo in (1, 2)}
    host.run_expect([0], "systemctl start pgbackrest-backup@incr.service")
    for repo in (1, 2):
        assert len(backups(host, repo, "incr")) == before[repo] + 1
    for repo in (1, 2):
        metrics = host.file(f"/var/lib/prometheus/node-exporter/pgbackrest_incr_repo{repo}.prom").content_string
        assert f'pgbackrest_backup_last_run_success{{stanza="{STANZA}",type="incr",repo="{repo}"}} 1' in metrics
        assert "pgbackrest_backup_last_success_timestamp_seconds" in metrics


def test_backups_copy_the_data_files_from_the_replica(host):
    replica = scenario_host("pgbr-replica")
    assert replica.service("pgbackrest").is_running and replica.service("pgbackrest").is_enabled
    log = host.file(f"/var/log/pgbackrest/{STANZA}-backup.log").content_string
    # the incremental above ran with backup-standby against the replica over TLS
    last_run = log[log.rindex("backup command begin"):]
    assert "--backup-standby" in last_run and "--pg2-host=pgbr-replica" in last_run and "--pg2-host-type=tls" in last_run
    assert "wait for replay on the standby" in last_run
    assert "backup command end: completed successfully" in last_run


def test_the_s3_bucket_holds_the_repository(host):
    s3_host = scenario_host("pgbr-s3")
    address = s3_host.check_output("hostname -I").split()[0]
    s3 = boto3.client(
        "s3", endpoint_url=f"https://{address}:8333", region_name="us-east-1",
        aws_access_key_id="MOLECULEKEY", aws_secret_access_key="molecule-s3-secret-0123456789",
        verify=str(PKI / "ca.crt"),
    )
    keys = [obj["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="teamflow-backups")
            for obj in page.get("Contents", [])]
    assert any(key.startswith(f"pgbackrest/backup/{STANZA}/") and key.endswith("backup.info") for key in keys), keys[:20]
    assert any(key.startswith(f"pgbackrest/archive/{STANZA}/") and "/0000" in key for key in keys)
    # encrypted: the manifest is not readable text
    manifest = next(key for key in keys if key.endswith("/backup.manifest"))
    body = s3.get_object(Bucket="teamflow-backups", Key=manifest)["Body"].read()
    assert b"[backup]" not in body
