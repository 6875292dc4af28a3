# -*- coding: utf-8 -*-
# Copyright: TeamFlow platform engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A secret as rclone's configuration file takes it (docs: rclone_obscure.yml)."""

from __future__ import annotations

import base64
import hashlib

from ansible.errors import AnsibleFilterError

try:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
except ImportError:  # pragma: no cover - ansible-core depends on it
    Cipher = None

# rclone's fixed key for "obscured" configuration values (fs/config/obscure): obscuring hides a secret from a
# glance at the file, it does not protect it (anyone with rclone reveals it): the file stays mode 0600
_KEY = bytes((0x9c, 0x93, 0x5b, 0x48, 0x73, 0x0a, 0x55, 0x4d, 0x6b, 0xfd, 0x7c, 0x63, 0xc8, 0x86, 0xa9, 0x2b,
              0xd3, 0x90, 0x19, 0x8e, 0xb8, 0x12, 0x8a, 0xfb, 0xf4, 0xde, 0x16, 0x2b, 0x8b, 0x95, 0xf6, 0x38))


def rclone_obscure(secret):
    """`rclone obscure SECRET`, with an IV derived from the secret instead of a random one: the same secret gives
    the same text, so a configuration file written from it changes only when the secret does."""
    if Cipher is None:
        raise AnsibleFilterError("rclone_obscure needs the Python library cryptography on the controller")
    if not isinstance(secret, str) or not secret:
        raise AnsibleFilterError("rclone_obscure takes a secret that is not empty")
    plain = secret.encode("utf-8")
    iv = hashlib.sha256(b"teamflow rclone_obscure " + plain).digest()[:16]
    encryptor = Cipher(algorithms.AES(_KEY), modes.CTR(iv)).encryptor()
    return base64.urlsafe_b64encode(iv + encryptor.update(plain) + encryptor.finalize()).decode("ascii").rstrip("=")


class FilterModule:
    def filters(self):
        return {"rclone_obscure": rclone_obscure}
