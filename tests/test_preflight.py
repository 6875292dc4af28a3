"""Each role's preflight refuses a bad value before anything changes, with a message that names the variable.

The preflight of a role is its entry point's first tasks (tasks/preflight.yml); here it runs alone
(`include_role: tasks_from: preflight`) on the controller, in check mode, first with values that
pass (BASELINE, so a refusal below is the bad value's doing), then with one bad value at a time.
The same checks run at the start of every converge of the scenarios.
"""

import json

import pytest

from conftest import ROOT, run

# What each role's preflight needs to pass: test values, never used by a service.
PASSWORD = "preflight-test-password-0123456789"
# a password too short to pass, which must not appear in the output
SHORT_SECRET = "tooShort-9Xq"
BASELINE = {
    "app": {"app_version": "1.0.0", "app_database_password": PASSWORD, "app_redis_password": PASSWORD,
            # the preflight checks that the artifact exists on the controller: any file does here
            "app_secret_key": PASSWORD, "app_release_artifact": str(ROOT / "LICENSE")},
    "certbot": {"certbot_domains": ["teamflow.example.com"], "certbot_email": "ops@teamflow.example.com"},
    "common": {},
    "etcd": {},
    "file_backup": {"file_backup_target_bucket": "teamflow-files-offsite", "file_backup_encryption_password": PASSWORD,
                    "file_backup_encryption_salt": PASSWORD},
    "hardening": {"hardening_ssh_admin_networks": ["192.0.2.0/24"]},
    # the inventory below has two web hosts
    "keepalived": {"keepalived_virtual_ipaddress": "192.0.2.10/24"},
    "nginx": {"nginx_server_names": ["teamflow.example.com"], "nginx_upstream_servers": ["192.0.2.10"]},
    "node_exporter": {"node_exporter_basic_auth_users": {"prometheus": PASSWORD}},
    # under Patroni (the inventory below has an etcd group) both repositories are on S3
    "pgbackrest": {"pgbackrest_cipher_pass": PASSWORD + PASSWORD, "pgbackrest_s3_bucket": "teamflow-backups",
                   "pgbackrest_s3_key": "PREFLIGHTKEY", "pgbackrest_s3_key_secret": PASSWORD},
    "postgresql": {"postgresql_app_password": PASSWORD, "postgresql_replication_password": PASSWORD,
                   "postgresql_rewind_password": PASSWORD, "postgresql_patroni_restapi_password": PASSWORD},
    # an email receiver, as the example inventories have
    "prometheus": {"prometheus_node_exporter_password": PASSWORD, "prometheus_alertmanager_email_to": "ops@teamflow.example.com",
                   "prometheus_alertmanager_smtp_smarthost": "smtp.teamflow.example.com:587"},
    # replicated: the inventory below has two cache hosts
    "redis": {"redis_admin_password": PASSWORD, "redis_app_password": PASSWORD,
              "redis_replication_password": PASSWORD, "redis_sentinel_password": PASSWORD},
    "redis_sentinel": {"redis_sentinel_password": PASSWORD, "redis_sentinel_admin_password": PASSWORD,
                       "redis_sentinel_app_password": PASSWORD},
}

BAD = [
    ("file_backup", {"file_backup_target_bucket": ""}, "file_backup_target_bucket must name the off-site bucket"),
    ("file_backup", {"file_backup_target_bucket": "teamflow-storage"},
     "file_backup_target_bucket must not be the bucket it copies"),
    ("file_backup", {"file_backup_encryption_salt": SHORT_SECRET}, "file_backup_encryption_salt"),
    ("file_backup", {"file_backup_calendar": "every hour"}, "file_backup_calendar"),
    ("file_backup", {"file_backup_target_path": "/copy"}, "file_backup_target_path must be a path in the off-site bucket"),
    ("file_backup", {"file_backup_source_access_key": "SAMEKEY", "file_backup_target_access_key": "SAMEKEY"},
     "the off-site copy needs credentials of its own"),
    ("redis", {"redis_port": 99999}, "redis_port is 99999, not a port (1-65535)"),
    ("redis", {"redis_admin_password": SHORT_SECRET}, "redis_admin_password"),
    ("redis", {"redis_replication_password": SHORT_SECRET}, "redis_replication_password and redis_sentinel_password"),
    ("redis_sentinel", {"redis_sentinel_port": 70000}, "redis_sentinel_port is 70000, not a port"),
    ("redis_sentinel", {"redis_sentinel_quorum": 3}, "redis_sentinel_quorum (3) must be 1 to the number of sentinels (1)"),
    ("redis_sentinel", {"redis_sentinel_down_after_milliseconds": 100},
     "redis_sentinel_down_after_milliseconds must be 1000 or more, not 100"),
    ("redis_sentinel", {"redis_sentinel_redis_group": "nosuchgroup"},
     "redis_sentinel_redis_group (nosuchgroup) must have two hosts or more"),
    ("redis_sentinel", {"redis_sentinel_admin_password": SHORT_SECRET}, "redis_sentinel_admin_password"),
    ("app", {"app_redis_sentinels": ["sentinel1"]}, "app_redis_sentinels (['sentinel1']) must list HOST:PORT"),
    ("certbot", {"certbot_email": "not-an-email"}, "certbot_email is 'not-an-email', not an e-mail address"),
    ("certbot", {"certbot_issuer": "elsewhere"}, "certbot_issuer is 'elsewhere', not a host of certbot_group"),
    ("certbot", {"certbot_sync_port": 0}, "certbot_sync_port is 0, not a port"),
    ("keepalived", {"keepalived_virtual_ipaddress": "192.0.2.300/24"}, 'keepalived_virtual_ipaddress is "192.0.2.300/24"'),
    ("keepalived", {"keepalived_virtual_ipaddress": ""}, "set keepalived_enabled to false"),
    ("keepalived", {"keepalived_virtual_router_id": 256}, "keepalived_virtual_router_id must be 1-255, not 256"),
    ("keepalived", {"keepalived_check_fall": 0}, "keepalived_check_fall must be a whole number of 1 or more, not 0"),
    ("keepalived", {"keepalived_group": "nosuchgroup"}, "keepalived_group (nosuchgroup) must have two hosts or more"),
    ("hardening", {"hardening_firewall_extra_services": [{"name": "x", "group": "web", "protocol": "udp",
                                                          "from": ["web"]}]}, "`protocol` (tcp, the default, or vrrp)"),
    ("node_exporter", {"node_exporter_basic_auth_users": {"prometheus": ""}},
     "node_exporter_basic_auth_users.prometheus is empty, shorter than 16 characters or longer than 72 bytes"),
    ("node_exporter", {"node_exporter_basic_auth_users": {"prometheus": "L0ng-s3cret-" * 7}},
     "node_exporter_basic_auth_users.prometheus is empty, shorter than 16 characters or longer than 72 bytes"),
    ("node_exporter", {"node_exporter_web_listen_address": "0.0.0.0:99999"}, "node_exporter_web_listen_address is"),
    ("prometheus", {"prometheus_node_exporter_password": ""}, "prometheus_node_exporter_password is empty or shorter"),
    ("prometheus", {"prometheus_alertmanager_email_to": "oncall"}, "prometheus_alertmanager_email_to is 'oncall'"),
    ("prometheus", {"prometheus_alertmanager_webhook_url": "hooks.example/T0K3N"},
     "prometheus_alertmanager_webhook_url is not an http:// or https:// URL"),
    ("prometheus", {"prometheus_retention_time": "a month"}, "prometheus_retention_time is 'a month', not a duration"),
    ("hardening", {"hardening_ssh_admin_networks": []}, "hardening_ssh_admin_networks is empty"),
    ("hardening", {"hardening_ssh_admin_networks": ["office"]}, "hardening_ssh_admin_networks: office is neither"),
    ("hardening", {"hardening_ssh_port": 0}, "hardening_ssh_port is 0, not a port"),
    ("nginx", {"nginx_upstream_port": "http"}, "nginx_upstream_port is 'http', not a port"),
    ("nginx", {"nginx_upstream_connect_timeout": "soon"}, "nginx_upstream_connect_timeout is 'soon', not an nginx time"),
    ("nginx", {"nginx_api_client_max_body_size": "big"}, "nginx_api_client_max_body_size is 'big', not an nginx size"),
    ("app", {"app_port": 70000}, "app_port is 70000, not a port"),
    ("app", {"app_sentry_dsn": "sentry.example/42"}, "app_sentry_dsn is not an http:// or https:// URL"),
    ("postgresql", {"postgresql_port": 99999}, "postgresql_port is 99999, not a port"),
    ("pgbackrest", {"pgbackrest_timer_randomized_delay": "soon"}, "pgbackrest_timer_randomized_delay is 'soon'"),
    ("common", {"common_journald_max_retention": "forever"}, "common_journald_max_retention is 'forever'"),
    ("common", {"common_service_restart_units_extra": ["myapp.service"]},
     "common_service_restart_units_extra: myapp.service is not a unit name"),
    ("common", {"common_service_start_limit_interval": 2}, "common_service_start_limit_interval (2) longer than"),
    ("hardening", {"hardening_aide_check_calendar": "every day"},
     "hardening_aide_check_calendar is 'every day', not a systemd calendar event"),
    ("certbot", {"certbot_renew_on_calendar": "25:00"}, "certbot_renew_on_calendar is '25:00', not a systemd calendar"),
    ("certbot", {"certbot_renew_randomized_delay": "a while"}, "certbot_renew_randomized_delay is 'a while'"),
    ("pgbackrest", {"pgbackrest_full_on_calendar": "nightly"}, "pgbackrest_full_on_calendar is 'nightly'"),
    ("etcd", {"etcd_peer_port": 70000}, "etcd_peer_port is 70000, not a port"),
    ("etcd", {"etcd_listen_address": "10.0.0.0/24"}, "etcd_listen_address must be an IP address of the host"),
    ("etcd", {"etcd_settings_extra": {"SNAPSHOT_COUNT": "1000"}}, "the keys of etcd_settings_extra must be ETCD_*"),
    ("etcd", {"etcd_election_timeout": 200}, "etcd_election_timeout (200) 5 heartbeats or more"),
    ("postgresql", {"postgresql_patroni_ttl": 10}, "postgresql_patroni_ttl (10) must be at least"),
    ("postgresql", {"postgresql_rewind_password": SHORT_SECRET}, "postgresql_rewind_password must be at least 16"),
    ("pgbackrest", {"pgbackrest_incr_on_calendar": "*:*/5"}, "pgbackrest_incr_on_calendar is '*:*/5'"),
    ("pgbackrest", {"pgbackrest_repo1_type": "tape"}, "pgbackrest_repo1_type is 'tape', not posix or s3"),
    ("pgbackrest", {"pgbackrest_repo1_s3_bucket": ""}, "pgbackrest_repo1_type is s3: pgbackrest_repo1_s3_bucket ('')"),
    ("pgbackrest", {"pgbackrest_repo1_path": "/pgbackrest"}, "must not be repo2's bucket and path"),
    ("pgbackrest", {"pgbackrest_s3_key_secret": ""}, "give pgbackrest_s3_endpoint, pgbackrest_s3_key and"),
    # sized for a bigger server than the host (the controller, with its facts)
    ("postgresql", {"postgresql_memory_mb": 10 ** 8}, "postgresql_memory_mb (100000000) is more than the host's memory ("),
    ("postgresql", {"postgresql_memory_mb": "8GB"}, "postgresql_memory_mb (8GB) is not a number of MB"),
    ("redis", {"redis_maxmemory": "100000gb"}, "redis_maxmemory (100000gb) is more than the host's memory ("),
    ("prometheus", {"prometheus_retention_size": "100000TB"},
     "prometheus_retention_size (100000TB) is more than the file system that holds /var/lib/prometheus/metrics2 ("),
]


def log_name(tmp_path, prefix):
    """A log name of its own for each test: under pytest-xdist two workers may give two tests the same
    tmp_path name (each in its own base directory), and a shared log would mix their outputs."""
    return f"{prefix}-{tmp_path.parent.name}-{tmp_path.name}"


def preflight(tmp_path, roles, variables, env=None):
    """ansible-playbook running the preflight of ROLES on the controller in check mode; (rc, output)."""
    playbook = tmp_path / "preflight.yml"
    tasks = [{"name": f"Run the preflight of {role}", "ansible.builtin.include_role": {
        "name": f"teamflow.platform.{role}", "tasks_from": "preflight"}} for role in roles]
    playbook.write_text(json.dumps([{"name": "Preflight", "hosts": "localhost", "connection": "local",
                                     "gather_facts": True, "tasks": tasks,
                                     "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"}}]))
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps(variables))
    # the database roles want a primary and etcd a member, Sentinel a sentinel and two Redis hosts, keepalived
    # two web hosts: the controller is each (the other Redis and web hosts are never reached)
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"children": {
        "db_primary": {"hosts": {"localhost": {}}}, "etcd": {"hosts": {"localhost": {}}},
        "cache": {"hosts": {"localhost": {}, "cache2.preflight.example": {}}},
        "web": {"hosts": {"localhost": {}, "web2.preflight.example": {}}},
        "redis_sentinel": {"hosts": {"localhost": {}}}}}}))
    return run(["ansible-playbook", "-i", inventory, "--check", "-e", f"@{extra}", playbook],
               log_name(tmp_path, "preflight"), env={"ANSIBLE_COLLECTIONS_PATH": str(ROOT), **(env or {})})


@pytest.mark.static
def test_every_preflight_passes_with_the_baseline_values(tmp_path):
    rc, out = preflight(tmp_path, sorted(BASELINE), {k: v for values in BASELINE.values() for k, v in values.items()})
    assert rc == 0, out[-4000:]
    assert "failed=0" in out


@pytest.mark.static
@pytest.mark.parametrize("role, bad, message", BAD, ids=[f"{role}-{next(iter(bad))}" for role, bad, _ in BAD])
def test_a_bad_value_is_refused_by_the_preflight_naming_the_variable(tmp_path, role, bad, message):
    rc, out = preflight(tmp_path, [role], {**BASELINE[role], **bad})
    assert rc != 0, out[-3000:]
    assert message in out, out[-3000:]
    # refused by the preflight, not by something further on
    assert "ok=" in out and "changed=0" in out
    assert SHORT_SECRET not in out


@pytest.mark.static
@pytest.mark.parametrize("library, shim, message", [
    ("passlib", "raise ImportError('hidden by the test')", "the controller's Python has no passlib"),
    ("bcrypt", "__version__ = '4.3.0'", "the controller's Python has bcrypt 4.3.0, which passlib 1.7.4 cannot use"),
])
def test_a_controller_that_cannot_hash_bcrypt_is_refused_saying_what_to_install(tmp_path, library, shim, message):
    """node_exporter hashes its passwords on the controller: without passlib, or with a bcrypt passlib cannot use,
    the preflight stops the run, saying what to install (a module on PYTHONPATH stands in for the library)."""
    (tmp_path / "shim" / library).mkdir(parents=True)
    (tmp_path / "shim" / library / "__init__.py").write_text(shim + "\n")
    rc, out = preflight(tmp_path, ["node_exporter"], BASELINE["node_exporter"],
                        env={"PYTHONPATH": str(tmp_path / "shim")})
    assert rc != 0, out[-3000:]
    assert message in out and "pip install 'passlib>=1.7.4' 'bcrypt>=3.1,<4.1'" in out, out[-3000:]
    assert "ok=" in out and "changed=0" in out


@pytest.mark.static
def test_a_switchover_of_a_tier_without_patroni_stops_at_its_first_task_naming_the_variable(tmp_path):
    """playbooks/switchover.yml on a database host whose PostgreSQL does not run under Patroni: the first task
    refuses, naming postgresql_patroni, before anything asks for a leader (the controller is the host)."""
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"children": {"db_primary": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "postgresql_patroni": False}}}}}}))
    rc, out = run(["ansible-playbook", "-i", inventory, "--check", str(ROOT / "playbooks" / "switchover.yml")],
                  log_name(tmp_path, "switchover"), env={"ANSIBLE_COLLECTIONS_PATH": str(ROOT)})
    assert rc != 0, out[-3000:]
    assert "postgresql_patroni is false for localhost" in out, out[-3000:]
    assert "Find the cluster's leader" not in out and "changed=0" in out, out[-3000:]
