"""Unit tests of teamflow.platform.certificate_issue_reasons (plugins/filter/certificate.py).

The molecule scenario certbot issues, keeps and reissues real certificates through pebble.
"""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.teamflow.platform.plugins.filter.certificate import FilterModule, certificate_issue_reasons

SERVER = "https://acme.example/dir"
RENEWAL = f"# renew_before_expiry = 30 days\nversion = 2.1.0\n[renewalparams]\nserver = {SERVER}\nkey_type = ecdsa\n"


def info(**changes):
    """What x509_certificate_info returns for an ECDSA P-256 certificate for two names, valid now."""
    result = {"subject_alt_name": ["DNS:www.example.com", "DNS:example.com"], "public_key_type": "ECC",
              "public_key_data": {"curve": "secp256r1", "size": 256}, "valid_at": {"now": True}}
    result.update(changes)
    return result


def reasons(certificate, **options):
    arguments = dict(domains=["example.com", "www.example.com"], key_type="ecdsa", server=SERVER, renewal_conf=RENEWAL)
    arguments.update(options)
    return certificate_issue_reasons(certificate, **arguments)


def test_a_lineage_as_asked_needs_nothing():
    assert reasons(info()) == []


def test_no_lineage_is_issued():
    assert reasons(None) == ["no certificate yet"]


@pytest.mark.parametrize("domains", [["WWW.example.com", "example.com"], ["example.com", "www.example.com", "example.com"]])
def test_names_compare_without_order_case_or_repeats(domains):
    assert reasons(info(), domains=domains) == []


def test_other_names_are_named():
    assert reasons(info(), domains=["example.com"]) == ["names example.com,www.example.com differ"]


@pytest.mark.parametrize("certificate, options", [
    (info(public_key_data={"curve": "secp384r1"}), {}),
    (info(public_key_type="RSA", public_key_data={"size": 3072}), {}),
    (info(), {"key_type": "rsa", "rsa_key_size": 3072}),
    (info(public_key_type="RSA", public_key_data={"size": 2048}), {"key_type": "rsa", "rsa_key_size": 3072}),
])
def test_another_key_is_reissued(certificate, options):
    assert reasons(certificate, **options) == ["key type differs"]


def test_an_rsa_key_of_the_asked_size_is_kept():
    certificate = info(public_key_type="RSA", public_key_data={"size": 3072})
    assert reasons(certificate, key_type="rsa", rsa_key_size="3072") == []


@pytest.mark.parametrize("renewal_conf", ["", RENEWAL.replace(SERVER, "https://other.example/dir")])
def test_another_or_no_acme_server_is_reissued(renewal_conf):
    assert reasons(info(), renewal_conf=renewal_conf) == ["ACME server differs"]


def test_an_expired_certificate_is_reissued_and_every_reason_is_given():
    certificate = info(valid_at={"now": False}, subject_alt_name=["DNS:old.example.com"])
    assert reasons(certificate, renewal_conf="") == [
        "names old.example.com differ", "ACME server differs", "expired"]


@pytest.mark.parametrize("certificate", [{"skipped": True}, "cert.pem", {"subject_alt_name": []}])
def test_anything_but_the_certificate_info_is_refused(certificate):
    with pytest.raises(AnsibleFilterError, match="expects the result of community.crypto.x509_certificate_info"):
        reasons(certificate)


def test_an_unknown_key_type_is_refused():
    with pytest.raises(AnsibleFilterError, match="key_type must be one of ecdsa, rsa, got 'dsa'"):
        reasons(info(), key_type="dsa")


@pytest.mark.parametrize("domains", [[], "example.com"])
def test_domains_must_be_a_list_of_names(domains):
    with pytest.raises(AnsibleFilterError, match="domains must be a non-empty list"):
        reasons(info(), domains=domains)


def test_the_filter_is_registered():
    assert FilterModule().filters() == {"certificate_issue_reasons": certificate_issue_reasons}
