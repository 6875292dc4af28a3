# -*- coding: utf-8 -*-
# Copyright: TeamFlow platform engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters on addresses and networks (docs: address_in_networks.yml, invalid_networks.yml, private_addresses.yml)."""

from __future__ import annotations

import ipaddress

from ansible.errors import AnsibleFilterError


def _network(entry):
    """The network an address or a CIDR names, or None."""
    try:
        return ipaddress.ip_network(str(entry).strip(), strict=False)
    except ValueError:
        return None


def invalid_networks(networks):
    """The entries of NETWORKS that are neither an IP address nor a CIDR, in their order."""
    if isinstance(networks, (str, bytes)) or not hasattr(networks, "__iter__"):
        raise AnsibleFilterError(f"invalid_networks expects a list of addresses and CIDRs, got {networks!r}")
    return [entry for entry in networks if _network(entry) is None]


def address_in_networks(address, networks):
    """Whether ADDRESS (an IPv4 or IPv6 address) is in one of NETWORKS (addresses and CIDRs)."""
    try:
        found = ipaddress.ip_address(str(address).strip())
    except ValueError as error:
        raise AnsibleFilterError(f"address_in_networks: {address!r} is not an IP address") from error
    bad = invalid_networks(networks)
    if bad:
        raise AnsibleFilterError(f"address_in_networks: {', '.join(map(str, bad))} is neither an address nor a CIDR")
    return any(found in _network(entry) for entry in networks if _network(entry).version == found.version)


def private_addresses(hosts, hostvars, prefer=None):
    """The address each of HOSTS is reached at by the other hosts, in their order.

    The first that is set: the host variable PREFER (when given), teamflow_private_address,
    the address of the default IPv4 route from its facts, ansible_host, the inventory name.
    """
    if isinstance(hosts, (str, bytes)) or not hasattr(hosts, "__iter__"):
        raise AnsibleFilterError(f"private_addresses expects a list of inventory host names, got {hosts!r}")
    addresses = []
    for host in hosts:
        try:
            variables = hostvars[host]
        except KeyError as error:
            raise AnsibleFilterError(f"private_addresses: {host!r} is not a host of the inventory") from error
        facts = variables.get("ansible_facts") or {}
        found = [
            variables.get(prefer) if prefer else None,
            variables.get("teamflow_private_address"),
            (facts.get("default_ipv4") or {}).get("address"),
            variables.get("ansible_host"),
            host,
        ]
        addresses.append(str(next(address for address in found if address)))
    return addresses


class FilterModule:
    """teamflow.platform's network filters."""

    def filters(self):
        return {
            "address_in_networks": address_in_networks,
            "invalid_networks": invalid_networks,
            "private_addresses": private_addresses,
        }
