#!/usr/bin/env python3
"""Create the lab's vault, or add the secrets it lacks.

    lab/vault.py            (run by molecule/site/create.yml: `make lab`)

The lab's vault password (.lab/vault-password) and its vault
(inventories/lab/group_vars/all/vault.yml) are made on this machine at the first
`make lab`, with random values, and never committed. Each name listed in
lab/secrets.txt gets a random value the first time it appears; existing values
are kept, so a rerun changes nothing.
"""

import os
import pathlib
import secrets
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
PASSWORD_FILE = ROOT / ".lab" / "vault-password"
VAULT = ROOT / "inventories" / "lab" / "group_vars" / "all" / "vault.yml"
NAMES = ROOT / "lab" / "secrets.txt"


def vault(*args, data=None):
    # this password file only: with a second one (molecule's ANSIBLE_VAULT_PASSWORD_FILE,
    # the same password) ansible-vault would not know which to encrypt with
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_VAULT_PASSWORD_FILE"}
    return subprocess.run(
        ["ansible-vault", *args, "--vault-password-file", str(PASSWORD_FILE)],
        input=data, capture_output=True, text=True, check=True, env=env,
    ).stdout


def main():
    PASSWORD_FILE.parent.mkdir(parents=True, exist_ok=True)
    if not PASSWORD_FILE.exists():
        PASSWORD_FILE.touch(mode=0o600)
        PASSWORD_FILE.write_text(secrets.token_urlsafe(32) + "\n")
    os.chmod(PASSWORD_FILE, 0o600)

    wanted = [line.split("#")[0].strip() for line in NAMES.read_text().splitlines()]
    wanted = [name for name in wanted if name]
    current = yaml.safe_load(vault("view", str(VAULT))) if VAULT.exists() else {}
    current = current or {}
    missing = [name for name in wanted if name not in current]
    if not missing:
        return 0
    for name in missing:
        current[name] = secrets.token_urlsafe(24)
    plain = "---\n# The lab's secrets, random per machine (lab/vault.py).\n" + yaml.safe_dump(current, sort_keys=True)
    encrypted = vault("encrypt", "--output", "-", "-", data=plain)
    VAULT.write_text(encrypted)
    os.chmod(VAULT, 0o600)
    print(f"lab/vault.py: {VAULT.relative_to(ROOT)} now holds {', '.join(missing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
