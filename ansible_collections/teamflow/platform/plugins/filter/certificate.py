# -*- coding: utf-8 -*-
# Copyright: TeamFlow platform engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filter deciding whether an ACME certificate must be issued again (docs: certificate_issue_reasons.yml)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

KEY_TYPES = ("ecdsa", "rsa")


def _names(names):
    return sorted({re.sub(r"^DNS:", "", str(name)).lower() for name in names})


def _renewal_server(renewal_conf):
    match = re.search(r"^server\s*=\s*(.*)$", renewal_conf or "", re.M)
    return match.group(1).strip() if match else ""


def certificate_issue_reasons(info, domains, key_type, server, renewal_conf="", elliptic_curve="secp256r1",
                              rsa_key_size=2048):
    """The reasons to issue the certificate; an empty list when the lineage is as asked.

    INFO is what community.crypto.x509_certificate_info returned for the lineage's cert.pem (with
    valid_at.now), or None when there is no lineage; RENEWAL_CONF the text of its renewal configuration.
    """
    if key_type not in KEY_TYPES:
        raise AnsibleFilterError(f"certificate_issue_reasons: key_type must be one of {', '.join(KEY_TYPES)}, "
                                 f"got {key_type!r}")
    if not domains or isinstance(domains, (str, bytes)):
        raise AnsibleFilterError(f"certificate_issue_reasons: domains must be a non-empty list, got {domains!r}")
    if info is None:
        return ["no certificate yet"]
    if not isinstance(info, Mapping) or "subject_alt_name" not in info or "public_key_type" not in info:
        raise AnsibleFilterError("certificate_issue_reasons expects the result of "
                                 "community.crypto.x509_certificate_info (or none), got "
                                 f"{type(info).__name__} without subject_alt_name and public_key_type")
    reasons = []
    sans = _names(info.get("subject_alt_name") or [])
    if sans != _names(domains):
        reasons.append(f"names {','.join(sans)} differ")
    key_data = info.get("public_key_data") or {}
    if key_type == "ecdsa":
        wrong_key = info["public_key_type"] != "ECC" or key_data.get("curve", "") != elliptic_curve
    else:
        wrong_key = info["public_key_type"] != "RSA" or int(key_data.get("size") or 0) != int(rsa_key_size)
    if wrong_key:
        reasons.append("key type differs")
    if _renewal_server(renewal_conf) != str(server).strip():
        reasons.append("ACME server differs")
    if not (info.get("valid_at") or {}).get("now", False):
        reasons.append("expired")
    return reasons


class FilterModule:
    """teamflow.platform's certificate filters."""

    def filters(self):
        return {"certificate_issue_reasons": certificate_issue_reasons}
