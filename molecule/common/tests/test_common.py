"""What teamflow.platform.common leaves on a host (molecule scenario `common`)."""

import time

import pytest
from scenario_helpers import PROJECT, task_outcomes

testinfra_hosts = ["ansible://all"]


@pytest.mark.parametrize("package", ["ca-certificates", "curl", "jq", "locales", "tzdata", "chrony", "dbus",
                                     "python3-cryptography"])
def test_package_is_installed(host, package):
    assert host.package(package).is_installed


def test_apt_does_not_install_recommends(host):
    out = host.check_output("apt-config dump APT::Install-Recommends APT::Install-Suggests")
    assert 'APT::Install-Recommends "false";' in out
    assert 'APT::Install-Suggests "false";' in out


def test_apt_package_list_refresh_is_recorded(host):
    # the lab image has no refresh stamp and dates its lists to 1970: the role refreshed
    # them and its hook recorded it, so the next run's cache_valid_time check skips the
    # download (the image carries the same hook for the roles' own scenarios; the
    # role's version replaced it)
    hook = host.file("/etc/apt/apt.conf.d/15teamflow-update-stamp")
    assert "Ansible managed" in hook.content_string
    assert "touch /var/lib/apt/periodic/update-success-stamp" \
        in host.check_output("apt-config dump APT::Update::Post-Invoke-Success")
    stamp = host.file("/var/lib/apt/periodic/update-success-stamp")
    assert stamp.exists
    assert stamp.mtime.timestamp() > time.time() - 86400


def test_timezone(host):
    assert host.file("/etc/localtime").linked_to.endswith("/Europe/Berlin")
    if host.system_info.release.split(".")[0] == "12":
        # Debian 12 still has the legacy file, which some runtimes read; 13 dropped it
        assert host.file("/etc/timezone").content_string.strip() == "Europe/Berlin"
    assert host.check_output("date +%Z") in ("CET", "CEST")


def test_locales_are_generated(host):
    available = host.check_output("locale -a").lower().split()
    assert "en_gb.utf8" in available
    assert "de_de.utf8" in available


def test_system_locale(host):
    assert "LANG=en_GB.UTF-8" in host.file("/etc/default/locale").content_string.splitlines()
    # a login session gets it through pam_env
    assert host.check_output("su -l root -c 'echo $LANG'") == "en_GB.UTF-8"


def test_hostname(host):
    assert host.check_output("hostname") == "common-debian12"
    assert host.file("/etc/hostname").content_string.strip() == "common-debian12"


def test_chrony_is_running_with_the_configured_sources(host):
    assert host.service("chrony").is_running
    assert host.service("chrony").is_enabled
    conf = host.file("/etc/chrony/chrony.conf").content_string
    assert "pool 2.debian.pool.ntp.org iburst" in conf
    assert "server ntp1.teamflow.example.com iburst" in conf
    # chronyd answers on its command socket
    assert host.run("chronyc -n tracking").rc == 0


def test_chrony_leaves_the_clock_of_a_container_alone(host):
    # the lab hosts are containers: the clock belongs to the machine under them
    assert host.file("/etc/default/chrony").contains('DAEMON_OPTS="-F 1 -x"')
    cmdline = host.check_output("cat /proc/$(pidof chronyd | cut -d' ' -f1)/cmdline | tr '\\0' ' '")
    assert " -x" in cmdline
    # so it runs without CAP_SYS_TIME, which the lab containers do not have
    assert host.file("/etc/systemd/system/chrony.service.d/60-teamflow-no-clock.conf").contains("^ConditionCapability=$")


def test_journald_retention(host):
    conf = host.file("/etc/systemd/journald.conf.d/60-teamflow.conf")
    assert conf.mode == 0o644
    assert "SystemMaxUse=256M" in conf.content_string
    assert "MaxRetentionSec=14day" in conf.content_string
    assert "Storage=persistent" in conf.content_string
    # journald runs with it: the journal is on disk, not only in /run
    assert host.file("/var/log/journal").is_directory
    assert host.run("journalctl --header -q | grep -q 'File path: /var/log/journal'").rc == 0


# --- a rerun puts back what drifted and changes nothing else -----------------------

def test_a_rerun_puts_back_what_drifted_and_leaves_the_rest(host):
    # last in the file: it runs the role again
    host.check_output("echo '# drift' >> /etc/default/chrony && chmod 0600 /etc/default/locale"
                      " && chown nobody /etc/systemd/journald.conf.d && rm /etc/apt/apt.conf.d/60teamflow-policy")
    run, outcomes = task_outcomes(PROJECT / "molecule" / "common" / "converge.yml")
    assert run.returncode == 0, run.stdout[-4000:]
    did = {task: hosts["common-debian12"] for task, hosts in outcomes.items() if "common-debian12" in hosts}
    for task in ("Set apt's policy for Recommends and Suggests", "Set the system locale to en_GB.UTF-8",
                 "Set chronyd's options", "Create journald's drop-in directory"):
        assert did[task] == "changed", (task, did)
    # in place already: the module ran and changed nothing
    # Debian 13 has no /etc/timezone: the task is for Debian 12 only
    legacy_timezone = "ok" if int(host.system_info.release.split(".")[0]) < 13 else "skipped"
    assert did["Keep the legacy /etc/timezone in step"] == legacy_timezone, did
    for task in ("Write the host name to /etc/hostname in the container",
                 "Configure chrony", "Create chrony's drop-in directory",
                 "Let chronyd run without CAP_SYS_TIME when it does not set the clock",
                 "Bound journald's storage and retention"):
        assert did[task] == "ok", (task, did)
    assert not host.file("/etc/default/chrony").contains("# drift")
    assert host.file("/etc/default/locale").mode == 0o644
    assert host.file("/etc/systemd/journald.conf.d").user == "root"
    assert host.file("/etc/apt/apt.conf.d/60teamflow-policy").contains('APT::Install-Recommends "false";')
    assert host.service("chrony").is_running


SLEEPER = "[Unit]\nDescription=A stand-in long-running service\n[Service]\nExecStart=/bin/sleep infinity\n"


def main_pid(host, unit):
    return int(host.check_output(f"systemctl show -p MainPID --value {unit}"))


def test_a_listed_service_comes_back_after_kill_9_and_a_crash_loop_stops(host):
    """teamflow-sleeper is in common_service_restart_units_extra: the role wrote its drop-in before the unit
    existed. Killed with SIGKILL it is started again; killed over and over, it stops after
    common_service_start_limit_burst (5) starts within the interval and stays failed."""
    unit = "teamflow-sleeper"
    host.run_expect([0], f"printf %s > /etc/systemd/system/{unit}.service && systemctl daemon-reload && "
                         f"systemctl reset-failed {unit}; systemctl restart {unit}", SLEEPER)
    settings = host.check_output(f"systemctl show -p Restart -p RestartUSec -p StartLimitBurst {unit}").splitlines()
    assert sorted(settings) == ["Restart=on-failure", "RestartUSec=2s", "StartLimitBurst=5"]
    restarts = []
    for _ in range(8):
        pid, killed = main_pid(host, unit), time.monotonic()
        host.run_expect([0], f"kill -9 {pid}")
        while time.monotonic() - killed < 15:
            state = host.check_output(f"systemctl show -p ActiveState --value {unit}")
            if state == "failed" or (state == "active" and main_pid(host, unit) not in (0, pid)):
                break
            time.sleep(0.2)
        if state != "active":
            break
        restarts.append(round(time.monotonic() - killed, 1))
    refused = host.run(f"journalctl -u {unit} --no-pager | grep -c 'Start request repeated too quickly'").stdout.strip()
    print(f"{unit} killed {len(restarts) + 1} times: back after {restarts} s, then {state} "
          f"('Start request repeated too quickly' logged {refused} times)")
    assert restarts and max(restarts) <= 10
    # the first start (above) and 4 restarts: the 6th start within 60 s is refused
    assert (len(restarts), state) == (4, "failed") and int(refused or 0) >= 1
    host.run_expect([0], f"systemctl reset-failed {unit}; rm /etc/systemd/system/{unit}.service; systemctl daemon-reload")
