"""node_exporter behind TLS and basic auth (molecule scenario `node_exporter`).

The tests run on the client container and scrape the node_exporter host over the
scenario's network, as Prometheus would.
"""


import pytest
from scenario_helpers import PROJECT, scenario_host, task_outcomes, wait_for

testinfra_hosts = ["ansible://ne-client"]

URL = "https://node-exporter:9100/metrics"
USER, PASSWORD = "prometheus", "molecule-scrape-password"


@pytest.fixture(scope="module")
def server():
    return scenario_host("node-exporter")


@pytest.fixture(scope="module")
def cacert(host, server):
    """The internal CA's trust bundle (role pki) on the server, copied to the client as its trust anchor."""
    pem = server.file("/etc/teamflow-pki/ca.crt").content_string
    assert pem.count("BEGIN CERTIFICATE") == 1
    host.run_expect([0], "printf '%%s' %s > /tmp/node-exporter-ca.pem", pem)
    return "/tmp/node-exporter-ca.pem"


def curl(host, *args):
    """Status code and body of a curl call from the client."""
    out = host.run("curl -sS -o /tmp/body -w '%%{http_code}' " + " ".join(["%s"] * len(args)) + " && cat /tmp/body", *args)
    return out.stdout[:3], out.stdout[3:], out


def test_metrics_over_https_with_credentials(host, cacert):
    code, body, _ = curl(host, "--cacert", cacert, "-u", f"{USER}:{PASSWORD}", URL)
    assert code == "200"
    for metric in ("node_cpu_seconds_total", "node_memory_MemAvailable_bytes", "node_filesystem_avail_bytes"):
        assert f"\n{metric}{{" in body or f"\n{metric} " in body, metric


def test_a_password_with_a_colon_works(host, cacert):
    code, _, _ = curl(host, "--cacert", cacert, "-u", "operator:another password: with a colon", URL)
    assert code == "200"


def test_the_certificate_verifies_for_the_host_name(host, server, cacert):
    issuer = ("from cryptography import x509; print(x509.load_pem_x509_certificate("
              "open('/etc/teamflow-pki/node-exporter.crt', 'rb').read()).issuer.rfc4514_string())")
    assert server.check_output("python3 -c %s", issuer) == "CN=TeamFlow internal CA teamflow"
    # --cacert without -k: the name node-exporter is in the certificate
    out = host.run("curl -sS --cacert %s -o /dev/null -w '%%{ssl_verify_result}' -u %s %s", cacert, f"{USER}:{PASSWORD}", URL)
    assert out.rc == 0, out.stderr
    assert out.stdout == "0"


def test_without_credentials_is_401(host, cacert):
    code, body, _ = curl(host, "--cacert", cacert, URL)
    assert code == "401"
    assert "node_cpu_seconds_total" not in body


def test_wrong_password_is_401(host, cacert):
    code, _, _ = curl(host, "--cacert", cacert, "-u", f"{USER}:wrong", URL)
    assert code == "401"


def test_plain_http_gets_no_metrics(host):
    out = host.run("curl -sS -u %s -w '\\n%%{http_code}' http://node-exporter:9100/metrics", f"{USER}:{PASSWORD}")
    assert "node_cpu_seconds_total" not in out.stdout
    assert out.stdout.strip().endswith("400")  # "Client sent an HTTP request to an HTTPS server"


def test_tls_below_1_2_is_refused(host, cacert):
    out = host.run("curl -sS --cacert %s --tlsv1.1 --tls-max 1.1 -u %s %s", cacert, f"{USER}:{PASSWORD}", URL)
    assert out.rc != 0


def test_a_textfile_metric_shows_up(host, server, cacert):
    server.run_expect([0], "echo 'teamflow_molecule_probe{source=\"textfile\"} 42' | node-exporter-textfile molecule_probe")
    assert server.file("/var/lib/prometheus/node-exporter/molecule_probe.prom").mode == 0o644
    # no temporary file is left beside it
    assert server.run("ls -A /var/lib/prometheus/node-exporter | grep -c '^\\.'").stdout.strip() == "0"
    _, body, _ = curl(host, "--cacert", cacert, "-u", f"{USER}:{PASSWORD}", URL)
    assert 'teamflow_molecule_probe{source="textfile"} 42' in body


def test_service_runs_sandboxed_without_capabilities(server):
    assert server.service("prometheus-node-exporter").is_running
    assert server.service("prometheus-node-exporter").is_enabled
    props = server.check_output(
        "systemctl show prometheus-node-exporter -p NoNewPrivileges -p ProtectSystem -p PrivateTmp -p CapabilityBoundingSet -p User"
    )
    assert "NoNewPrivileges=yes" in props
    assert "ProtectSystem=strict" in props
    assert "PrivateTmp=yes" in props
    assert "CapabilityBoundingSet=\n" in props + "\n"
    assert "User=prometheus" in props


def test_secrets_are_not_readable_by_others(server):
    web = server.file("/etc/prometheus/node-exporter/web.yml")
    assert web.mode == 0o640 and web.user == "root" and web.group == "prometheus"
    assert "molecule-scrape-password" not in web.content_string
    assert "$2b$" in web.content_string
    key = server.file("/etc/teamflow-pki/node-exporter.key")
    assert key.mode == 0o640 and key.group == "prometheus"
    # the CA's key is on the CA's host only (here the node_exporter host itself)
    assert server.file("/etc/teamflow-pki-ca/teamflow.key").mode == 0o600


def test_the_flags_reach_the_process(server):
    pid = server.check_output("systemctl show -p MainPID --value prometheus-node-exporter")
    cmdline = server.check_output(f"tr '\\0' ' ' < /proc/{pid}/cmdline")
    assert "--web.config.file=/etc/prometheus/node-exporter/web.yml" in cmdline
    assert "--collector.systemd" in cmdline


def test_a_rerun_puts_back_what_drifted_and_leaves_the_rest(host, server, cacert):
    # last in the file: it runs the roles again on the node_exporter host
    server.check_output("chmod 0600 /etc/default/prometheus-node-exporter && chmod 0700 /etc/prometheus/node-exporter"
                        " && echo '# drift' >> /usr/local/bin/node-exporter-textfile"
                        " && rm /etc/systemd/system/prometheus-node-exporter.service.d/60-teamflow-hardening.conf")
    run, outcomes = task_outcomes(PROJECT / "molecule" / "node_exporter" / "converge.yml", "--limit", "node-exporter")
    assert run.returncode == 0, run.stdout[-4000:]
    did = {task: hosts["node-exporter"] for task, hosts in outcomes.items() if "node-exporter" in hosts}
    for task in ("Set node_exporter's flags", "Create node_exporter's configuration directory",
                 "Install the atomic textfile writer", "Sandbox the node_exporter unit"):
        assert did[task] == "changed", (task, did)
    # in place already: the module ran and changed nothing
    for task in ("Write the web configuration (TLS and basic auth)", "Create the unit's drop-in directory"):
        assert did[task] == "ok", (task, did)
    assert server.file("/etc/default/prometheus-node-exporter").mode == 0o644
    assert server.file("/etc/prometheus/node-exporter").mode == 0o750
    assert not server.file("/usr/local/bin/node-exporter-textfile").contains("# drift")
    assert server.file("/etc/systemd/system/prometheus-node-exporter.service.d/60-teamflow-hardening.conf").exists
    # restarted with the sandbox back, and scraped as before
    assert server.check_output("systemctl show -p ProtectSystem --value prometheus-node-exporter") == "strict"
    scraped = wait_for(lambda: curl(host, "--cacert", cacert, "-u", f"{USER}:{PASSWORD}", URL)[0] == "200", 30)
    assert scraped
