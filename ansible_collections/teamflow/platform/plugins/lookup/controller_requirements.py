# -*- coding: utf-8 -*-
# Copyright: TeamFlow platform engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Lookup telling what the controller's Python lacks for a feature of the collection."""

from __future__ import annotations

DOCUMENTATION = r"""
name: controller_requirements
author: TeamFlow platform engineering (@teamflow)
version_added: 0.2.0
short_description: What the controller's Python lacks for a feature of the collection
description:
  - Checks, in the Python that runs C(ansible-playbook), the libraries a feature of teamflow.platform needs on the
    controller, and returns one message per problem, each saying what to install. An empty list means the feature
    works.
  - The collection's C(requirements.txt) lists the same libraries; roles call this lookup in their preflight, so a
    missing library fails the run before anything changes instead of in the middle of it.
options:
  _terms:
    description:
      - 'Features to check. V(bcrypt): C(password_hash(''bcrypt'')), which node_exporter uses for its basic auth
        users, needs C(passlib) and a C(bcrypt) before 4.1 (passlib 1.7.4 cannot read the version of later ones,
        and C(bcrypt) 5 refuses passlib''s self-test).'
    type: list
    elements: str
    required: true
"""

EXAMPLES = r"""
- name: Check that the controller can hash the basic auth passwords
  ansible.builtin.assert:
    that:
      - __missing | length == 0
    fail_msg: "{{ __missing | join('; ') }}"
  vars:
    __missing: "{{ lookup('teamflow.platform.controller_requirements', 'bcrypt', wantlist=True) }}"
  run_once: true
"""

RETURN = r"""
_raw:
  description: One message per missing or unusable library, naming what to install; empty when all is there.
  type: list
  elements: str
"""

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

INSTALL = "pip install 'passlib>=1.7.4' 'bcrypt>=3.1,<4.1' (the collection's requirements.txt)"


def bcrypt_problems():
    """Messages on what keeps passlib's bcrypt from hashing in this Python; empty when it works."""
    try:
        from passlib.hash import bcrypt
    except ImportError:
        return [f"the controller's Python has no passlib, which password_hash('bcrypt') needs: {INSTALL}"]
    try:
        import bcrypt as bcrypt_library
    except ImportError:
        return [f"the controller's Python has no bcrypt, the library passlib hashes bcrypt with: {INSTALL}"]
    version = getattr(bcrypt_library, "__version__", "0")
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError:
        major, minor = 0, 0
    if (major, minor) >= (4, 1):
        return [f"the controller's Python has bcrypt {version}, which passlib 1.7.4 cannot use: {INSTALL}"]
    try:
        bcrypt.using(rounds=4).hash("teamflow-controller-check")
    except Exception as error:  # pylint: disable=broad-exception-caught
        return [f"passlib cannot hash with bcrypt on the controller ({error}): {INSTALL}"]
    return []


CHECKS = {"bcrypt": bcrypt_problems}


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        problems = []
        for term in terms:
            if term not in CHECKS:
                raise AnsibleLookupError(f"controller_requirements: unknown feature {term!r}; "
                                         f"one of {', '.join(sorted(CHECKS))}")
            problems.extend(CHECKS[term]())
        return problems
