"""The web tier as a user and an attacker see it (molecule scenario `nginx`).

Tests run on the client container and talk to nginx-web over the scenario's
network; nginx-app1 to nginx-app4 run an echo upstream that reports what it
received.
"""

import json
import os
import pathlib
import uuid

import pytest
from scenario_helpers import ansible_playbook, scenario_host, wait_for

testinfra_hosts = ["ansible://nginx-client"]

WEB = "nginx-web"
APPS = {"nginx-app1", "nginx-app2", "nginx-app3", "nginx-app4"}
CA = "/tmp/nginx-web-ca.pem"
PROJECT = pathlib.Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", pathlib.Path(__file__).resolve().parents[3]))
SCENARIO = pathlib.Path(__file__).resolve().parents[1]

PLAN_HEADERS = {
    "strict-transport-security": "max-age=31536000; includeSubDomains",
    "x-frame-options": "SAMEORIGIN",
    "x-content-type-options": "nosniff",
    "referrer-policy": "strict-origin-when-cross-origin",
    "content-security-policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline';",
}


def web():
    return scenario_host(WEB)


@pytest.fixture(scope="module", autouse=True)
def trust_the_test_ca(host):
    """The client trusts the test CA that issued the certificate the inventory gives nginx."""
    pem = (pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "pki" / "ca.crt").read_text()
    host.run_expect([0], "printf '%%s' %s > " + CA, pem)


def served_certificate(host):
    """Subject and issuer of the certificate nginx-web serves, as `subject=CN=...` (OpenSSL 3.0 adds spaces, 3.5 not)."""
    return host.check_output(
        "echo | openssl s_client -connect %s:443 -servername %s 2>/dev/null | openssl x509 -noout -subject -issuer", WEB, WEB
    ).replace(" = ", "=")


def fetch(host, url, *args):
    """(status, headers dict, body) of one request from the client; headers lower-cased."""
    cmd = host.run("curl -sS --cacert %s -D /tmp/h -o /tmp/b " + " ".join(["%s"] * len(args)) + " %s", CA, *args, url)
    assert cmd.rc == 0, cmd.stderr
    raw = host.file("/tmp/h").content_string.strip().split("\r\n")
    headers = {}
    for line in raw[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers.setdefault(name.strip().lower(), value.strip())
    return int(raw[0].split()[1]), headers, host.file("/tmp/b").content.decode("utf-8", "replace")


# --- port 80 -------------------------------------------------------------------

def test_http_redirects_to_https_with_301(host):
    out = host.check_output("curl -sS -o /dev/null -w '%%{http_code} %%{redirect_url}' http://%s/projects/7?tab=board", WEB)
    assert out == f"301 https://{WEB}/projects/7?tab=board"


def test_acme_challenge_is_served_over_plain_http(host):
    out = host.check_output("curl -sS -w ' %%{http_code}' http://%s/.well-known/acme-challenge/molecule-token", WEB)
    assert out == "molecule-token.thumbprint\n 200"


def test_unknown_host_names_get_nothing(host):
    http = host.run("curl -sS -H 'Host: evil.example' http://%s/", WEB)
    assert http.rc == 52  # empty reply: 444
    https = host.run("curl -sS --cacert %s --connect-to evil.example:443:%s:443 https://evil.example/", CA, WEB)
    assert https.rc in (35, 56)  # handshake refused


# --- the SPA over https ----------------------------------------------------------

def test_every_plan_header_with_the_plan_value(host):
    status, headers, _ = fetch(host, f"https://{WEB}/")
    assert status == 200
    for name, value in PLAN_HEADERS.items():
        assert headers.get(name) == value, name
    assert "camera=()" in headers["permissions-policy"]
    assert headers["server"] == "nginx"  # no version
    assert "x-powered-by" not in headers


def test_headers_are_on_locations_that_add_their_own(host):
    for path in ("/index.html", "/assets/app-4f3a9c1e.js"):
        _, headers, _ = fetch(host, f"https://{WEB}{path}")
        for name in PLAN_HEADERS:
            assert name in headers, (path, name)


def test_http2_is_offered(host):
    assert host.check_output("curl -sS --http2 --cacert %s -o /dev/null -w '%%{http_version}' https://%s/", CA, WEB) == "2"


@pytest.mark.parametrize("path", ["/", "/assets/app-4f3a9c1e.js", "/assets/app-4f3a9c1e.css"])
def test_text_is_gzipped(host, path):
    _, headers, _ = fetch(host, f"https://{WEB}{path}", "-H", "Accept-Encoding: gzip")
    assert headers.get("content-encoding") == "gzip"


def test_images_are_not_gzipped(host):
    status, headers, _ = fetch(host, f"https://{WEB}/assets/logo-9b8e7d6c.png", "-H", "Accept-Encoding: gzip")
    assert status == 200
    assert "content-encoding" not in headers


def test_unknown_spa_route_returns_index_html(host):
    status, headers, body = fetch(host, f"https://{WEB}/projects/42/settings")
    assert status == 200
    assert "<title>TeamFlow</title>" in body
    assert "immutable" not in headers.get("cache-control", "")


def test_hashed_assets_are_immutable_and_index_html_is_not_cached(host):
    _, asset, _ = fetch(host, f"https://{WEB}/assets/app-4f3a9c1e.js")
    assert "public" in asset["cache-control"] and "immutable" in asset["cache-control"]
    _, index, _ = fetch(host, f"https://{WEB}/index.html")
    assert "immutable" not in index["cache-control"]
    assert "no-cache" in index["cache-control"]


def test_dotfiles_are_not_served(host):
    web().run_expect([0], "echo SECRET=1 > /var/www/teamflow/dist/.env")
    status, _, body = fetch(host, f"https://{WEB}/.env")
    assert status == 404
    assert "SECRET" not in body


# --- the proxy -------------------------------------------------------------------

def test_api_reaches_the_upstream_with_the_forwarding_headers(host):
    status, _, body = fetch(host, f"https://{WEB}/api/v1/projects", "-H", "X-Request-ID: molecule-req-0001")
    assert status == 200
    seen = json.loads(body)
    assert seen["host"] in APPS
    assert seen["path"] == "/api/v1/projects"
    headers = seen["headers"]
    client_ip = host.check_output("hostname -I").split()[0]
    assert headers["host"] == WEB
    assert headers["x-real-ip"] == client_ip
    assert headers["x-forwarded-for"] == client_ip
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-request-id"] == "molecule-req-0001"


def test_requests_without_an_id_get_one_and_it_is_logged_as_json(host):
    _, _, body = fetch(host, f"https://{WEB}/api/v1/whoami")
    request_id = json.loads(body)["headers"]["x-request-id"]
    assert len(request_id) == 32
    last = web().check_output("grep -F %s /var/log/nginx/access.log | tail -1", request_id)
    entry = json.loads(last)
    assert entry["request_id"] == request_id
    assert entry["uri"] == "/api/v1/whoami"
    assert entry["status"] == 200
    assert entry["upstream_addr"].endswith(":8000")


def test_websocket_echo_through_ws(host):
    out = host.check_output("ws-client %s 443 /ws/echo %s %s", WEB, "hello through nginx", CA)
    assert out.split(": ", 1)[1] == "hello through nginx"
    assert out.split(": ", 1)[0] in APPS


def worker_pids():
    return web().check_output("pgrep -x -f 'nginx: worker process'").split()


def test_each_worker_may_open_twice_its_connections_and_the_open_file_cache(host):
    # worker_connections 8192: 2 x 8192 + 1000 (the open file cache)
    for pid in worker_pids():
        limits = web().check_output("grep 'Max open files' /proc/%s/limits", pid).split()
        assert limits[3:5] == ["17384", "17384"], limits  # soft and hard
    assert "LimitNOFILE=17384" in web().check_output("systemctl cat nginx")


def test_nginx_holds_more_proxied_connections_per_worker_than_1024_descriptors_allow(host):
    """2600 websockets through nginx at once (each holds two of a worker's descriptors): with the
    default limit of 1024 a worker fails past about 500 of them with "Too many open files"."""
    host.run_expect([0], "rm -f /tmp/hold.out; (ws-hold %s 443 /ws/hold 2600 20 %s > /tmp/hold.out 2>&1 &)", WEB, CA)
    out = wait_for(lambda: (lambda text: text if "holding" in text else None)(host.file("/tmp/hold.out").content_string),
                   240, interval=2) or host.file("/tmp/hold.out").content_string
    assert "holding" in out, out
    busiest = max(int(web().check_output("ls /proc/%s/fd | wc -l", pid)) for pid in worker_pids())
    ok, failed = map(int, out.split()[1:3])
    print(f"websockets held through nginx: {ok} ok, {failed} failed; busiest worker: {busiest} open files")
    done = wait_for(lambda: (lambda text: text if "done" in text else None)(host.file("/tmp/hold.out").content_string),
                    60, interval=2) or ""
    assert (ok, failed) == (2600, 0), done or out
    assert busiest > 1024
    assert "Too many open files" not in web().check_output("tail -n 200 /var/log/nginx/error.log")


def test_upload_size_is_bounded(host):
    host.run_expect([0], "head -c 2000000 /dev/zero > /tmp/2mb")
    status, _, body = fetch(host, f"https://{WEB}/api/v1/upload", "-X", "POST", "--data-binary", "@/tmp/2mb")
    assert status == 200 and json.loads(body)["body_bytes"] == 2000000
    status, _, _ = fetch(host, f"https://{WEB}/projects", "-X", "POST", "--data-binary", "@/tmp/2mb")
    assert status == 413


def test_api_is_rate_limited_per_client_and_health_is_not(host):
    def codes(path):
        # 40 requests on one connection, as fast as curl sends them
        urls = " ".join([f"-o /dev/null https://{WEB}{path}"] * 40)
        return host.check_output("curl -sS --cacert %s -w '%%{http_code}\\n' " + urls, CA).split()

    api = codes("/api/v1/ping")
    assert api.count("429") > 0, api
    assert api.count("200") >= 5, api
    assert codes("/health") == ["200"] * 40


# --- TLS -------------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["-tls1", "-tls1_1"])
def test_old_tls_is_refused_by_the_server(host, flag):
    # SECLEVEL=0 lets the client offer the old protocol: a refusal is the server's
    out = host.run("echo | openssl s_client -connect %s:443 -servername %s %s -cipher DEFAULT@SECLEVEL=0", WEB, WEB, flag)
    assert out.rc != 0
    assert "alert" in out.stderr + out.stdout


@pytest.mark.parametrize("flag, protocol", [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")])
def test_tls_1_2_and_1_3_are_accepted(host, flag, protocol):
    out = host.check_output("echo | openssl s_client -connect %s:443 -servername %s %s -CAfile %s 2>&1", WEB, WEB, flag, CA)
    assert f"Protocol  : {protocol}" in out or f"New, {protocol}" in out
    assert "Verify return code: 0 (ok)" in out


def test_testssl_finds_nothing_high_or_critical(host):
    host.run("rm -f /tmp/testssl.json")
    run = host.run("testssl --quiet --color 0 --warnings off --add-ca %s --jsonfile /tmp/testssl.json %s:443", CA, WEB)
    report = host.file("/tmp/testssl.json").content_string
    artifacts = PROJECT / "artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "testssl-nginx.json").write_text(report)
    findings = json.loads(report)
    assert len(findings) > 20, run.stdout[-2000:]
    bad = [f for f in findings if f.get("severity") in ("HIGH", "CRITICAL")]
    assert bad == [], bad


# --- changes ---------------------------------------------------------------------

def test_a_broken_directive_fails_at_validation_and_nginx_keeps_serving(host):
    site = "/etc/nginx/sites-available/teamflow.conf"
    before = web().file(site).sha256sum
    run = ansible_playbook(SCENARIO / "broken.yml")
    assert run.returncode != 0
    assert "this_is_not_a_directive" in run.stdout
    assert web().file(site).sha256sum == before
    status, _, _ = fetch(host, f"https://{WEB}/")
    assert status == 200
    assert web().run("nginx -t").rc == 0


def upstream_hosts(host):
    """The app hosts that answer /health through nginx, over 24 requests."""
    seen = set()
    for _ in range(24):
        _, _, body = fetch(host, f"https://{WEB}/health")
        seen.add(json.loads(body)["host"])
    return seen


def test_drain_takes_an_app_host_out_of_the_pool_and_puts_it_back(host):
    assert upstream_hosts(host) == APPS
    master = web().check_output("cat /run/nginx.pid")
    run = ansible_playbook(SCENARIO / "drain.yml", "--limit", "nginx-app1", "-e", "drain_state=drained")
    assert run.returncode == 0, run.stdout[-3000:]
    assert upstream_hosts(host) == APPS - {"nginx-app1"}
    assert "nginx-app1:8000 max_fails=3 fail_timeout=10s down;" in web().file("/etc/nginx/conf.d/teamflow-upstream.conf").content_string
    # a converge of the role in between keeps the host drained
    run = ansible_playbook(SCENARIO / "converge.yml")
    assert run.returncode == 0, run.stdout[-3000:]
    assert upstream_hosts(host) == APPS - {"nginx-app1"}
    run = ansible_playbook(SCENARIO / "drain.yml", "--limit", "nginx-app1", "-e", "drain_state=active")
    assert run.returncode == 0, run.stdout[-3000:]
    assert upstream_hosts(host) == APPS
    # applied by reloads: the master process is the same
    assert web().check_output("cat /run/nginx.pid") == master


def test_a_batch_of_two_of_four_app_hosts_drains_side_by_side_under_load(host):
    """deploy_batch_size 2: both hosts of a batch are down together while their upstreams restart."""
    host.run_expect([0], "rm -f /tmp/batch.json /tmp/batch.stop")
    host.run_expect([0], f"nohup openload --rate 20 --duration 300 --cafile {CA} --stop-file /tmp/batch.stop "
                         f"--url https://{WEB}/health "
                         f"--out /tmp/batch.json > /tmp/batch.log 2>&1 &")
    run = ansible_playbook(SCENARIO / "batch.yml")
    host.run_expect([0], "touch /tmp/batch.stop")
    assert wait_for(lambda: host.file("/tmp/batch.json").exists, timeout=60), host.file("/tmp/batch.log").content_string
    load = json.loads(host.file("/tmp/batch.json").content_string)
    print(f"load during the batch-of-2 switch: {load}")
    assert run.returncode == 0, run.stdout[-3000:]
    assert load["completed"] > 100 and load["errors"] == 0 and load["non_2xx"] == 0, load
    assert " down;" not in web().file("/etc/nginx/conf.d/teamflow-upstream.conf").content_string
    assert web().check_output("ls -A /var/lib/teamflow-nginx/drained") == ""
    assert upstream_hosts(host) == APPS


def test_a_failed_get_goes_to_one_more_app_host_and_a_post_to_none(host):
    """Every echo upstream drops a request to /api/crash without an answer, noting it in its crashes file:
    nginx passes the GET on to other app hosts and sends the POST to one app host only; both end in 502.
    (A try that failed on a kept-alive connection is not counted against nginx_upstream_next_tries, as
    the app host may have closed it: the GET may reach every host of the pool, never more.)"""
    run = uuid.uuid4().hex
    get_status = fetch(host, f"https://{WEB}/api/crash", "-H", f"X-Request-ID: get-{run}")[0]
    post_status = fetch(host, f"https://{WEB}/api/crash", "-X", "POST", "-d", "{}", "-H", f"X-Request-ID: post-{run}")[0]
    seen = "".join(scenario_host(name).run("cat /var/lib/echo-upstream/crashes").stdout for name in sorted(APPS)).splitlines()
    tries = {kind: seen.count(f"{method} {kind}-{run}") for kind, method in (("get", "GET"), ("post", "POST"))}
    print(f"a request every app host drops: GET {get_status} after {tries['get']} app hosts, "
          f"POST {post_status} after {tries['post']}")
    assert (get_status, post_status) == (502, 502)
    assert 2 <= tries["get"] <= len(APPS) and tries["post"] == 1, tries


def test_a_stopped_app_host_fails_no_request(host):
    """The echo upstream of nginx-app1 stopped (connections refused): every request goes to another app
    host, none fails; once it runs again, nginx sends it requests again after nginx_upstream_fail_timeout."""
    app = scenario_host("nginx-app1")
    app.run_expect([0], "systemctl stop echo-upstream")
    try:
        answers = [fetch(host, f"https://{WEB}/health") for _ in range(24)]
    finally:
        app.run_expect([0], "systemctl start echo-upstream")
    hosts = {json.loads(body)["host"] for status, _, body in answers if status == 200}
    print(f"24 requests with nginx-app1 stopped: {sum(status == 200 for status, _, _ in answers)} answered 200 by {sorted(hosts)}")
    assert [status for status, _, _ in answers] == [200] * 24
    assert hosts == APPS - {"nginx-app1"}
    assert wait_for(lambda: upstream_hosts(host) == APPS, 30)


def test_the_certificate_from_the_inventory_is_served(host):
    assert "issuer=CN=teamflow molecule test CA" in served_certificate(host)
    key = web().file("/etc/ssl/private/teamflow.key")
    assert (key.mode, key.user) == (0o600, "root")


def test_a_bootstrap_certificate_never_replaces_one_that_exists(host):
    cert = "/etc/ssl/certs/teamflow.crt"
    before = web().file(cert).sha256sum
    run = ansible_playbook(SCENARIO / "bootstrap.yml", "-e", f"cert_path={cert} key_path=/etc/ssl/private/teamflow.key")
    assert run.returncode == 0, run.stdout[-3000:]
    assert web().file(cert).sha256sum == before
    assert "teamflow molecule test CA" in served_certificate(host)


def test_without_any_certificate_nginx_starts_on_a_bootstrap_one(host):
    run = ansible_playbook(SCENARIO / "bootstrap.yml", "-e", "cert_path=/etc/ssl/certs/bootstrap.crt key_path=/etc/ssl/private/bootstrap.key")
    assert run.returncode == 0, run.stdout[-3000:]
    served = served_certificate(host)
    assert "O=teamflow.platform bootstrap" in served and "CN=nginx-web" in served
    # and back to the inventory's certificate
    run = ansible_playbook(SCENARIO / "converge.yml")
    assert run.returncode == 0, run.stdout[-3000:]
    assert "teamflow molecule test CA" in served_certificate(host)
