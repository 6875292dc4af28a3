"""The scenario's Patroni cluster as the tests see it: its members, who leads, SQL as postgres
(the shared helpers of scenario_helpers, for this scenario's members)."""

from scenario_helpers import patroni_api as patroni
from scenario_helpers import patroni_leader, scenario_host, superuser_sql
from scenario_helpers import wal_streaming as streaming

MEMBERS = ["pg-primary", "pg-replica"]

__all__ = ["MEMBERS", "leader", "patroni", "remote", "streaming", "superuser_sql"]


def remote(name):
    return scenario_host(name)


def leader():
    return patroni_leader(MEMBERS)
