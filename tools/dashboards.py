#!/usr/bin/env python3
"""Write the Grafana dashboards of the prometheus role (files/dashboards/*.json).

    tools/dashboards.py --write    regenerate the JSON files
    tools/dashboards.py --check    exit 1 if a file differs from what this script writes

The panels are the plan's views (application, database, cache, hosts, backups and
certificates). Every expression must return data on the lab's Prometheus: the site
scenario's verify runs each one against it (tests/test_site.py).
"""

import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "ansible_collections" / "teamflow" / "platform" / "roles" / "prometheus" / "files" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "teamflow-prometheus"}
APP = 'job="teamflow_app"'
# the filesystems HostDiskFillingUp watches (not memory-backed nor image layers)
DISKS = 'job="node", fstype!~"tmpfs|ramfs|overlay|squashfs"'

DASHBOARDS = {
    "teamflow-application": ("TeamFlow: application", [
        ("Requests per second by app host", "reqps", [
            ("{{instance}}", f"sum by (instance) (rate(http_requests_total{{{APP}}}[5m]))")]),
        ("API latency percentiles", "s", [
            (f"p{q}", f'histogram_quantile(0.{q}, sum by (le) (rate(http_request_duration_seconds_bucket{{{APP}, endpoint=~"/api/.*"}}[5m])))')
            for q in (50, 95, 99)]),
        ("API mean response time", "s", [
            ("mean", f'sum(rate(http_request_duration_seconds_sum{{{APP}, endpoint=~"/api/.*"}}[5m])) '
                     f'/ sum(rate(http_request_duration_seconds_count{{{APP}, endpoint=~"/api/.*"}}[5m]))')]),
        ("HTTP 5xx ratio", "percentunit", [
            ("5xx", f'(sum(rate(http_requests_total{{{APP}, status=~"5.."}}[5m])) or vector(0)) '
                    f'/ sum(rate(http_requests_total{{{APP}}}[5m]))')]),
        ("Requests in progress", "short", [
            ("{{instance}}", f"sum by (instance) (http_requests_in_progress{{{APP}}})")]),
        ("Public /health probe", "short", [
            ("{{instance}}", 'probe_success{job="teamflow_health"}')]),
        ("Public /health probe duration", "s", [
            ("{{instance}}", 'probe_duration_seconds{job="teamflow_health"}')]),
        ("nginx requests per second", "reqps", [
            ("{{instance}}", 'rate(nginx_http_requests_total{job="nginx"}[5m])')]),
        ("nginx connections", "short", [
            ("{{instance}}", 'nginx_connections_active{job="nginx"}')]),
        # role keepalived's textfile metric: 2 holds it, 1 backup, 3 failed its check, 0 stopped
        ("Web tier address: 2 holds it, 1 backup, 3 failed check, 0 stopped", "short", [
            ("{{instance}}", 'keepalived_vrrp_state{job="node"}')]),
    ]),
    "teamflow-database": ("TeamFlow: database", [
        ("PostgreSQL up", "short", [("{{instance}}", 'pg_up{job="postgresql"}')]),
        ("Connections used of max_connections", "percentunit", [
            ("{{instance}}", 'sum by (instance) (pg_stat_database_numbackends{job="postgresql"}) '
                             '/ on (instance) max by (instance) (pg_settings_max_connections{job="postgresql"})')]),
        ("App pool: connections in use and pool size", "short", [
            ("in use {{instance}}", f"db_connections_active{{{APP}}}"),
            ("pool {{instance}}", f"db_pool_size{{{APP}}}")]),
        ("App query time p95 by query", "s", [
            ("{{query}}", f"histogram_quantile(0.95, sum by (le, query) (rate(db_query_duration_seconds_bucket{{{APP}}}[5m])))")]),
        ("Transactions per second", "short", [
            ("{{instance}}", 'sum by (instance) (rate(pg_stat_database_xact_commit{job="postgresql"}[5m]))')]),
        ("Replica lag", "s", [("{{instance}}", 'pg_replica_lag_seconds{job="postgresql"}')]),
        ("WAL archived and failed", "short", [
            ("archived {{instance}}", 'pg_stat_archiver_archived_count{job="postgresql"}'),
            ("failed {{instance}}", 'pg_stat_archiver_failed_count{job="postgresql"}')]),
    ]),
    "teamflow-cache": ("TeamFlow: cache", [
        ("Redis up", "short", [("{{instance}}", 'redis_up{job="redis"}')]),
        ("Memory used of maxmemory", "percentunit", [
            ("{{instance}}", 'redis_memory_used_bytes{job="redis"} / redis_memory_max_bytes{job="redis"}')]),
        ("Commands per second", "ops", [
            ("{{instance}}", 'rate(redis_commands_processed_total{job="redis"}[5m])')]),
        ("Connected clients", "short", [("{{instance}}", 'redis_connected_clients{job="redis"}')]),
        ("Keys and evictions", "short", [
            ("keys {{instance}}", 'sum by (instance) (redis_db_keys{job="redis"})'),
            ("evicted/s {{instance}}", 'rate(redis_evicted_keys_total{job="redis"}[5m])')]),
    ]),
    "teamflow-hosts": ("TeamFlow: hosts", [
        ("Hosts up", "short", [("{{instance}}", 'up{job="node"}')]),
        ("CPU busy", "percentunit", [
            ("{{instance}}", '1 - avg by (instance) (rate(node_cpu_seconds_total{job="node", mode="idle"}[5m]))')]),
        ("Memory available", "percentunit", [
            ("{{instance}}", 'node_memory_MemAvailable_bytes{job="node"} / node_memory_MemTotal_bytes{job="node"}')]),
        ("Fullest filesystem: share available", "percentunit", [
            ("{{instance}}", f"min by (instance) (node_filesystem_avail_bytes{{{DISKS}}} "
                             f"/ node_filesystem_size_bytes{{{DISKS}}})")]),
        ("Load (1 min)", "short", [("{{instance}}", 'node_load1{job="node"}')]),
        ("Network received", "Bps", [
            ("{{instance}} {{device}}", 'rate(node_network_receive_bytes_total{job="node", device!="lo"}[5m])')]),
    ]),
    "teamflow-backups-certificates": ("TeamFlow: backups and certificates", [
        ("Hours since the last successful backup", "h", [
            ("{{type}} {{instance}}", "(time() - pgbackrest_backup_last_success_timestamp_seconds) / 3600")]),
        ("Last backup duration", "s", [
            ("{{type}} {{instance}}", "pgbackrest_backup_last_duration_seconds")]),
        ("Last verification restore", "short", [
            ("{{instance}}", "pgbackrest_verify_success")]),
        ("Verification restore duration", "s", [
            ("{{instance}}", "pgbackrest_verify_restore_duration_seconds")]),
        ("Days until the certificate expires", "d", [
            ("{{name}}", "(certbot_certificate_expiry_timestamp_seconds - time()) / 86400")]),
    ]),
}


def dashboard(uid, title, panels):
    out = []
    for index, (panel_title, unit, targets) in enumerate(panels):
        out.append({
            "id": index + 1,
            "type": "timeseries",
            "title": panel_title,
            "datasource": DATASOURCE,
            "gridPos": {"h": 8, "w": 12, "x": (index % 2) * 12, "y": (index // 2) * 8},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [
                {"refId": chr(ord("A") + n), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
                for n, (legend, expr) in enumerate(targets)
            ],
        })
    return {
        "uid": uid,
        "title": title,
        "tags": ["teamflow"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "editable": False,
        "panels": out,
    }


def render():
    return {f"{uid}.json": json.dumps(dashboard(uid, title, panels), indent=2) + "\n"
            for uid, (title, panels) in DASHBOARDS.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    files = render()
    if args.write:
        OUT.mkdir(parents=True, exist_ok=True)
        for stale in set(p.name for p in OUT.glob("*.json")) - set(files):
            (OUT / stale).unlink()
        for name, text in files.items():
            (OUT / name).write_text(text, encoding="utf-8")
        return 0
    stale = [name for name, text in files.items()
             if not (OUT / name).exists() or (OUT / name).read_text(encoding="utf-8") != text]
    stale += [p.name for p in OUT.glob("*.json") if p.name not in files]
    for name in stale:
        print(f"stale: {OUT / name} (run tools/dashboards.py --write)")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
