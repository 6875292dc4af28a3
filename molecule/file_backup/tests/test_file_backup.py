"""The app's bucket copied off-site (molecule scenario `file_backup`).

files-1 runs the copy (rclone, role file_backup) and the S3 server of both buckets (SeaweedFS). The tests
write the app's objects with the app's own identity, from this machine, with boto3; run the copy as its timer
does (the oneshot unit); and restore and verify from the copy on the host. Every test takes `host`, so pytest
keeps them in file order.
"""

import hashlib
import json
import os
import re
import time
from pathlib import Path

import boto3
import pytest
from scenario_helpers import PROJECT, ansible_playbook

testinfra_hosts = ["ansible://files-1"]

VARS = {}
PKI = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "pki"
BUCKET, OFFSITE = "teamflow-files", "teamflow-offsite"
METRICS = "/var/lib/prometheus/node-exporter/teamflow_file_backup.prom"


@pytest.fixture(scope="module")
def bucket(host):
    """boto3 on the app's bucket, with the app's identity."""
    address = host.check_output("hostname -I").split()[0]
    return boto3.client("s3", endpoint_url=f"https://{address}:8333", region_name="us-east-1",
                        aws_access_key_id="MOLECULEAPP", aws_secret_access_key="molecule-app-s3-secret-0123456789",
                        verify=str(PKI / "ca.crt"))


def put(bucket, key, data):
    bucket.put_object(Bucket=BUCKET, Key=key, Body=data)
    return hashlib.sha256(data).hexdigest()


def sha256_in_bucket(bucket, key):
    try:
        return hashlib.sha256(bucket.get_object(Bucket=BUCKET, Key=key)["Body"].read()).hexdigest()
    except bucket.exceptions.NoSuchKey:
        return None


def run_copy(host):
    """The timer's unit, started and waited for (oneshot); its journal lines of this run."""
    cursor = host.check_output("journalctl -n 0 --show-cursor -o cat | sed -n 's/^-- cursor: //p'")
    result = host.run("systemctl start teamflow-file-backup.service")
    journal = host.check_output("journalctl -u teamflow-file-backup.service --after-cursor %s -o cat", cursor)
    return result.rc, journal


def metrics(host):
    return {match[1]: float(match[2]) for match in
            re.finditer(r"^teamflow_file_backup_(\w+)\{[^}]*\} (\S+)$", host.file(METRICS).content_string, re.M)}


def in_copy(host, prefix=""):
    """Keys of the decrypted copy (current/ and versions/...)."""
    listing = host.run("teamflow-rclone lsf -R --files-only copy:%s", prefix)
    assert listing.rc in (0, 3), listing.stderr  # 3: no such directory
    return sorted(listing.stdout.splitlines())


# --- the role's work ----------------------------------------------------------------------

def test_the_copy_runs_on_a_timer(host):
    timer = host.service("teamflow-file-backup.timer")
    assert timer.is_enabled and timer.is_running
    assert "OnCalendar=*-*-* *:20:00" in host.file("/etc/systemd/system/teamflow-file-backup.timer").content_string


def test_rclones_configuration_is_roots_alone_and_hides_the_encryption_secrets(host):
    conf = host.file("/etc/teamflow-file-backup/rclone.conf")
    assert (conf.mode, conf.user) == (0o600, "root")
    assert "molecule-file-backup-password" not in conf.content_string
    assert "molecule-file-backup-salt" not in conf.content_string
    # rclone reads back what the role obscured
    revealed = host.check_output("rclone reveal %s", re.search(r"^password = (\S+)$", conf.content_string, re.M)[1])
    assert revealed == "molecule-file-backup-password-0123456789"


def test_a_copy_holds_every_object_encrypted_and_exports_its_figures(host, bucket):
    digests = {key: put(bucket, key, os.urandom(size)) for key, size in
               (("notes/1/plan.pdf", 300_000), ("notes/1/a.txt", 12), ("notes/2/b.bin", 70_000))}
    VARS["digests"] = digests
    rc, journal = run_copy(host)
    assert rc == 0, journal
    print("first copy: " + next((line for line in journal.splitlines() if "the copy holds" in line), journal[-300:]))
    assert in_copy(host, "current") == sorted(digests)
    # the off-site bucket holds neither the names nor the contents
    raw = host.check_output("teamflow-rclone lsf -R --files-only offsite:%s", OFFSITE).splitlines()
    assert len(raw) == 3 and not any("notes" in key or "plan" in key for key in raw), raw
    stored = host.check_output("teamflow-rclone cat offsite:%s/%s | sha256sum", OFFSITE, raw[0]).split()[0]
    assert stored not in digests.values()
    figures = metrics(host)
    assert (figures["last_run_success"], figures["objects"], figures["bytes"]) == (1, 3, 370_012), figures
    assert figures["last_success_timestamp_seconds"] == figures["last_run_timestamp_seconds"]


def test_deleted_and_overwritten_objects_stay_in_a_version_and_restore(host, bucket):
    digests = VARS["digests"]
    put(bucket, "notes/1/a.txt", b"the second text")
    bucket.delete_object(Bucket=BUCKET, Key="notes/2/b.bin")
    rc, journal = run_copy(host)
    assert rc == 0, journal
    assert in_copy(host, "current") == ["notes/1/a.txt", "notes/1/plan.pdf"]
    versions = host.check_output("teamflow-rclone lsf --dirs-only copy:versions").split()
    assert len(versions) == 1 and re.fullmatch(r"\d{8}T\d{6}Z/", versions[0]), versions
    assert in_copy(host, "versions/" + versions[0]) == ["notes/1/a.txt", "notes/2/b.bin"]
    assert metrics(host)["versions"] == 1

    # the deleted object: from the newest version that has it
    out = json.loads(host.check_output("teamflow-file-restore --version latest notes/2/b.bin"))
    assert (out["from"], out["objects"]) == ("copy:versions/" + versions[0].rstrip("/"), 1), out
    assert sha256_in_bucket(bucket, "notes/2/b.bin") == digests["notes/2/b.bin"]
    # the overwritten one: its earlier content, from that version by name
    host.check_output("teamflow-file-restore --version %s notes/1/a.txt", versions[0].rstrip("/"))
    assert sha256_in_bucket(bucket, "notes/1/a.txt") == digests["notes/1/a.txt"]
    # a key the copy never had
    missing = host.run("teamflow-file-restore --version latest notes/9/none.txt")
    assert missing.rc == 1 and "has nothing at 'notes/9/none.txt'" in missing.stderr, missing.stderr


def test_a_whole_prefix_restores_into_a_scratch_bucket_path(host, bucket):
    out = json.loads(host.check_output("teamflow-file-restore --to offsite:%s/scratch notes/", OFFSITE))
    assert out["objects"] == 2, out
    assert host.check_output("teamflow-rclone lsf -R --files-only offsite:%s/scratch", OFFSITE).split() == \
        ["notes/1/a.txt", "notes/1/plan.pdf"]
    host.check_output("teamflow-rclone purge offsite:%s/scratch", OFFSITE)


def test_versions_past_the_retention_are_removed(host):
    host.check_output("echo old | teamflow-rclone rcat copy:versions/20200101T000000Z/notes/5/old.txt")
    rc, journal = run_copy(host)
    assert rc == 0, journal
    assert "removing versions/20200101T000000Z (older than 30 days)" in journal
    assert in_copy(host, "versions/20200101T000000Z") == []
    assert metrics(host)["versions"] == 2  # the run above's and this run's (it copied the restored objects)


def test_a_failed_copy_keeps_the_last_success_time(host):
    before = metrics(host)
    host.check_output("systemctl stop seaweedfs")
    try:
        started = time.monotonic()
        rc, journal = run_copy(host)
        seconds = time.monotonic() - started
    finally:
        host.check_output("systemctl start seaweedfs")
    after = metrics(host)
    print(f"failed copy with the S3 server stopped: exit {rc} after {seconds:.1f} s; "
          + next((line for line in journal.splitlines() if "failed" in line), journal[-300:]))
    assert rc != 0 and "the copy of bucket teamflow-files failed" in journal
    assert after["last_run_success"] == 0
    assert after["last_success_timestamp_seconds"] == before["last_success_timestamp_seconds"]
    assert after["objects"] == before["objects"]
    host.run_expect([0], "for i in $(seq 60); do teamflow-rclone lsf source:teamflow-files >/dev/null 2>&1 && exit 0; "
                         "sleep 1; done; exit 1")
    rc, journal = run_copy(host)
    assert rc == 0 and metrics(host)["last_run_success"] == 1, journal


# --- the verification ------------------------------------------------------------------------

def verify(*extra):
    return ansible_playbook(PROJECT / "playbooks" / "file_backup_verify.yml", *extra)


def test_the_verification_restores_every_object_and_passes(host):
    run = verify()
    assert run.returncode == 0, run.stdout[-3000:]
    report = re.search(r'"msg": "(\d+ objects in the bucket.*?)"', run.stdout)
    print(f"verification: {report[1] if report else run.stdout[-500:]}")
    assert re.search(r"3 objects in the bucket \(0 changed since the last copy\),\s+3 in the copy, 3 restored", run.stdout)


def test_the_verification_names_an_altered_and_a_missing_object(host):
    # the encrypted object of notes/1/plan.pdf: the copy's own listing maps names to the stored ones
    stored = host.check_output("teamflow-rclone cryptdecode --reverse copy: current/notes/1/plan.pdf").split()[-1]
    size = int(host.check_output("teamflow-rclone size --json offsite:%s/teamflow-files/%s | "
                                 "sed -n 's/.*\"bytes\":\\([0-9]*\\).*/\\1/p'", OFFSITE, stored))
    host.check_output("head -c %s /dev/urandom | teamflow-rclone rcat offsite:%s/teamflow-files/%s",
                      str(size), OFFSITE, stored)
    host.check_output("teamflow-rclone deletefile copy:current/notes/1/a.txt")
    run = verify()
    assert run.returncode != 0
    message = re.search(r'"msg": "(the off-site copy[^"]*)"', run.stdout)
    print(f"verification after the damage: {message[1] if message else run.stdout[-1500:]}")
    assert message and "1 missing from the copy: notes/1/a.txt" in message[1]
    assert "1 cannot be restored: notes/1/plan.pdf" in message[1]
