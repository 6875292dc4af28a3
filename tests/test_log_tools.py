"""The log host's tools (role log_server, files/): the retention of the stores and the search, on directories of
stored lines made here. The lab runs them on real shipped logs (molecule/site/tests/test_site_logs.py)."""

import datetime
import json
import os
import subprocess
import sys

import pytest

from conftest import COLLECTION

pytestmark = pytest.mark.unit

FILES = COLLECTION / "roles" / "log_server" / "files"
TODAY = datetime.datetime.now(datetime.timezone.utc).date()


def day(offset):
    return (TODAY - datetime.timedelta(days=offset)).isoformat()


def store_line(when, host, message, severity="info", ident="app", unit="teamflow.service"):
    return json.dumps({"time": when, "host": host, "severity": severity, "ident": ident, "unit": unit, "pid": "1",
                       "message": message}) + "\n"


def write(root, store, offset, host, text):
    path = root / store / day(offset)
    path.mkdir(parents=True, exist_ok=True)
    with open(path / f"{host}.jsonl", "a") as out:
        out.write(text)
    return path / f"{host}.jsonl"


def retention(root, *args):
    return subprocess.run([sys.executable, FILES / "teamflow_logs_retention.py", "--dir", root, *args],
                          capture_output=True, text=True, check=True)


def test_each_store_keeps_its_days(tmp_path):
    for offset in range(0, 40):
        write(tmp_path, "main", offset, "tf-app1", "x\n")
        write(tmp_path, "debug", offset, "tf-app1", "x\n")
    retention(tmp_path, "--store", "main:30:1000000", "--store", "debug:7:1000000")
    assert sorted(os.listdir(tmp_path / "main")) == sorted(day(offset) for offset in range(30))
    assert sorted(os.listdir(tmp_path / "debug")) == sorted(day(offset) for offset in range(7))


def test_a_store_over_its_cap_loses_its_oldest_days_then_a_flood_empties_todays_largest_file(tmp_path):
    for offset in range(3):
        write(tmp_path, "main", offset, "tf-app1", "x" * 100)
    run = retention(tmp_path, "--store", "main:30:250")
    assert sorted(os.listdir(tmp_path / "main")) == [day(1), day(0)]
    assert "removed" in run.stdout
    write(tmp_path, "main", 0, "tf-web1", "y" * 1000)
    run = retention(tmp_path, "--store", "main:30:250")
    assert os.listdir(tmp_path / "main") == [day(0)]
    assert (tmp_path / "main" / day(0) / "tf-web1.jsonl").stat().st_size == 0
    assert (tmp_path / "main" / day(0) / "tf-app1.jsonl").stat().st_size == 100
    assert "emptied" in run.stdout


def test_too_little_free_space_removes_the_oldest_days_debug_first_but_not_today(tmp_path):
    for offset in range(3):
        write(tmp_path, "main", offset, "tf-app1", "x\n")
        write(tmp_path, "debug", offset, "tf-app1", "x\n")
    retention(tmp_path, "--store", "main:30:1000000", "--store", "debug:7:1000000", "--keep-free", str(10 ** 18))
    assert os.listdir(tmp_path / "main") == [day(0)] and os.listdir(tmp_path / "debug") == [day(0)]


def test_the_metrics_give_each_stores_size_and_each_hosts_last_line(tmp_path):
    write(tmp_path, "main", 0, "tf-app1", "x" * 10)
    write(tmp_path, "debug", 0, "tf-app1", "x" * 5)
    textfile = tmp_path / "teamflow_logs.prom"
    retention(tmp_path, "--store", "main:30:1000", "--store", "debug:7:500", "--textfile", str(textfile),
              "--host", "tf-app1", "--host", "tf-web1")
    metrics = dict(line.rsplit(" ", 1) for line in textfile.read_text().splitlines() if not line.startswith("#"))
    assert metrics['teamflow_logs_store_bytes{store="main"}'] == "10"
    assert metrics['teamflow_logs_store_max_bytes{store="debug"}'] == "500"
    assert metrics['teamflow_logs_store_retention_days{store="main"}'] == "30"
    assert metrics['teamflow_logs_last_received_timestamp_seconds{host="tf-web1"}'] == "0"
    assert abs(float(metrics['teamflow_logs_last_received_timestamp_seconds{host="tf-app1"}'])
               - (tmp_path / "main" / day(0) / "tf-app1.jsonl").stat().st_mtime) < 1


# --- teamflow-logs ------------------------------------------------------------------------------

@pytest.fixture()
def stores(tmp_path):
    now = datetime.datetime.now(datetime.timezone.utc)
    at = (now - datetime.timedelta(minutes=5)).isoformat()
    old = (now - datetime.timedelta(days=2)).isoformat()
    write(tmp_path, "main", 0, "tf-web1", store_line(at, "tf-web1", '{"request_id":"req-12345678","status":200}',
                                                     ident="nginx_access", unit="nginx.service"))
    write(tmp_path, "main", 0, "tf-app1", store_line(at, "tf-app1", '{"request_id":"req-12345678","msg":"GET"}'))
    write(tmp_path, "main", 0, "tf-app1", store_line(at, "tf-app1", "failed", severity="err"))
    write(tmp_path, "main", 2, "tf-app1", store_line(old, "tf-app1", '{"request_id":"req-12345678","msg":"old"}'))
    write(tmp_path, "debug", 0, "tf-app1", store_line(at, "tf-app1", "debug detail", severity="debug"))
    return tmp_path


def search(root, *args):
    run = subprocess.run([sys.executable, FILES / "teamflow_logs_search.py", "--json", *args], capture_output=True, text=True,
                         env=dict(os.environ, TEAMFLOW_LOGS_DIR=str(root)), check=False)
    assert run.returncode in (0, 1), run.stderr
    return [json.loads(line) for line in run.stdout.splitlines()]


def test_a_request_id_finds_its_lines_from_every_host_within_the_time_range(stores):
    found = search(stores, "--request-id", "req-12345678")
    assert sorted(line["host"] for line in found) == ["tf-app1", "tf-web1"]
    assert len(search(stores, "--request-id", "req-12345678", "--since", "3d")) == 3
    assert search(stores, "--request-id", "req-12345678", "--host", "tf-web1")[0]["ident"] == "nginx_access"


def test_level_unit_and_store_narrow_the_search(stores):
    assert [line["message"] for line in search(stores, "--level", "err")] == ["failed"]
    assert len(search(stores, "--unit", "nginx")) == 1
    assert search(stores, "--store", "debug")[0]["message"] == "debug detail"
    assert "debug detail" in [line["message"] for line in search(stores, "--level", "debug")]
    assert "debug detail" not in [line["message"] for line in search(stores)]


def test_a_bad_time_or_level_is_refused_with_a_message(stores):
    run = subprocess.run([sys.executable, FILES / "teamflow_logs_search.py", "--since", "yesterday"], capture_output=True,
                         text=True, env=dict(os.environ, TEAMFLOW_LOGS_DIR=str(stores)), check=False)
    assert run.returncode == 2 and "--since" in run.stderr and "age" in run.stderr
