"""Fixtures the site lab's test files share."""

import subprocess

import pytest
import yaml
from scenario_helpers import PROJECT

LAB = PROJECT / "inventories" / "lab"
VAULT_PASSWORD = PROJECT / ".lab" / "vault-password"


@pytest.fixture(scope="session")
def secrets():
    """The lab's vault (random per machine, made at the first `make lab`)."""
    plain = subprocess.run(["ansible-vault", "view", "--vault-password-file", str(VAULT_PASSWORD),
                            str(LAB / "group_vars" / "all" / "vault.yml")],
                           capture_output=True, text=True, check=True).stdout
    return yaml.safe_load(plain)
