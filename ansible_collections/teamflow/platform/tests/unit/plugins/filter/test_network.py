"""Unit tests of teamflow.platform.address_in_networks, invalid_networks and private_addresses (plugins/filter/network.py).

The hardening role's preflight uses them; the site scenario runs it over SSH from inside and outside
the admin networks.
"""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.teamflow.platform.plugins.filter.network import FilterModule
from ansible_collections.teamflow.platform.plugins.filter.network import address_in_networks, invalid_networks, private_addresses


@pytest.mark.parametrize("address, networks", [
    ("10.0.0.5", ["10.0.0.0/24"]),
    ("10.0.0.5", ["192.0.2.1", "10.0.0.5"]),
    ("10.0.0.5", ["10.0.0.5/32"]),
    ("10.0.0.5", ["10.0.0.9/24"]),          # host bits set: the network is meant
    ("2001:db8::7", ["2001:db8::/64"]),
    (" 10.0.0.5 ", [" 10.0.0.0/8"]),
])
def test_an_address_inside_is_found(address, networks):
    assert address_in_networks(address, networks) is True


@pytest.mark.parametrize("address, networks", [
    ("10.0.1.5", ["10.0.0.0/24"]),
    ("10.0.0.6", ["10.0.0.5"]),
    ("10.0.0.5", []),
    ("10.0.0.5", ["2001:db8::/32"]),        # another family never matches
    ("2001:db8::7", ["10.0.0.0/8"]),
])
def test_an_address_outside_is_not(address, networks):
    assert address_in_networks(address, networks) is False


def test_a_bad_address_fails_naming_it():
    with pytest.raises(AnsibleFilterError, match="'somewhere' is not an IP address"):
        address_in_networks("somewhere", ["10.0.0.0/8"])


def test_a_bad_network_fails_naming_it():
    with pytest.raises(AnsibleFilterError, match="office is neither an address nor a CIDR"):
        address_in_networks("10.0.0.5", ["10.0.0.0/8", "office"])


def test_invalid_networks_lists_the_bad_entries_in_order():
    assert invalid_networks(["10.0.0.0/8", "office", "10.0.0.0/33", "::1", "192.0.2.300", "2001:db8::/48"]) == [
        "office", "10.0.0.0/33", "192.0.2.300"]
    assert invalid_networks([]) == []


@pytest.mark.parametrize("value", ["10.0.0.0/8", None, 5])
def test_invalid_networks_wants_a_list(value):
    with pytest.raises(AnsibleFilterError, match="expects a list"):
        invalid_networks(value)


def test_the_plugin_exports_its_filters():
    assert set(FilterModule().filters()) == {"address_in_networks", "invalid_networks", "private_addresses"}


HOSTVARS = {
    "db1": {"teamflow_private_address": "10.0.0.11", "ansible_facts": {"default_ipv4": {"address": "172.17.0.2"}}},
    "db2": {"ansible_facts": {"default_ipv4": {"address": "172.17.0.3"}}, "etcd_listen_address": "10.0.0.12"},
    "mon1": {"ansible_host": "mon1.example"},
    "bare": {},
}


def test_private_addresses_take_the_first_address_set_in_order():
    assert private_addresses(["db1", "db2", "mon1", "bare"], HOSTVARS) == [
        "10.0.0.11", "172.17.0.3", "mon1.example", "bare"]


def test_private_addresses_prefer_the_named_host_variable():
    assert private_addresses(["db1", "db2"], HOSTVARS, prefer="etcd_listen_address") == ["10.0.0.11", "10.0.0.12"]


def test_private_addresses_name_a_host_the_inventory_lacks():
    with pytest.raises(AnsibleFilterError, match="'db9' is not a host"):
        private_addresses(["db9"], HOSTVARS)
