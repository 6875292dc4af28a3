"""The monitoring host (molecule scenario `monitoring`).

Prometheus on mon-prom scrapes both hosts' node_exporter and probes the receiver's
/health; Alertmanager sends to the webhook receiver on mon-hook. Alert durations
are seconds here (molecule.yml), so an outage reaches the receiver within the
test. The tiers' exporters, as the lab's Prometheus scrapes them, are
molecule/site/tests/test_site_monitoring.py's.
"""

import json

import pytest
from scenario_helpers import prometheus_api, scenario_host, wait_for

testinfra_hosts = ["ansible://mon-prom"]

JOBS = {"prometheus", "node", "teamflow_health"}
ALERTS = {
    "TeamFlowApiLatencyP95High", "TeamFlowApiLatencyMeanHigh", "TeamFlowHttp5xxRatioHigh", "TeamFlowHealthCheckFailing",
    "HostDown", "ScrapeTargetDown", "HostDiskFillingUp", "HostMemoryPressure", "HostFileIntegrityChanged",
    "HostFileIntegrityCheckFailing", "PostgresqlDown", "PostgresqlReplicationLagHigh",
    "PostgresqlConnectionsNearMax", "PostgresqlWalArchivingFailing", "PostgresqlReplicaNotStreaming",
    "PatroniDown", "PatroniNoLeader", "EtcdMemberDown", "EtcdNoQuorum", "RedisDown", "RedisEvicting",
    "RedisReplicaNotReplicating", "RedisFailover", "RedisSentinelDown", "RedisSentinelNoQuorum",
    "WebAddressNotHeld", "WebAddressHeldTwice", "WebHostOutOfPair", "WebHostNotServing", "WebCertificateDiffers",
    "CertificateExpiringSoon", "BackupTooOld", "BackupVerificationFailed", "FileBackupTooOld", "LogsNotShipped", "LogStoreNearCap",
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
    assert nodes == {"mon-prom", "mon-hook"}
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


def notifications(hook):
    text = hook.run("cat /var/lib/webhook/alerts.jsonl").stdout
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def host_down_alerts(hook, status):
    return [alert for message in notifications(hook) for alert in message["alerts"]
            if alert["labels"]["alertname"] == "HostDown" and alert["status"] == status]


def test_the_fresh_install_sent_no_alert(host):
    """Installing and converging the hosts (twice) made the receiver no page: no notification yet."""
    assert notifications(scenario_host("mon-hook")) == []


def test_a_host_down_reaches_the_webhook_and_resolves(host):
    """Stop node_exporter on mon-hook: HostDown fires and Alertmanager posts it to the receiver
    (critical route); start it again: the receiver gets the resolved notification."""
    hook = scenario_host("mon-hook")
    hook.run_expect([0], "systemctl stop prometheus-node-exporter")
    try:
        fired = wait_for(lambda: host_down_alerts(hook, "firing"), 120)
    finally:
        hook.run_expect([0], "systemctl start prometheus-node-exporter")
    assert fired, notifications(hook)
    assert fired[0]["labels"]["severity"] == "critical"
    assert {alert["labels"]["instance"] for alert in fired} == {"mon-hook"}
    assert fired[0]["annotations"]["runbook_url"].endswith("#hostdown")
    resolved = wait_for(lambda: host_down_alerts(hook, "resolved"), 120)
    assert resolved, notifications(hook)
