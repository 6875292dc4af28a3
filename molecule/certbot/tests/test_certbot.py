"""certbot against pebble (molecule scenario `certbot`).

Every test takes `host`, so pytest keeps them in file order. The tests run on the ACME container (certbot-acme), which is also the client:
it talks to nginx on certbot-web as a browser would. certbot-web's commands run
through a second testinfra host.
"""

import datetime
import os
import pathlib
import re
import subprocess

from scenario_helpers import ansible_playbook, scenario_host, wait_for

testinfra_hosts = ["ansible://certbot-acme"]

WEB = "certbot-web"
NAMES = ["certbot-web", "www.certbot-web"]
PROJECT = pathlib.Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", pathlib.Path(__file__).resolve().parents[3]))
SCENARIO = pathlib.Path(__file__).resolve().parents[1]
METRICS = "/var/lib/prometheus/node-exporter"


def web():
    return scenario_host(WEB)


def served(host, name=WEB):
    """Issuer, serial, names and notAfter of the certificate nginx serves for NAME."""
    out = host.check_output(
        "echo | openssl s_client -connect %s:443 -servername %s 2>/dev/null"
        " | openssl x509 -noout -issuer -serial -enddate -ext subjectAltName",
        WEB, name,
    )
    issuer = re.search(r"^issuer=\s*(.*)$", out, re.M).group(1).replace(" = ", "=")
    serial = re.search(r"^serial=(\S+)$", out, re.M).group(1)
    end = re.search(r"^notAfter=(.*)$", out, re.M).group(1)
    names = sorted(re.findall(r"DNS:([^,\s]+)", out))
    expiry = datetime.datetime.strptime(end.replace("  ", " "), "%b %d %H:%M:%S %Y %Z").replace(tzinfo=datetime.timezone.utc)
    return {"issuer": issuer, "serial": serial, "names": names, "expiry": int(expiry.timestamp())}


def metric(text, name):
    match = re.search(r"^" + re.escape(name) + r"(?:\{[^}]*\})? (\S+)$", text, re.M)
    assert match, f"{name} not in:\n{text}"
    return float(match.group(1))


def nginx_master_pid():
    return web().check_output("systemctl show -p MainPID --value nginx")


def renew_through_the_unit(extra_args):
    """Run certbot.service (the timer's unit) once with more certbot flags; its result."""
    w = web()
    w.run_expect([0], "systemctl set-environment CERTBOT_RENEW_EXTRA_ARGS=%s", extra_args)
    try:
        return w.run("systemctl start certbot.service")
    finally:
        w.run_expect([0], "systemctl unset-environment CERTBOT_RENEW_EXTRA_ARGS")


# --- issuance ----------------------------------------------------------------

def test_nginx_serves_the_certificate_pebble_issued(host):
    cert = served(host)
    assert cert["issuer"].startswith("CN=Pebble Intermediate CA"), cert
    assert cert["names"] == sorted(NAMES)


def test_the_bootstrap_certificate_is_gone(host):
    for name in NAMES:
        assert "bootstrap" not in served(host, name)["issuer"]


def test_nginx_reads_the_lineage_through_links(host):
    w = web()
    assert w.check_output("readlink /etc/ssl/certs/teamflow.crt") == "/etc/letsencrypt/live/teamflow/fullchain.pem"
    assert w.check_output("readlink /etc/ssl/private/teamflow.key") == "/etc/letsencrypt/live/teamflow/privkey.pem"


def test_the_certificate_has_an_ecdsa_p256_key(host):
    out = web().check_output("openssl x509 -in /etc/letsencrypt/live/teamflow/cert.pem -noout -text")
    assert "id-ecPublicKey" in out and "prime256v1" in out


def test_the_account_and_lineage_use_the_configured_acme_server(host):
    conf = web().file("/etc/letsencrypt/renewal/teamflow.conf").content_string
    assert "server = https://certbot-acme:14000/dir" in conf
    assert "authenticator = webroot" in conf


# --- renewal -------------------------------------------------------------------

def test_the_renewal_timer_is_active_with_a_random_delay(host):
    w = web()
    assert w.service("certbot.timer").is_enabled
    assert w.service("certbot.timer").is_running
    assert w.check_output("systemctl show -p RandomizedDelayUSec --value certbot.timer") == "12h"
    assert w.check_output("systemctl show -p Persistent --value certbot.timer") == "yes"


def test_the_expiry_metric_holds_the_served_certificates_expiry(host):
    text = web().file(f"{METRICS}/certbot_certificates.prom").content_string
    assert 'certbot_certificate_expiry_timestamp_seconds{name="teamflow"}' in text
    assert metric(text, "certbot_certificate_expiry_timestamp_seconds") == served(host)["expiry"]


def test_a_forced_renewal_through_the_unit_reloads_nginx_onto_a_new_certificate(host):
    before, pid = served(host), nginx_master_pid()
    result = renew_through_the_unit("--force-renewal")
    assert result.rc == 0, result.stderr
    after = served(host)
    assert after["serial"] != before["serial"]
    assert after["issuer"].startswith("CN=Pebble Intermediate CA")
    assert nginx_master_pid() == pid, "nginx was restarted, not reloaded"
    w = web()
    assert "reloaded nginx onto /etc/letsencrypt/live/teamflow" in w.check_output(
        "journalctl -t teamflow-certbot --no-pager -o cat")
    assert metric(w.file(f"{METRICS}/certbot_renew.prom").content_string, "certbot_renew_last_run_success") == 1
    assert metric(w.file(f"{METRICS}/certbot_certificates.prom").content_string,
                  "certbot_certificate_expiry_timestamp_seconds") == after["expiry"]


def test_a_renewal_after_the_acme_server_restarts_keeps_its_account_and_its_root(host):
    """The lab's pebble keeps its root and its accounts across a restart of its host (lab/build-pebble.sh):
    certbot renews with the account it has, and the new certificate verifies against the root read before the
    restart, as hosts that trusted that root (the site lab's) need. Debian's own pebble fails both: a new root at
    every start, and the account gone (accountDoesNotExist)."""
    root = "/root/pebble-root-before-restart.pem"  # /tmp is gone after the restart
    host.run_expect([0], "curl -sS --cacert /etc/pebble/ca.crt -o %s https://certbot-acme:15000/roots/0", root)
    before = served(host)
    subprocess.run(["docker", "restart", "certbot-acme"], check=True, capture_output=True, timeout=60)
    assert wait_for(lambda: host.run("curl -sS --cacert /etc/pebble/ca.crt -o /dev/null https://certbot-acme:14000/dir")
                    .rc == 0, timeout=60)
    result = renew_through_the_unit("--force-renewal")
    assert result.rc == 0, web().check_output("journalctl -u certbot.service --no-pager -o cat -n 30")
    after = served(host)
    assert after["serial"] != before["serial"]
    verify = host.run("echo | openssl s_client -connect %s:443 -servername %s -CAfile %s -verify_return_error 2>&1",
                      WEB, WEB, root)
    print(f"after pebble's restart: renewed (serial {before['serial']} -> {after['serial']}), "
          f"verified against the root read before it: {'Verify return code: 0 (ok)' in verify.stdout}")
    assert verify.rc == 0 and "Verify return code: 0 (ok)" in verify.stdout, verify.stdout[-2000:]


def test_a_failed_renewal_is_in_the_journal_and_the_metric(host):
    # another ACME server for this one run (nothing listens there, and the lineage has no account on it):
    # certbot fails before it changes anything
    result = renew_through_the_unit("--force-renewal --server=https://certbot-acme:1/dir")
    assert result.rc != 0
    w = web()
    assert w.check_output("systemctl show -p Result --value certbot.service") == "exit-code"
    assert "renewal run failed" in w.check_output("journalctl -u certbot.service --no-pager -o cat -n 30")
    assert metric(w.file(f"{METRICS}/certbot_renew.prom").content_string, "certbot_renew_last_run_success") == 0
    # nginx still serves the last good certificate, and the lineage keeps its server
    assert served(host)["issuer"].startswith("CN=Pebble Intermediate CA")
    assert "server = https://certbot-acme:14000/dir" in w.file("/etc/letsencrypt/renewal/teamflow.conf").content_string
    w.run_expect([0], "systemctl reset-failed certbot.service")


# --- names change ------------------------------------------------------------------

def test_adding_a_name_reissues_with_it_and_removing_it_keeps_the_lineage(host):
    more = NAMES + ["api.certbot-web"]
    extra = '{"nginx_server_names": %s}' % str(more).replace("'", '"')
    result = ansible_playbook(SCENARIO / "converge.yml", "-e", extra)
    assert result.returncode == 0, result.stdout[-3000:]
    assert served(host, "api.certbot-web")["names"] == sorted(more)

    result = ansible_playbook(SCENARIO / "converge.yml")
    assert result.returncode == 0, result.stdout[-3000:]
    assert served(host)["names"] == sorted(NAMES)
    assert web().check_output("ls /etc/letsencrypt/renewal") == "teamflow.conf"


def test_deleting_the_certificate_is_explicit_and_nginx_keeps_serving(host):
    before = served(host)
    result = ansible_playbook(SCENARIO / "converge.yml", "-e", "certbot_certificate_state=absent")
    assert result.returncode == 0, result.stdout[-3000:]
    w = web()
    assert not w.file("/etc/letsencrypt/renewal/teamflow.conf").exists
    assert not w.file("/etc/ssl/certs/teamflow.crt").is_symlink
    assert served(host)["serial"] == before["serial"]

    # the next ordinary run issues a certificate again
    result = ansible_playbook(SCENARIO / "converge.yml")
    assert result.returncode == 0, result.stdout[-3000:]
    assert served(host)["serial"] != before["serial"]
    assert w.check_output("readlink /etc/ssl/certs/teamflow.crt") == "/etc/letsencrypt/live/teamflow/fullchain.pem"
