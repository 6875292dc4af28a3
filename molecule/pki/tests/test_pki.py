"""The internal CA seen by its peers (molecule scenario `pki`).

pki-one keeps the CA; both hosts get a key and a certificate from it and serve
mutual TLS (nginx, port 8443) with them. The tests run on pki-two as the client of
pki-one, and the rotation test also the other way round. Every test takes `host`,
so pytest keeps them in file order: the renewal and the rotation change the hosts
and come last.
"""

import base64
import json
import re
import time

import pytest
from scenario_helpers import PROJECT, ansible_playbook, scenario_host, wait_for

testinfra_hosts = ["ansible://pki-two"]

PKI = "/etc/teamflow-pki"
CA_DIR = "/etc/teamflow-pki-ca"
CONVERGE = PROJECT / "molecule" / "pki" / "converge.yml"
MTLS = f"--cacert {PKI}/ca.crt --cert {PKI}/peer.crt --key {PKI}/peer.key"


def curl(client, url, options=MTLS, extra=""):
    """CLIENT's curl of URL: (exit code, HTTP status or '000', body)."""
    out = client.run(f"curl -sS --max-time 5 {options} {extra} -w '\\n%{{http_code}}' {url}")
    body, _, status = out.stdout.rpartition("\n")
    return out.rc, status.strip(), body + out.stderr


def certificate(server, path):
    """openssl's text of the certificate at PATH on SERVER, names as "CN = X" (OpenSSL 3.0's default; 3.5's is "CN=X")."""
    return server.check_output(f"openssl x509 -noout -text -nameopt oneline -in {path}")


def served_serial(client, server_name):
    """The serial of the certificate SERVER_NAME presents on 8443, as CLIENT sees it."""
    return client.check_output(
        f"openssl s_client -connect {server_name}:8443 -servername {server_name} -cert {PKI}/peer.crt "
        f"-key {PKI}/peer.key </dev/null 2>/dev/null | openssl x509 -noout -serial")


def test_each_host_has_its_key_its_certificate_and_the_bundle(host):
    for name in ("pki-one", "pki-two"):
        server = scenario_host(name)
        key = server.file(f"{PKI}/peer.key")
        assert (key.user, key.group, key.mode) == ("root", "www-data", 0o640), name
        assert server.file(f"{PKI}/peer.crt").mode == 0o644
        # the service's user reads its key, certificate and the bundle; another user not the key
        assert server.run(f"runuser -u www-data -- cat {PKI}/peer.key {PKI}/peer.crt {PKI}/ca.crt").rc == 0, name
        assert server.run(f"runuser -u nobody -- cat {PKI}/peer.key").rc != 0, name
        text = certificate(server, f"{PKI}/peer.crt")
        assert "Issuer: CN = TeamFlow internal CA teamflow" in text
        assert f"DNS:{name}" in text
        address = server.check_output("hostname -I").split()[0]
        assert f"IP Address:{address}" in text
        assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
        # the certificate belongs to the key made on the host
        assert (server.check_output(f"openssl x509 -noout -pubkey -in {PKI}/peer.crt")
                == server.check_output(f"openssl pkey -pubout -in {PKI}/peer.key"))


def test_the_ca_key_stays_on_the_ca_host(host):
    ca_key = scenario_host("pki-one").file(f"{CA_DIR}/teamflow.key")
    assert (ca_key.user, ca_key.mode) == ("root", 0o600)
    assert scenario_host("pki-one").file(CA_DIR).mode == 0o700
    assert not host.file(CA_DIR).exists
    assert host.file(f"{PKI}/ca.crt").content_string.count("BEGIN CERTIFICATE") == 1


def test_a_peer_verifies_the_other_by_name_and_is_let_in(host):
    rc, status, body = curl(host, "https://pki-one:8443/")
    assert (rc, status) == (0, "200"), body
    assert "CN=pki-two" in body


def test_a_name_the_certificate_does_not_carry_is_refused_by_the_client(host):
    address = scenario_host("pki-one").check_output("hostname -I").split()[0]
    rc, _, body = curl(host, "https://not-pki-one:8443/", extra=f"--resolve not-pki-one:8443:{address}")
    assert rc == 60 and "no alternative certificate subject name matches" in body


@pytest.fixture(scope="module")
def stranger(host):
    """A CA the stack does not know, and a client certificate and trust bundle from it, on pki-two."""
    host.run_expect([0], "rm -rf /tmp/stranger && mkdir /tmp/stranger && cd /tmp/stranger"
                         " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2"
                         " -subj '/CN=Stranger CA' -keyout ca.key -out ca.crt 2>/dev/null"
                         " && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=pki-two'"
                         " -keyout client.key -out client.csr 2>/dev/null"
                         " && openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2"
                         " -out client.crt 2>/dev/null")
    return "/tmp/stranger"


def test_a_client_certificate_from_another_ca_is_refused(host, stranger):
    _, status, body = curl(host, "https://pki-one:8443/",
                           options=f"--cacert {PKI}/ca.crt --cert {stranger}/client.crt --key {stranger}/client.key")
    assert status == "400" and "The SSL certificate error" in body


def test_a_client_without_a_certificate_is_refused(host):
    _, status, body = curl(host, "https://pki-one:8443/", options=f"--cacert {PKI}/ca.crt")
    assert status == "400" and "No required SSL certificate was sent" in body


def test_a_client_that_trusts_another_ca_refuses_the_server(host, stranger):
    options = f"--cacert {stranger}/ca.crt --cert {PKI}/peer.crt --key {PKI}/peer.key"
    rc, _, body = curl(host, "https://pki-one:8443/", options=options)
    assert rc == 60, body


# --- renewal and rotation: these change the hosts ------------------------------------------

def test_a_certificate_close_to_expiry_is_renewed_and_served(host):
    one = scenario_host("pki-one")
    # pki-one's certificate signed again by the same CA for 5 days (the role renews 30 days before expiry)
    one.run_expect([0], f"cd {PKI} && openssl x509 -x509toreq -copy_extensions copyall -in peer.crt -signkey peer.key"
                        f" -out /tmp/peer.csr 2>/dev/null && openssl x509 -req -in /tmp/peer.csr -copy_extensions copyall"
                        f" -CA {CA_DIR}/teamflow.crt -CAkey {CA_DIR}/teamflow.key -set_serial 4242 -days 5"
                        f" -out peer.crt 2>/dev/null && systemctl reload nginx")
    # a reload returns when nginx has the signal; its new workers take over a moment later
    assert wait_for(lambda: served_serial(host, "pki-one") == "serial=1092", 15, 0.5), served_serial(host, "pki-one")
    run = ansible_playbook(CONVERGE)
    assert run.returncode == 0, run.stdout[-4000:]
    assert re.search(r"pki-one\s*:\s*ok=\d+\s+changed=[1-9]", run.stdout), run.stdout[-2000:]
    assert re.search(r"pki-two\s*:\s*ok=\d+\s+changed=0\s", run.stdout), run.stdout[-2000:]
    now = one.check_output(f"openssl x509 -noout -serial -enddate -in {PKI}/peer.crt")
    assert "serial=1092" not in now
    assert one.run(f"openssl x509 -noout -checkend {300 * 86400} -in {PKI}/peer.crt").rc == 0
    # nginx was reloaded: the new serial is the one served
    assert wait_for(lambda: served_serial(host, "pki-one") == now.splitlines()[0], 15, 0.5), served_serial(host, "pki-one")
    rc, status, _ = curl(host, "https://pki-one:8443/")
    assert (rc, status) == (0, "200")


PROBE = """
import os, subprocess, sys, time
peer, until = sys.argv[1], time.time() + float(sys.argv[2])
ok = failed = 0
errors = []
while time.time() < until and not os.path.exists("/tmp/probe.stop"):
    run = subprocess.run(["curl", "-sS", "--max-time", "3", "--cacert", "{pki}/ca.crt", "--cert", "{pki}/peer.crt",
                          "--key", "{pki}/peer.key", "-o", "/dev/null", "-w", "%{{http_code}}",
                          "https://" + peer + ":8443/"], capture_output=True, text=True)
    if run.returncode == 0 and run.stdout == "200":
        ok += 1
    else:
        failed += 1
        errors.append(run.stdout + " " + run.stderr.strip())
    time.sleep(0.1)
with open("/tmp/probe.out.new", "w") as out:
    out.write(f"{{ok}} {{failed}} {{errors[:5]!r}}")
os.rename("/tmp/probe.out.new", "/tmp/probe.out")
""".format(pki=PKI)


def test_a_ca_rotation_fails_no_handshake_between_the_hosts(host):
    one = scenario_host("pki-one")
    steps = [
        {"pki_ca_name": "teamflow", "pki_ca_trusted_extra": ["teamflow-2027"]},  # trust the new CA too
        {"pki_ca_name": "teamflow-2027", "pki_ca_trusted_extra": ["teamflow"]},  # reissue from it
        {"pki_ca_name": "teamflow-2027", "pki_ca_trusted_extra": []},            # drop the old one
    ]
    for client in (host, one):
        client.run_expect([0], "echo %s | base64 -d > /tmp/probe.py", base64.b64encode(PROBE.encode()).decode())
    seconds = 600
    for client, peer in ((host, "pki-one"), (one, "pki-two")):
        # a unit of its own, so it outlives the command that starts it
        client.run_expect([0], f"rm -f /tmp/probe.out /tmp/probe.stop && systemd-run --unit pki-probe --collect"
                               f" python3 /tmp/probe.py {peer} {seconds}")
    started = time.monotonic()
    bundles = []
    try:
        for step in steps:
            run = ansible_playbook(CONVERGE, "-e", json.dumps(step))
            assert run.returncode == 0, run.stdout[-4000:]
            bundles.append(host.file(f"{PKI}/ca.crt").content_string.count("BEGIN CERTIFICATE"))
            time.sleep(2)
    finally:
        for client in (host, one):
            client.run("touch /tmp/probe.stop")
    took = time.monotonic() - started
    results = {}
    for client, peer in ((host, "pki-one"), (one, "pki-two")):
        client.run_expect([0], "for i in $(seq 50); do test -e /tmp/probe.out && break; sleep 0.2; done; test -e /tmp/probe.out")
        out = client.file("/tmp/probe.out").content_string.split(" ", 2)
        results[peer] = (int(out[0]), int(out[1]), out[2].strip() if len(out) > 2 else "")
    print(f"CA rotation in 3 converges ({took:.0f} s): requests to pki-one ok/failed {results['pki-one'][:2]},"
          f" to pki-two ok/failed {results['pki-two'][:2]}")
    assert bundles == [2, 2, 1]
    for peer, (ok, failed, errors) in results.items():
        assert ok > 50 and failed == 0, (peer, ok, failed, errors)
    for name in ("pki-one", "pki-two"):
        server = scenario_host(name)
        assert "Issuer: CN = TeamFlow internal CA teamflow-2027" in certificate(server, f"{PKI}/peer.crt")
        bundle = server.check_output(f"openssl crl2pkcs7 -nocrl -certfile {PKI}/ca.crt | openssl pkcs7 -print_certs -noout")
        assert "teamflow-2027" in bundle and "CA teamflow\n" not in bundle + "\n"
    # the old CA's files stay on the CA's host until removed by hand; nothing replaced the new one
    assert one.file(f"{CA_DIR}/teamflow.key").exists and one.file(f"{CA_DIR}/teamflow-2027.key").exists
