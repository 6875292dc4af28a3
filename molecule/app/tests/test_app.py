"""The app tier as users and operators see it (molecule scenario `app`).

Requests come from the client container (app-load) through nginx (app-web), as
users' do. Every test takes `host`, so pytest keeps them in file order: release
1.0.0 from the converge is checked first, then 2.0.0 goes out under load, then a
broken 3.0.0 must stop at the first host, then the tier is rolled back.
"""

import json
import os
import re
import time
import uuid

import pytest
from scenario_helpers import PROJECT, ansible_playbook, scenario_host

testinfra_hosts = ["ansible://app-load"]

WEB, APPS, DB, CACHE = "app-web", ("app-1", "app-2"), "app-db", "app-cache"
CA = "/tmp/app-web.crt"
SECRETS = {
    "database password": "molecule-app-db-password-0123456789",
    "redis password": "molecule-redis-app-password-0123",
    "secret key": "molecule-secret-key-0123456789abcdef0123456789",
    "s3 secret key": "molecule-s3-secret-key-0123456789",
}


def remote(name):
    return scenario_host(name)


def get(host, path, *curl_args):
    """(status, body) of an HTTPS request through nginx; CURL_ARGS are shell words, as written."""
    out = host.check_output(f"curl -sS --cacert {CA} -o /tmp/body -w '%{{http_code}}' {' '.join(curl_args)} "
                            f"https://{WEB}{path}; echo; cat /tmp/body")
    status, _, body = out.partition("\n")
    return int(status), body


def direct_health(name):
    """/health of one app host, straight from the client (no nginx)."""
    return json.loads(scenario_host("app-load").check_output("curl -sS http://%s:8000/health", name))


def main_pid(name):
    return int(remote(name).check_output("systemctl show -p MainPID --value teamflow"))


def current_release(name):
    return os.path.basename(remote(name).check_output("readlink /opt/teamflow/current"))


def sql(query):
    return remote(DB).check_output("runuser -u postgres -- psql -XAtq -d teamflow -c %s", query)


def start_load(host, name, rate=15):
    """Start openload in the background on the client: /health, the SPA and an API read, through nginx."""
    note = json.loads(get(host, "/api/v1/notes", "-X POST -H 'Content-Type: application/json'",
                          "-d '{\"title\": \"load\"}'")[1])
    host.run_expect([0], "rm -f /tmp/%s.json /tmp/%s.stop", name, name)
    host.run_expect([0], f"nohup openload --rate {rate} --duration 240 --cafile {CA} --stop-file /tmp/{name}.stop "
                    f"--url https://{WEB}/health --url https://{WEB}/ --url https://{WEB}/api/v1/notes/{note['id']} "
                    f"--out /tmp/{name}.json > /tmp/{name}.log 2>&1 &")
    time.sleep(3)


def stop_load(host, name):
    host.run_expect([0], "touch /tmp/%s.stop", name)
    for _ in range(60):
        if host.file(f"/tmp/{name}.json").exists:
            return json.loads(host.file(f"/tmp/{name}.json").content_string)
        time.sleep(1)
    raise AssertionError(host.file(f"/tmp/{name}.log").content_string)


@pytest.fixture(scope="module", autouse=True)
def trust_nginx(host):
    """The client trusts the certificate nginx serves (the lab's self-signed bootstrap one)."""
    pem = remote(WEB).file("/etc/ssl/certs/teamflow.crt").content_string
    host.run_expect([0], "printf '%%s' %s > " + CA, pem)


# --- release 1.0.0 from the converge ---------------------------------------------------

def test_health_through_nginx_reports_the_release_and_its_dependencies(host):
    status, body = get(host, "/health")
    assert status == 200, body
    assert json.loads(body) == {"status": "ok", "version": "1.0.0", "database": "ok", "redis": "ok"}


def test_an_api_write_and_read_round_trip_through_nginx_with_a_redis_cache(host):
    status, body = get(host, "/api/v1/notes", "-X POST -H 'Content-Type: application/json'",
                       "-d '{\"title\": \"round trip\", \"body\": \"through nginx\"}'")
    assert status == 201, body
    note = json.loads(body)
    first = json.loads(get(host, f"/api/v1/notes/{note['id']}")[1])
    second = json.loads(get(host, f"/api/v1/notes/{note['id']}")[1])
    assert (first["title"], first["body"], first["cached"]) == ("round trip", "through nginx", False)
    assert second["cached"] is True and second["title"] == "round trip"
    assert sql(f"SELECT title FROM notes WHERE id = {note['id']}") == "round trip"
    ttl = int(remote(CACHE).check_output(
        f"REDISCLI_AUTH=molecule-redis-admin-password-0123 redis-cli --no-auth-warning --user admin TTL teamflow:note:{note['id']}"))
    assert 0 < ttl <= 300


def test_a_websocket_message_echoes_through_ws(host):
    out = host.check_output("ws-client %s 443 /ws/echo %s %s", WEB, "hello app", CA)
    assert out.endswith("hello app")


def test_metrics_carry_the_plan_names(host):
    for name in APPS:
        text = host.check_output("curl -sS http://%s:8000/metrics", name)
        for metric in ("http_requests_total{", "http_request_duration_seconds_bucket{", "http_requests_in_progress{"):
            assert metric in text, (name, metric)


def test_logs_are_json_with_the_request_id_nginx_passes(host):
    trace = f"molecule-trace-{uuid.uuid4().hex}"
    status, _ = get(host, "/health", f"-H 'X-Request-ID: {trace}'")
    assert status == 200
    lines = []
    for name in APPS:
        lines += remote(name).check_output(f"journalctl -u teamflow -o cat --no-pager | grep {trace} || true").splitlines()
    assert len(lines) == 1, lines
    entry = json.loads(lines[0])
    assert entry["request_id"] == trace and entry["path"] == "/health" and entry["status"] == 200


def test_the_frontend_bundle_is_served_with_hashed_assets(host):
    status, body = get(host, "/")
    assert status == 200 and 'content="1.0.0"' in body
    asset = re.search(r'src="(/assets/app\.[0-9a-f]{12}\.js)"', body).group(1)
    assert get(host, asset)[0] == 200
    assert get(host, "/some/spa/route")[1] == body


def test_gunicorn_runs_the_plan_settings_on_the_private_address(host):
    for name in APPS:
        app = remote(name)
        listeners = app.check_output("ss -Hltn 'sport = :8000'")
        address = app.check_output("getent hosts %s", name).split()[0]
        assert listeners.split()[3] == address + ":8000", listeners
        conf = app.file("/etc/teamflow/gunicorn.conf.py").content_string
        for setting in ('worker_class = "uvicorn_worker.UvicornWorker"', "timeout = 120", "keepalive = 5",
                        "max_requests = 1000", "max_requests_jitter = 100", "graceful_timeout = 30"):
            assert setting in conf
        workers = int(re.search(r"^workers = (\d+)$", conf, re.M).group(1))
        assert 4 <= workers <= 8
        children = app.check_output(f"pgrep -c -P {main_pid(name)}")
        assert int(children) == workers


def test_the_unit_is_sandboxed_and_runs_as_the_app_user(host):
    for name in APPS:
        props = dict(line.split("=", 1) for line in remote(name).check_output(
            "systemctl show teamflow -p User -p NoNewPrivileges -p ProtectSystem -p PrivateTmp -p ProtectHome "
            "-p CapabilityBoundingSet -p ReadWritePaths").splitlines())
        assert props["User"] == "teamflow" and props["NoNewPrivileges"] == "yes"
        assert props["ProtectSystem"] == "strict" and props["PrivateTmp"] == "yes" and props["ProtectHome"] == "yes"
        assert props["CapabilityBoundingSet"] == "" and props["ReadWritePaths"] == ""


def test_the_environment_file_is_private_to_the_app_user(host):
    for name in APPS:
        env = remote(name).file("/etc/teamflow/teamflow.env")
        assert (env.mode, env.user, env.group) == (0o600, "teamflow", "teamflow")
        content = env.content_string
        for variable in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ACCESS_TOKEN_EXPIRE_MINUTES",
                         "REFRESH_TOKEN_EXPIRE_DAYS", "S3_BUCKET_NAME", "S3_SECRET_KEY", "LOG_LEVEL", "ENVIRONMENT"):
            assert re.search(rf"^{variable}=", content, re.M), variable


def test_the_release_is_installed_offline_and_owned_by_root(host):
    for name in APPS:
        app = remote(name)
        release = app.file("/opt/teamflow/releases/1.0.0")
        assert release.user == "root" and current_release(name) == "1.0.0"
        assert app.run("runuser -u teamflow -- touch /opt/teamflow/releases/1.0.0/venv/x").rc != 0
        version = app.check_output("/opt/teamflow/current/venv/bin/python -c %s",
                                   "import importlib.metadata as m; print(m.version('teamflow-app'))")
        assert version == "1.0.0"


def test_migrations_ran_once_for_the_release(host):
    assert sql("SELECT count(*) FROM release_history WHERE version = '1.0.0'") == "1"
    assert sql("SELECT string_agg(name, ',' ORDER BY name) FROM schema_migrations") == "001_notes.sql,002_release_history.sql"


# --- 2.0.0 goes out while load runs through nginx -----------------------------------------

def test_a_rolling_deploy_under_load_drops_no_request(host):
    pids = {name: main_pid(name) for name in APPS}
    start_load(host, "deploy-2")
    run = ansible_playbook(PROJECT / "playbooks" / "deploy.yml", "-e", "app_version=2.0.0", "-vvv")
    load = stop_load(host, "deploy-2")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert load["completed"] == load["sent"] and load["sent"] > 300, load
    assert load["errors"] == 0 and load["non_2xx"] == 0, load
    for name in APPS:
        health = direct_health(name)
        assert (health["status"], health["version"]) == ("ok", "2.0.0")
        assert current_release(name) == "2.0.0"
        # only the code changed: a graceful reload, the same Gunicorn master
        assert main_pid(name) == pids[name]
    assert 'content="2.0.0"' in get(host, "/")[1]
    assert sql("SELECT count(*) FROM release_history WHERE version = '2.0.0'") == "1"
    _DEPLOY_OUTPUT["2.0.0"] = run.stdout + run.stderr


_DEPLOY_OUTPUT = {}


def test_no_secret_appears_in_the_deploy_output_at_vvv(host):
    output = _DEPLOY_OUTPUT["2.0.0"]
    assert "Gate the host on its health" in output and len(output) > 10000
    leaked = [name for name, value in SECRETS.items() if value in output]
    assert leaked == []


# --- a broken 3.0.0 stops at the first host ------------------------------------------------

def test_a_broken_release_stops_at_the_first_host_and_is_rolled_back(host):
    pid_first, pid_second = main_pid("app-1"), main_pid("app-2")
    start_load(host, "deploy-3")
    run = ansible_playbook(PROJECT / "playbooks" / "deploy.yml", "-e", "app_version=3.0.0")
    load = stop_load(host, "deploy-3")
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "Deploy of 3.0.0 stopped at app-1: Gate the host on its health" in output, output[-3000:]
    assert "HTTP status 503, expected 200" in output
    # the first host is back on 2.0.0 and in the pool; the second was never switched or restarted
    assert direct_health("app-1")["version"] == "2.0.0" and current_release("app-1") == "2.0.0"
    assert main_pid("app-1") != pid_first  # the way back is a restart
    assert current_release("app-2") == "2.0.0" and main_pid("app-2") == pid_second
    assert json.loads(remote(WEB).file("/etc/ansible/facts.d/teamflow_nginx.fact").content_string)["drained"] == []
    assert load["errors"] == 0 and load["non_2xx"] == 0, load
    assert 'content="2.0.0"' in get(host, "/")[1]


# --- rollback.yml -----------------------------------------------------------------------

def test_the_rollback_playbook_moves_the_tier_back_one_release(host):
    run = ansible_playbook(PROJECT / "playbooks" / "rollback.yml")
    assert run.returncode == 0, run.stdout[-4000:]
    for name in APPS:
        assert direct_health(name)["version"] == "1.0.0" and current_release(name) == "1.0.0"
    assert 'content="1.0.0"' in get(host, "/")[1]
    assert get(host, "/health")[0] == 200


# --- a changed environment restarts, on the host converged only ----------------------------

def test_a_changed_environment_restarts_the_app(host):
    pids = {name: main_pid(name) for name in APPS}
    converge = PROJECT / "molecule" / "app" / "converge.yml"
    run = ansible_playbook(converge, "--limit", "app-1", "-e", "app_log_level=WARNING")
    assert run.returncode == 0, run.stdout[-4000:]
    assert re.search(r"^LOG_LEVEL=\"WARNING\"$", remote("app-1").file("/etc/teamflow/teamflow.env").content_string, re.M)
    assert main_pid("app-1") != pids["app-1"] and main_pid("app-2") == pids["app-2"]
    assert direct_health("app-1")["status"] == "ok"
    assert not remote("app-1").file("/opt/teamflow/.restart-pending").exists
    run = ansible_playbook(converge, "--limit", "app-1")
    assert run.returncode == 0, run.stdout[-4000:]
    assert direct_health("app-1")["status"] == "ok"
