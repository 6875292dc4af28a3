"""The monitoring tier watching the lab's stack (molecule scenario `site`).

Runs after test_site.py and test_site_hardening.py (pytest takes the files in name order), on the
lab as they left it: traffic, backups and verifications done. Prometheus on tf-mon1 scrapes every
tier's exporter through the firewall; here, each exporter gives what the rules and dashboards read,
with no more rights than that, and the rules fire on the lab's own metrics. Alertmanager's route to
a receiver, end to end, is the role's own scenario's (molecule/monitoring). Every test takes `host`,
so pytest keeps them in file order.
"""

import pytest
from scenario_helpers import prometheus_api, scenario_host, wait_for

testinfra_hosts = ["docker://tf-acme"]

MONITOR, WEB, PRIMARY, CACHE, REPLICA_CACHE = "tf-mon1", "tf-web1", "tf-db1", "tf-cache1", "tf-cache2"


def values(query):
    return prometheus_api(scenario_host(MONITOR), "/api/v1/query", query=query)["result"]


@pytest.mark.parametrize("query", [
    'pg_up{job="postgresql"} == 1', 'redis_up{job="redis"} == 1', 'nginx_up{job="nginx"} == 1',
    "pg_settings_max_connections", "pg_stat_archiver_failed_count", "pg_replica_lag_seconds",
    "redis_evicted_keys_total", 'probe_success{job="teamflow_health"} == 1', 'http_requests_total{job="teamflow_app"}',
    "pgbackrest_backup_last_success_timestamp_seconds", "pgbackrest_verify_success == 1",
    'teamflow_logs_store_bytes{store="main"} > 0', 'teamflow_file_backup_last_run_success == 1',
])
def test_the_exporters_give_what_the_rules_read(host, query):
    assert wait_for(lambda: values(query), 30), query


def test_every_host_reports_its_file_integrity_check(host):
    """The AIDE check (role hardening) ran on each host, and its metric reaches Prometheus."""
    def reporting():
        return {item["metric"]["instance"] for item in values('teamflow_aide_check_success{job="node"} == 1')}
    nodes = {item["metric"]["instance"] for item in values('up{job="node"}')}
    assert len(nodes) == 9 and wait_for(lambda: reporting() == nodes, 30), (reporting(), nodes)


def test_every_host_shipped_a_log_line_within_the_alerts_ten_minutes(host):
    """The log host's metric of each host's last line (role log_server) reaches Prometheus, and every host of
    the lab is recent in it: LogsNotShipped fires for none."""
    hosts = {"tf-web1", "tf-web2", "tf-app1", "tf-app2", "tf-db1", "tf-db2", "tf-cache1", "tf-cache2", "tf-mon1"}

    def recent():
        return {item["metric"]["host"] for item in values("time() - teamflow_logs_last_received_timestamp_seconds < 600")}

    assert wait_for(lambda: recent() >= hosts, 90), recent()
    assert not values('ALERTS{alertname="LogsNotShipped"}')


def test_the_postgresql_exporter_role_is_pg_monitor_and_nothing_more(host):
    out = scenario_host(PRIMARY).check_output(
        "runuser -u postgres -- psql -Atc %s",
        "SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, "
        "coalesce(string_agg(g.rolname, ',' ORDER BY g.rolname), '') FROM pg_roles r "
        "LEFT JOIN pg_auth_members m ON m.member = r.oid LEFT JOIN pg_roles g ON g.oid = m.roleid "
        "WHERE r.rolname = 'prometheus' GROUP BY 1, 2, 3, 4")
    assert out == "f|f|f|f|pg_monitor"


def test_the_redis_exporter_user_reads_no_keys(host, secrets):
    cache = scenario_host(CACHE)
    password = secrets["vault_redis_exporter_password"]
    ping = cache.run("REDISCLI_AUTH=%s redis-cli --user prometheus PING", password)
    assert ping.stdout.strip() == "PONG"
    get = cache.run("REDISCLI_AUTH=%s redis-cli --user prometheus GET anykey", password)
    assert "NOPERM" in get.stdout + get.stderr
    flush = cache.run("REDISCLI_AUTH=%s redis-cli --user prometheus FLUSHALL", password)
    assert "NOPERM" in flush.stdout + flush.stderr


def test_nginx_status_is_served_on_loopback_only(host):
    web = scenario_host(WEB)
    assert "Active connections" in web.check_output("python3 -c %s", "import urllib.request; print(urllib.request."
                                                    "urlopen('http://127.0.0.1:8080/stub_status').read().decode())")
    listeners = web.check_output("ss -Htln 'sport = :8080'").splitlines()
    assert listeners and all(line.split()[3] == "127.0.0.1:8080" for line in listeners), listeners


def alert_states(name):
    return {series["metric"]["alertstate"] for series in values(f'ALERTS{{alertname="{name}"}}')}


def test_redis_down_raises_redis_down_on_the_lab(host):
    """Stop Redis on the replica cache host (the master stopped for a minute would be failed over): the lab's
    Prometheus sees redis_up 0 and RedisDown goes pending (or firing); start it: the alert is gone."""
    cache = scenario_host(REPLICA_CACHE)
    # test_site.py stops Redis under load a while before: its alert clears within a scrape and an evaluation.
    assert wait_for(lambda: alert_states("RedisDown") == set() or None, 90), alert_states("RedisDown")
    cache.run_expect([0], "systemctl stop redis-server")
    try:
        raised = wait_for(lambda: alert_states("RedisDown"), 60)
    finally:
        cache.run_expect([0], "systemctl start redis-server")
    assert raised & {"pending", "firing"}, raised
    assert wait_for(lambda: alert_states("RedisDown") == set() or None, 60), alert_states("RedisDown")
    assert wait_for(lambda: values('redis_up{job="redis"} == 1'), 30)
