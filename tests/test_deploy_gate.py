"""What the deploy's health gates accept (playbooks/deploy.yml with the health_gate module's own check).

The reference app's /health says `degraded` (HTTP 200) while Redis is down: the API serves from PostgreSQL.
The decision: a deploy does not go on while a dependency is down, so no gate of deploy.yml passes it."""

import json

import pytest
import yaml

from conftest import COLLECTION
from ansible_collections.teamflow.platform.plugins.module_utils import health

pytestmark = pytest.mark.unit

OK = {"status": "ok", "version": "1.2.0", "database": "ok", "redis": "ok"}
DEGRADED = {"status": "degraded", "version": "1.2.0", "database": "ok", "redis": "error: ConnectionError",
            "reasons": ["redis: error: ConnectionError"]}


def gates():
    """(name, expected_json) of every health_gate task of deploy.yml, with the version the gate asks for."""
    found = []

    def walk(tasks):
        for task in tasks or []:
            for key in ("block", "rescue", "always"):
                walk(task.get(key))
            gate = task.get("teamflow.platform.health_gate")
            if gate:
                expected = {k: ("1.2.0" if "{{" in str(v) else v) for k, v in gate["expected_json"].items()}
                found.append((task["name"], expected))

    for play in yaml.safe_load((COLLECTION / "playbooks" / "deploy.yml").read_text()):
        walk(play.get("tasks"))
    return found


def test_deploy_has_its_gates():
    assert len(gates()) >= 3


@pytest.mark.parametrize("name, expected", gates(), ids=[name for name, _ in gates()])
def test_every_gate_passes_ok_and_refuses_degraded(name, expected):
    assert health.evaluate(200, json.dumps(OK), 5, [200], expected) == (True, None)
    passed, reason = health.evaluate(200, json.dumps(DEGRADED), 5, [200], expected)
    assert not passed and reason == 'status is "degraded", expected "ok"', reason
