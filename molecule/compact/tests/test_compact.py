"""The compact shape on Debian 13 after bootstrap.yml and site.yml over SSH (molecule scenario `compact`).

The client is the ACME helper (cp-acme), outside the stack: it trusts pebble's root only. Every test takes
`host`, so pytest keeps them in file order; the second run, from another address of this machine, is last.
"""

import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

from scenario_helpers import PROJECT, scenario_host, task_outcomes

testinfra_hosts = ["docker://cp-acme"]

EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
INVENTORIES = [PROJECT / "inventories" / "compact", EPHEMERAL / "lab.yml"]
SITE = "compact.test"
WEB, DB, OPS = "cp-web1", "cp-db1", "cp-ops1"
ROOT_PEM = "/tmp/pebble-root.pem"


def address(name):
    """The server's IPv4 address on the lab's network (inventories/compact's ansible_host in lab.yml)."""
    return next(a for a in scenario_host(name).interface("eth0").addresses if ":" not in a)


def test_https_is_answered_with_the_certificate_pebble_issued(host):
    host.run_expect([0], "curl -sS --cacert /etc/pebble/ca.crt -o %s https://cp-acme:15000/roots/0", ROOT_PEM)
    status = host.check_output(f"curl -sS --cacert {ROOT_PEM} -o /dev/null -w '%{{http_code}}' https://{SITE}/health")
    assert status == "200"
    body = host.check_output(f"curl -sS --cacert {ROOT_PEM} https://{SITE}/health")
    health = json.loads(body)
    assert (health["status"], health["database"], health["redis"], health["storage"]) == ("ok", "ok", "ok", "ok"), body


def test_the_os_is_debian_13(host):
    for name in (WEB, DB, OPS):
        assert scenario_host(name).system_info.release.split(".")[0] == "13", name


def test_deploy_logs_in_with_its_key_and_sudo_needs_no_password(host):
    for name in (WEB, DB, OPS):
        server = scenario_host(name)
        assert server.user("deploy").exists and "teamflow-admins" in server.user("deploy").groups, name
        keys = server.file("/home/deploy/.ssh/authorized_keys").content_string
        assert keys.strip().startswith("ssh-ed25519 ") and "deploy@compact-lab" in keys, name
        assert server.run("runuser -u deploy -- sudo -n true").rc == 0, name


def test_the_known_hosts_file_pins_the_keys_each_server_serves_now(host):
    known = (EPHEMERAL / "known_hosts").read_text().splitlines()
    for name in (WEB, DB, OPS):
        server = scenario_host(name)
        for kind in ("ed25519", "rsa"):
            key = server.file(f"/etc/ssh/ssh_host_{kind}_key.pub").content_string.split()[:2]
            assert f"{address(name)} {' '.join(key)}" in known, (name, kind)
        # the key the hardening role replaced on the first run (Debian's is 3072 bits)
        bits = server.check_output("ssh-keygen -l -f /etc/ssh/ssh_host_rsa_key.pub").split()[0]
        assert bits == "4096", name


def test_root_can_no_longer_log_in_over_ssh(host):
    password = (EPHEMERAL / "root-password").read_text().strip()
    for name in (WEB, DB, OPS):
        login = subprocess.run(
            ["sshpass", "-e", "ssh", "-o", f"UserKnownHostsFile={EPHEMERAL / 'known_hosts'}", "-o", "BatchMode=no",
             "-o", "PubkeyAuthentication=no", "-o", "ConnectTimeout=10", f"root@{address(name)}", "true"],
            env=dict(os.environ, SSHPASS=password), capture_output=True, text=True, check=False)
        assert login.returncode != 0 and "Permission denied" in login.stderr, (name, login.stderr)


def test_the_firewall_opens_only_what_each_tier_needs_between_the_hosts(host):
    def reachable(source, target, port):
        return scenario_host(source).run(f"timeout 3 bash -c '</dev/tcp/{address(target)}/{port}'").rc == 0

    # the app (web1) uses PostgreSQL and Redis; every host ships its logs to ops1, whose Prometheus
    # scrapes the app and the database's exporter
    assert reachable(WEB, DB, 5432)
    assert reachable(WEB, OPS, 6379)
    assert reachable(DB, OPS, 2514)
    assert reachable(OPS, WEB, 8000)
    assert reachable(OPS, DB, 9187)
    # nothing else does: sharing a host gives a tier no more than its own rules
    assert not reachable(OPS, DB, 5432)
    assert not reachable(DB, OPS, 6379)
    assert not reachable(DB, WEB, 8000)
    assert not reachable(WEB, DB, 9187)
    # from outside the stack: the web tier's HTTPS, not the database
    assert reachable("cp-acme", WEB, 443)
    assert not reachable("cp-acme", DB, 5432)


def test_the_apps_files_are_copied_off_site(host):
    """An attachment through the site, then the file backup's unit on ops1 (as its timer runs it)."""
    body = host.check_output(f"curl -sS --cacert {ROOT_PEM} -H 'Content-Type: application/json' "
                             f"-d '{{\"title\": \"compact\"}}' https://{SITE}/api/v1/notes")
    note = json.loads(body)["id"]
    status = host.check_output(f"echo compact-file | curl -sS --cacert {ROOT_PEM} -o /dev/null -w '%{{http_code}}' "
                               f"-X PUT --data-binary @- https://{SITE}/api/v1/notes/{note}/attachments/a.txt")
    assert status == "201"
    ops = scenario_host(OPS)
    ops.run_expect([0], "systemctl start teamflow-file-backup.service")
    assert ops.check_output("teamflow-rclone lsf copy:current/notes/%s/", str(note)).split() == ["a.txt"]


def test_a_second_run_from_another_address_connects_and_changes_nothing(host):
    # another address of this machine on the lab's network, inside the admins' network: the run's SSH
    # sessions come from it (the inventory's known_hosts and the deploy key are all they need)
    bridge = subprocess.run(["ip", "-o", "-4", "route", "get", address(WEB)], capture_output=True, text=True,
                            check=True).stdout.split(" dev ")[1].split()[0]
    prefix = address(WEB).rsplit(".", 1)[0]
    second = f"{prefix}.200"
    subprocess.run(["ip", "address", "replace", f"{second}/32", "dev", bridge], check=True)
    try:
        # new SSH masters (the converge's may still be open from the first address)
        control = tempfile.mkdtemp(prefix="compact-cp-")
        run, outcomes = task_outcomes(PROJECT / "playbooks" / "bootstrap.yml", "-e",
                                      f"ansible_ssh_extra_args='-o BindAddress={second}'", inventories=INVENTORIES,
                                      env={"ANSIBLE_SSH_CONTROL_PATH_DIR": control})
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        changed = {(task, name) for task, hosts in outcomes.items() for name, outcome in hosts.items()
                   if "changed" in (outcome if isinstance(outcome, list) else [outcome])}
        print(f"second run from {second}: {sum(len(h) for h in outcomes.values())} task results, changed: {sorted(changed)}")
        assert changed == set()
        journal = scenario_host(WEB).check_output("journalctl -u ssh --no-pager -o cat --since '-15min'")
        assert re.search(rf"Accepted publickey for deploy from {re.escape(second)} ", journal)
    finally:
        subprocess.run(["ip", "address", "del", f"{second}/32", "dev", bridge], check=False)
