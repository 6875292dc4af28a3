"""The app role on one host (molecule scenario `app`).

app-1 runs the reference app (release 1.0.0) with PostgreSQL, Redis and the S3 bucket of its files
(SeaweedFS) next to it.
Requests go to Gunicorn on the host's private address, as nginx sends them. Every
test takes `host`, so pytest keeps them in file order. The app tier behind the load
balancer (requests through nginx, websockets, request ids, releases rolled out under
load, a broken release, rollback) is tested on the whole lab: molecule/site.
"""

import hashlib
import json
import os
import re

from scenario_helpers import PROJECT, ansible_playbook

testinfra_hosts = ["ansible://app-1"]

NAME = "app-1"
REDIS_ADMIN = "molecule-redis-admin-password-0123"


def private_address(host):
    return host.check_output("getent hosts %s", NAME).split()[0]


def request(host, path, method="GET", body=None, raw=None):
    """(status, body) of a request to Gunicorn on the host's private address: BODY as JSON, or RAW bytes as
    an octet stream (then the answer's body is its SHA-256 and length, or its text when it is not 2xx)."""
    script = ("import sys, hashlib, urllib.request, urllib.error\n"
              "raw = sys.argv[4] == 'raw'\n"
              "data = (bytes.fromhex(sys.argv[3]) if raw else sys.argv[3].encode()) if sys.argv[3] else None\n"
              "req = urllib.request.Request(sys.argv[1], data=data, method=sys.argv[2],"
              " headers={'Content-Type': 'application/octet-stream' if raw else 'application/json'})\n"
              "try:\n    answer = urllib.request.urlopen(req, timeout=10)\n"
              "except urllib.error.HTTPError as error:\n    answer = error\n"
              "content = answer.read()\n"
              "print(answer.status)\n"
              "print(f'{hashlib.sha256(content).hexdigest()} {len(content)}' if raw and answer.status == 200 and sys.argv[2] == 'GET'"
              " else content.decode())")
    out = host.check_output("python3 -c %s %s %s %s %s", script, f"http://{private_address(host)}:8000{path}", method,
                            raw.hex() if raw is not None else (json.dumps(body) if body is not None else ""),
                            "raw" if raw is not None else "json")
    status, _, text = out.partition("\n")
    return int(status), text


def bucket_object(host, key):
    """SHA-256 of the object KEY in the app's bucket (None when there is none), read with the app's own
    settings and boto3."""
    script = ("import boto3, botocore, hashlib, sys\n"
              "from teamflow_app import migrate\n"
              "env = migrate.read_env_file('/etc/teamflow/teamflow.env')\n"
              "s3 = boto3.client('s3', endpoint_url=env['S3_ENDPOINT_URL'], region_name=env['S3_REGION'],"
              " aws_access_key_id=env['S3_ACCESS_KEY'], aws_secret_access_key=env['S3_SECRET_KEY'],"
              " verify=env['S3_CA_BUNDLE'], config=botocore.config.Config(s3={'addressing_style': 'path'}))\n"
              "try:\n    body = s3.get_object(Bucket=env['S3_BUCKET_NAME'], Key=sys.argv[1])['Body'].read()\n"
              "except s3.exceptions.NoSuchKey:\n    print('none')\n"
              "else:\n    print(hashlib.sha256(body).hexdigest())")
    out = host.check_output("/opt/teamflow/current/venv/bin/python -c %s %s", script, key)
    return None if out == "none" else out


def healthy(host):
    """Whether /health answers ok (a request that times out or fails is a no)."""
    try:
        return json.loads(request(host, "/health")[1])["status"] == "ok"
    except AssertionError:
        return False


def main_pid(host):
    return int(host.check_output("systemctl show -p MainPID --value teamflow"))


def sql(host, query):
    return host.check_output("runuser -u postgres -- psql -XAtq -d teamflow -c %s", query)


# --- release 1.0.0 from the converge ---------------------------------------------------

def test_health_reports_the_release_and_its_dependencies(host):
    status, body = request(host, "/health")
    assert status == 200, body
    assert json.loads(body) == {"status": "ok", "version": "1.0.0", "database": "ok", "redis": "ok", "storage": "ok"}


def test_an_api_write_and_read_round_trip_with_a_redis_cache(host):
    status, body = request(host, "/api/v1/notes", "POST", {"title": "round trip", "body": "straight to gunicorn"})
    assert status == 201, body
    note = json.loads(body)
    first = json.loads(request(host, f"/api/v1/notes/{note['id']}")[1])
    second = json.loads(request(host, f"/api/v1/notes/{note['id']}")[1])
    assert (first["title"], first["body"], first["cached"]) == ("round trip", "straight to gunicorn", False)
    assert second["cached"] is True and second["title"] == "round trip"
    assert sql(host, f"SELECT title FROM notes WHERE id = {note['id']}") == "round trip"
    ttl = int(host.check_output(
        f"REDISCLI_AUTH={REDIS_ADMIN} redis-cli --no-auth-warning --user admin TTL teamflow:note:{note['id']}"))
    assert 0 < ttl <= 300


def test_metrics_carry_the_plan_names(host):
    text = request(host, "/metrics")[1]
    for metric in ("http_requests_total{", "http_request_duration_seconds_bucket{", "http_requests_in_progress{"):
        assert metric in text, metric


def test_logs_are_json_with_the_request_id_they_are_given(host):
    trace = "molecule-trace-app-1"
    host.check_output("python3 -c %s %s %s", "import sys, urllib.request\nurllib.request.urlopen(urllib.request."
                      "Request(sys.argv[1], headers={'X-Request-ID': sys.argv[2]}), timeout=10)",
                      f"http://{private_address(host)}:8000/health", trace)
    lines = host.check_output(f"journalctl -u teamflow -o cat --no-pager | grep {trace} || true").splitlines()
    assert len(lines) == 1, lines
    entry = json.loads(lines[0])
    assert entry["request_id"] == trace and entry["path"] == "/health" and entry["status"] == 200


def test_gunicorn_runs_the_plan_settings_on_the_private_address(host):
    listeners = host.check_output("ss -Hltn 'sport = :8000'")
    assert listeners.split()[3] == private_address(host) + ":8000", listeners
    conf = host.file("/etc/teamflow/gunicorn.conf.py").content_string
    for setting in ('worker_class = "uvicorn_worker.UvicornWorker"', "timeout = 120", "keepalive = 5",
                    "max_requests = 1000", "max_requests_jitter = 100", "graceful_timeout = 30"):
        assert setting in conf
    workers = int(re.search(r"^workers = (\d+)$", conf, re.M).group(1))
    assert 4 <= workers <= 8
    children = host.check_output(f"pgrep -c -P {main_pid(host)}")
    assert int(children) == workers


def test_the_unit_is_sandboxed_and_runs_as_the_app_user(host):
    props = dict(line.split("=", 1) for line in host.check_output(
        "systemctl show teamflow -p User -p NoNewPrivileges -p ProtectSystem -p PrivateTmp -p ProtectHome "
        "-p CapabilityBoundingSet -p ReadWritePaths").splitlines())
    assert props["User"] == "teamflow" and props["NoNewPrivileges"] == "yes"
    assert props["ProtectSystem"] == "strict" and props["PrivateTmp"] == "yes" and props["ProtectHome"] == "yes"
    assert props["CapabilityBoundingSet"] == "" and props["ReadWritePaths"] == ""


def test_the_environment_file_is_private_to_the_app_user(host):
    env = host.file("/etc/teamflow/teamflow.env")
    assert (env.mode, env.user, env.group) == (0o600, "teamflow", "teamflow")
    content = env.content_string
    for variable in ("DATABASE_URL", "DATABASE_READ_URL", "DB_RETRY_SECONDS", "REDIS_URL", "SECRET_KEY",
                     "ACCESS_TOKEN_EXPIRE_MINUTES",
                     "REFRESH_TOKEN_EXPIRE_DAYS", "S3_BUCKET_NAME", "S3_SECRET_KEY", "LOG_LEVEL", "ENVIRONMENT"):
        assert re.search(rf"^{variable}=", content, re.M), variable
    assert re.search(r"^DATABASE_URL=.*target_session_attrs=read-write", content, re.M)
    assert re.search(r"^DATABASE_READ_URL=.*target_session_attrs=prefer-standby", content, re.M)


def test_the_workers_pools_together_stay_within_the_hosts_database_connections(host):
    """The plan's 20-50 connections per instance, which the postgresql role sizes max_connections with: every
    worker has a writer and a reader pool, so each may hold 50 / (2 x workers)."""
    content = host.file("/etc/teamflow/teamflow.env").content_string
    conf = host.file("/etc/teamflow/gunicorn.conf.py").content_string
    workers = int(re.search(r"^workers = (\d+)$", conf, re.M).group(1))
    pool_max = int(re.search(r'^DB_POOL_MAX="?(\d+)"?$', content, re.M).group(1))
    print(f"{workers} workers x 2 pools x {pool_max} connections = {workers * 2 * pool_max} (of 50)")
    assert 1 <= pool_max and workers * 2 * pool_max <= 50


def test_the_release_is_installed_offline_and_owned_by_root(host):
    release = host.file("/opt/teamflow/releases/1.0.0")
    assert release.user == "root"
    assert host.check_output("readlink /opt/teamflow/current").rsplit("/", 1)[-1] == "1.0.0"
    assert host.run("runuser -u teamflow -- touch /opt/teamflow/releases/1.0.0/venv/x").rc != 0
    version = host.check_output("/opt/teamflow/current/venv/bin/python -c %s",
                                "import importlib.metadata as m; print(m.version('teamflow-app'))")
    assert version == "1.0.0"


def test_migrations_ran_once_for_the_release(host):
    assert sql(host, "SELECT count(*) FROM release_history WHERE version = '1.0.0'") == "1"
    assert sql(host, "SELECT string_agg(name, ',' ORDER BY name) FROM schema_migrations") == \
        "001_notes.sql,002_release_history.sql,003_attachments.sql"


# --- attachments in the S3 bucket ----------------------------------------------------------

def test_an_attachment_is_stored_in_the_bucket_read_back_and_deleted(host):
    note = json.loads(request(host, "/api/v1/notes", "POST", {"title": "with a file"})[1])
    data = os.urandom(40_000)  # one argument of a command: below the kernel's 128 KiB
    digest = hashlib.sha256(data).hexdigest()
    path = f"/api/v1/notes/{note['id']}/attachments/report.bin"
    status, body = request(host, path, "PUT", raw=data)
    assert status == 201, body
    assert (json.loads(body)["sha256"], json.loads(body)["size"]) == (digest, 40_000)
    assert bucket_object(host, f"notes/{note['id']}/report.bin") == digest
    assert request(host, path, raw=b"") == (200, f"{digest} 40000")
    disposition = host.check_output(
        "python3 -c %s %s", "import sys, urllib.request\n"
        "print(urllib.request.urlopen(sys.argv[1], timeout=10).headers['Content-Disposition'])",
        f"http://{private_address(host)}:8000{path}")
    assert disposition == 'attachment; filename="report.bin"'
    listed = json.loads(request(host, f"/api/v1/notes/{note['id']}/attachments")[1])
    assert [(item["name"], item["sha256"]) for item in listed] == [("report.bin", digest)]
    assert sql(host, f"SELECT size FROM attachments WHERE note_id = {note['id']}") == "40000"
    status, body = request(host, path, "DELETE")
    assert status == 204, body
    assert bucket_object(host, f"notes/{note['id']}/report.bin") is None
    assert request(host, path)[0] == 404
    assert sql(host, f"SELECT count(*) FROM attachments WHERE note_id = {note['id']}") == "0"


def test_attachments_refuse_bad_names_and_unknown_notes(host):
    assert request(host, "/api/v1/notes/1/attachments/.hidden", "PUT", raw=b"x")[0] == 422
    status, body = request(host, "/api/v1/notes/999999999/attachments/a.txt", "PUT", raw=b"x")
    assert (status, json.loads(body)) == (404, {"detail": "no such note"})


# --- a bucket the app cannot use, then a changed environment --------------------------------

def test_a_missing_bucket_is_named_at_start_up_and_in_health_and_attachments_answer_503(host):
    converge = PROJECT / "molecule" / "app" / "converge.yml"
    since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
    run = ansible_playbook(converge, "--tags", "app", "-e", "app_s3_bucket_name=teamflow-nowhere")
    assert run.returncode == 0, run.stdout[-4000:]
    status, body = request(host, "/health")
    assert status == 200, body
    health = json.loads(body)
    # the app's identity may not even learn whether another bucket exists: S3 answers 403
    reason = ("access to bucket teamflow-nowhere denied (403): check S3_ACCESS_KEY, S3_SECRET_KEY and that the "
              "bucket exists")
    assert (health["status"], health["storage"]) == ("degraded", f"error: {reason}")
    assert health["reasons"] == [f"storage: error: {reason}"]
    journal = host.check_output("journalctl -u teamflow --since %s -o cat", since)
    assert f"file storage unavailable: {reason}" in journal
    assert "Traceback" not in journal
    note = json.loads(request(host, "/api/v1/notes", "POST", {"title": "no bucket"})[1])
    status, body = request(host, f"/api/v1/notes/{note['id']}/attachments/a.txt", "PUT", raw=b"x")
    assert (status, json.loads(body)) == (503, {"detail": "file storage unavailable, try again"})
    # notes are still served
    assert request(host, f"/api/v1/notes/{note['id']}")[0] == 200


# the converge with the inventory's values below puts the bucket back

def test_a_changed_environment_restarts_the_app(host):
    pid = main_pid(host)
    converge = PROJECT / "molecule" / "app" / "converge.yml"
    # the app's tasks only, as `site.yml --tags app` runs them (the database and the cache are as they were)
    run = ansible_playbook(converge, "--tags", "app", "-e", "app_log_level=WARNING")
    assert run.returncode == 0, run.stdout[-4000:]
    assert re.search(r"^LOG_LEVEL=\"WARNING\"$", host.file("/etc/teamflow/teamflow.env").content_string, re.M)
    assert main_pid(host) != pid
    # the converge returned once the restarted app answered /health (its workers boot after systemd has it started)
    assert re.search(r"TASK \[teamflow\.platform\.app : Wait until the app answers /health\][^\n]*\n(?:(?!TASK \[)[^\n]*\n)*?ok: \[app-1\]",
                     run.stdout), run.stdout[-4000:]
    assert healthy(host)
    assert not host.file("/opt/teamflow/.restart-pending").exists
    run = ansible_playbook(converge, "--tags", "app")
    assert run.returncode == 0, run.stdout[-4000:]
    assert json.loads(request(host, "/health")[1])["status"] == "ok"
