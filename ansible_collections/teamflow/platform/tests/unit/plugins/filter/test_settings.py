"""Unit tests of teamflow.platform.invalid_settings and oversized_settings (plugins/filter/settings.py).

The roles' preflight tasks use it; tests/test_preflight.py runs them with bad values.
"""

from __future__ import annotations

import subprocess

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.teamflow.platform.plugins.filter.settings import FilterModule, invalid_settings, oversized_settings

GOOD = {
    "port": [1, 80, "443", 65535],
    "hostport": [":9100", "10.0.0.5:9100", "[::1]:9100", "localhost:6379", "smtp.example.com:587"],
    "email": ["ops@teamflow.example.com", "a.b+c@example.co.uk", "alertmanager@tf-mon1"],
    "url": ["https://acme-v02.api.letsencrypt.org/directory", "http://10.0.0.5:9093/hook", "https://h/x?y=1"],
    "size": ["512MB", "256M", "2G", "64kB", "1GiB", "100", "1.5GB", "256mb"],
    "memory": ["50%", "100%", "2.5%", "512mb", "1G"],
    "duration": ["30s", "5min", "1h30m", "15d", "14day", "2w", "60", "500ms", "1y"],
    "password": ["Correct-Horse-9-Battery", "x" * 16],
    "bcrypt_password": ["x" * 16, "x" * 72, "\u00e9" * 36],
    "secret": ["k"],
    "secret_url": ["https://hooks.example.com/services/T0K3N", "https://key@o1.ingest.sentry.io/42"],
}
BAD = {
    "port": [0, 65536, 99999, "http", "-1", "80a"],
    "hostport": ["9100", "10.0.0.5", ":0", ":99999", "a b:80"],
    "email": ["not-an-email", "ops@", "@example.com", "ops@exa mple.com", "a b@example.com", "ops@example..com"],
    "url": ["acme.example/dir", "ftp://example.com", "https://", "https://exa mple.com"],
    "size": ["big", "12 parsecs", "M", "-1G"],
    "memory": ["150%", "half", "%", "-5%"],
    "duration": ["soon", "1 fortnight", "h", "-5s"],
    "password": ["", "short", "x" * 15],
    # 73 bytes, and 37 two-byte characters (74 bytes) although only 37 characters
    "bcrypt_password": ["", "x" * 15, "x" * 73, "\u00e9" * 37],
    "secret": [""],
    "secret_url": ["hooks.example/T0K3N"],
}


@pytest.mark.parametrize("kind, value", [(kind, value) for kind, values in GOOD.items() for value in values])
def test_a_good_value_passes(kind, value):
    assert invalid_settings({kind: {"some_var": value}}) == []


@pytest.mark.parametrize("kind, value", [(kind, value) for kind, values in BAD.items() for value in values])
def test_a_bad_value_is_reported_naming_the_variable(kind, value):
    problems = invalid_settings({kind: {"some_var": value}})
    assert len(problems) == 1 and problems[0].startswith("some_var ")


def test_the_messages_say_what_was_given_and_what_is_wanted():
    assert invalid_settings({"port": {"redis_port": 99999}, "email": {"certbot_email": "not-an-email"}}) == [
        "redis_port is 99999, not a port (1-65535)", "certbot_email is 'not-an-email', not an e-mail address"]


@pytest.mark.parametrize("kind, value", [("password", ""), ("password", "sh0rt-s3cret"), ("secret", ""),
                                         ("bcrypt_password", "L0ng-s3cret-" * 7),
                                         ("secret_url", "hooks.example/T0K3N-abc")])
def test_a_secret_never_appears_in_the_message(kind, value):
    problems = invalid_settings({kind: {"some_secret": value}})
    assert len(problems) == 1 and problems[0].startswith("some_secret is ")
    assert not value or value not in problems[0]


def test_an_optional_kind_accepts_empty_but_not_bad():
    assert invalid_settings({"url?": {"app_sentry_dsn": ""}}) == []
    assert invalid_settings({"url?": {"app_sentry_dsn": "nope"}}) == ["app_sentry_dsn is 'nope', not an http:// or "
                                                                      "https:// URL with a host"]


def test_none_is_not_set_unless_optional():
    assert invalid_settings({"port": {"redis_port": None}}) == ["redis_port is not set"]
    assert invalid_settings({"port?": {"redis_port": None}}) == []


@pytest.mark.parametrize("settings, error", [
    ("port", "expects a mapping"),
    ({"colour": {"x": 1}}, "unknown kind 'colour'"),
    ({"port": [1, 2]}, "must be a mapping"),
])
def test_a_wrong_call_fails_clearly(settings, error):
    with pytest.raises(AnsibleFilterError, match=error):
        invalid_settings(settings)


def test_the_plugin_exports_them():
    assert set(FilterModule().filters()) == {"invalid_settings", "oversized_settings"}


def test_a_list_is_checked_item_by_item():
    assert invalid_settings({"url": {"prometheus_health_urls": ["https://a.example/health", "b/health"]}}) == [
        "prometheus_health_urls[1] is 'b/health', not an http:// or https:// URL with a host"]


CALENDARS = ["daily", "Quarterly", "hourly UTC", "weekly Europe/Berlin", "*-*-* 00,12:00:00", "*-*-* *:30:00",
             "*-*-* 01:00:00", "*-*-* 05:00:00", "Mon..Fri 09:00", "Mon,Tue..Thu 10:00", "MONDAY 10:00", "Mon",
             "Sat,Sun *-*-* 10:00:00 UTC", "*:0/15", "00:00/5", "2026-12-05 10:00", "2026-12-05", "12-05", "*-*",
             "*-02~03", "*-1/2-*", "*-*-1,15 03:00", "*-*-* 1..5:00", "1..3/2:00", "12:00:00.123456",
             "12:00 Europe/Berlin", "0-1-1", "@1700000000",
             # refused
             "", "tomorrow", "every day", "1h", "10", "25:00", "*-*-* 10:00:60", "*-13-01", "*-0-1", "*-*-0",
             "Mon..Fry", "Mon..", "*/2:00", "*:*/5", "*-*-*/2", "*-*-~1", "*-02~1/2", "Feb 1", "UTC", "10:00 Z",
             "12:00 UTC Mon", "daily daily", "*-*-* 01:00:00 Mars/Base", "*-*-* 00:00:00 +0100", "2026-12-05T10:00",
             "@abc"]


@pytest.mark.parametrize("value", CALENDARS)
def test_a_calendar_is_accepted_exactly_when_systemd_accepts_it(value):
    """systemd-analyze calendar (systemd 252 of Debian 12) is the reference the filter agrees with."""
    systemd = subprocess.run(["systemd-analyze", "calendar", value], capture_output=True, check=False).returncode == 0
    assert (invalid_settings({"calendar": {"some_calendar": value}}) == []) == systemd


# a host with 4 GiB of memory, its root file system 20 GiB and /var/lib/prometheus a 100 GiB one
FACTS = {"memtotal_mb": 4096, "mounts": [{"mount": "/", "size_total": 20 * 1024 ** 3},
                                         {"mount": "/var/lib/prometheus", "size_total": 100 * 1024 ** 3},
                                         {"mount": "/var/lib/prometheusx", "size_total": 1024 ** 3}]}


@pytest.mark.parametrize("kind, value", [
    ("memory_mb", 4096), ("memory_mb", "2048"), ("redis_memory", "4gb"), ("redis_memory", "4000m"),
    ("redis_memory", "90%"), ("redis_memory", str(4 * 1024 ** 3)), ("redis_memory", "4294967k"),
    # not a size of its kind: invalid_settings says so, not this filter
    ("memory_mb", "8GB"), ("redis_memory", "lots"),
])
def test_a_size_the_host_has_passes(kind, value):
    assert oversized_settings({kind: {"some_var": value}}, FACTS) == []


@pytest.mark.parametrize("kind, value", [
    ("memory_mb", 4097), ("redis_memory", "5gb"), ("redis_memory", "4295m"), ("redis_memory", str(4 * 1024 ** 3 + 1)),
    ("redis_memory", "4294968k"),
])
def test_more_memory_than_the_host_has_is_reported_with_the_hosts_figure(kind, value):
    assert oversized_settings({kind: {"some_var": value}}, FACTS) == [
        f"some_var ({value}) is more than the host's memory (4096 MB)"]


def test_a_storage_size_is_compared_with_the_file_system_that_holds_the_path():
    def check(size, path):
        return oversized_settings({"prometheus_disk": {"prometheus_retention_size": [size, path]}}, FACTS)
    assert check("100GB", "/var/lib/prometheus/metrics2") == []
    assert check("101GB", "/var/lib/prometheus/metrics2") == [
        "prometheus_retention_size (101GB) is more than the file system that holds /var/lib/prometheus/metrics2 "
        "(/var/lib/prometheus, 102400 MB)"]
    # /var/lib/prometheusx is not under /var/lib/prometheus; /srv is on /
    assert check("2GB", "/var/lib/prometheusx/data") != [] and check("21GB", "/srv/prometheus") != []
    assert check("0.5TB", "/srv/prometheus") != [] and check("20GB", "/srv/prometheus") == []
    assert check("", "/srv/prometheus") == []  # off
    assert oversized_settings({"prometheus_disk": {"x": ["1TB", "/srv"]}}, {"memtotal_mb": 1}) == []  # no mounts known


def test_an_unknown_kind_fails_clearly():
    with pytest.raises(AnsibleFilterError, match="unknown kind 'disk'"):
        oversized_settings({"disk": {"x": 1}}, FACTS)
    with pytest.raises(AnsibleFilterError, match="expects a mapping"):
        oversized_settings({"memory_mb": {"x": 1}}, "facts")
