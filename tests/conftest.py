"""Shared helpers of the repo's test suite (`make test`).

Every check is a pytest test, so one run ends with pytest's summary line. Long
commands stream their output to artifacts/logs/<name>.log; a failing one shows
the tail of its log in the assertion.
"""

import os
import pathlib
import re
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
COLLECTION = ROOT / "ansible_collections" / "teamflow" / "platform"
LOGS = ROOT / "artifacts" / "logs"

# Run order: cheap checks first, so a lint error fails in seconds, not after the scenarios; with lanes
# (make test: pytest -n 2, tests/test_molecule.py), every lane but the last before them: the first worker
# starts the longest lane at once, the other runs the checks, then the last lane.
_ORDER = {"static": 0, "unit": 1, "molecule": 2}
_LANE = re.compile(r"::TestLane(\d+)::")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if COLLECTION / "tests" / "unit" in pathlib.Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.unit)
    lanes = [int(m.group(1)) for m in map(_LANE.search, (item.nodeid for item in items)) if m]
    last_lane = max(lanes, default=0)

    def rank(item):
        lane = _LANE.search(item.nodeid)
        if lane and int(lane.group(1)) < last_lane:
            return -1
        for name, value in _ORDER.items():
            if item.get_closest_marker(name):
                return value
        return len(_ORDER)

    items.sort(key=rank)


# The checks count no seconds; the scenarios' load and fault tests do (failed requests, seconds to recover).
# Side by side on a 2-core machine (make test), the checks yield the CPU: a check runs at this niceness,
# the commands it starts too. Only where the worker can take it back afterwards (root: make test in CI),
# so that a lane run by the same worker later is not slowed.
CHECKS_NICENESS = 10


@pytest.fixture(autouse=True)
def _checks_yield_the_cpu(request):
    before = os.getpriority(os.PRIO_PROCESS, 0)
    if request.node.get_closest_marker("molecule") or os.geteuid() != 0 or before >= CHECKS_NICENESS:
        yield
        return
    os.setpriority(os.PRIO_PROCESS, 0, CHECKS_NICENESS)
    try:
        yield
    finally:
        os.setpriority(os.PRIO_PROCESS, 0, before)


def pytest_xdist_make_scheduler(config, log):
    """`make test`'s scheduler: xdist's loadscope, except that a worker running a lane of molecule scenarios
    (tests/test_molecule.py) takes no more work while two tests of its lane are left.

    loadscope gives a worker one more scope whenever it has two tests or fewer left, and a worker runs a test
    only once it knows the next one or that there is none. The first lane (site alone) was one test, so its
    worker took the next lane at once and ran both one after the other, while the other worker, its checks
    done, stopped for want of work: that happened to a clean-clone run. Each lane now ends with a check of its
    own, so its worker starts it at once, and takes more work only for its last test.
    """
    if config.getoption("dist", None) != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class LaneScheduling(LoadScopeScheduling):
        def _reschedule(self, node):
            for scope, work in self.assigned_work.get(node, {}).items():
                if "::TestLane" in scope and sum(not done for done in work.values()) >= 2:
                    return
            super()._reschedule(node)

    return LaneScheduling(config, log)


def run(argv, log_name, cwd=ROOT, env=None, timeout=3600):
    """Run argv, writing its output to artifacts/logs/<log_name>.log.

    Returns (returncode, output). The environment is this process's, with the
    lab's bin and the venv first on PATH (as make sets them) and ansible.cfg of the repo in force.
    """
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{log_name}.log"
    full_env = dict(os.environ)
    full_env["PATH"] = os.pathsep.join([str(ROOT / "lab" / "bin"), str(ROOT / ".venv" / "bin"), full_env.get("PATH", "")])
    full_env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    full_env.setdefault("ANSIBLE_FORCE_COLOR", "0")
    full_env["PY_COLORS"] = "0"
    full_env.update(env or {})
    began = time.monotonic()
    with open(log, "w", encoding="utf-8") as out:
        out.write(f"$ {' '.join(str(a) for a in argv)}   (in {cwd})\n")
        out.flush()
        proc = subprocess.run(
            [str(a) for a in argv],
            cwd=cwd,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    output = log.read_text(encoding="utf-8", errors="replace")
    # in the log only (callers parse the output): how long it took, what MINUTES in
    # test_molecule.py is kept from
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"\n# exit {proc.returncode} after {time.monotonic() - began:.0f} s\n")
    return proc.returncode, output


# A failed task (not one ignore_errors lets through), a failed retry loop, or a failed test of a verifier.
FAILURE = re.compile(r"^(fatal: |failed: |ERROR! |\S+ \| FAILED|.*FAILED - RETRYING: .* \(1 retries left\)|FAILED \S+::)")


def _ignored(lines, number):
    """True when the failure at NUMBER is followed by '...ignoring' before the next task."""
    for line in lines[number + 1:number + 80]:
        if line.startswith("TASK ["):
            return False
        if line.startswith("...ignoring"):
            return True
    return False


def tail(text, lines=60):
    """The last `lines` lines, after the task headers and messages of the first failures.

    A scenario's end is its destroy step; what went wrong is printed long before it."""
    all_lines = text.splitlines()
    failures = []
    for number, line in enumerate(all_lines):
        if len(failures) < 5 and FAILURE.match(line) and not _ignored(all_lines, number):
            header = next((all_lines[n] for n in range(number, max(number - 40, -1), -1)
                           if all_lines[n].startswith("TASK [")), "")
            failures.append("\n".join([header] + all_lines[number:number + 25]))
    head = ["--- first failures ---", *failures, "--- end of the output ---"] if failures else []
    return "\n".join(head + all_lines[-lines:])


def roles():
    return sorted(p.name for p in (COLLECTION / "roles").iterdir() if (p / "tasks").is_dir())
