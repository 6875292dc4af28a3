"""The Patroni cluster as the app tier grows and shrinks, and as a database host joins (molecule scenario
`postgresql`).

max_connections follows the number of app hosts, and every member must share it: Patroni's phase of
the role changes it in the cluster's settings in etcd and orders the restarts (the leader before the
replicas when it goes down, so no standby refuses its primary's lower value). Here the app tier grows
from the scenario's one host to four (three more in an extra inventory, each with an address of its own)
and shrinks to two, each a converge of the role. Then a third database host joins the running cluster: one
more converge, with that host in the inventory's db_replica group.

The faults (a kill -9 of the leader's postmaster, the leader's host killed, switchovers) are the site
scenario's, under load through the load balancer and the app (molecule/site/tests/test_site.py).
"""

import json
import pathlib
import time
import uuid

import pytest
from cluster import MEMBERS, leader, patroni, remote, streaming, superuser_sql
from scenario_helpers import ansible_playbook, wait_for

testinfra_hosts = ["ansible://pg-client"]

SCENARIO = pathlib.Path(__file__).resolve().parents[1]
# three more app hosts, never started: the database tier only needs their addresses
MORE_APP_HOSTS = {"all": {"children": {"app": {"hosts": {
    f"pg-app{n}": {"teamflow_private_address": f"192.0.2.{n}"} for n in (2, 3, 4)}}}}}


@pytest.mark.parametrize("app_hosts, expected", [(4, "221"), (2, "121")])
def test_the_app_tier_grows_from_one_host_to_four_and_shrinks_to_two_with_no_failed_standby(host, tmp_path,
                                                                                            app_hosts, expected):
    """50 connections per app host, one replica, 20 headroom: 1 host 71, 4 hosts 221, 2 hosts 121."""
    more = dict(list(MORE_APP_HOSTS["all"]["children"]["app"]["hosts"].items())[:app_hosts - 1])
    inventory = tmp_path / "more-app-hosts.json"
    inventory.write_text(json.dumps({"all": {"children": {"app": {"hosts": more}}}}))
    extra = ["-i", str(inventory)]
    result = ansible_playbook(SCENARIO / "converge.yml", *extra, "--tags", "postgresql", "--limit", "db_primary:db_replica")
    assert result.returncode == 0, result.stdout[-3000:]
    values = {name: superuser_sql(name, "SHOW max_connections") for name in MEMBERS}
    admitted = {name: superuser_sql(name, "SELECT count(*) FROM pg_hba_file_rules "
                                          "WHERE type = 'hostssl' AND user_name = '{teamflow}'") for name in MEMBERS}
    print(f"{app_hosts} app hosts: max_connections {values}, app host lines in pg_hba {admitted}")
    assert values == {name: expected for name in MEMBERS}
    assert admitted == {name: str(app_hosts) for name in MEMBERS}
    assert all(patroni(name).get("state") == "running" for name in MEMBERS)
    # the replica's WAL receiver reconnects to the restarted leader within seconds
    replica = [name for name in MEMBERS if name != leader()][0]
    started = time.time()
    assert wait_for(lambda: streaming(replica), 30), f"{replica} does not stream 30 s after the run"
    print(f"{app_hosts} app hosts: {replica} streams {time.time() - started:.1f} s after the run")


def test_a_third_database_host_joins_the_running_cluster_with_one_converge(host, tmp_path):
    """pg-client (until now an app host, an etcd member and the S3 server) is added to db_replica: one converge
    installs PostgreSQL and Patroni there, and Patroni makes it a replica from the pgBackRest repository while the
    others keep serving. It streams from the leader and has a row written before it joined; the two members
    before it stay as they were."""
    marker = uuid.uuid4().hex
    before = leader()
    superuser_sql(before, f"CREATE TABLE IF NOT EXISTS joined (marker text); INSERT INTO joined VALUES ('{marker}')")
    inventory = tmp_path / "third-database-host.json"
    inventory.write_text(json.dumps({"all": {"children": {"db_replica": {"hosts": {"pg-client": {}}}}}}))
    started = time.time()
    result = ansible_playbook(SCENARIO / "converge.yml", "-i", str(inventory), "--limit", "db_primary:db_replica")
    assert result.returncode == 0, result.stdout[-3000:]
    converged = time.time() - started
    assert wait_for(lambda: streaming("pg-client"), 60), patroni("pg-client")
    members = {m["name"]: (m["role"], m["state"]) for m in patroni(before, "cluster")["members"]}
    log = remote("pg-client").run("journalctl -u 'patroni@*-main.service' --no-pager -o cat").stdout
    method = "pgbackrest" if "pgbackrest" in log else "basebackup" if "basebackup" in log else "?"
    print(f"a third database host: converged in {converged:.0f} s, made by {method}; members {members}")
    assert superuser_sql("pg-client", f"SELECT count(*) FROM joined WHERE marker = '{marker}'") == "1"
    assert leader() == before
    assert set(members) == {*MEMBERS, "pg-client"}
    assert all(state in ("running", "streaming") for _, state in members.values()), members
