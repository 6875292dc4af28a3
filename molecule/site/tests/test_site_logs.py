"""Central logs on the whole lab (roles log_server, log_shipper; molecule scenario `site`).

The monitoring host tf-mon1 is the log host; every host of the inventory ships its journal (and the
database hosts their PostgreSQL JSON log) to it over RELP with mutual TLS. Runs after test_site.py and
test_site_hardening.py (pytest takes the files in name order), on the lab as they left it. The firewall's
side (the port open to the inventory's hosts only) is in test_site_hardening.py.
"""

import json
import re
import time
import uuid

from scenario_helpers import scenario_host, wait_for

testinfra_hosts = ["docker://tf-acme"]

LOG_HOST = "tf-mon1"
HOSTS = ("tf-web1", "tf-web2", "tf-app1", "tf-app2", "tf-db1", "tf-db2", "tf-cache1", "tf-cache2", "tf-mon1")
WEBS = ("tf-web1", "tf-web2")
APPS = ("tf-app1", "tf-app2")
SITE = "teamflow.test"
ROOT_PEM = "/tmp/pebble-root-logs.pem"
STORES = "/var/log/teamflow"


def search(*args):
    """The stored lines teamflow-logs finds on the log host, as dicts (none: an empty list)."""
    out = scenario_host(LOG_HOST).run("teamflow-logs --json " + " ".join(["%s"] * len(args)), *args)
    assert out.rc in (0, 1), out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def test_a_request_is_found_by_its_id_with_its_nginx_line_and_its_app_line_from_two_hosts(host):
    host.run_expect([0], "curl -sS --cacert /etc/pebble/ca.crt -o %s https://tf-acme:15000/roots/0", ROOT_PEM)
    rid = "logtest-" + uuid.uuid4().hex
    sent = time.monotonic()
    status = host.check_output("curl -sS --cacert %s -o /dev/null -w '%%{http_code}' -H %s https://%s/api/v1/notes?limit=1",
                               ROOT_PEM, f"X-Request-ID: {rid}", SITE)
    assert status == "200"

    def both():
        lines = search("--request-id", rid, "--since", "10m")
        nginx = [line for line in lines if line["ident"] == "nginx_access"]
        app = [line for line in lines if line["unit"] == "teamflow.service"]
        return (nginx, app) if nginx and app else None

    found = wait_for(both, 60, interval=0.5)
    delay = round(time.monotonic() - sent, 1)
    assert found, search("--request-id", rid, "--since", "10m")
    nginx, app = found
    print(f"request {rid}: found on the log host {delay} s after it was answered: nginx's line from "
          f"{nginx[0]['host']}, the app's from {app[0]['host']}")
    assert nginx[0]["host"] in WEBS and app[0]["host"] in APPS
    assert json.loads(nginx[0]["message"])["request_id"] == rid
    assert json.loads(app[0]["message"])["request_id"] == rid


def test_a_slow_statement_in_postgresqls_log_carries_the_request_id(host):
    """The app names the request in a comment of each statement; a statement slower than
    log_min_duration_statement (500 ms) is logged with it, and shipped from the database host's JSON log."""
    rid = "slowsql-" + uuid.uuid4().hex
    leader = next(name for name in ("tf-db1", "tf-db2")
                  if scenario_host(name).run("runuser -u postgres -- psql -XAtqc 'SELECT pg_is_in_recovery()'")
                  .stdout.strip() == "f")
    scenario_host(leader).run_expect(
        [0], "runuser -u postgres -- psql -XAtq -d teamflow -c %s", f"/* request_id={rid} */ SELECT pg_sleep(0.6)")
    found = wait_for(lambda: [line for line in search("--request-id", rid, "--since", "10m")
                              if line["ident"] == "postgresql"], 60, interval=1)
    assert found, search("--ident", "postgresql", "--since", "10m")[-5:]
    assert found[0]["host"] == leader and "duration" in found[0]["message"]


def test_the_retention_in_force_is_the_plans_and_debug_and_info_land_in_their_stores(host):
    log_host = scenario_host(LOG_HOST)
    command = log_host.check_output("systemctl show -p ExecStart --value teamflow-logs-retention.service")
    stores = dict(re.findall(r"--store (\w+):(\d+):\d+", command))
    print(f"retention in force on {LOG_HOST}: {stores} days ({command})")
    assert stores == {"main": "30", "debug": "7"}
    assert log_host.service("teamflow-logs-retention.timer").is_running
    token = uuid.uuid4().hex
    writer = scenario_host("tf-app1")
    writer.run_expect([0], "logger -t teamflow-logtest -p user.info %s", f"info {token}")
    writer.run_expect([0], "logger -t teamflow-logtest -p user.debug %s", f"debug {token}")

    def stored(level):
        out = log_host.run("grep -rl %s %s", f"{level} {token}", STORES)
        return out.stdout.split()

    assert wait_for(lambda: stored("info") and stored("debug"), 60, interval=1), (stored("info"), stored("debug"))
    assert [path.split("/")[4] for path in stored("info")] == ["main"]
    assert [path.split("/")[4] for path in stored("debug")] == ["debug"]
    assert all(path.endswith("/tf-app1.jsonl") for path in stored("info") + stored("debug"))


def relp_open(client, cert, key):
    """What the log host answers a RELP `open` over TLS from CLIENT presenting CERT and KEY."""
    offer = "relp_version=0\ncommands=syslog"
    frame = f"1 open {len(offer)} {offer}\n"
    return client.run("printf %s %s | timeout 5 openssl s_client -quiet -connect %s:2514 -cert %s -key %s "
                      "-CAfile /etc/teamflow-pki/ca.crt 2>&1", "%s", frame, LOG_HOST, cert, key).stdout


def test_a_sender_with_a_certificate_of_another_ca_is_refused(host):
    client = scenario_host("tf-web1")
    # the same name as the real certificate, another CA
    client.run_expect([0], "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
                           "-subj /CN=tf-web1 -addext subjectAltName=DNS:tf-web1 "
                           "-keyout /tmp/rogue.key -out /tmp/rogue.crt 2>/dev/null")
    try:
        real = relp_open(client, "/etc/teamflow-pki/log-shipper.crt", "/etc/teamflow-pki/log-shipper.key")
        rogue = relp_open(client, "/tmp/rogue.crt", "/tmp/rogue.key")
    finally:
        client.run("rm -f /tmp/rogue.key /tmp/rogue.crt")
    answers = [[line for line in out.splitlines() if "rsp" in line or "alert" in line] for out in (real, rogue)]
    print(f"RELP open with the host's certificate: {answers[0]}; with another CA's: {answers[1]}")
    assert re.search(r"^1 rsp \d+ 200 OK", real, re.M), real
    assert "rsp" not in rogue, rogue


def test_lines_written_during_a_two_minute_outage_of_the_log_host_all_arrive(host):
    """rsyslog is stopped on the log host for 2 minutes while every host writes a line a second; once it is
    back, every line arrives: written and received are counted per host. The stop itself is clean: rsyslog
    exits within the RELP timeout (its own lines go out through its own RELP input), not killed by systemd."""
    run = uuid.uuid4().hex[:12]
    log_host = scenario_host(LOG_HOST)
    # the socket too: it would start rsyslog again on the next line sent to it
    began = time.monotonic()
    log_host.run_expect([0], "systemctl stop syslog.socket rsyslog")
    stopped = time.monotonic()
    result = log_host.check_output("systemctl show -p Result --value rsyslog")
    print(f"rsyslog on the log host stopped in {stopped - began:.1f} s ({result})")
    assert result == "success"
    try:
        for name in HOSTS:
            scenario_host(name).run_expect(
                [0], "nohup sh -c %s >/dev/null 2>&1 &",
                f"for i in $(seq 1 115); do logger -t teamflow-outage 'outage {run} line '$i; sleep 1; done")
        time.sleep(max(0, 120 - (time.monotonic() - stopped)))
    finally:
        log_host.run_expect([0], "systemctl start syslog.socket rsyslog")
    back = time.monotonic()

    def received():
        counts = {name: 0 for name in HOSTS}
        for line in search("--grep", f"outage {run} line", "--ident", "teamflow-outage", "--since", "15m"):
            counts[line["host"]] += 1
        return counts

    complete = wait_for(lambda: all(count == 115 for count in received().values()), 120, interval=2)
    counts = received()
    caught_up = round(time.monotonic() - back, 1)
    missing = sum(115 - count for count in counts.values())
    print(f"log host down {round(back - stopped)} s: {115 * len(HOSTS)} lines written on {len(HOSTS)} hosts, "
          f"{sum(counts.values())} received, {missing} missing, all in {caught_up} s after it was back: {counts}")
    assert complete, counts
