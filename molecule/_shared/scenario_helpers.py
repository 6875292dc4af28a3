"""Helpers the scenarios' testinfra tests share (pytest.ini puts this directory on sys.path).

    from scenario_helpers import ansible_playbook, scenario_host
"""

import os
import pathlib
import subprocess
import time

import testinfra

PROJECT = pathlib.Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", pathlib.Path(__file__).resolve().parents[2]))


def scenario_host(name):
    """A testinfra host of the running scenario, by its inventory name."""
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


def ansible_playbook(playbook, *extra, env=None):
    """Run a playbook against the scenario's inventory with the repo's ansible.cfg; the CompletedProcess.

    PLAYBOOK is a path (a scenario's own playbook, or one of playbooks/); ENV adds variables.
    """
    # plain output to match against (molecule's own runs force colour)
    environment = dict(os.environ, ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(PROJECT),
                       ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    environment.update(env or {})
    return subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(playbook), *extra],
        capture_output=True, text=True, env=environment, check=False,
    )


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
