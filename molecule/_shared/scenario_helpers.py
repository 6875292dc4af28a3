"""Helpers the scenarios' testinfra tests share (pytest.ini puts this directory on sys.path).

    from scenario_helpers import ansible_playbook, scenario_host
"""

import os
import pathlib
import subprocess

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
