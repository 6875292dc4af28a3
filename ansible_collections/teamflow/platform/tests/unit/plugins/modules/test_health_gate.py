"""Unit tests of teamflow.platform.health_gate and its module_utils.

The decision logic runs with a fake clock and fake responses; the module runs
against a real HTTP server on loopback (a thread of this process) whose answers
each test scripts. The site lab's deploys (molecule scenario `site`) gate real app hosts.
"""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from ansible.module_utils.testing import patch_module_args
from ansible_collections.teamflow.platform.plugins.module_utils import health
from ansible_collections.teamflow.platform.plugins.modules import health_gate

OK = {"status": "ok", "database": "ok", "redis": "ok", "version": "2.0.0", "checks": [{"name": "db", "ms": 3}]}
EXPECT = {"status": "ok", "database": "ok", "version": "2.0.0"}


# --- module_utils: one response --------------------------------------------------

def test_a_matching_response_passes():
    assert health.evaluate(200, json.dumps(OK), 12.0, [200], EXPECT, 500) == (True, None)


def test_the_status_must_be_expected():
    passed, reason = health.evaluate(503, json.dumps(OK), 5.0, [200], {})
    assert not passed and reason == "HTTP status 503, expected 200"


def test_a_field_with_another_value_fails_with_both_values():
    body = json.dumps(dict(OK, version="1.0.0"))
    assert health.evaluate(200, body, 5.0, [200], EXPECT) == (False, 'version is "1.0.0", expected "2.0.0"')


def test_a_missing_field_fails():
    body = json.dumps({"status": "ok"})
    assert health.evaluate(200, body, 5.0, [200], {"database": "ok"}) == (False, "database is missing from the body")


def test_a_body_that_is_not_json_fails_when_fields_are_expected():
    assert health.evaluate(200, "<html>", 5.0, [200], {"status": "ok"}) == (False, "the body is not JSON")
    assert health.evaluate(200, "<html>", 5.0, [200], {}) == (True, None)


def test_dotted_paths_reach_nested_fields_and_list_items():
    body = json.dumps(OK)
    assert health.evaluate(200, body, 1.0, [200], {"checks.0.name": "db", "checks.0.ms": 3}) == (True, None)
    assert health.evaluate(200, body, 1.0, [200], {"checks.1.name": "db"})[1] == "checks.1.name is missing from the body"


def test_numbers_and_booleans_compare_as_values():
    body = json.dumps({"count": 3, "ready": True})
    assert health.evaluate(200, body, 1.0, [200], {"count": "3", "ready": True}) == (True, None)
    assert not health.evaluate(200, body, 1.0, [200], {"ready": False})[0]
    assert not health.evaluate(200, body, 1.0, [200], {"count": 4})[0]


def test_a_slow_response_fails_on_the_latency_ceiling():
    assert health.evaluate(200, json.dumps(OK), 812.0, [200], EXPECT, 500) == (False, "latency 812 ms is above 500 ms")


# --- module_utils: the polling loop ----------------------------------------------

class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def scripted(answers, clock, cost=0.1):
    """fetch() returning ANSWERS in order (the last one repeats); each takes COST s."""
    answers = list(answers)

    def fetch(url):
        clock.now += cost
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        return answer

    return fetch


def check(status, body, latency_ms):
    return health.evaluate(status, body, latency_ms, [200], {"status": "ok"})


GOOD = (200, '{"status": "ok"}', 10.0, None)
BAD = (503, '{"status": "error"}', 10.0, None)
DOWN = (None, "", 1.0, "URLError: [Errno 111] Connection refused")


def test_the_gate_passes_after_n_consecutive_passing_rounds():
    clock = Clock()
    result = health.run_gate(["u"], scripted([BAD, GOOD, GOOD, GOOD], clock), check, 3, 2, 60, clock, clock.sleep)
    assert result["passed"] and result["rounds"] == 4 and result["consecutive_passes"] == 3
    assert [s["passed"] for s in result["samples"]] == [False, True, True, True]
    assert result["reason"] == "u: HTTP status 503, expected 200"


def test_a_failure_resets_the_streak():
    clock = Clock()
    answers = [GOOD, GOOD, BAD, GOOD, GOOD, GOOD]
    result = health.run_gate(["u"], scripted(answers, clock), check, 3, 1, 60, clock, clock.sleep)
    assert result["passed"] and result["rounds"] == 6


def test_every_url_must_pass_in_a_round():
    clock = Clock()
    answers = [GOOD, BAD, GOOD, GOOD, GOOD, GOOD]  # round 1: u1 ok, u2 bad; rounds 2 and 3 all good
    result = health.run_gate(["u1", "u2"], scripted(answers, clock), check, 2, 1, 60, clock, clock.sleep)
    assert result["passed"] and result["rounds"] == 3
    assert [(s["url"], s["round"]) for s in result["samples"][:2]] == [("u1", 1), ("u2", 1)]


def test_the_gate_fails_at_the_timeout_with_the_last_reason_and_body():
    clock = Clock()
    result = health.run_gate(["u"], scripted([DOWN, BAD], clock), check, 3, 2, 10, clock, clock.sleep)
    assert not result["passed"]
    assert result["reason"] == "u: HTTP status 503, expected 200"
    assert result["last_body"] == '{"status": "error"}'
    assert result["elapsed"] <= 10
    assert result["samples"][0]["error"].startswith("URLError") and result["samples"][0]["status"] is None


def test_a_streak_cut_short_by_the_timeout_says_so():
    clock = Clock()
    result = health.run_gate(["u"], scripted([BAD, GOOD], clock), check, 10, 2, 7, clock, clock.sleep)
    assert not result["passed"] and result["consecutive_passes"] >= 1
    assert result["reason"].startswith("%d of 10 consecutive passing rounds" % result["consecutive_passes"])


# --- the module, against a real HTTP server on loopback -----------------------------

class Server:
    """A loopback HTTP server answering each request with the next scripted (status, body)."""

    def __init__(self):
        self.script = []
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the stdlib's name
                outer.requests.append((self.path, dict(self.headers)))
                status, body = outer.script.pop(0) if len(outer.script) > 1 else outer.script[0]
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


def run(capsys, **params):
    with patch_module_args(params):
        with pytest.raises(SystemExit) as exit_info:
            health_gate.main()
    return exit_info.value.code, json.loads(capsys.readouterr().out)


def test_the_module_passes_a_healthy_endpoint(server, capsys):
    server.script = [(200, json.dumps(OK))]
    code, result = run(capsys, url=[server.url + "/health"], expected_json=EXPECT, passes=3, interval=0.01,
                       timeout=5, headers={"X-Request-ID": "gate-1"})
    assert code == 0 and result["passed"] and not result["changed"]
    assert result["rounds"] == 3 and len(result["samples"]) == 3
    assert all(s["status"] == 200 and s["latency_ms"] > 0 for s in result["samples"])
    assert server.requests[0][0] == "/health" and {k.lower(): v for k, v in server.requests[0][1].items()}["x-request-id"] == "gate-1"


def test_the_module_fails_with_the_reason_and_the_last_body(server, capsys):
    broken = {"status": "error", "version": "3.0.0", "selftest": "failed"}
    server.script = [(503, json.dumps(broken))]
    # 2 s: at least two rounds even when a request takes most of a second (checks beside the lab's converge:
    # 0.3 s gave one round in the clean-clone run of 2026-12-07)
    code, result = run(capsys, url=[server.url + "/health"], expected_json={"status": "ok"}, passes=2,
                       interval=0.05, timeout=2)
    assert code == 1 and result["failed"] and not result["passed"]
    assert "health gate failed" in result["msg"] and "HTTP status 503, expected 200" in result["msg"]
    assert server.url + "/health" in result["msg"]
    assert json.loads(result["last_body"]) == broken
    assert all(s["status"] == 503 for s in result["samples"]) and result["rounds"] >= 2


def test_the_module_checks_the_json_of_an_expected_error_status(server, capsys):
    server.script = [(503, json.dumps({"status": "degraded"}))]
    code, result = run(capsys, url=[server.url + "/health"], expected_status=[503], expected_json={"status": "degraded"},
                       passes=1, timeout=2)
    assert code == 0 and result["passed"]


def test_the_module_records_a_refused_connection_as_an_error(capsys):
    code, result = run(capsys, url=["http://127.0.0.1:9/health"], passes=1, interval=0.05, timeout=0.2,
                       request_timeout=0.5)
    assert code == 1
    sample = result["samples"][0]
    assert sample["status"] is None and "refused" in sample["error"].lower()
    assert "refused" in result["msg"].lower()


def test_the_module_rejects_bad_parameters(capsys):
    code, result = run(capsys, url=["http://127.0.0.1:9/"], passes=0)
    assert code == 1 and "passes is 0" in result["msg"]
