"""Helpers the scenarios' testinfra tests share (pytest.ini puts this directory on sys.path).

    from scenario_helpers import ansible_playbook, scenario_host, task_outcomes
"""

import json
import os
import pathlib
import subprocess
import time

import testinfra

PROJECT = pathlib.Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", pathlib.Path(__file__).resolve().parents[2]))


def scenario_host(name):
    """A testinfra host of the running scenario, by its inventory name."""
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


def ansible_playbook(playbook, *extra, env=None, inventories=None):
    """Run a playbook against the scenario's inventory with the repo's ansible.cfg; the CompletedProcess.

    PLAYBOOK is a path (a scenario's own playbook, or one of playbooks/); ENV adds variables; INVENTORIES
    (paths) replace the scenario's inventory.
    """
    # plain output to match against (molecule's own runs force colour)
    environment = dict(os.environ, ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(PROJECT),
                       ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    environment.update(env or {})
    return subprocess.run(
        ["ansible-playbook", *[arg for path in inventories or [os.environ["MOLECULE_INVENTORY_FILE"]] for arg in ("-i", str(path))],
         str(playbook), *extra],
        capture_output=True, text=True, env=environment, check=False,
    )


def task_outcomes(playbook, *extra, inventories=None, env=None):
    """Run a playbook (as ansible_playbook does) and say what each task did on each host.

    Returns the CompletedProcess and {task name (without its role): {host: outcome}}, where outcome is
    "changed", "ok", "skipped" or "failed"; for a loop, a list of them, item by item.
    A task that ran in several plays keeps its last outcome.
    """
    import json

    run = ansible_playbook(playbook, *extra, env={"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", **(env or {})},
                           inventories=inventories)
    report = json.JSONDecoder().raw_decode(run.stdout[run.stdout.index("{"):])[0]

    def outcome(result):
        if result.get("failed") or result.get("unreachable"):
            return "failed"
        if result.get("skipped"):
            return "skipped"
        return "changed" if result.get("changed") else "ok"

    outcomes = {}
    for play in report["plays"]:
        for task in play["tasks"]:
            for name, result in task["hosts"].items():
                items = result.get("results")
                outcomes.setdefault(task["task"]["name"].split(" : ", 1)[-1], {})[name] = (
                    [outcome(item) for item in items] if isinstance(items, list) and items else outcome(result))
    return run, outcomes


_PROMETHEUS_GET = """
import json, sys, urllib.parse, urllib.request
url = sys.argv[1] + sys.argv[2] + ("?" + urllib.parse.urlencode(json.loads(sys.argv[3])) if sys.argv[3] != "{}" else "")
print(urllib.request.urlopen(url, timeout=10).read().decode())
"""


def prometheus_api(monitor, path, **params):
    """GET Prometheus' HTTP API on the monitoring host (testinfra host MONITOR) from that host.

    Prometheus listens on the host's private address (prometheus_listen_address); the
    answer's "data" is returned, after checking its status.
    """
    import json

    address = monitor.check_output("hostname -I").split()[0]
    out = monitor.check_output("python3 -c %s %s %s %s", _PROMETHEUS_GET, f"http://{address}:9090", path,
                               json.dumps(params))
    answer = json.loads(out)
    assert answer["status"] == "success", answer
    return answer["data"]


def wait_for(check, timeout, interval=2):
    """CHECK() until it returns something true, or its last value after TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


# --- a Patroni cluster (molecule/postgresql, the site lab) ------------------------------------

def superuser_sql(name, sql, database="teamflow"):
    """SQL as postgres on host NAME (over its local socket); psql's unaligned output."""
    return scenario_host(name).check_output(f"runuser -u postgres -- psql -XAtq -d {database} -c %s", sql)


_PATRONI_GET = """
import json, ssl, sys, urllib.request as u
c = ssl.create_default_context(cafile='/etc/teamflow-pki/ca.crt')
try:
    print(u.urlopen(sys.argv[1], context=c, timeout=5).read().decode())
except Exception:
    print('{}')
"""


def patroni_api(name, path="patroni"):
    """GET https://NAME:8008/PATH on the member itself; the JSON, or {} when it does not answer."""
    result = scenario_host(name).run("python3 -c %s %s", _PATRONI_GET, f"https://{name}:8008/{path}")
    return json.loads(result.stdout or "{}") if result.rc == 0 else {}


def patroni_leader(members):
    """The member of MEMBERS that leads, by its own REST API; None when none does."""
    for name in members:
        if patroni_api(name).get("role") in ("master", "primary"):
            return name
    return None


def wal_streaming(name):
    """Whether NAME's WAL receiver streams from a leader (False while its server does not take connections yet,
    as a replica that is still recovering)."""
    result = scenario_host(name).run("runuser -u postgres -- psql -XAtq -d teamflow -c %s",
                                     "SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), 'none')")
    return result.rc == 0 and result.stdout.strip() == "streaming"
