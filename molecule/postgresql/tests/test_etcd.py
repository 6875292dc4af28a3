"""The etcd cluster of the scenario (role etcd): pg-primary, pg-replica and pg-client are its members.

Patroni keeps its leader lock here, so the checks are the ones a failover depends on: every member
healthy and in one cluster, mutual TLS on both ports, and writes that go on with one member down.
"""

import json
import textwrap

import pytest
from scenario_helpers import scenario_host, wait_for

testinfra_hosts = ["ansible://pg-client"]

MEMBERS = ["pg-primary", "pg-replica", "pg-client"]
PKI = "/etc/teamflow-pki"
ETCDCTL = (f"etcdctl --endpoints=https://127.0.0.1:2379 --cacert={PKI}/ca.crt --cert={PKI}/etcd.crt "
           f"--key={PKI}/etcd.key --command-timeout=5s")

# a TLS client in Python (the image has no curl), with the member's certificate or none (-): the
# handshake, then GET /health; prints the answer's status line or why it was refused
TLS_PROBE = textwrap.dedent("""
    import socket, ssl, sys
    server, port, cert = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    context = ssl.create_default_context(cafile="/etc/teamflow-pki/ca.crt")
    if cert != "-":
        context.load_cert_chain(cert, "/etc/teamflow-pki/etcd.key")
    try:
        with socket.create_connection((server, port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=server) as tls:
                tls.sendall(b"GET /health HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
                answer = tls.recv(4096)
                print("ANSWER", answer.split(b"\\r\\n")[0].decode() if answer else "none")
    except (ssl.SSLError, OSError) as error:
        print("REFUSED", type(error).__name__, error)
""")


def etcdctl(name, *args):
    return scenario_host(name).run(ETCDCTL + " " + " ".join(args))


def test_every_member_is_healthy_and_lists_the_same_three(host):
    lists = {}
    for name in MEMBERS:
        health = etcdctl(name, "endpoint", "health")
        assert health.rc == 0, f"{name}: {health.stderr}"
        members = etcdctl(name, "member", "list", "-w", "json")
        assert members.rc == 0, members.stderr
        lists[name] = sorted(member["name"] for member in json.loads(members.stdout)["members"])
    print("members:", lists)
    assert all(found == sorted(MEMBERS) for found in lists.values()), lists


@pytest.mark.parametrize("port", [2379, 2380])
def test_a_client_without_a_certificate_of_the_ca_is_refused(host, port):
    host.run_expect([0], "cat > /tmp/etcd-tls-probe.py <<'PY'\n" + TLS_PROBE + "PY")
    without = host.check_output("python3 /tmp/etcd-tls-probe.py pg-primary %s -", str(port))
    with_cert = host.check_output("python3 /tmp/etcd-tls-probe.py pg-primary %s %s", str(port), f"{PKI}/etcd.crt")
    print(f"port {port}: without a certificate: {without}; with the member's: {with_cert}")
    assert without.startswith("REFUSED"), without
    assert with_cert.startswith("ANSWER HTTP/1.1"), with_cert


def test_metrics_are_served_without_tls_on_their_own_port(host):
    result = host.run("python3 -c %s", "import urllib.request as u; print(u.urlopen('http://pg-primary:2381/health', timeout=5).read().decode())")
    assert result.rc == 0, result.stderr
    assert json.loads(result.stdout)["health"] == "true"


def test_a_key_written_through_one_member_is_read_on_another(host):
    assert etcdctl("pg-primary", "put", "/teamflow-test/greeting", "hello").rc == 0
    got = etcdctl("pg-replica", "get", "--print-value-only", "/teamflow-test/greeting")
    assert got.stdout.strip() == "hello", got.stderr


def test_writes_go_on_with_one_member_stopped_and_it_catches_up(host):
    stopped = scenario_host("pg-replica")
    stopped.run_expect([0], "systemctl stop etcd")
    try:
        writes = [etcdctl("pg-primary", "put", f"/teamflow-test/while-down/{n}", str(n)).rc for n in range(20)]
        failed = sum(rc != 0 for rc in writes)
        print(f"with pg-replica's member stopped: {failed} of {len(writes)} writes failed")
        assert failed == 0
    finally:
        stopped.run_expect([0], "systemctl start etcd")
    caught_up = wait_for(lambda: etcdctl("pg-replica", "get", "--print-value-only", "/teamflow-test/while-down/19")
                         .stdout.strip() == "19", timeout=30)
    assert caught_up, "the restarted member does not have the writes made while it was down"
    assert etcdctl("pg-replica", "endpoint", "health").rc == 0
