# -*- coding: utf-8 -*-
# Copyright: TeamFlow platform engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import base64

import pytest
from ansible.errors import AnsibleFilterError
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ansible_collections.teamflow.platform.plugins.filter import rclone

pytestmark = pytest.mark.unit


def reveal(text):
    """`rclone reveal`: the IV, then AES-CTR with rclone's fixed key."""
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    decryptor = Cipher(algorithms.AES(rclone._KEY), modes.CTR(raw[:16])).decryptor()
    return (decryptor.update(raw[16:]) + decryptor.finalize()).decode("utf-8")


def test_the_obscured_secret_reveals_to_the_secret_and_does_not_show_it():
    obscured = rclone.rclone_obscure("correct horse battery staple")
    assert reveal(obscured) == "correct horse battery staple"
    assert "horse" not in obscured and "=" not in obscured


def test_the_text_is_the_one_rclone_reveals():
    # `rclone reveal` (rclone 1.60.1, Debian 12) of this text, made by the filter, printed the secret: the key
    # and the layout are rclone's
    assert rclone.rclone_obscure("hello world secret") == "VIqMRcqlX-omwwR1NT1lP8Nns55RqafehfaTPT5KxCglrg"


def test_the_same_secret_gives_the_same_text_and_another_secret_another():
    assert rclone.rclone_obscure("s3cret-one") == rclone.rclone_obscure("s3cret-one")
    assert rclone.rclone_obscure("s3cret-one") != rclone.rclone_obscure("s3cret-two")


@pytest.mark.parametrize("secret", ["", None, 12])
def test_an_empty_or_non_text_secret_is_refused(secret):
    with pytest.raises(AnsibleFilterError, match="not empty"):
        rclone.rclone_obscure(secret)
