"""`molecule test` for every scenario under molecule/ (each with a molecule.yml).

`make test` runs `pytest -n 2 --dist loadscope`: xdist gives each test class to
one worker, so the scenarios are split in lanes (one class per lane) and two of
them run at a time. The static and unit checks are scopes of their own and run
first on the other worker. Scenarios go to the lane with the least work so far,
longest first, by the minutes they took in the last clean-clone CI run, so the
lanes end within a few minutes of each other without a hand-kept list.
"""

import os

import pytest
import yaml

from conftest import ROOT, run, tail

SCENARIOS = sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))

# Minutes each took on this project's 2-core machine, two lanes side by side: "# exit N after S s"
# at the end of each log; "checks": the static and unit tests, from the start of the run to the first
# scenario of their lane (13 min beside site's converge; 6 alone). Measured in the clean-clone run of
# cefd093 (2026-12-07, 64.9 min in all: the lane with the checks ended 7.5 min after site's, which these
# figures even out). Only their ratios matter: they split the lanes.
MINUTES = {
    "checks": 13.0, "site": 55.0, "compact": 14.5, "postgresql": 8.5, "pgbackrest": 6.1, "certbot": 5.3, "nginx": 4.7,
    "file_backup": 5.0, "app": 2.7, "pki": 2.4, "hardening": 2.3, "common": 1.8, "monitoring": 1.8, "node_exporter": 1.6, "redis": 1.1,
}
DEFAULT_MINUTES = 6

# run()'s limit is an hour a command. site (the whole lab: nine hosts, the AWX templates, every fault)
# came within minutes of it with the other lane beside it, and was stopped at it during its last checks in
# the clean-clone run of 7150bdd: it has 75 minutes, the suite's own ceiling.
TIMEOUT_MINUTES = {"site": 75}


def lanes(scenarios, count):
    """Split scenarios in `count` lanes of about equal minutes (longest first)."""
    load = [0.0] * count
    if count > 1:
        load[-1] = MINUTES["checks"]  # the last lane starts when the checks are done
    split = [[] for _ in range(count)]
    for scenario in sorted(scenarios, key=lambda name: (-MINUTES.get(name, DEFAULT_MINUTES), name)):
        lane = load.index(min(load))
        load[lane] += MINUTES.get(scenario, DEFAULT_MINUTES)
        split[lane].append(scenario)
    return [sorted(lane) for lane in split if lane]


def _lane(scenarios):
    class Lane:
        @pytest.mark.molecule
        @pytest.mark.parametrize("scenario", scenarios)
        def test_molecule_scenario(self, scenario):
            rc, out = run(["molecule", "test", "--scenario-name", scenario], f"molecule-{scenario}",
                          timeout=60 * TIMEOUT_MINUTES.get(scenario, 60))
            assert rc == 0, tail(out, 120)

        # Last in its lane, so a lane is never a single test: an xdist worker holds its last test until it
        # knows the next one or that there is none, and tests/conftest.py's scheduler gives a worker that
        # runs a lane nothing else while two of the lane's tests are left (the first lane would wait).
        @pytest.mark.molecule
        def test_the_lanes_scenarios_left_no_container(self):
            names = {platform["name"] for scenario in scenarios
                     for platform in yaml.safe_load((ROOT / "molecule" / scenario / "molecule.yml").read_text())
                     .get("platforms", [])}
            rc, out = run(["docker", "ps", "--all", "--format", "{{.Names}}"], "lane-containers")
            assert rc == 0, out
            left = names & set(out.split())
            assert not left, f"containers the scenarios' destroy left behind: {sorted(left)}"

    return Lane


# PYTEST_XDIST_WORKER_COUNT: set by pytest-xdist in its workers (pytest -n N)
for _number, _scenarios in enumerate(lanes(SCENARIOS, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))), 1):
    globals()[f"TestLane{_number}"] = _lane(_scenarios)
