# -*- coding: utf-8 -*-
# Copyright: TeamFlow platform engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What health_gate decides, without the network: whether one response passes,
and the polling loop over rounds of checks (fetch, clock and sleep injected, so
the unit tests drive it with fakes and the module with urllib)."""

from __future__ import annotations

import json

_MISSING = object()
BODY_LIMIT = 4096


def lookup(data, path):
    """The value at a dotted PATH of decoded JSON (list items by index), or _MISSING."""
    node = data
    for part in str(path).split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _same(actual, expected):
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected if isinstance(expected, bool) else str(actual).lower() == str(expected).lower()
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return actual == expected
    return str(actual) == str(expected)


def evaluate(status, body, latency_ms, expected_status, expected_json, max_latency_ms=None):
    """(passed, reason) for one response; reason says the first check that failed."""
    if status not in expected_status:
        return False, "HTTP status %s, expected %s" % (status, " or ".join(str(s) for s in expected_status))
    if expected_json:
        try:
            data = json.loads(body)
        except ValueError:
            return False, "the body is not JSON"
        for path, expected in expected_json.items():
            actual = lookup(data, path)
            if actual is _MISSING:
                return False, "%s is missing from the body" % path
            if not _same(actual, expected):
                return False, "%s is %s, expected %s" % (path, json.dumps(actual), json.dumps(expected))
    if max_latency_ms is not None and latency_ms > max_latency_ms:
        return False, "latency %.0f ms is above %.0f ms" % (latency_ms, max_latency_ms)
    return True, None


def run_gate(urls, fetch, check, passes, interval, timeout, clock, sleep):
    """Poll URLS in rounds until PASSES consecutive rounds pass (every URL passes) or TIMEOUT s pass.

    fetch(url) -> (status or None, body, latency_ms, error or None); check(status, body, latency_ms)
    -> (passed, reason). Returns a dict: passed, rounds, consecutive_passes, samples, elapsed,
    reason (of the last failed check), last_body, last_url.
    """
    started = clock()
    samples = []
    streak = 0
    rounds = 0
    reason = None
    last_body = ""
    last_url = None
    while True:
        rounds += 1
        round_ok = True
        for url in urls:
            status, body, latency_ms, error = fetch(url)
            if error is not None:
                passed, why = False, error
            else:
                passed, why = check(status, body, latency_ms)
            samples.append({
                "url": url, "round": rounds, "status": status, "latency_ms": round(latency_ms, 1),
                "passed": passed, "reason": why, "error": error, "at": round(clock() - started, 3),
            })
            if not passed:
                round_ok = False
                reason = "%s: %s" % (url, why)
                last_body = (body or "")[:BODY_LIMIT]
                last_url = url
        streak = streak + 1 if round_ok else 0
        elapsed = clock() - started
        if streak >= passes:
            return {"passed": True, "rounds": rounds, "consecutive_passes": streak, "samples": samples,
                    "elapsed": round(elapsed, 3), "reason": reason, "last_body": last_body, "last_url": last_url}
        if elapsed + interval > timeout:
            if streak > 0:
                reason = "%d of %d consecutive passing rounds when the %ss timeout ran out%s" % (
                    streak, passes, timeout, " (before: %s)" % reason if reason else "")
            return {"passed": False, "rounds": rounds, "consecutive_passes": streak, "samples": samples,
                    "elapsed": round(elapsed, 3), "reason": reason, "last_body": last_body, "last_url": last_url}
        sleep(interval)
