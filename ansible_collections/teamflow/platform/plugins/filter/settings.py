# -*- coding: utf-8 -*-
# Copyright: TeamFlow platform engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters checking a role's settings before anything changes: by kind (docs: invalid_settings.yml) and against
what the host has (docs: oversized_settings.yml)."""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from urllib.parse import urlsplit

from ansible.errors import AnsibleFilterError

PASSWORD_MIN_LENGTH = 16
BCRYPT_MAX_BYTES = 72

_EMAIL = re.compile(r"^[^@\s]+@[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
_SIZE = re.compile(r"^\d+(\.\d+)?\s*([kmgt]i?b?|b)?$", re.I)
_DURATION_UNIT = (r"(ms|us|s|sec|secs|second|seconds|m|min|mins|minute|minutes|h|hr|hour|hours|d|day|days|w|week|weeks"
                  r"|month|months|y|year|years)")
_DURATION = re.compile(rf"^(\d+(\.\d+)?\s*{_DURATION_UNIT}?\s*)+$", re.I)
_PERCENT = re.compile(r"^(100|[1-9]?\d)(\.\d+)?%$")
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]*):(\d+)$")


# systemd calendar events (systemd.time(7), OnCalendar=): shorthands, or [WEEKDAYS] [DATE] [TIME] [TIME ZONE]
_CALENDAR_SHORTHANDS = {"minutely", "hourly", "daily", "weekly", "monthly", "yearly", "annually", "quarterly",
                        "semiannually"}
_WEEKDAY = r"(mon|tue|wed|thu|fri|sat|sun|monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_WEEKDAYS = re.compile(rf"^{_WEEKDAY}(\.\.{_WEEKDAY})?(,{_WEEKDAY}(\.\.{_WEEKDAY})?)*$", re.I)


def _calendar_component(text, low, high, fraction=False, step=True):
    """A date or time component: '*', or a comma list of N, N..M, N/S or N..M/S within LOW..HIGH."""
    if text == "*":
        return True
    number = r"\d+(?:\.\d+)?" if fraction else r"\d+"
    for item in text.split(","):
        match = re.fullmatch(rf"(?P<first>{number})(?:\.\.(?P<last>{number}))?(?:/(?P<step>{number}))?", item)
        if not match or (match["step"] and not step):
            return False
        if any(value is not None and not low <= float(value) < high + 1 for value in (match["first"], match["last"])):
            return False
        if match["step"] and float(match["step"]) <= 0:
            return False
    return True


def _calendar_date(text):
    """[YEAR-]MONTH-DAY, or MONTH~DAY (days before the month's last one)."""
    separator = "~" if "~" in text else "-"
    head, _sep, day = text.rpartition(separator)
    parts = head.split("-") if head else []
    if not 1 <= len(parts) <= 2:
        return False
    year = parts[0] if len(parts) == 2 else "*"
    return (_calendar_component(year, 0, 9999) and _calendar_component(parts[-1], 1, 12)
            and _calendar_component(day, 1, 31, step=separator == "-"))


def _calendar_time(text):
    parts = text.split(":")
    if len(parts) not in (2, 3):
        return False
    seconds = parts[2] if len(parts) == 3 else "0"
    return (_calendar_component(parts[0], 0, 23) and _calendar_component(parts[1], 0, 59)
            and _calendar_component(seconds, 0, 59, fraction=True))


def _time_zone(text):
    if text.upper() == "UTC":
        return True
    try:
        return text in zoneinfo.available_timezones()
    except Exception:  # pylint: disable=broad-exception-caught
        return False


def _calendar(value):
    """Whether VALUE is a calendar event systemd accepts (what `systemd-analyze calendar` parses)."""
    tokens = str(value).split()
    if not tokens:
        return False
    if tokens[0].startswith("@"):
        return len(tokens) == 1 and tokens[0][1:].isdigit()
    if len(tokens) > 1 and _time_zone(tokens[-1]):
        tokens = tokens[:-1]
    if len(tokens) == 1 and tokens[0].lower() in _CALENDAR_SHORTHANDS:
        return True
    if tokens and _WEEKDAYS.match(tokens[0]):
        tokens = tokens[1:]
        if not tokens:
            return True
    if tokens and ("-" in tokens[0] or "~" in tokens[0]) and ":" not in tokens[0]:
        if not _calendar_date(tokens[0]):
            return False
        tokens = tokens[1:]
        if not tokens:
            return True
    return len(tokens) == 1 and _calendar_time(tokens[0])


def _port(value):
    return bool(re.fullmatch(r"\d+", str(value).strip())) and 0 < int(value) < 65536


def _url(value):
    parts = urlsplit(str(value))
    return parts.scheme in ("http", "https") and bool(parts.hostname) and " " not in str(value)


CHECKS = {
    "port": (_port, "is {value!r}, not a port (1-65535)"),
    "hostport": (lambda value: bool(_HOST_PORT.match(str(value))) and _port(_HOST_PORT.match(str(value)).group(2)),
                 "is {value!r}, not HOST:PORT (or :PORT) with a port from 1 to 65535"),
    "email": (lambda value: bool(_EMAIL.match(str(value))), "is {value!r}, not an e-mail address"),
    "url": (_url, "is {value!r}, not an http:// or https:// URL with a host"),
    # a URL with a token in it (a webhook, a DSN): never shows the value
    "secret_url": (_url, "is not an http:// or https:// URL with a host"),
    "size": (lambda value: bool(_SIZE.match(str(value).strip())), "is {value!r}, not a size (such as 512MB, 256M, 2G)"),
    "memory": (lambda value: bool(_SIZE.match(str(value).strip()) or _PERCENT.match(str(value).strip())),
               "is {value!r}, not a size (such as 512MB) or a percentage of the host's memory (such as 50%)"),
    "calendar": (_calendar, "is {value!r}, not a systemd calendar event (such as daily, *-*-* 01:00:00, Mon..Fri 09:00)"),
    "duration": (lambda value: bool(_DURATION.match(str(value).strip())),
                 "is {value!r}, not a duration (such as 30s, 5m, 1h30m, 15d)"),
    # never shows the value
    "password": (lambda value: len(str(value)) >= PASSWORD_MIN_LENGTH,
                 f"is empty or shorter than {PASSWORD_MIN_LENGTH} characters (use a long random one, from a vault)"),
    "secret": (lambda value: len(str(value)) > 0, "is empty (give it from a vault)"),
    # a password stored as a bcrypt hash, which reads the first 72 bytes only
    "bcrypt_password": (lambda value: len(str(value)) >= PASSWORD_MIN_LENGTH
                        and len(str(value).encode("utf-8")) <= BCRYPT_MAX_BYTES,
                        f"is empty, shorter than {PASSWORD_MIN_LENGTH} characters or longer than {BCRYPT_MAX_BYTES} "
                        "bytes, the most bcrypt hashes (use a long random one, from a vault)"),
}


def _items(values):
    for name, value in values.items():
        if isinstance(value, (list, tuple)):
            yield from ((f"{name}[{index}]", item) for index, item in enumerate(value))
        else:
            yield name, value


def invalid_settings(settings):
    """What is wrong with SETTINGS, a mapping of kind to {variable name: value}; an empty list when nothing is.

    A kind ending in '?' also accepts an empty value (a setting that is off when empty). A list value is checked
    item by item (NAME[0], NAME[1], ...). Each message names the variable; a password or secret's message never
    holds its value.
    """
    if not isinstance(settings, Mapping):
        raise AnsibleFilterError(f"invalid_settings expects a mapping of kind to {{name: value}}, got {settings!r}")
    problems = []
    for kind, values in settings.items():
        optional = kind.endswith("?")
        check = CHECKS.get(kind.rstrip("?"))
        if check is None:
            raise AnsibleFilterError(f"invalid_settings: unknown kind {kind!r} (known: {', '.join(sorted(CHECKS))})")
        if not isinstance(values, Mapping):
            raise AnsibleFilterError(f"invalid_settings: the {kind} settings must be a mapping of name to value")
        valid, message = check
        for name, value in _items(values):
            if value is None or (optional and str(value) == ""):
                if value is None and not optional:
                    problems.append(f"{name} is not set")
                continue
            if not valid(value):
                problems.append(f"{name} {message.format(value=value)}")
    return problems


# sizes as the services read them: Redis (redis.conf: 1k = 1000 bytes, 1kb = 1024; a bare number is bytes) and
# Prometheus (--storage.tsdb.retention.size: B, KB, MB, ... powers of 1024)
_REDIS_SIZE = re.compile(r"^(\d+)\s*(k|kb|m|mb|g|gb)?$", re.I)
_REDIS_UNITS = {None: 1, "k": 1000, "kb": 1024, "m": 1000 ** 2, "mb": 1024 ** 2, "g": 1000 ** 3, "gb": 1024 ** 3}
_PROMETHEUS_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|PB|EB)$")
_PROMETHEUS_UNITS = {unit: 1024 ** power for power, unit in enumerate(("B", "KB", "MB", "GB", "TB", "PB", "EB"))}
MIB = 1024 ** 2


def _redis_bytes(value):
    match = _REDIS_SIZE.match(str(value).strip())
    return int(match.group(1)) * _REDIS_UNITS[(match.group(2) or "").lower() or None] if match else None


def _prometheus_bytes(value):
    match = _PROMETHEUS_SIZE.match(str(value).strip())
    return int(float(match.group(1)) * _PROMETHEUS_UNITS[match.group(2)]) if match else None


def _file_system(path, mounts):
    """The mount (of the facts' mounts) that holds PATH: the longest mount point above it."""
    path = "/" + str(path).strip("/")
    found = None
    for mount in mounts or []:
        point = mount.get("mount", "")
        if (path == point or path.startswith(point.rstrip("/") + "/")) and (found is None or len(point) > len(found["mount"])):
            found = mount
    return found


def oversized_settings(settings, facts):
    """Which sizes in SETTINGS are more than the host has, from its FACTS (ansible_facts); an empty list when none.

    SETTINGS maps a kind to {variable name: value}: memory_mb (a number of MiB), redis_memory (Redis's maxmemory:
    a size such as 2gb; a percentage is a share of the host and always fits), against the host's memory; and
    prometheus_disk ({name: [size such as 50GB, path]}), against the size of the file system that holds the path.
    Each message names the variable, its value and the host's figure. A value that is not a size of its kind is
    left to invalid_settings.
    """
    if not isinstance(settings, Mapping) or not isinstance(facts, Mapping):
        raise AnsibleFilterError("oversized_settings expects a mapping of kind to {name: value}, and the host's facts")
    memory = int(facts.get("memtotal_mb") or 0) * MIB
    problems = []
    for kind, values in settings.items():
        for name, value in values.items():
            if kind in ("memory_mb", "redis_memory"):
                wanted = (int(value) * MIB if re.fullmatch(r"\d+", str(value).strip()) else None) \
                    if kind == "memory_mb" else _redis_bytes(value)
                if wanted is not None and memory and wanted > memory:
                    problems.append(f"{name} ({value}) is more than the host's memory ({memory // MIB} MB)")
            elif kind == "prometheus_disk":
                size, path = value
                wanted, mount = _prometheus_bytes(size), _file_system(path, facts.get("mounts"))
                if wanted is not None and mount and mount.get("size_total") and wanted > int(mount["size_total"]):
                    problems.append(f"{name} ({size}) is more than the file system that holds {path} "
                                    f"({mount['mount']}, {int(mount['size_total']) // MIB} MB)")
            else:
                raise AnsibleFilterError(f"oversized_settings: unknown kind {kind!r} (known: memory_mb, redis_memory, "
                                         "prometheus_disk)")
    return problems


class FilterModule:
    """teamflow.platform's settings filters."""

    def filters(self):
        return {"invalid_settings": invalid_settings, "oversized_settings": oversized_settings}
