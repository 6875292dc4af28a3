# -*- coding: utf-8 -*-
# Copyright: TeamFlow platform engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What pgbackrest_verify decides from pgBackRest's output, without running anything.

Pure functions over `pgbackrest info --output=json` and `pgbackrest repo-ls
--output=json`, so the unit tests feed them captured output.
"""

from __future__ import annotations

import json
import re

# pgBackRest's stanza status codes (info command).
STATUS_OK = 0

# A WAL segment file in the archive: 24 hex digits, then -<sha1>, then an
# optional compression extension.
_SEGMENT = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})-[0-9a-f]{40}(\.[a-z0-9]+)?$")


class CheckFailed(Exception):
    """A verification check failed; the message says which and why."""


def parse_info(text, stanza):
    """The stanza's entry of `pgbackrest info --output=json`."""
    try:
        data = json.loads(text)
    except ValueError as err:
        raise CheckFailed("pgbackrest info did not return JSON: %s" % err)
    if not isinstance(data, list):
        raise CheckFailed("pgbackrest info returned %s, not a list of stanzas" % type(data).__name__)
    for entry in data:
        if isinstance(entry, dict) and entry.get("name") == stanza:
            return entry
    raise CheckFailed("stanza '%s' is not in the output of pgbackrest info" % stanza)


def stanza_status(entry):
    """(code, message) of the stanza."""
    status = entry.get("status") or {}
    return status.get("code"), status.get("message", "")


def backups(entry, repo=None):
    """The stanza's backups (optionally of one repository), oldest first, as plain dicts."""
    result = []
    for backup in entry.get("backup") or []:
        database = backup.get("database") or {}
        if repo is not None and database.get("repo-key") != repo:
            continue
        timestamp = backup.get("timestamp") or {}
        info = backup.get("info") or {}
        archive = backup.get("archive") or {}
        result.append({
            "label": backup.get("label"),
            "type": backup.get("type"),
            "repo": database.get("repo-key"),
            "start": timestamp.get("start"),
            "stop": timestamp.get("stop"),
            "size": info.get("size"),
            "delta": info.get("delta"),
            "repository_size": (info.get("repository") or {}).get("size"),
            "archive_start": archive.get("start"),
            "archive_stop": archive.get("stop"),
            "error": backup.get("error", False),
        })
    result.sort(key=lambda b: (b["stop"] or 0, b["label"] or ""))
    return result


def archive_range(entry, repo=None):
    """(min, max) WAL segment of the stanza's current database in the archive, or (None, None)."""
    current = (entry.get("db") or [{}])[-1].get("id") if entry.get("db") else None
    lows, highs = [], []
    for archive in entry.get("archive") or []:
        database = archive.get("database") or {}
        if repo is not None and database.get("repo-key") != repo:
            continue
        if current is not None and database.get("id") != current:
            continue
        if archive.get("min"):
            lows.append(archive["min"])
        if archive.get("max"):
            highs.append(archive["max"])
    return (min(lows) if lows else None, max(highs) if highs else None)


def pg_version(entry):
    """Major version of the stanza's current database, e.g. '15'."""
    db = entry.get("db") or []
    if not db:
        raise CheckFailed("pgbackrest info names no database for the stanza")
    return str(db[-1].get("version"))


def archive_id(entry):
    """Archive id of the stanza's current database, e.g. '15-1'."""
    db = entry.get("db") or []
    if not db:
        raise CheckFailed("pgbackrest info names no database for the stanza")
    return "%s-%s" % (db[-1].get("version"), db[-1].get("id"))


def check_ages(all_backups, now, max_full_age, max_age):
    """Ages (seconds) of the newest full and newest backup; CheckFailed when one is too old or missing."""
    good = [b for b in all_backups if not b["error"] and b["stop"]]
    fulls = [b for b in good if b["type"] == "full"]
    if not fulls:
        raise CheckFailed("no full backup in the repository")
    newest_full = max(fulls, key=lambda b: b["stop"])
    newest = max(good, key=lambda b: b["stop"])
    ages = {
        "newest_full_label": newest_full["label"],
        "newest_full_age": int(now - newest_full["stop"]),
        "newest_label": newest["label"],
        "newest_age": int(now - newest["stop"]),
    }
    if max_full_age is not None and ages["newest_full_age"] > max_full_age:
        raise CheckFailed(
            "the newest full backup %s is %d s old, more than max_full_age %d s"
            % (newest_full["label"], ages["newest_full_age"], max_full_age))
    if max_age is not None and ages["newest_age"] > max_age:
        raise CheckFailed(
            "the newest backup %s is %d s old, more than max_age %d s"
            % (newest["label"], ages["newest_age"], max_age))
    return ages


def segment_number(name, segments_per_log):
    """(timeline, absolute segment number) of a 24-hex-digit WAL segment name."""
    timeline, log, seg = int(name[0:8], 16), int(name[8:16], 16), int(name[16:24], 16)
    return timeline, log * segments_per_log + seg


def segment_name(timeline, number, segments_per_log):
    return "%08X%08X%08X" % (timeline, number // segments_per_log, number % segments_per_log)


def archived_segments(repo_ls_text):
    """Names (24 hex digits) of the WAL segments in `repo-ls --recurse --output=json` of an archive id."""
    try:
        listing = json.loads(repo_ls_text)
    except ValueError as err:
        raise CheckFailed("pgbackrest repo-ls did not return JSON: %s" % err)
    names = set()
    for path, attributes in listing.items():
        if (attributes or {}).get("type", "file") != "file":
            continue
        match = _SEGMENT.match(path.rsplit("/", 1)[-1])
        if match:
            names.add(match.group(1) + match.group(2) + match.group(3))
    return names


def check_archive_continuity(segments, start, stop, segment_size=16 * 1024 * 1024):
    """Every segment from START to STOP (inclusive, one timeline) must be archived.

    Returns the number of segments checked; CheckFailed names the first missing ones.
    """
    if not start or not stop:
        raise CheckFailed("the archive range is unknown (no archived WAL)")
    segments_per_log = 0x100000000 // segment_size
    timeline, first = segment_number(start, segments_per_log)
    stop_timeline, last = segment_number(stop, segments_per_log)
    if stop_timeline != timeline:
        # a later timeline: check that one from its first archived segment
        timeline = stop_timeline
        on_timeline = sorted(segment_number(s, segments_per_log)[1] for s in segments
                             if segment_number(s, segments_per_log)[0] == timeline)
        first = on_timeline[0] if on_timeline else last
    missing = [segment_name(timeline, n, segments_per_log) for n in range(first, last + 1)
               if segment_name(timeline, n, segments_per_log) not in segments]
    if missing:
        shown = ", ".join(missing[:5]) + (" and %d more" % (len(missing) - 5) if len(missing) > 5 else "")
        raise CheckFailed("the WAL archive has a gap between %s and %s: missing %s" % (start, stop, shown))
    return last - first + 1


def compare_query(result, expected):
    """True when a query's output (psql -At, trimmed) equals the expected text."""
    return result.strip() == str(expected).strip()


def metrics(stanza, repo, ok, now, restore_seconds):
    """node_exporter textfile lines for one verification."""
    labels = 'stanza="%s",repo="%s"' % (stanza, repo)
    lines = [
        "# HELP pgbackrest_verify_last_run_timestamp_seconds When the last backup verification ended.",
        "# TYPE pgbackrest_verify_last_run_timestamp_seconds gauge",
        "pgbackrest_verify_last_run_timestamp_seconds{%s} %d" % (labels, int(now)),
        "# HELP pgbackrest_verify_success 1 if the last backup verification passed, else 0.",
        "# TYPE pgbackrest_verify_success gauge",
        "pgbackrest_verify_success{%s} %d" % (labels, 1 if ok else 0),
    ]
    if restore_seconds is not None:
        lines += [
            "# HELP pgbackrest_verify_restore_duration_seconds How long the last restore test took, restore to ready.",
            "# TYPE pgbackrest_verify_restore_duration_seconds gauge",
            "pgbackrest_verify_restore_duration_seconds{%s} %.3f" % (labels, restore_seconds),
        ]
    return "\n".join(lines) + "\n"
