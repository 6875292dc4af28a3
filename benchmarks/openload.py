#!/usr/bin/env python3
"""Open-model HTTP load: requests start at a constant arrival rate, whatever the server does.

    openload.py --url URL [--url URL ...] [--post URL ...] --rate 20 --duration 45 [--cafile PEM]
                [--out result.json] [--written writes.txt]

Request i is due at start + i/rate; a pool of threads sends it (a new connection
per request, as a browser's first visit does) and its latency is measured from
that due time, not from when a thread got to it, so a stalled server shows up
in the percentiles instead of slowing the client down (no coordinated omission).
URLs are used in turn: each --url is a GET, each --post a POST of a JSON body
({"title": "openload-<run>-<index>"}), a write. Standard library only, so it runs
on a bare Debian host.

Prints and writes a JSON summary: sent, completed, by_status, errors (no
response: refused, reset, timeout), non_2xx, latency percentiles in ms, the
first error samples, the timeline (per second of the run, by due time: answered
2xx and failed), and by_url: for each URL, its requests, the failed ones
(no response or not 2xx; `errors` and `non_2xx` apart), its p95, p99 and
slowest answer and `longest_gap_s`, the longest
time between two of its successful answers (how long it was out during a fault).
--written keeps each acknowledged write (2xx to a --post) as a line
"<sent epoch s> <answered epoch s> <response body>", to count lost writes with.
"""

import argparse
import concurrent.futures
import http.client
import json
import os
import ssl
import sys
import threading
import time
import urllib.parse


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return round(sorted_values[index], 2)


def fault_figures(summary, written, fault_at, read_url, write_url):
    """What users saw of a fault at FAULT_AT (epoch s) during a run with one --url READ_URL and one --post
    WRITE_URL: SUMMARY is the run's summary, WRITTEN the text of its --written file. The figures, and the ids
    of the acknowledged writes (to look for on the database afterwards: those missing are lost)."""
    rows = [line.split(" ", 2) for line in written.splitlines() if line.strip()]
    acknowledged = [json.loads(body)["id"] for _, _, body in rows]
    after = [float(answered) for sent, answered, _ in rows if float(sent) >= fault_at]
    reads, writes = summary["by_url"][read_url], summary["by_url"]["POST " + write_url]
    figures = {
        "requests": summary["sent"], "failed": summary["errors"] + summary["non_2xx"],
        "writes": writes["sent"], "failed_writes": writes["failed"],
        "reads": reads["sent"], "failed_reads": reads["failed"],
        "seconds_to_first_write": round(min(after) - fault_at, 1) if after else None,
        "longest_write_gap_s": writes["longest_gap_s"], "slowest_write_ms": writes["latency_max_ms"],
    }
    figures.update(timeline_figures(summary, fault_at))
    return figures, acknowledged


def timeline_figures(summary, fault_at, undo_at=None):
    """The run's timeline and the seconds into it of the fault (and of its undoing), for the pictures."""
    began = summary.get("started_at")
    return {"timeline": summary.get("timeline"),
            "fault_at_s": round(fault_at - began, 1) if began and fault_at else None,
            "undo_at_s": round(undo_at - began, 1) if began and undo_at else None}


def outage_figures(summary, whole_again_s, base="", fault_at=None, undo_at=None):
    """What users saw of a fault to the app or cache tier: requests, failed (no answer), non-2xx, p99, the
    seconds until the stack was whole again, and each URL's figures (its URL without BASE); the timeline, with
    the fault at FAULT_AT and its undoing at UNDO_AT (epoch s)."""
    return {"requests": summary["sent"], "failed": summary["errors"], "non_2xx": summary["non_2xx"],
            "p99_ms": summary["latency_ms"]["p99"], "whole_again_s": whole_again_s,
            "by_url": {url.replace(base, ""): {k: v for k, v in figures.items() if k != "longest_gap_s"}
                       for url, figures in summary["by_url"].items()},
            **timeline_figures(summary, fault_at, undo_at)}


def timeline(results, rate):
    """[second, answered 2xx, failed] for each second of the run, by the time each request was due."""
    seconds = {}
    for index, _, status, error, _, _ in results:
        counts = seconds.setdefault(int(index / rate), [0, 0])
        counts[0 if error is None and 200 <= status < 300 else 1] += 1
    return [[second, *seconds[second]] for second in sorted(seconds)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", action="append", default=[], help="a URL to GET")
    parser.add_argument("--post", action="append", default=[], help="a URL to POST a JSON note to (a write)")
    parser.add_argument("--rate", type=float, default=20, help="requests per second")
    parser.add_argument("--duration", type=float, default=30, help="seconds of arrivals")
    parser.add_argument("--timeout", type=float, default=10, help="seconds per request")
    parser.add_argument("--concurrency", type=int, default=256, help="most requests in flight")
    parser.add_argument("--cafile", help="CA (or self-signed certificate) to verify HTTPS with")
    parser.add_argument("--header", action="append", default=[], help="NAME: VALUE, on every request")
    parser.add_argument("--out", help="also write the summary here")
    parser.add_argument("--stop-file", help="stop sending (before --duration ends) once this file exists")
    parser.add_argument("--written", help="write each acknowledged write's times and response body here")
    args = parser.parse_args(argv)
    if not args.url and not args.post:
        parser.error("give at least one --url or --post")

    context = ssl.create_default_context(cafile=args.cafile)
    targets = [("GET", urllib.parse.urlsplit(u)) for u in args.url] + [("POST", urllib.parse.urlsplit(u)) for u in args.post]
    run = "%x" % int(time.time())
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    lock = threading.Lock()
    results = []
    written = []

    def one(index, due):
        method, target = targets[index % len(targets)]
        path = (target.path or "/") + (("?" + target.query) if target.query else "")
        status, error, body = None, None, b""
        sent = time.time()
        try:
            if target.scheme == "https":
                conn = http.client.HTTPSConnection(target.hostname, target.port or 443, timeout=args.timeout, context=context)
            else:
                conn = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=args.timeout)
            try:
                request_headers = dict(headers, **{"X-Request-ID": "openload-%s-%d" % (run, index)})
                payload = None
                if method == "POST":
                    payload = json.dumps({"title": "openload-%s-%d" % (run, index)}).encode()
                    request_headers["Content-Type"] = "application/json"
                conn.request(method, path, body=payload, headers=request_headers)
                response = conn.getresponse()
                body = response.read()
                status = response.status
            finally:
                conn.close()
        except Exception as exc:  # noqa: BLE001 - every failure is a result
            error = "%s: %s" % (type(exc).__name__, exc)
        latency = (time.monotonic() - due) * 1000
        with lock:
            results.append((index, ("POST " if method == "POST" else "") + target.geturl(), status, error, latency,
                            time.time()))
            if method == "POST" and status is not None and 200 <= status < 300 and args.written:
                written.append("%.3f %.3f %s" % (sent, time.time(), body.decode(errors="replace").replace("\n", " ")))

    total = int(args.rate * args.duration)
    started, started_at = time.monotonic(), time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        for index in range(total):
            if args.stop_file and index % max(1, int(args.rate)) == 0 and os.path.exists(args.stop_file):
                total = index
                break
            due = started + index / args.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, index, due)
    elapsed = time.monotonic() - started

    by_status = {}
    errors = [r for r in results if r[3] is not None]
    for r in results:
        key = str(r[2]) if r[2] is not None else "error"
        by_status[key] = by_status.get(key, 0) + 1
    latencies = sorted(r[4] for r in results if r[3] is None)
    by_url = {}
    for method, target in targets:
        key = ("POST " if method == "POST" else "") + target.geturl()
        mine = [r for r in results if r[1] == key]
        answered = sorted(r[5] for r in mine if r[2] is not None and 200 <= r[2] < 300)
        by_url.setdefault(key, {
            "sent": len(mine),
            "failed": sum(1 for r in mine if r[2] is None or not 200 <= r[2] < 300),
            "errors": sum(1 for r in mine if r[2] is None),
            "non_2xx": sum(1 for r in mine if r[2] is not None and not 200 <= r[2] < 300),
            "p95_ms": percentile(sorted(r[4] for r in mine if r[3] is None), 95),
            "p99_ms": percentile(sorted(r[4] for r in mine if r[3] is None), 99),
            "latency_max_ms": round(max((r[4] for r in mine), default=0), 2),
            "longest_gap_s": round(max((b - a for a, b in zip(answered, answered[1:])), default=0), 2),
        })
    summary = {
        "sent": total,
        "completed": len(results),
        "rate": args.rate,
        "duration_s": round(elapsed, 2),
        "by_status": by_status,
        "errors": len(errors),
        "non_2xx": sum(1 for r in results if r[2] is not None and not 200 <= r[2] < 300),
        "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
                       "p99": percentile(latencies, 99), "max": round(latencies[-1], 2) if latencies else None},
        "error_samples": [{"index": r[0], "url": r[1], "error": r[3], "at": r[5]} for r in errors[:10]],
        "non_2xx_samples": [{"index": r[0], "url": r[1], "status": r[2], "at": r[5]}
                            for r in results if r[2] is not None and not 200 <= r[2] < 300][:10],
        "by_url": by_url,
        "started_at": round(started_at, 3),
        "timeline": timeline(results, args.rate),
    }
    if args.written:
        with open(args.written + ".tmp", "w", encoding="utf-8") as handle:
            handle.write("".join(line + "\n" for line in written))
        os.replace(args.written + ".tmp", args.written)
    text = json.dumps(summary, indent=2)
    if args.out:
        with open(args.out + ".tmp", "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        os.replace(args.out + ".tmp", args.out)
    print(text)
    return 0 if summary["errors"] == 0 and summary["non_2xx"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
