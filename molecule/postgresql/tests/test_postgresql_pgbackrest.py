"""pgBackRest follows the Patroni cluster (molecule scenario `postgresql`).

Both members have the same configuration and run pgBackRest's TLS server; both repositories are on the
S3 server on pg-client. Whichever member leads archives WAL and takes the backups (from the streaming
replica), a replica's timer does nothing, and Patroni makes a new replica from the repository. The
tests find the leader each time, as a switchover here hands the lead over.
"""

import json
import os
import pathlib
import time

from cluster import MEMBERS, leader, patroni, remote, streaming
from scenario_helpers import ansible_playbook, wait_for

testinfra_hosts = ["ansible://pg-client"]

PROJECT = pathlib.Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", pathlib.Path(__file__).resolve().parents[3]))
CONF = "/etc/pgbackrest/pgbackrest.conf"
API_PASSWORD = "molecule-patroni-api-password-0123"


def pgbackrest(name, *args):
    return remote(name).run("runuser -u postgres -- pgbackrest --stanza=teamflow " + " ".join(args))


def backups(name):
    """The backups of the stanza as (repo, label), from NAME's view of the repositories."""
    info = json.loads(pgbackrest(name, "--output=json", "info").stdout)[0]
    return [(backup["database"]["repo-key"], backup["label"]) for backup in info["backup"]]


def replica_of(name):
    return next(member for member in MEMBERS if member != name)


def test_every_member_has_the_same_repositories_and_serves_the_others():
    files = {name: remote(name).file(CONF).content_string for name in MEMBERS}
    repos = {name: sorted(line for line in text.splitlines() if line.startswith("repo")) for name, text in files.items()}
    assert repos[MEMBERS[0]] == repos[MEMBERS[1]]
    assert "repo1-type=s3" in repos[MEMBERS[0]] and "repo2-type=s3" in repos[MEMBERS[0]]
    for name in MEMBERS:
        other = replica_of(name)
        assert f"tls-server-auth={other}=teamflow" in files[name]
        assert remote(name).service("pgbackrest").is_running
        # pg2 is the other member, through its TLS server
        assert f"pg2-host={other}" in files[name]


def test_a_replicas_timer_takes_no_backup():
    first = leader()
    replica = replica_of(first)
    before = backups(first)
    result = remote(replica).run("/usr/local/sbin/pgbackrest-backup incr")
    print(f"pgbackrest-backup on the replica {replica}: rc {result.rc}, {result.stdout.strip()}")
    assert result.rc == 0, result.stderr
    assert "is a replica" in result.stdout
    assert backups(first) == before


def test_the_leaders_backup_reads_the_streaming_replica():
    first = leader()
    assert streaming(replica_of(first))
    before = backups(first)
    result = remote(first).run("/usr/local/sbin/pgbackrest-backup incr 1")
    print(f"pgbackrest-backup on the leader {first}: rc {result.rc}, "
          f"{[line for line in result.stdout.splitlines() if 'standby' in line]}")
    assert result.rc == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "this member leads; incr backup with --backup-standby" in result.stdout
    # the role's timers (incr at half past the hour, full at 01:00, 5 min of random delay) may add one meanwhile
    new = [label for repo, label in backups(first) if repo == 1 and (repo, label) not in before]
    assert len(new) in (1, 2) and any(label.endswith("I") for label in new), new
    metric = remote(first).file("/var/lib/prometheus/node-exporter/pgbackrest_incr_repo1.prom").content_string
    assert 'pgbackrest_backup_last_run_success{stanza="teamflow",type="incr",repo="1"} 1' in metric


def test_wal_and_backups_follow_the_leader_through_a_switchover():
    first = wait_for(leader, 60)
    check = pgbackrest(first, "check")
    assert check.rc == 0, check.stdout[-2000:] + check.stderr[-2000:]
    result = ansible_playbook(PROJECT / "playbooks" / "switchover.yml")
    assert result.returncode == 0, result.stdout[-3000:]
    assert wait_for(lambda: leader() not in (None, first), 60)
    second = leader()
    assert wait_for(lambda: streaming(first), 60)
    # the new leader's archive_command reaches both repositories
    check = pgbackrest(second, "check")
    print(f"pgbackrest check on {first}, then on {second} after the switchover: rc {check.rc}")
    assert check.rc == 0, check.stdout[-2000:] + check.stderr[-2000:]
    # playbooks/backup.yml starts the unit on both members: the new leader takes it
    before = backups(second)
    result = ansible_playbook(PROJECT / "playbooks" / "backup.yml")
    assert result.returncode == 0, result.stdout[-3000:]
    after = backups(second)
    new = sorted(set(after) - set(before))
    print(f"playbooks/backup.yml with {second} leading: new backups {new}")
    assert sorted(repo for repo, _ in new) == [1, 2]
    assert "this member leads" in remote(second).check_output("journalctl -u pgbackrest-backup@incr -n 50 --no-pager -o cat")


def test_patroni_makes_a_new_replica_from_the_repository():
    replica = replica_of(leader())
    since = remote(replica).check_output("date '+%Y-%m-%d %H:%M:%S'")
    reinit = remote(replica).run("python3 -c %s %s", (
        "import base64, json, ssl, sys, urllib.request as u\n"
        "c = ssl.create_default_context(cafile='/etc/teamflow-pki/ca.crt')\n"
        "c.load_cert_chain('/etc/teamflow-pki/patroni.crt', '/etc/teamflow-pki/patroni.key')\n"
        "r = u.Request(sys.argv[1], data=json.dumps({'force': True}).encode(), method='POST', headers={\n"
        "    'Content-Type': 'application/json',\n"
        "    'Authorization': 'Basic ' + base64.b64encode(b'patroni:" + API_PASSWORD + "').decode()})\n"
        "print(u.urlopen(r, context=c, timeout=30).status)\n"), f"https://{replica}:8008/reinitialize")
    assert reinit.rc == 0 and reinit.stdout.strip() == "200", reinit.stderr
    started = time.time()

    def created():
        journal = remote(replica).check_output(f"journalctl -u 'patroni@*-main.service' --since '{since}' --no-pager -o cat")
        return [line for line in journal.splitlines() if "replica has been created" in line]

    made = wait_for(created, 120)
    back = wait_for(lambda: patroni(replica).get("state") == "running" and streaming(replica), 120)
    print(f"reinit of {replica}: {made}, streaming {time.time() - started:.1f} s after the request")
    assert any("using pgbackrest" in line for line in made), made
    assert back, f"{replica} does not stream 120 s after its reinit"


def test_backup_verification_restores_the_clusters_backup():
    """playbooks/backup_verify.yml on the first primary host, whichever member leads: the newest backup of
    repo1 restores into a scratch cluster and answers, and the WAL since it is all in the archive."""
    result = ansible_playbook(PROJECT / "playbooks" / "backup_verify.yml", "-e", "verify_repo=1")
    report = [line.strip() for line in result.stdout.splitlines() if "repo1: newest full" in line or "segments in place" in line]
    print(f"backup verification with {leader()} leading: {report}")
    assert result.returncode == 0, result.stdout[-3000:]
