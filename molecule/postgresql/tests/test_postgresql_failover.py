"""The Patroni cluster under faults, as the app tier sees it (molecule scenario `postgresql`).

pg-client writes and reads the whole time through libpq's multi-host connection strings, as the app
does: writes to `target_session_attrs=read-write`, reads to `prefer-standby`, a new connection for
each, every 0.1 s. Like the app, it retries a failed read once on a new connection (printed as
`reads_retried`); a write is never retried here. For each fault the test prints what a user would see: failed writes and reads,
seconds from the fault to the first write that succeeded again, acknowledged writes missing on the
new leader (lost), and how soon the old leader streams again.
"""

import json
import os
import pathlib
import subprocess
import time

import pytest
from cluster import MEMBERS, leader, patroni, remote, streaming, superuser_sql
from scenario_helpers import ansible_playbook, wait_for

testinfra_hosts = ["ansible://pg-client"]

APP_PASSWORD = "molecule-app-password-0123456789"
CA = "/tmp/pg-ca.crt"
PROJECT = pathlib.Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", pathlib.Path(__file__).resolve().parents[3]))
PROJECT_PLAYBOOKS = "playbooks"
SCENARIO = pathlib.Path(__file__).resolve().parents[1]

# one line per attempt: "<ms since the epoch> ok <id>" or "<ms> fail"
LOAD = r"""#!/bin/bash
# usage: failover-load write|read SECONDS LABEL
kind=$1 seconds=$2 label=$3
hosts="host=pg-primary,pg-replica dbname=teamflow user=teamflow sslmode=verify-full sslrootcert=/tmp/pg-ca.crt connect_timeout=2"
if [ "$kind" = write ]; then
  conninfo="$hosts target_session_attrs=read-write"
  sql="INSERT INTO failover_probe (label) VALUES ('$label') RETURNING id"
else
  conninfo="$hosts target_session_attrs=prefer-standby"
  sql="SELECT count(*) FROM failover_probe"
fi
attempt() {
  PGPASSWORD=@PASSWORD@ timeout 6 psql -XAtq -v ON_ERROR_STOP=1 "$conninfo" -c "$sql" 2>/dev/null
}
end=$((SECONDS + seconds))
while [ "$SECONDS" -lt "$end" ]; do
  started=$(date +%s%3N)
  if out=$(attempt); then
    echo "$started ok $out"
  elif [ "$kind" = read ] && out=$(attempt); then
    # a read is retried once on a new connection, as the app does (db.py): "retried"
    echo "$started ok $out retried"
  else
    echo "$started fail"
  fi
  sleep 0.1
done
""".replace("@PASSWORD@", APP_PASSWORD)


@pytest.fixture(scope="module", autouse=True)
def load_tools(host):
    pem = remote("pg-primary").file("/etc/teamflow-pki/ca.crt").content_string
    host.run_expect([0], "printf '%%s' %s > " + CA, pem)
    host.run_expect([0], "cat > /usr/local/bin/failover-load <<'SH'\n" + LOAD + "SH\nchmod 755 /usr/local/bin/failover-load")
    superuser_sql(wait_for(leader, 60), "CREATE TABLE IF NOT EXISTS failover_probe "
                  "(id bigserial PRIMARY KEY, label text NOT NULL, at timestamptz DEFAULT now())")
    superuser_sql(leader(), "GRANT SELECT, INSERT ON failover_probe TO teamflow; "
                  "GRANT USAGE ON SEQUENCE failover_probe_id_seq TO teamflow")


def under_load(host, label, seconds, fault):
    """Write and read for SECONDS; FAULT() runs after 5 s and returns its time (epoch s). The figures."""
    host.run_expect([0], f"rm -f /tmp/{label}.*; (failover-load write {seconds} {label} > /tmp/{label}.writes &) ; "
                         f"(failover-load read {seconds} {label} > /tmp/{label}.reads &)")
    time.sleep(5)
    fault_at = fault()
    wait_for(lambda: host.run("pgrep -f 'failover-load .* %s'", label).rc != 0, timeout=seconds + 30)
    writes = [line.split() for line in host.check_output(f"cat /tmp/{label}.writes").splitlines()]
    reads = [line.split() for line in host.check_output(f"cat /tmp/{label}.reads").splitlines()]
    acknowledged = [int(parts[2]) for parts in writes if parts[1] == "ok"]
    after = [int(parts[0]) / 1000 for parts in writes if parts[1] == "ok" and int(parts[0]) / 1000 > fault_at]
    found = wait_for(leader, 60)
    present = superuser_sql(found, f"SELECT count(*) FROM failover_probe WHERE label = '{label}' "
                                   f"AND id IN ({','.join(map(str, acknowledged)) or '0'})")
    figures = {
        "writes": len(writes), "failed_writes": sum(p[1] == "fail" for p in writes),
        "reads": len(reads), "failed_reads": sum(p[1] == "fail" for p in reads),
        "reads_retried": sum(p[-1] == "retried" for p in reads),
        "seconds_to_first_write": round(min(after) - fault_at, 1) if after else None,
        "lost_commits": len(acknowledged) - int(present), "leader_after": found,
    }
    print(f"{label}: {json.dumps(figures)}")
    return figures


def test_a_kill_9_of_the_leaders_postmaster_loses_no_commit(host):
    old = leader()
    assert old, "no leader before the fault"

    def fault():
        pid = remote(old).check_output("head -1 /var/lib/postgresql/15/main/postmaster.pid")
        at = time.time()
        remote(old).run_expect([0], f"kill -9 {pid}")
        return at

    figures = under_load(host, "kill9", 25, fault)
    assert figures["lost_commits"] == 0
    assert figures["seconds_to_first_write"] is not None and figures["seconds_to_first_write"] <= 30
    assert figures["failed_reads"] == 0
    assert wait_for(lambda: all(patroni(name).get("state") == "running" for name in MEMBERS), 60)
    other = [name for name in MEMBERS if name != leader()][0]
    assert wait_for(lambda: streaming(other), 60), f"{other} does not stream after the kill"


def test_a_switchover_fails_no_request(host):
    old = leader()

    def fault():
        at = time.time()
        result = ansible_playbook(PROJECT / PROJECT_PLAYBOOKS / "switchover.yml")
        assert result.returncode == 0, result.stdout[-3000:]
        return at

    figures = under_load(host, "switchover", 40, fault)
    print(f"switchover: {old} -> {figures['leader_after']}")
    assert figures["leader_after"] != old
    assert figures["lost_commits"] == 0
    assert figures["failed_reads"] == 0
    assert streaming(old)


def test_the_leaders_host_crashing_loses_no_commit_and_it_rejoins_as_a_replica(host):
    old = leader()
    address = subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", old],
                             capture_output=True, text=True, check=True).stdout.strip()

    def fault():
        at = time.time()
        subprocess.run(["docker", "kill", old], check=True, capture_output=True)
        return at

    figures = under_load(host, "crash", 35, fault)
    assert figures["leader_after"] != old
    assert figures["lost_commits"] == 0
    assert figures["seconds_to_first_write"] is not None and figures["seconds_to_first_write"] <= 30

    subprocess.run(["docker", "start", old], check=True, capture_output=True)
    started = time.time()
    assert subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", old],
                          capture_output=True, text=True, check=True).stdout.strip() == address
    back = wait_for(lambda: patroni(old).get("role") == "replica" and streaming(old), 90, interval=1)
    print(f"crash: {old} streams again {time.time() - started:.1f} s after its start")
    assert back, f"{old} is not a streaming replica 90 s after its start"
    assert time.time() - started <= 60


@pytest.mark.parametrize("per_app_host, expected", [(30, "51"), (50, "71")])
def test_max_connections_goes_down_and_up_with_no_failed_standby(host, per_app_host, expected):
    # max_connections is one of the settings in etcd: Patroni's phase applies them and orders the restarts
    result = ansible_playbook(SCENARIO / "converge.yml", "--tags", "postgresql_patroni",
                              "-e", f"postgresql_connections_per_app_host={per_app_host}")
    assert result.returncode == 0, result.stdout[-3000:]
    values = {name: superuser_sql(name, "SHOW max_connections") for name in MEMBERS}
    print(f"max_connections with {per_app_host} per app host: {values}")
    assert values == {name: expected for name in MEMBERS}
    assert all(patroni(name).get("state") == "running" for name in MEMBERS)
    # the replica's WAL receiver reconnects to the restarted leader within seconds
    replica = [name for name in MEMBERS if name != leader()][0]
    started = time.time()
    assert wait_for(lambda: streaming(replica), 30), f"{replica} does not stream 30 s after the run"
    print(f"max_connections {expected}: {replica} streams {time.time() - started:.1f} s after the run")
