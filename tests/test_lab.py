"""`make lab` brings the lab up, a second `make lab` changes nothing, `make lab-destroy` removes it."""

import re
import subprocess

import pytest

from conftest import run, tail

pytestmark = pytest.mark.lab

RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def recap(output):
    """Host -> (ok, changed, unreachable, failed) of the last PLAY RECAP in output."""
    last = output.rsplit("PLAY RECAP", 1)[-1]
    return {m[0]: tuple(int(x) for x in m[1:]) for m in RECAP.findall(last)}


def lab_containers():
    out = subprocess.run(
        ["docker", "ps", "-a", "--filter", "label=owner=teamflow-lab", "--format", "{{.Names}}"],
        capture_output=True, text=True, check=True,
    ).stdout
    return sorted(out.split())


@pytest.fixture(scope="module")
def lab():
    rc, out = run(["make", "lab"], "make-lab-1")
    assert rc == 0, tail(out)
    yield out
    rc, down = run(["make", "lab-destroy"], "make-lab-destroy")
    assert rc == 0, tail(down)
    assert lab_containers() == []


def test_make_lab_converges_every_lab_host(lab):
    hosts = recap(lab)
    assert sorted(hosts) == lab_containers()
    assert len(hosts) >= 7
    for host, (ok, _changed, unreachable, failed) in hosts.items():
        assert (unreachable, failed) == (0, 0), host
        assert ok > 0, host


def test_make_lab_prints_where_the_stack_answers(lab):
    for name in lab_containers():
        assert re.search(rf"^\s+{name}\s+\d+\.\d+\.\d+\.\d+", lab, re.M), name


def test_second_make_lab_changes_nothing(lab):
    rc, out = run(["make", "lab"], "make-lab-2")
    assert rc == 0, tail(out)
    hosts = recap(out)
    assert sorted(hosts) == lab_containers()
    changed = {host: counts[1] for host, counts in hosts.items() if counts[1] != 0}
    assert changed == {}, f"second make lab changed something: {changed}\n{tail(out)}"
    assert "changed=0 on every host" in out
