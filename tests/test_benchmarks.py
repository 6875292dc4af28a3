"""The benchmark tools' own logic (benchmarks/): the load client against a real
server on loopback, the parsing of ansible-playbook's output, the report, and
the README's figures being the report of the committed results.

`make bench` itself runs on the lab and asserts nothing about speed: its
numbers are a report (benchmarks/results/), not a test.
"""

import http.server
import json
import threading
import time

import pytest

import bench
import openload
import plots
import report
import userload
from conftest import ROOT

pytestmark = pytest.mark.unit


@pytest.fixture()
def server():
    """An HTTP/1.1 keep-alive server on loopback: /slow stalls its first request 1 s, /fail answers 503; a POST
    to /notes answers 201 with the note and an id, a POST elsewhere 503."""
    stalled = threading.Event()
    notes = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            if self.path == "/slow" and not stalled.is_set():
                stalled.set()
                time.sleep(1)
            body = b"ok"
            self.send_response(503 if self.path == "/fail" else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            note = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/notes":
                notes.append(note)
                note["id"] = len(notes)
            body = json.dumps(note).encode()
            self.send_response(201 if self.path == "/notes" else 503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def load(tmp_path, *argv):
    out = tmp_path / "out.json"
    assert userload.main([*argv, "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_percentiles_are_nearest_rank():
    values = list(range(1, 101))
    assert [userload.percentile(values, q) for q in (50, 95, 99, 100)] == [50, 95, 99, 100]
    assert userload.percentile([7], 99) == 7
    assert userload.percentile([], 50) is None


def test_users_keep_one_connection_each_at_the_arrival_rate(server, tmp_path):
    result = load(tmp_path, "--url", server + "/", "--users", "10", "--interval", "0.5", "--duration", "2")
    assert result["target_rate_rps"] == 20
    assert result["sent"] == result["completed"] == 40
    assert result["by_status"] == {"200": 40}
    assert result["errors"] == result["non_2xx"] == 0
    assert result["max_open_connections"] == 10


def test_a_stall_counts_against_the_requests_that_waited_for_it(server, tmp_path):
    # one user, a request every 0.1 s; the first stalls 1 s: the ~9 requests due meanwhile
    # are late by up to a second, which a closed-loop client would not report
    result = load(tmp_path, "--url", server + "/slow", "--users", "1", "--interval", "0.1", "--duration", "2")
    assert result["completed"] == 20
    assert result["latency_ms"]["max"] >= 1000
    assert result["latency_ms"]["p50"] >= 100
    assert result["service_time_ms"]["p50"] < 100


def test_errors_and_status_codes_are_counted(server, tmp_path):
    result = load(tmp_path, "--url", server + "/fail", "--url", "http://127.0.0.1:9/", "--users", "2",
                  "--interval", "0.5", "--duration", "1", "--timeout", "2")
    assert result["by_status"] == {"503": 2}
    assert result["non_2xx"] == 2
    assert result["errors"] == 2 and result["error_kinds"] == {"ConnectionRefusedError": 2}


def test_openload_posts_writes_keeps_the_acknowledged_ones_and_counts_each_url(server, tmp_path):
    out, written = tmp_path / "out.json", tmp_path / "written.txt"
    rc = openload.main(["--url", server + "/", "--url", server + "/fail", "--post", server + "/notes",
                        "--post", server + "/nowhere", "--rate", "40", "--duration", "1",
                        "--out", str(out), "--written", str(written)])
    summary = json.loads(out.read_text())
    assert rc == 1 and summary["sent"] == summary["completed"] == 40
    assert {url: (figures["sent"], figures["failed"]) for url, figures in summary["by_url"].items()} == {
        server + "/": (10, 0), server + "/fail": (10, 10),
        "POST " + server + "/notes": (10, 0), "POST " + server + "/nowhere": (10, 10)}
    assert summary["by_url"][server + "/fail"]["longest_gap_s"] == 0  # never answered 2xx
    assert (summary["by_url"][server + "/fail"]["non_2xx"], summary["by_url"][server + "/fail"]["errors"]) == (10, 0)
    assert summary["by_url"][server + "/"]["p99_ms"] >= summary["by_url"][server + "/"]["p95_ms"] > 0
    # four URLs in turn at 40/s: one of each every 0.1 s
    assert 0.05 < summary["by_url"][server + "/"]["longest_gap_s"] < 0.5
    rows = [line.split(" ", 2) for line in written.read_text().splitlines()]
    assert sorted(json.loads(body)["id"] for _, _, body in rows) == list(range(1, 11))
    assert all(float(sent) <= float(answered) for sent, answered, _ in rows)
    assert all(json.loads(body)["title"].startswith("openload-") for _, _, body in rows)
    # per second of the run, by due time: 40 requests in the one second, the 20 to /fail and /nowhere failed
    assert summary["timeline"] == [[0, 20, 20]]
    assert abs(summary["started_at"] - time.time()) < 60


def test_fault_figures_say_when_writes_came_back_and_which_were_acknowledged():
    summary = {"sent": 6, "errors": 1, "non_2xx": 1, "by_url": {
        "https://lb/api/notes?limit=5": {"sent": 3, "failed": 1, "latency_max_ms": 40.0, "longest_gap_s": 1.5},
        "POST https://lb/api/notes": {"sent": 3, "failed": 1, "latency_max_ms": 5200.0, "longest_gap_s": 6.0}}}
    written = ('100.000 100.020 {"id": 7, "title": "a"}\n'
               '104.000 109.200 {"id": 9, "title": "c"}\n')
    figures, acknowledged = openload.fault_figures(summary, written, 103.5, "https://lb/api/notes?limit=5",
                                                   "https://lb/api/notes")
    assert acknowledged == [7, 9]
    assert figures == {"requests": 6, "failed": 2, "writes": 3, "failed_writes": 1, "reads": 3, "failed_reads": 1,
                       "seconds_to_first_write": 5.7, "longest_write_gap_s": 6.0, "slowest_write_ms": 5200.0,
                       "timeline": None, "fault_at_s": None, "undo_at_s": None}
    summary.update(started_at=100.0, timeline=[[0, 2, 0], [4, 1, 2]])
    figures = openload.fault_figures(summary, written, 103.5, "https://lb/api/notes?limit=5", "https://lb/api/notes")[0]
    assert (figures["timeline"], figures["fault_at_s"], figures["undo_at_s"]) == ([[0, 2, 0], [4, 1, 2]], 3.5, None)
    assert openload.fault_figures(summary, "", 103.5, "https://lb/api/notes?limit=5",
                                  "https://lb/api/notes")[0]["seconds_to_first_write"] is None


def test_outage_figures_keep_what_users_saw_per_url():
    summary = {"sent": 9, "errors": 1, "non_2xx": 2, "latency_ms": {"p99": 2900.0},
               "by_url": {"https://lb/health": {"sent": 3, "failed": 2, "errors": 0, "non_2xx": 2, "p95_ms": 9.0,
                                                "p99_ms": 9.5, "latency_max_ms": 10.0, "longest_gap_s": 4.0}}}
    assert openload.outage_figures(summary, 3.2, "https://lb") == {
        "requests": 9, "failed": 1, "non_2xx": 2, "p99_ms": 2900.0, "whole_again_s": 3.2,
        "by_url": {"/health": {"sent": 3, "failed": 2, "errors": 0, "non_2xx": 2, "p95_ms": 9.0, "p99_ms": 9.5,
                               "latency_max_ms": 10.0}}, "timeline": None, "fault_at_s": None, "undo_at_s": None}
    summary.update(started_at=50.0, timeline=[[0, 3, 0]])
    figures = openload.outage_figures(summary, 3.2, "https://lb", fault_at=55.0, undo_at=80.5)
    assert (figures["timeline"], figures["fault_at_s"], figures["undo_at_s"]) == ([[0, 3, 0]], 5.0, 30.5)


PLAYBOOK_OUTPUT = """
PLAY RECAP *********************************************************************
tf-app1                    : ok=120  changed=3    unreachable=0    failed=0    skipped=40   rescued=0    ignored=1
tf-web1                    : ok=80   changed=0    unreachable=0    failed=0    skipped=10   rescued=0    ignored=0

Thursday 26 November 2026  19:40:01 +0000 (0:00:01.100)       0:05:00.000 *****
===============================================================================
teamflow.platform.common : Install the base packages ------------------- 45.12s
teamflow.platform.app : Install the release ---------------------------- 30.50s
teamflow.platform.hardening : Install the firewall, SSH, audit, upgrade and audit-tool packages - 115.45s
Gathering Facts --------------------------------------------------------- 2.00s
"""


def test_playbook_output_gives_recap_and_task_times():
    hosts, tasks = bench.parse_run(PLAYBOOK_OUTPUT)
    assert hosts["tf-app1"] == {"ok": 120, "changed": 3, "unreachable": 0, "failed": 0, "skipped": 40,
                                "rescued": 0, "ignored": 1}
    assert tasks == [("teamflow.platform.common : Install the base packages", 45.12),
                     ("teamflow.platform.app : Install the release", 30.5),
                     # a name too long for profile_tasks' padding keeps one dash
                     ("teamflow.platform.hardening : Install the firewall, SSH, audit, upgrade and audit-tool packages", 115.45),
                     ("Gathering Facts", 2.0)]


def test_the_first_json_object_is_found_among_warnings():
    assert bench.first_json('[WARNING]: x\n{"a": {"b": 1}}\n[WARNING]: y {z}\n') == {"a": {"b": 1}}


def sample_results():
    run = {"strategy": "linear", "hosts": 7, "tasks": 300, "task_results": 1400, "changed": 0, "failed": 0, "wall_s": 140.0,
           "s_per_task": 0.467, "s_per_task_per_host": 0.1, "top_tasks": [{"task": "a : b", "s": 9.5}]}
    latency = {"p50": 10.0, "p95": 40.0, "p99": 80.0, "max": 120.0}
    load_run = {"users": 1000, "target_rate_rps": 200.0, "achieved_rate_rps": 199.1, "completed": 8000, "sent": 8000,
                "latency_ms": latency, "non_2xx": 0, "errors": 0, "by_status": {"200": 8000}}
    machine = {"cpus": 2, "memory_gib": 23.5, "os": "Debian", "kernel": "6", "commit": "abc"}
    return {"date": "2026-11-26 19:00 UTC", "machine": machine,
            "phases": {"converge": {"fresh": run, "noop": run, "noop_mitogen": dict(run, wall_s=70.0, strategy="mitogen_linear"),
                                    "noop_mitogen_vs_default": 0.5, "phase_s": 400.0},
                       "load": {"lb_api": load_run, "direct_api": load_run, "phase_s": 300.0,
                                "target": {"what": "API p95", "users": 1000, "p95_ms": 40.0, "errors": 0, "met": True}}},
            "errors": {}, "total_s": 700.0}


def test_the_report_shows_every_figure_with_its_unit():
    text = report.text_table(sample_results())
    assert "mitogen_linear" in text
    assert "Mitogen / default strategy, no-op rerun with 2 app hosts: wall time x0.50" in text
    assert "met = yes" in text and "latency in ms" in text and "wall s" in text
    markdown = report.markdown(sample_results())
    assert markdown.startswith("_Benchmarks of 2026-11-26 19:00 UTC on 2 CPUs")
    assert "| API, PostgreSQL through Redis, via load balancer (HTTPS) | 1000 | 200.0 |" in markdown


def test_the_failover_table_shows_each_fault_with_what_users_saw():
    fault = {"requests": 360, "failed": 0, "writes": 120, "failed_writes": 0, "reads": 120, "failed_reads": 0,
             "seconds_to_first_write": 1.4, "longest_write_gap_s": 2.1, "slowest_write_ms": 2300.0,
             "leader_before": "tf-db1", "leader_after": "tf-db2", "lost_writes": 0, "rejoin_s": 0.0,
             "latency_ms": {"p50": 10.0, "p95": 40.0, "p99": 80.0, "max": 2300.0}}
    results = sample_results()
    results["phases"]["failover"] = {
        "setup": {"client": "tf-acme", "rate_rps": 9, "database_hosts": ["tf-db1", "tf-db2"]},
        "switchover": fault, "kill9": dict(fault, failed=3, failed_writes=3, leader_before="tf-db2"),
        "host_stopped": dict(fault, seconds_to_first_write=14.2, rejoin_s=9.5),
        "target": {"what": "writes back within 30 s", "met": True}, "phase_s": 200.0}
    markdown = report.markdown(results)
    assert "**Failover of the database tier under load (Patroni)**" in markdown
    assert "| switchover.yml (Patroni picks) | tf-db1 -> tf-db2 | 360 | 0 | 0/120 | 0/120 | 1.40 | 2.10 | 0 | 0.00 |" in markdown
    assert "| kill -9 of the leader's postmaster | tf-db2 -> tf-db2 | 360 | 3 | 3/120 | 0/120 |" in markdown
    assert "| the leader's host killed, then started | tf-db1 -> tf-db2 | 360 | 0 | 0/120 | 0/120 | 14.2 | 2.10 | 0 | 9.50 |" in markdown
    assert "Target (writes back within 30 s): met = yes" in markdown


def test_the_backup_note_says_what_the_bench_read_not_a_fixed_text():
    setup = {"repo1_type": "posix", "repo1_cipher_type": "aes-256-cbc", "process_max": 2, "backup_standby": False,
             "incr_after_transactions": 20000}
    assert report.backup_setup_note(setup) == ("Incremental after 20000 pgbench transactions. repo1 (posix, encrypted, "
                                               "aes-256-cbc), process-max 2, backup from the primary.")
    other = dict(setup, repo1_cipher_type="none", process_max=4, backup_standby=True, incr_after_transactions=500)
    assert report.backup_setup_note(other) == ("Incremental after 500 pgbench transactions. repo1 (posix, not "
                                               "encrypted), process-max 4, backup from the replica (backup-standby).")
    assert report.backup_setup_note(None) == ""  # results from before the bench recorded it


def rewrite(tmp_path, page_text):
    """benchmarks/report.py --readme on a page holding PAGE_TEXT, with sample results; (exit code, page after)."""
    results = tmp_path / "r.json"
    results.write_text(json.dumps(sample_results()))
    page = tmp_path / "page.md"
    page.write_text(page_text)
    return report.main(["--readme", str(page), str(results)]), page.read_text()


def test_the_readme_section_is_replaced_between_the_markers(tmp_path):
    rc, text = rewrite(tmp_path, f"intro\n{report.BEGIN}\nold figures\n{report.END}\nrest\n")
    assert rc == 0
    assert "old figures" not in text and text.startswith("intro\n") and text.endswith(f"{report.END}\nrest\n")
    assert report.markdown(sample_results()) in text


def test_a_summary_section_gets_the_load_and_deploy_tables_only(tmp_path):
    rc, text = rewrite(tmp_path, f"intro\n{report.SUMMARY_BEGIN}\nold\n{report.SUMMARY_END}\nrest\n")
    assert rc == 0
    assert "**Load" in text and "**Phases" not in text and "**Converge" not in text and "old" not in text


def test_a_page_without_markers_is_refused(tmp_path):
    rc, text = rewrite(tmp_path, "no markers\n")
    assert rc == 2 and text == "no markers\n"


def test_the_published_figures_are_the_report_of_the_committed_results():
    """The README's summary and docs/benchmarks.md's tables are benchmarks/report.py's output for latest.json."""
    latest = json.loads((ROOT / "benchmarks" / "results" / "latest.json").read_text())
    hint = "run benchmarks/report.py --readme README.md --readme docs/benchmarks.md"
    readme = (ROOT / "README.md").read_text()
    summary = readme.split(report.SUMMARY_BEGIN, 1)[1].split(report.SUMMARY_END, 1)[0]
    assert summary.strip() == report.markdown(latest, report.SUMMARY_TITLES).strip(), hint
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    section = page.split(report.BEGIN, 1)[1].split(report.END, 1)[0]
    assert section.strip() == report.markdown(latest).strip(), hint


def test_the_pictures_of_a_run_are_pngs_of_its_figures(tmp_path):
    written = plots.write_all(sample_results(), tmp_path, "run")
    assert sorted(p.name for p in written) == ["run-converge.png", "run-load.png", "run-phases.png"]  # no capacity phase
    for path in written:
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and path.stat().st_size > 5000


def test_a_run_without_a_phase_gets_no_picture_of_it(tmp_path):
    results = sample_results()
    del results["phases"]["load"]
    assert [p.name for p in plots.write_all(results, tmp_path, "run")] == ["run-converge.png", "run-phases.png"]


def test_the_published_pictures_are_drawn_from_the_committed_results(tmp_path):
    """docs/benchmarks.md shows benchmarks/results/latest-*.png: what plots.py draws from latest.json."""
    latest = json.loads((ROOT / "benchmarks" / "results" / "latest.json").read_text())
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    for path in plots.write_all(latest, tmp_path, "latest"):
        published = ROOT / "benchmarks" / "results" / path.name
        assert f"../benchmarks/results/{path.name}" in page
        assert published.read_bytes() == path.read_bytes(), "run benchmarks/plots.py"


def test_the_load_notes_say_how_long_a_log_line_took_to_be_found_on_the_log_host():
    results = sample_results()
    results["phases"]["load"]["log_shipping"] = {"lines": 60, "found": 60, "senders": ["tf-web1", "tf-app1"],
                                                 "every_s": 1.0, "p50_s": 1.2, "p95_s": 2.1, "max_s": 3.4}
    text = report.text_table(results)
    assert ("Log shipping during the API run: 60 of 60 lines written on tf-web1, tf-app1 (one every 1.00 s) found on "
            "the log host by teamflow-logs, p50 1.20 s, p95 2.10 s, max 3.40 s after the line was written") in text


def test_users_split_among_processes_keep_the_schedule_and_say_what_the_client_cost(server, tmp_path):
    result = load(tmp_path, "--url", server + "/", "--post", server + "/notes", "--users", "10", "--interval", "0.5",
                  "--duration", "2", "--processes", "2")
    assert result["sent"] == result["completed"] == 40
    assert result["by_status"] == {"200": 20, "201": 20}
    assert result["max_open_connections"] == 10
    assert result["achieved_rate_rps"] > 15
    client = result["client"]
    assert client["processes"] == 2 and client["cpu_s"] > 0 and 0 < client["cpu_cores"] < 2


def capacity_step(rate, p99, failed=0, sent=1000):
    return {"target_rps": rate, "achieved_rps": rate * 0.99, "sent": sent, "errors": failed, "non_2xx": 0,
            "failed_share": failed / sent, "by_status": {"200": sent - failed},
            "latency_ms": {"p50": p99 / 4, "p95": p99 / 2, "p99": p99, "max": p99 * 2},
            "client_cpu_cores": 0.4, "client_processes": 2, "hosts_cpu_cores": {"tf-app1": 0.9, "tf-web1": 0.3}}


def test_capacity_steps_rise_until_the_load_bends_and_keep_the_highest_rate_within_target(monkeypatch):
    """bench.capacity_run with the load client and the CPU counters faked: the rate rises x factor per step, stops at
    the first step past p99 500 ms or 0.1 % failed, and the highest rate within target is a step before it."""
    asked = []

    def fake_userload(label, urls, users, interval, duration, sources=(), processes=1, posts=()):
        rate = users / interval
        asked.append(round(rate))
        p99 = {100: 20.0, 160: 30.0, 256: 90.0}.get(round(rate), 1200.0)
        return {"duration_s": duration, "sent": int(rate * duration), "achieved_rate_rps": rate, "errors": 0,
                "non_2xx": 0, "by_status": {}, "latency_ms": {"p50": 1.0, "p95": p99 / 2, "p99": p99, "max": p99},
                "client": {"cpu_cores": 0.5, "processes": processes}}

    snapshots = iter(range(100))
    monkeypatch.setattr(bench, "userload", fake_userload)
    monkeypatch.setattr(bench, "cpu_snapshot", lambda hosts: {
        "controller": 0.0, "engine": 0.0, "hosts": {"tf-app1": 10.0 * next(snapshots), "tf-mon1": 1.0}})
    monkeypatch.setattr(bench.time, "sleep", lambda seconds: None)
    args = bench.main.__globals__["argparse"].Namespace(capacity_start=100, capacity_factor=1.6, capacity_steps=9,
                                                        capacity_step_s=5, capacity_users=300, capacity_processes=2)
    run = bench.capacity_run(args, "x", ["http://a/health"], [], ["10.0.0.1"] * 400, ["tf-app1", "tf-mon1"])
    assert asked == [100, 160, 256, 410]
    assert run["users"] == 400 and run["bent"] is True
    assert run["max_rps_within_target"] == 256
    assert run["steps"][-1]["hosts_cpu_cores"] == {"tf-app1": 2.0}  # the client's own container is not a host
    assert run["busiest_host_at_last_step"] == "tf-app1"


def test_cpu_used_is_the_difference_of_two_snapshots_and_no_hosts_figure_when_a_host_is_missing():
    before = {"controller": 10.0, "engine": 1.0, "hosts": {"a": 5.0, "b": 7.0}}
    after = {"controller": 12.5, "engine": 1.5, "hosts": {"a": 6.0, "b": 9.5}}
    assert bench.cpu_used(before, after) == {"controller_cpu_s": 2.5, "hosts_cpu_s": 3.5, "engine_cpu_s": 0.5,
                                             "hosts": {"a": 1.0, "b": 2.5}}
    assert bench.cpu_used(dict(before, hosts={"a": 5.0}), after)["hosts_cpu_s"] is None


def test_the_capacity_tables_say_where_each_endpoint_bent_and_what_more_app_hosts_buy(tmp_path):
    results = sample_results()
    runs = {"steps": [capacity_step(100, 20.0), capacity_step(160, 60.0), capacity_step(256, 800.0, failed=5)],
            "users": 300, "sources": 300, "max_rps_within_target": 158.4, "bent": True,
            "busiest_host_at_last_step": "tf-app1", "busiest_host_cpu_cores": 0.9, "client_cpu_cores_at_last_step": 0.4}
    results["phases"]["capacity"] = {
        "setup": {"client": "tf-mon1", "client_addresses": 300, "users": 300, "client_processes": 2, "start_rps": 100,
                  "factor": 1.6, "step_s": 5, "max_steps": 9, "bend": "p99 > 500 ms", "target": "p95 < 500 ms",
                  "app_hosts": 2, "api_rate_limit_per_address": "10r/s"},
        "lb_api_read": runs, "direct_health": dict(runs, bent=False),
        "connections": {"holder": "tf-web1", "max_held_without_errors": 5000, "steps": [
            {"users": 5000, "rate_rps": 500.0, "sent": 15000, "failed": 0, "reconnects": 0, "server_established": 5001,
             "nginx_kib_idle": 10240, "nginx_kib_held": 61440, "nginx_kib_per_connection": 10.2,
             "latency_ms": {"p99": 30.0}}]}}
    results["phases"]["scale"] = {"app_hosts": 4, "lb_api_read": dict(runs, max_rps_within_target=237.6)}
    markdown = report.markdown(results)
    assert ("| API read via load balancer | 3 | 158.4 | 256 | 253.4 | 800.0 | 0.50% | yes | tf-app1 0.90 | 0.40 | 1.60 |"
            in markdown)
    assert "| /health at one app host | 3 | 158.4 | 256 | 253.4 | 800.0 | 0.50% | NO |" in markdown
    assert ("Scale-out, API reads through the load balancer: 158.4 requests/s within target with 2 app hosts, 237.6 with 4: "
            "x1.50") in markdown
    assert "| 5000 | 500.0 | 15000 | 0 | 0 | 5001 | 10.0 | 60.0 | 10.2 | 30.0 |" in markdown
    assert "Held (0 failed, 0 reconnects): 5000." in markdown
    assert "| API read via load balancer | 3 | 256 | 253.4 | 200.0 | 400.0 | 800.0 | 1600 | 5 | 0 | 0.40 | tf-app1 0.90, tf-web1 0.30 |" in markdown
    assert "**Capacity (" in report.markdown(results, report.SUMMARY_TITLES)
    written = plots.write_all(results, tmp_path, "run")
    assert "run-capacity.png" in [p.name for p in written]


def test_the_faults_picture_shows_each_fault_that_recorded_its_timeline(tmp_path):
    results = sample_results()
    timeline = [[second, 9, 0] if second != 10 else [10, 3, 6] for second in range(40)]
    results["phases"]["failover"] = {"kill9": {"timeline": timeline, "fault_at_s": 10.0}, "switchover": {"failed": 0}}
    results["phases"]["faults"] = {"redis_stopped": {"timeline": timeline, "fault_at_s": 5.0, "undo_at_s": 35.0}}
    written = plots.write_all(results, tmp_path, "run")
    assert "run-faults.png" in [p.name for p in written]
    del results["phases"]["failover"], results["phases"]["faults"]  # results from before the timelines
    assert "run-faults.png" not in [p.name for p in plots.write_all(results, tmp_path, "old")]
