"""The host baseline on one host (molecule scenario `hardening`): what the role writes.

The firewall as the tiers and an outsider see it, SSH logins from the admin network and
lynis on every tier are tested on the whole lab (molecule/site/tests/test_site_hardening.py).
Every test takes `host`, so pytest keeps them in file order; the rerun after drift is last.
"""

import re

import pytest
from scenario_helpers import PROJECT, task_outcomes

testinfra_hosts = ["ansible://hd-app"]


def test_the_loaded_ruleset_is_the_validated_file_and_opens_ssh_to_the_admin_network_only(host):
    assert host.run("nft -c -f /etc/nftables.conf").rc == 0
    assert host.service("nftables").is_enabled
    ruleset = host.check_output("nft list table inet teamflow")
    assert "policy drop" in ruleset
    assert re.findall(r"^\s*(.*tcp dport 22 accept)$", ruleset, re.M) == ["ip saddr 192.0.2.10 tcp dport 22 accept"]
    # no tier of this inventory sends to an app host: nothing else is open
    assert re.findall(r"dport .* accept$", ruleset, re.M) == ["dport 22 accept"]


def test_the_admin_has_the_key_and_sudo_and_the_removed_admin_no_account(host):
    assert "alice@example.com" in host.file("/home/alice/.ssh/authorized_keys").content_string
    assert "teamflow-admins" in host.user("alice").groups
    assert host.run("sudo -l -U alice").stdout.count("NOPASSWD: ALL") == 1
    assert not host.user("mallory").exists


@pytest.mark.parametrize("setting, value", [
    ("passwordauthentication", "no"),
    ("kbdinteractiveauthentication", "no"),
    ("permitemptypasswords", "no"),
    ("permitrootlogin", "no"),
    ("maxauthtries", "3"),
    ("logingracetime", "30"),
    ("clientaliveinterval", "300"),
    ("clientalivecountmax", "2"),
    ("x11forwarding", "no"),
    ("allowtcpforwarding", "no"),
    ("loglevel", "VERBOSE"),
    ("kexalgorithms", "sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,"
                      "diffie-hellman-group16-sha512,diffie-hellman-group18-sha512"),
    ("ciphers", "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr,aes192-ctr,"
                "aes128-ctr"),
    ("macs", "hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,umac-128-etm@openssh.com"),
])
def test_sshd_t_shows_the_hardened_settings(host, setting, value):
    effective = dict(line.split(" ", 1) for line in host.check_output("sshd -T").splitlines())
    assert effective[setting] == value


def test_the_host_keys_are_ed25519_and_rsa_4096_and_the_moduli_3072_bits_up(host):
    assert host.check_output("ssh-keygen -l -f /etc/ssh/ssh_host_rsa_key.pub").startswith("4096 ")
    assert host.file("/etc/ssh/ssh_host_ed25519_key").exists
    smallest = host.check_output("awk '$1 !~ /^#/ {print $5}' /etc/ssh/moduli | sort -n | head -1")
    assert int(smallest) >= 3071


# --- system and audit --------------------------------------------------------------------

def test_the_system_settings_are_in_place(host):
    assert re.search(r"^UMASK\s+027$", host.file("/etc/login.defs").content_string, re.M)
    assert "* hard core 0" in re.sub(r"\s+", " ", host.file("/etc/security/limits.d/90-teamflow-hardening.conf").content_string)
    assert "net.ipv4.conf.all.accept_redirects = 0" in host.file("/etc/sysctl.d/90-teamflow-hardening.conf").content_string
    assert "install usb-storage /bin/true" in host.file("/etc/modprobe.d/teamflow-hardening.conf").content_string
    assert host.check_output("apt-config dump Unattended-Upgrade::Origins-Pattern").count("Debian-Security") >= 2
    assert host.service("fail2ban").is_running
    # the file tasks behind a one-run read of the current modes (tasks/system.yml)
    for path, mode in (("/etc/crontab", 0o600), ("/etc/cron.d", 0o700), ("/etc/cron.daily", 0o700),
                       ("/etc/ssh/sshd_config", 0o600), ("/etc/login.defs", 0o644)):
        target = host.file(path)
        assert (target.user, target.group, target.mode) == ("root", "root", mode), path
    assert host.file("/etc/security/pwquality.conf.d").is_directory


def test_only_root_may_run_the_compilers_that_exist(host):
    # prepare.yml installs binutils: /usr/bin/as, a link; gcc, cc, g++ and c++ are missing,
    # and the role passes over them
    assembler = host.check_output("readlink -e /usr/bin/as")
    target = host.file(assembler)
    assert (target.user, target.group, target.mode) == ("root", "root", 0o750)
    # dpkg-statoverride --list prints the mode without its leading 0
    assert f"root root 750 {assembler}" in host.check_output("dpkg-statoverride --list").splitlines()
    denied = host.run("runuser -u nobody -- %s --version", assembler)
    assert denied.rc != 0 and "Permission denied" in denied.stderr
    assert host.run("%s --version", assembler).rc == 0


def test_a_compiler_a_later_package_run_brings_is_restricted_as_it_arrives(host):
    # apt's hook runs the role's script after dpkg: reinstalled without its override (as a
    # compiler installed by hand after the role would be), the assembler is restricted again
    assembler = host.check_output("readlink -e /usr/bin/as")
    host.check_output("dpkg-statoverride --remove %s && chmod 0755 %s", assembler, assembler)
    assert host.file(assembler).mode == 0o755
    host.check_output("apt-get install -y --reinstall binutils-x86-64-linux-gnu")
    target = host.file(assembler)
    assert (target.user, target.group, target.mode) == ("root", "root", 0o750)
    assert f"root root 750 {assembler}" in host.check_output("dpkg-statoverride --list").splitlines()


def test_the_audit_rules_watch_users_sudoers_ssh_and_the_releases(host):
    rules = host.file("/etc/audit/rules.d/90-teamflow-hardening.rules").content_string
    for line in ("-w /etc/passwd -p wa -k identity", "-w /etc/sudoers.d -p wa -k sudoers",
                 "-w /etc/ssh/sshd_config.d -p wa -k sshd", "-w /opt/teamflow -p wa -k teamflow_release"):
        assert line in rules


# --- file integrity (AIDE) -------------------------------------------------------

METRICS = "/var/lib/prometheus/node-exporter/teamflow_aide.prom"


def aide_entries(host):
    """The counts of the last check's metric file, by change."""
    found = re.findall(r'^teamflow_aide_entries\{change="(\w+)"\} (\d+)$', host.file(METRICS).content_string, re.M)
    return {change: int(count) for change, count in found}


def test_the_integrity_database_was_built_on_install_with_its_metric(host):
    assert host.file("/var/lib/aide/aide.db").mode == 0o600
    assert host.file("/etc/aide/aide.conf").contains("^Checksums = sha512$")
    assert host.service("teamflow-aide-check.timer").is_enabled
    # the role's configuration and check, not Debian's (aide-common and its daily check)
    assert not host.package("aide-common").is_installed
    assert not host.file("/lib/systemd/system/dailyaidecheck.timer").exists
    assert host.file("/var/lib/aide").mode == 0o700
    metrics = host.file(METRICS).content_string
    assert "teamflow_aide_check_success 1" in metrics
    assert aide_entries(host) == {"added": 0, "removed": 0, "changed": 0}


def test_a_changed_file_fails_the_check_and_reaches_the_journal_and_the_metric(host):
    host.check_output("printf '#!/bin/sh\\n' > /usr/local/bin/teamflow-test-implant && chmod 0755 "
                      "/usr/local/bin/teamflow-test-implant && echo tampered >> /etc/motd")
    try:
        since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
        check = host.run("systemctl start teamflow-aide-check.service")
        assert check.rc != 0
        assert host.run("systemctl is-failed teamflow-aide-check.service").stdout.strip() == "failed"
        journal = host.check_output(f"journalctl -u teamflow-aide-check --since '{since}' --no-pager -o cat")
        assert "/usr/local/bin/teamflow-test-implant" in journal and "/etc/motd" in journal
        assert "teamflow-aide-check: 1 added, 0 removed," in journal
        entries = aide_entries(host)
        assert entries["added"] == 1 and entries["changed"] >= 1 and entries["removed"] == 0, entries
        # reported once: the next check compares with the files as they are now
        host.run_expect([0], "systemctl start teamflow-aide-check.service")
        assert aide_entries(host) == {"added": 0, "removed": 0, "changed": 0}
    finally:
        host.run("rm -f /usr/local/bin/teamflow-test-implant && sed -i '/^tampered$/d' /etc/motd"
                 " && (systemctl start teamflow-aide-check.service || systemctl start teamflow-aide-check.service)")


# --- a rerun puts back what drifted and changes nothing else -----------------------

def test_a_rerun_puts_back_what_drifted_and_leaves_the_rest(host):
    # last in the file: it runs the role again
    host.check_output("echo 'drift' >> /etc/issue && chmod 0644 /etc/nftables.conf && chmod 0755 /etc/cron.d"
                      " && chgrp adm /etc/sudoers.d/teamflow-admins && rm /etc/apt/apt.conf.d/20auto-upgrades")
    run, outcomes = task_outcomes(PROJECT / "molecule" / "hardening" / "converge.yml")
    assert run.returncode == 0, run.stdout[-4000:]
    did = {task: hosts["hd-app"] for task, hosts in outcomes.items() if "hd-app" in hosts}
    assert did["Show the legal banner before login"] == ["changed", "ok"]            # /etc/issue, /etc/issue.net
    assert did["Configure unattended security upgrades"] == ["changed", "ok"]
    assert did["Restrict cron's files to root"] == ["ok", "changed"] + ["ok"] * 4  # crontab, cron.d, ...
    for task in ("Write the firewall's rules, checked by nft before they are used",
                 "Let the admin group use sudo without a password (admins have keys, not passwords)"):
        assert did[task] == "changed", (task, did)
    # in place already: the module ran and changed nothing
    assert did["Keep core dumps off"] == ["ok", "ok"]
    for task in ("Write the kernel's network and hardening settings", "Set the umask of login shells",
                 "Require strong passwords", "Write the hardened SSH settings", "Write the audit rules"):
        assert did[task] == "ok", (task, did)
    assert "drift" not in host.file("/etc/issue").content_string
    assert host.file("/etc/nftables.conf").mode == 0o600
    assert host.file("/etc/cron.d").mode == 0o700
    assert host.file("/etc/sudoers.d/teamflow-admins").group == "root"
    assert host.file("/etc/apt/apt.conf.d/20auto-upgrades").contains('APT::Periodic::Unattended-Upgrade "1";')
