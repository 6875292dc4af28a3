"""Unit tests of teamflow.platform.controller_requirements (plugins/lookup/controller_requirements.py).

The controller's own Python (requirements-dev.txt) has what the lookup asks for; the other cases hide passlib or
put another bcrypt in front of it.
"""

from __future__ import annotations

import sys
import types

import pytest

from ansible.errors import AnsibleLookupError
from ansible_collections.teamflow.platform.plugins.lookup.controller_requirements import LookupModule


def lookup(*terms):
    return LookupModule().run(list(terms))


def test_the_controller_of_this_repository_has_what_bcrypt_needs():
    assert lookup("bcrypt") == []


def test_a_missing_passlib_names_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "passlib.hash", None)
    [problem] = lookup("bcrypt")
    assert "no passlib" in problem and "pip install 'passlib>=1.7.4' 'bcrypt>=3.1,<4.1'" in problem


def test_a_missing_bcrypt_names_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "bcrypt", None)
    [problem] = lookup("bcrypt")
    assert "no bcrypt" in problem and "requirements.txt" in problem


@pytest.mark.parametrize("version", ["4.1.0", "4.3.0", "5.0.0"])
def test_a_bcrypt_passlib_cannot_use_is_refused(monkeypatch, version):
    monkeypatch.setitem(sys.modules, "bcrypt", types.SimpleNamespace(__version__=version))
    [problem] = lookup("bcrypt")
    assert f"bcrypt {version}" in problem


def test_an_unknown_feature_is_an_error():
    with pytest.raises(AnsibleLookupError, match="unknown feature 'scrypt'"):
        lookup("scrypt")
