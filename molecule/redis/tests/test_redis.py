"""Redis as the app tier sees it (molecule scenario `redis`).

The tests run on the client container and talk to redis-cache over the
scenario's network. Every test takes `host`, so pytest keeps them in file order.
"""

import os
import pathlib
import time

import pytest
from scenario_helpers import ansible_playbook, scenario_host

testinfra_hosts = ["ansible://redis-client"]

CACHE = "redis-cache"
ADMIN = ("admin", "molecule-admin-password-0123456789")
APP = ("teamflow", "molecule-app-password-0123456789")
PROJECT = pathlib.Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", pathlib.Path(__file__).resolve().parents[3]))
SCENARIO = pathlib.Path(__file__).resolve().parents[1]


def cache():
    return scenario_host(CACHE)


def cli(host, user, *command, port=6379, tls=False):
    """Run one redis-cli command against redis-cache as USER (None: no login); its output."""
    args = ["redis-cli", "--no-auth-warning", "-h", CACHE, "-p", str(port)]
    if tls:
        args += ["--tls", "--cacert", "/etc/ssl/certs/molecule-test-ca.pem"]
    env = ""
    if user:
        args += ["--user", user[0]]
        env = "REDISCLI_AUTH=%s " % user[1]
    result = host.run(env + " ".join(["%s"] * len(args + list(command))), *args, *command)
    assert result.rc == 0, result.stderr
    return result.stdout.strip()


def server_pid():
    return cache().check_output("systemctl show -p MainPID --value redis-server")


def test_an_unauthenticated_client_is_refused(host):
    assert cli(host, None, "PING").startswith("NOAUTH")
    assert cli(host, None, "GET", "session:1").startswith("NOAUTH")


def test_the_default_user_is_disabled(host):
    assert "WRONGPASS" in cli(host, None, "AUTH", "default", "")
    assert cli(host, ADMIN, "ACL", "GETUSER", "default").splitlines()[1] == "off"


def test_a_wrong_password_is_refused(host):
    assert cli(host, None, "AUTH", APP[0], "not-the-password").startswith("WRONGPASS")


def test_the_app_user_sets_with_a_ttl_and_gets(host):
    assert cli(host, APP, "SET", "cache:projects:7", "payload", "EX", "600") == "OK"
    assert cli(host, APP, "GET", "cache:projects:7") == "payload"
    assert 0 < int(cli(host, APP, "TTL", "cache:projects:7")) <= 600


def test_the_app_user_publishes_and_subscribes(host):
    subscriber = "REDISCLI_AUTH=%s timeout 5 redis-cli --no-auth-warning -h %s --user %s" % (APP[1], CACHE, APP[0])
    host.run_expect([0], "(%s SUBSCRIBE board:7 > /tmp/sub.out 2>&1 &) ; sleep 1" % subscriber)
    assert cli(host, APP, "PUBLISH", "board:7", "card-moved") == "1"
    time.sleep(0.5)
    assert "card-moved" in host.file("/tmp/sub.out").content_string


@pytest.mark.parametrize("command", [["FLUSHALL"], ["FLUSHDB"], ["CONFIG", "GET", "maxmemory"], ["KEYS", "*"],
                                     ["DEBUG", "SLEEP", "0"], ["SHUTDOWN"], ["ACL", "LIST"], ["MONITOR"]])
def test_the_app_user_may_not_run_administrative_commands(host, command):
    reply = cli(host, APP, *command)
    # DEBUG is off for everyone (enable-debug-command no), before the ACL is asked
    assert reply.startswith("NOPERM") or reply.startswith("ERR DEBUG command not allowed"), reply
    assert "no permissions" in cli(host, ADMIN, "ACL", "DRYRUN", APP[0], *command)


def test_the_admin_user_runs_config_get(host):
    assert cli(host, ADMIN, "CONFIG", "GET", "maxmemory").splitlines() == ["maxmemory", str(256 * 1024 * 1024)]
    assert cli(host, ADMIN, "CONFIG", "GET", "maxmemory-policy").splitlines()[1] == "volatile-lru"
    assert cli(host, ADMIN, "CONFIG", "GET", "appendfsync").splitlines()[1] == "everysec"
    assert cli(host, ADMIN, "CONFIG", "GET", "protected-mode").splitlines()[1] == "yes"


def test_the_acl_file_holds_digests_not_passwords(host):
    acl = cache().file("/etc/redis/users.acl")
    assert acl.mode == 0o640
    assert APP[1] not in acl.content_string and ADMIN[1] not in acl.content_string
    assert "user teamflow on #" in acl.content_string


def test_redis_listens_on_loopback_and_the_private_address_only(host):
    listeners = cache().check_output("ss -Hltn '( sport = :6379 )' | awk '{print $4}'").split()
    address = cache().check_output("getent ahostsv4 %s | awk 'NR==1 {print $1}'", CACHE)
    assert sorted(listeners) == sorted(["127.0.0.1:6379", f"{address}:6379"])


def test_the_tls_listener_serves_the_same_users(host):
    assert cli(host, APP, "PING", port=6380, tls=True) == "PONG"
    assert cli(host, None, "PING", port=6380, tls=True).startswith("NOAUTH")


def test_a_session_survives_a_restart(host):
    assert cli(host, APP, "SET", "session:abc", "user-42", "EX", "3600") == "OK"
    before = server_pid()
    cache().run_expect([0], "systemctl restart redis-server")
    assert server_pid() != before
    for _ in range(20):
        if cli(host, APP, "PING") == "PONG":
            break
        time.sleep(0.5)
    assert cli(host, APP, "GET", "session:abc") == "user-42"


def test_the_startup_log_has_no_kernel_warnings(host):
    log = cache().file("/var/log/redis/redis-server.log").content_string
    assert "Ready to accept connections" in log
    assert "overcommit" not in log.lower()
    assert "somaxconn" not in log.lower()
    assert "transparent huge pages" not in log.lower()


def no_secret_in(run):
    """Assert that none of the scenario's Redis passwords is in what RUN (at -vvv) printed.

    Both streams: under molecule the verbose lines, EXEC among them, go to stderr.
    """
    output = run.stdout + run.stderr
    assert "EXEC" in output
    for secret in (ADMIN[1], APP[1], "molecule-probe-password-0123"):
        assert secret not in output, [line[:300] for line in output.splitlines() if secret in line][:3]


def test_runtime_settings_and_users_change_without_a_restart(host):
    before = server_pid()
    extra = ('{"redis_maxmemory_policy": "allkeys-lru", "redis_extra_users": '
             '[{"name": "probe", "password": "molecule-probe-password-0123", "rules": "+ping"}]}')
    # -vvv, as AWX shows a verbose job: each module's command line and environment (the EXEC lines)
    # are printed, and no password may be among them (the PING wait, ACL LOAD and CONFIG SET run here)
    result = ansible_playbook(SCENARIO / "converge.yml", "-vvv", "-e", extra)
    assert result.returncode == 0, result.stdout[-3000:]
    for handler in ("Load the ACL file", "Apply the runtime settings"):
        assert f"RUNNING HANDLER [teamflow.platform.redis : {handler}]" in result.stdout, handler
    no_secret_in(result)
    assert cli(host, ADMIN, "CONFIG", "GET", "maxmemory-policy").splitlines()[1] == "allkeys-lru"
    assert cli(host, ("probe", "molecule-probe-password-0123"), "PING") == "PONG"
    assert server_pid() == before

    result = ansible_playbook(SCENARIO / "converge.yml", "-vvv")
    assert result.returncode == 0, result.stdout[-3000:]
    no_secret_in(result)
    assert cli(host, ADMIN, "CONFIG", "GET", "maxmemory-policy").splitlines()[1] == "volatile-lru"
    assert cli(host, None, "AUTH", "probe", "molecule-probe-password-0123").startswith("WRONGPASS")
    assert server_pid() == before


def test_a_broken_setting_is_refused_before_it_goes_live(host):
    before = server_pid()
    conf = cache().file("/etc/redis/teamflow-runtime.conf").content_string
    result = ansible_playbook(SCENARIO / "converge.yml", "-e", '{"redis_runtime_settings_extra": {"maxmemory-polcy": "lru"}}')
    assert result.returncode != 0
    # Redis 7 (Debian 12) says FATAL CONFIG FILE ERROR, Redis 8 (Debian 13) lists the unresolved settings
    assert "FATAL CONFIG FILE ERROR" in result.stdout or "'maxmemory-polcy lru'" in result.stdout, result.stdout[-2000:]
    assert cache().file("/etc/redis/teamflow-runtime.conf").content_string == conf
    assert server_pid() == before
    assert cli(host, APP, "PING") == "PONG"
