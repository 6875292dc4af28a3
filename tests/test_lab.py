"""`make lab` brings the lab up, a second `make lab` changes nothing, `make lab-destroy` removes it."""

import json
import re
import subprocess

import ansible_runner
import pytest
import yaml

from conftest import LOGS, ROOT, run, tail

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


def site(*args, env=None):
    """Run site.yml on the lab; (rc, output)."""
    return run(["ansible-playbook", "-i", "inventories/lab", "--vault-password-file", ".lab/vault-password",
                "playbooks/site.yml", *args], "site-" + "-".join(a.strip("-") for a in args)[:60], env=env)


NOT_ROLE_TASKS = {"ansible.builtin.validate_argument_spec", "validate_argument_spec",
                  "ansible.builtin.gather_facts", "gather_facts"}


def test_tags_nginx_runs_nginx_tasks_only(lab):
    """--tags nginx: every task that runs is nginx's (a JSON callback lists them). Ansible itself adds each
    role's argument validation (validate_argument_spec, tagged always: it checks, it changes nothing) and
    fact gathering; those are not the roles' tasks."""
    rc, out = site("--tags", "nginx", env={"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"})
    assert rc == 0, tail(out)
    report, _ = json.JSONDecoder().raw_decode(out[out.index("{"):])
    ran = []
    for play in report["plays"]:
        for task in play["tasks"]:
            actions = {result.get("action") for result in task["hosts"].values()}
            if not task["hosts"] or actions <= NOT_ROLE_TASKS:
                continue
            ran.append(task["task"]["name"])
    assert ran, "no nginx task ran"
    others = [name for name in ran if not name.startswith("teamflow.platform.nginx : ")]
    assert others == []
    assert report["stats"]["tf-web1"]["changed"] == 0


# --- AWX job templates (awx/job_templates.yml) through ansible-runner ------------------------

TEMPLATES = yaml.safe_load((ROOT / "awx" / "job_templates.yml").read_text())["awx_job_templates"]
# answers to survey fields that have no default: a release that is not the lab's
# (built by the test), so App deploy switches and App rollback has one to go back to
LAB_ANSWERS = {"app_version": "1.1.0"}


@pytest.fixture(scope="module")
def second_release(lab):
    rc, out = run(["make", "release", "VERSION=1.1.0"], "make-release-1.1.0")
    assert rc == 0, tail(out)


@pytest.mark.parametrize("template", TEMPLATES, ids=[t["name"].split(" - ", 1)[1] for t in TEMPLATES])
def test_awx_job_template_runs_green_with_ansible_runner(lab, second_release, template, tmp_path):
    extravars = {field["variable"]: field["default"] if "default" in field else LAB_ANSWERS[field["variable"]]
                 for field in template["survey"]}
    result = ansible_runner.run(
        private_data_dir=str(tmp_path), project_dir=str(ROOT), playbook=template["playbook"],
        inventory=str(ROOT / "inventories" / "lab"), tags=template["job_tags"] or None,
        limit=template["limit"] or None, extravars=extravars,
        cmdline=f"--vault-password-file {ROOT / '.lab' / 'vault-password'} --diff",
        envvars={"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"},
        quiet=True,
    )
    output = result.stdout.read()
    (LOGS / f"awx-{template['name'].split(' - ', 1)[1].replace(' ', '-').lower()}.log").write_text(output)
    assert (result.status, result.rc) == ("successful", 0), output[-3000:]
    assert result.stats["failures"] == {} and result.stats["dark"] == {}
