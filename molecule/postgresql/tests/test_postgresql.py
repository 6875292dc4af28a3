"""PostgreSQL as the app tier and an operator see it (molecule scenario `postgresql`).

The tests run on the client container (an app host) and talk to pg-primary and
pg-replica over the scenario's network. Every test takes `host`, so pytest keeps
them in file order.
"""

import os
import pathlib
import re
import time

import pytest
from scenario_helpers import ansible_playbook, scenario_host, superuser_sql

testinfra_hosts = ["ansible://pg-client"]

PRIMARY, REPLICA = "pg-primary", "pg-replica"
APP_PASSWORD = "molecule-app-password-0123456789"
CA = "/tmp/pg-ca.crt"
PROJECT = pathlib.Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", pathlib.Path(__file__).resolve().parents[3]))
SCENARIO = pathlib.Path(__file__).resolve().parents[1]


def remote(name):
    return scenario_host(name)


def app_psql(host, server, sql, password=APP_PASSWORD, sslmode="verify-full"):
    """Run SQL as the app role from the client; the command's result."""
    conninfo = f"host={server} dbname=teamflow user=teamflow sslmode={sslmode} sslrootcert={CA}"
    return host.run("PGPASSWORD=%s psql -XAtq -v ON_ERROR_STOP=1 %s -c %s", password, conninfo, sql)


@pytest.fixture(scope="module", autouse=True)
def trust_the_internal_ca(host):
    """The client trusts the stack's internal CA (role pki, kept on the primary here), as an app host would."""
    pem = remote(PRIMARY).file("/etc/teamflow-pki/ca.crt").content_string
    host.run_expect([0], "printf '%%s' %s > " + CA, pem)


# --- access ---------------------------------------------------------------------

def test_the_app_connects_over_tls_with_scram(host):
    result = app_psql(host, PRIMARY, "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    assert result.rc == 0, result.stderr
    ssl, version = result.stdout.strip().split("|")
    assert ssl == "t" and version in ("TLSv1.2", "TLSv1.3")
    method = superuser_sql(PRIMARY, "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'teamflow'")
    assert method == "t"


def test_a_connection_without_tls_is_rejected_by_pg_hba(host):
    result = app_psql(host, PRIMARY, "SELECT 1", sslmode="disable")
    assert result.rc != 0
    assert "pg_hba.conf rejects connection" in result.stderr


def test_a_wrong_password_is_refused(host):
    result = app_psql(host, PRIMARY, "SELECT 1", password="not-the-password")
    assert result.rc != 0
    assert "password authentication failed" in result.stderr


def test_the_app_role_is_no_superuser_and_owns_its_database(host):
    flags = superuser_sql(PRIMARY, "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolreplication FROM pg_roles WHERE rolname = 'teamflow'")
    assert flags == "f|f|f|f|f"
    assert superuser_sql(PRIMARY, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'teamflow'") == "teamflow"
    assert superuser_sql(PRIMARY, "SELECT extname FROM pg_extension WHERE extname = 'pgcrypto'") == "pgcrypto"


def test_the_app_role_cannot_create_a_role_or_read_pg_authid(host):
    result = app_psql(host, PRIMARY, "CREATE ROLE intruder")
    assert result.rc != 0 and "permission denied to create role" in result.stderr
    result = app_psql(host, PRIMARY, "SELECT rolpassword FROM pg_authid")
    assert result.rc != 0 and "permission denied" in result.stderr


def test_the_server_presents_the_internal_cas_certificate_for_its_name(host):
    # verify-full checks the name; a wrong name must fail
    result = host.run("PGPASSWORD=%s psql -XAtq 'host=%s hostaddr=%s dbname=teamflow user=teamflow sslmode=verify-full sslrootcert=%s' -c 'SELECT 1'",
                      APP_PASSWORD, "db.elsewhere.test", host.check_output("getent ahostsv4 %s | awk 'NR==1 {print $1}'", PRIMARY), CA)
    assert result.rc != 0 and "does not match host name" in result.stderr


@pytest.mark.parametrize("name", [PRIMARY, REPLICA])
def test_each_server_uses_its_own_key_from_the_stacks_ca(host, name):
    server = remote(name)
    key = server.file("/etc/teamflow-pki/postgresql.key")
    assert (key.user, key.group, key.mode) == ("root", "postgres", 0o640)
    assert superuser_sql(name, "SHOW ssl_cert_file") == "/etc/teamflow-pki/postgresql.crt"
    issuer = server.check_output("openssl x509 -noout -issuer -in /etc/teamflow-pki/postgresql.crt")
    assert "TeamFlow internal CA teamflow" in issuer
    # no CA of the role's own any more (versions before 0.2.0 kept one on the primary)
    assert not server.file("/etc/postgresql/teamflow-ca").exists


# --- replication -----------------------------------------------------------------

def test_a_row_written_on_the_primary_appears_on_the_replica(host):
    for sql in ("CREATE TABLE IF NOT EXISTS molecule_probe (id serial PRIMARY KEY, note text)",
                "INSERT INTO molecule_probe (note) VALUES ('written on the primary')"):
        result = app_psql(host, PRIMARY, sql)
        assert result.rc == 0, result.stderr
    for _ in range(20):
        result = app_psql(host, REPLICA, "SELECT count(*) FROM molecule_probe WHERE note = 'written on the primary'")
        if result.rc == 0 and int(result.stdout) >= 1:
            break
        time.sleep(0.5)
    assert result.rc == 0 and int(result.stdout) >= 1, result.stderr


def test_the_replica_refuses_writes(host):
    result = app_psql(host, REPLICA, "INSERT INTO molecule_probe (note) VALUES ('on the replica')")
    assert result.rc != 0
    assert "read-only transaction" in result.stderr


def test_the_primary_shows_the_replica_streaming_through_its_slot(host):
    rows = superuser_sql(PRIMARY, "SELECT application_name, state, sync_state FROM pg_stat_replication")
    assert rows == "pg-replica|streaming|sync"  # Patroni: the member's name, synchronous_mode
    assert superuser_sql(PRIMARY, "SELECT slot_name, active FROM pg_replication_slots") == "pg_replica|t"
    assert superuser_sql(REPLICA, "SELECT pg_is_in_recovery()") == "t"


METRICS = """
import ssl, sys, urllib.request
context = ssl.create_default_context(cafile='/etc/teamflow-pki/ca.crt')
print(urllib.request.urlopen(sys.argv[1], context=context, timeout=5).read().decode())
"""


@pytest.mark.parametrize("name", [PRIMARY, REPLICA])
def test_each_members_patroni_metrics_parse_as_prometheus_text_with_its_timeline(host, name):
    """Prometheus drops a whole scrape over one line it cannot parse: a replica's Patroni wrote its timeline
    as None while pg_hba refused its replication connection to its own server."""
    text = scenario_host(name).check_output("python3 -c %s %s", METRICS, f"https://{name}:8008/metrics")
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    # Patroni 4 (Debian 13) adds a label with the member's name
    timeline = next((value for metric, value in values.items()
                     if metric.startswith("patroni_postgres_timeline{") and 'scope="teamflow"' in metric), None)
    bad = {metric: value for metric, value in values.items() if not re.fullmatch(r"-?[0-9.e+]+", value)}
    print(f"{name}: timeline {timeline}, values that are not numbers: {bad}")
    assert bad == {}
    assert int(timeline) >= 1


def test_the_read_only_role_gets_select_on_new_tables(host):
    assert superuser_sql(PRIMARY, "SELECT has_table_privilege('teamflow_readonly', 'molecule_probe', 'SELECT')") == "t"
    assert superuser_sql(PRIMARY, "SELECT has_table_privilege('teamflow_readonly', 'molecule_probe', 'INSERT')") == "f"


# --- sizing and reload ----------------------------------------------------------------

def test_connections_of_clients_that_vanished_are_closed_within_a_minute(host):
    """A partition or a host that died leaves server-side backends whose client is gone; they would hold
    max_connections' slots for the kernel's two hours. TCP keepalives close them in about a minute (30 s idle,
    then 3 probes 10 s apart), and a running query's client is checked every 10 s."""
    # SHOW reads 0 on the Unix socket superuser_sql uses: the settings as the server applied them from its files
    for name in (PRIMARY, REPLICA):
        shown = superuser_sql(name, "SELECT string_agg(name || '=' || setting, ',' ORDER BY name) FROM pg_file_settings "
                                    "WHERE applied AND name IN ('tcp_keepalives_idle', 'tcp_keepalives_interval', "
                                    "'tcp_keepalives_count', 'client_connection_check_interval')")
        assert shown == ("client_connection_check_interval=10s,tcp_keepalives_count=3,tcp_keepalives_idle=30,"
                         "tcp_keepalives_interval=10"), (name, shown)


def test_shared_buffers_and_max_connections_are_what_the_role_computes(host):
    mem_kb = int(remote(PRIMARY).check_output("awk '/^MemTotal:/ {print $2}' /proc/meminfo"))
    mem_mb = mem_kb // 1024
    # one app host (the client) x 50 + one replica + 20 headroom
    assert superuser_sql(PRIMARY, "SHOW max_connections") == "71"
    assert superuser_sql(REPLICA, "SHOW max_connections") == "71"
    buffers = int(superuser_sql(PRIMARY, "SELECT setting::bigint * 8192 FROM pg_settings WHERE name = 'shared_buffers'"))
    assert buffers == int(mem_mb * 0.25) * 1024 * 1024
    cache = int(superuser_sql(PRIMARY, "SELECT setting::bigint * 8192 FROM pg_settings WHERE name = 'effective_cache_size'"))
    assert cache == int(mem_mb * 0.75) * 1024 * 1024


def test_tls_and_password_settings(host):
    assert superuser_sql(PRIMARY, "SHOW ssl") == "on"
    assert superuser_sql(PRIMARY, "SHOW ssl_min_protocol_version") == "TLSv1.2"
    assert superuser_sql(PRIMARY, "SHOW password_encryption") == "scram-sha-256"
    assert superuser_sql(PRIMARY, "SHOW data_checksums") == "on"


def test_a_changed_work_mem_is_reloaded_without_a_restart(host):
    started = superuser_sql(PRIMARY, "SELECT pg_postmaster_start_time()")
    # the settings' phase only (and the handlers it notifies): the rest of the role is the idempotence check's
    result = ansible_playbook(SCENARIO / "converge.yml", "--tags", "postgresql_configure", "-e", "postgresql_work_mem=12MB")
    assert result.returncode == 0, result.stdout[-3000:]
    assert superuser_sql(PRIMARY, "SHOW work_mem") == "12MB"
    assert superuser_sql(PRIMARY, "SELECT pg_postmaster_start_time()") == started

    result = ansible_playbook(SCENARIO / "converge.yml", "--tags", "postgresql_configure")
    assert result.returncode == 0, result.stdout[-3000:]
    assert superuser_sql(PRIMARY, "SELECT pg_postmaster_start_time()") == started


def test_connections_slow_statements_and_lock_waits_are_logged_as_json(host):
    app_psql(host, PRIMARY, "SELECT pg_sleep(0.6)")
    primary = remote(PRIMARY)
    log = primary.check_output("cat /var/log/postgresql/postgresql-*-main-*.json")  # 15 on Debian 12, 17 on 13
    assert '"message":"connection authorized: user=teamflow database=teamflow' in log.replace(" SSL enabled", "")
    assert "duration: " in log and "pg_sleep(0.6)" in log
    assert superuser_sql(PRIMARY, "SHOW log_lock_waits") == "on"
