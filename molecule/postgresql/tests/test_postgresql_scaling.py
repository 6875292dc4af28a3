"""The Patroni cluster as the app tier grows and shrinks (molecule scenario `postgresql`).

max_connections follows the number of app hosts, and every member must share it: Patroni's phase of
the role changes it in the cluster's settings in etcd and orders the restarts (the leader before the
replicas when it goes down, so no standby refuses its primary's lower value). Here the app tier goes
from the scenario's one host to four (three more in an extra inventory, with addresses of their own) and
back, each a converge of the role.

The faults (a kill -9 of the leader's postmaster, the leader's host killed, switchovers) are the site
scenario's, under load through the load balancer and the app (molecule/site/tests/test_site.py).
"""

import json
import pathlib
import time

import pytest
from cluster import MEMBERS, leader, patroni, streaming, superuser_sql
from scenario_helpers import ansible_playbook, wait_for

testinfra_hosts = ["ansible://pg-client"]

SCENARIO = pathlib.Path(__file__).resolve().parents[1]
# three more app hosts, never started: the database tier only needs their addresses
MORE_APP_HOSTS = {"all": {"children": {"app": {"hosts": {
    f"pg-app{n}": {"teamflow_private_address": f"192.0.2.{n}"} for n in (2, 3, 4)}}}}}


@pytest.mark.parametrize("app_hosts, expected", [(4, "221"), (1, "71")])
def test_the_app_tier_grows_to_four_hosts_and_back_with_no_failed_standby(host, tmp_path, app_hosts, expected):
    """50 connections per app host, one replica, 20 headroom: 4 hosts 221, 1 host 71."""
    extra = []
    if app_hosts > 1:
        inventory = tmp_path / "more-app-hosts.json"
        inventory.write_text(json.dumps(MORE_APP_HOSTS))
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
