"""The monitoring host watching the stack (molecule scenario `monitoring`).

Prometheus on mon-prom scrapes every exporter of mon-stack (the tiers) and every
node_exporter; Alertmanager sends to the webhook receiver on mon-hook. Alert
durations are seconds here (molecule.yml), so an outage reaches the receiver
within the test.
"""

import json

import pytest
from scenario_helpers import prometheus_api, scenario_host, wait_for

testinfra_hosts = ["ansible://mon-prom"]

JOBS = {"prometheus", "node", "teamflow_app", "nginx", "postgresql", "redis", "teamflow_health"}
ALERTS = {
    "TeamFlowApiLatencyP95High", "TeamFlowApiLatencyMeanHigh", "TeamFlowHttp5xxRatioHigh", "TeamFlowHealthCheckFailing",
    "HostDown", "ScrapeTargetDown", "HostDiskFillingUp", "HostMemoryPressure", "PostgresqlDown", "PostgresqlReplicationLagHigh",
    "PostgresqlConnectionsNearMax", "PostgresqlWalArchivingFailing", "RedisDown", "RedisEvicting",
    "CertificateExpiringSoon", "BackupTooOld", "BackupVerificationFailed",
}


def active_targets(host):
    return prometheus_api(host, "/api/v1/targets", state="active")["activeTargets"]


def test_every_job_has_every_target_up(host):
    def all_up():
        targets = active_targets(host)
        return targets if {t["labels"]["job"] for t in targets} == JOBS and all(t["health"] == "up" for t in targets) else None

    targets = wait_for(all_up, 90) or active_targets(host)
    assert {t["labels"]["job"] for t in targets} == JOBS
    down = [(t["labels"]["job"], t["labels"]["instance"], t["lastError"]) for t in targets if t["health"] != "up"]
    assert not down
    nodes = {t["labels"]["instance"] for t in targets if t["labels"]["job"] == "node"}
    assert nodes == {"mon-stack", "mon-prom", "mon-hook"}
    # instance is the inventory name (what alerts, inhibition and dashboards show), the probe's is its URL
    assert {t["labels"]["instance"] for t in targets if t["labels"]["job"] != "teamflow_health"} <= nodes


def test_node_exporter_is_scraped_over_tls_with_basic_auth(host):
    """The node job scrapes https:// and is up; without the password node_exporter says 401."""
    for target in (t for t in active_targets(host) if t["labels"]["job"] == "node"):
        assert target["scrapeUrl"].startswith("https://"), target["scrapeUrl"]
        assert target["health"] == "up"
        probe = host.run("python3 -c %s %s", "import ssl, sys, urllib.request\n"
                         "ctx = ssl.create_default_context(cafile='/etc/prometheus/node-exporter-ca.pem')\n"
                         "try:\n    urllib.request.urlopen(sys.argv[1], context=ctx, timeout=5)\n"
                         "except urllib.error.HTTPError as error:\n    print(error.code)",
                         target["scrapeUrl"])
        assert probe.stdout.strip() == "401", probe


def test_every_alert_rule_is_loaded_with_a_runbook_link(host):
    groups = prometheus_api(host, "/api/v1/rules", type="alert")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert {rule["name"] for rule in rules} == ALERTS
    for rule in rules:
        assert rule["health"] == "ok", rule
        assert rule["annotations"]["summary"]
        assert rule["annotations"]["runbook_url"].endswith("#" + rule["name"].lower())


@pytest.mark.parametrize("labels, receiver", [("severity=critical", "webhook"), ("severity=warning", "none"), ("alertname=Other", "none")])
def test_alertmanager_routes_each_severity(host, labels, receiver):
    out = host.check_output("amtool config routes test --config.file=/etc/prometheus/alertmanager.yml %s", labels)
    assert out.strip() == receiver


def test_the_exporters_read_what_the_dashboards_and_rules_need(host):
    def values(query):
        return prometheus_api(host, "/api/v1/query", query=query)["result"]

    for query in ('pg_up{job="postgresql"} == 1', 'redis_up{job="redis"} == 1', 'nginx_up{job="nginx"} == 1',
                  "pg_settings_max_connections", "pg_stat_archiver_failed_count", "pg_replica_lag_seconds",
                  "redis_evicted_keys_total", 'probe_success{job="teamflow_health"} == 1',
                  'http_requests_total{job="teamflow_app"}'):
        assert wait_for(lambda: values(query), 30), query


def test_the_postgresql_exporter_role_is_pg_monitor_and_nothing_more(host):
    db = scenario_host("mon-stack")
    out = db.check_output(
        "runuser -u postgres -- psql -Atc %s",
        "SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, "
        "coalesce(string_agg(g.rolname, ',' ORDER BY g.rolname), '') FROM pg_roles r "
        "LEFT JOIN pg_auth_members m ON m.member = r.oid LEFT JOIN pg_roles g ON g.oid = m.roleid "
        "WHERE r.rolname = 'prometheus' GROUP BY 1, 2, 3, 4")
    assert out == "f|f|f|f|pg_monitor"


def test_the_redis_exporter_user_reads_no_keys(host):
    cache = scenario_host("mon-stack")
    password = "molecule-mon-redis-exporter-0123456789"
    ping = cache.run("REDISCLI_AUTH=%s redis-cli --user prometheus PING", password)
    assert ping.stdout.strip() == "PONG"
    get = cache.run("REDISCLI_AUTH=%s redis-cli --user prometheus GET anykey", password)
    assert "NOPERM" in get.stdout + get.stderr
    flush = cache.run("REDISCLI_AUTH=%s redis-cli --user prometheus FLUSHALL", password)
    assert "NOPERM" in flush.stdout + flush.stderr


def test_nginx_status_is_served_on_loopback_only(host):
    web = scenario_host("mon-stack")
    assert "Active connections" in web.check_output("python3 -c %s", "import urllib.request; print(urllib.request."
                                                    "urlopen('http://127.0.0.1:8080/stub_status').read().decode())")
    address = web.check_output("hostname -I").split()[0]
    refused = host.run("python3 -c %s %s", "import socket, sys\ntry:\n    socket.create_connection((sys.argv[1], 8080), "
                       "timeout=3)\n    print('open')\nexcept OSError:\n    print('closed')", address)
    assert refused.stdout.strip() == "closed"


def notifications(hook):
    text = hook.run("cat /var/lib/webhook/alerts.jsonl").stdout
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def redis_down_alerts(hook, status):
    return [alert for message in notifications(hook) for alert in message["alerts"]
            if alert["labels"]["alertname"] == "RedisDown" and alert["status"] == status]


def test_redis_down_reaches_the_webhook_and_resolves(host):
    """Stop Redis: RedisDown fires and Alertmanager posts it to the receiver; start it: resolved."""
    stack, hook = scenario_host("mon-stack"), scenario_host("mon-hook")
    stack.run_expect([0], "systemctl stop redis-server")
    try:
        fired = wait_for(lambda: redis_down_alerts(hook, "firing"), 120)
    finally:
        stack.run_expect([0], "systemctl start redis-server")
    assert fired, notifications(hook)
    assert fired[0]["labels"]["severity"] == "critical"
    assert fired[0]["labels"]["instance"] == "mon-stack"
    assert fired[0]["annotations"]["runbook_url"].endswith("#redisdown")
    resolved = wait_for(lambda: redis_down_alerts(hook, "resolved"), 120)
    assert resolved, notifications(hook)
