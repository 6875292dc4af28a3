#!/usr/bin/env python3
"""Open-model load from many users, each on its own keep-alive connection.

    userload.py --url URL [--url URL ...] [--post URL ...] --users 1000 --interval 5 --duration 60
                [--source ADDR ...] [--processes 2] [--cafile PEM] [--out result.json]

User u sends its requests at start + u*interval/users + k*interval (k = 0, 1, ...),
so the users together arrive at a constant rate of users/interval requests per
second, and each holds one HTTP/1.1 connection open (TLS for https URLs) as a
browser tab does. Latency is measured from the time a request was due, not from
when it went out: a request that waits behind a slow one on its connection is
late by that much (the coordinated-omission correction of wrk2). A request that
meets a connection the server closed while it was idle is sent again on a new
one, as browsers do, and counts as a reconnect, not an error.

--source gives local addresses to connect from (users take them in turn), so a
per-client-address limit of the proxy sees many clients, as it would in real life.
URLs are used in turn by each user; a --post URL gets a POST of a small JSON
note (a write). --processes splits the users among that many
processes (one event loop each, the same schedule), for rates one Python process
cannot send; `client` in the summary says how much CPU the client itself used
(cores = CPU seconds / wall seconds), so a client that was the bottleneck shows.
Standard library only: it runs on a bare Debian host. Prints and writes a JSON
summary.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import ssl
import sys
import time
import urllib.parse


def percentile(sorted_values, q):
    """The q-th percentile (nearest rank) of an ascending list, in its unit."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil without floats
    return sorted_values[int(min(rank, len(sorted_values))) - 1]


def summarize(records, started, ended, users, interval, reconnects, max_open):
    """Turn (due, sent, done, status, error) records into the report's figures."""
    latencies = sorted((done - due) * 1000 for due, _, done, status, _ in records if status is not None)
    service = sorted((done - sent) * 1000 for _, sent, done, status, _ in records if status is not None)
    by_status = {}
    errors = {}
    for _, _, _, status, error in records:
        if status is not None:
            by_status[str(status)] = by_status.get(str(status), 0) + 1
        else:
            errors[error] = errors.get(error, 0) + 1
    completed = len(latencies)
    non_2xx = sum(n for code, n in by_status.items() if not code.startswith("2"))
    elapsed = max(ended - started, 1e-9)

    def pcts(values):
        return {f"p{q}": (round(percentile(values, q), 2) if values else None) for q in (50, 95, 99)} | {
            "max": round(values[-1], 2) if values else None}

    return {
        "users": users,
        "interval_s": interval,
        "target_rate_rps": round(users / interval, 2),
        "sent": len(records),
        "completed": completed,
        "achieved_rate_rps": round(completed / elapsed, 2),
        "by_status": dict(sorted(by_status.items())),
        "non_2xx": non_2xx,
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "reconnects": reconnects,
        "max_open_connections": max_open,
        "latency_ms": pcts(latencies),
        "service_time_ms": pcts(service),
    }


class Connection:
    """One user's HTTP/1.1 connection, opened on first use and after the server closes it."""

    def __init__(self, target, context, source, timeout, counters):
        self.target = target
        self.context = context
        self.source = source
        self.timeout = timeout
        self.counters = counters
        self.reader = self.writer = None

    async def open(self):
        https = self.target.scheme == "https"
        port = self.target.port or (443 if https else 80)
        self.reader, self.writer = await asyncio.wait_for(asyncio.open_connection(
            self.target.hostname, port,
            ssl=self.context if https else None,
            server_hostname=self.target.hostname if https else None,
            local_addr=(self.source, 0) if self.source else None), self.timeout)
        self.counters["open"] += 1
        self.counters["max_open"] = max(self.counters["max_open"], self.counters["open"])

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.counters["open"] -= 1
        self.reader = self.writer = None

    async def exchange(self, request):
        self.writer.write(request)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionResetError("closed before the response")
        status = int(status_line.split()[1])
        length, chunked, close = 0, False, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection" and value == "close":
                close = True
        if chunked:
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length:
            await self.reader.readexactly(length)
        if close:
            self.close()
        return status

    async def request(self, request):
        """Send one request; a reused connection the server had closed is opened again once."""
        reused = self.writer is not None
        if not reused:
            await self.open()
        try:
            return await asyncio.wait_for(self.exchange(request), self.timeout)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, IndexError, ValueError):
            self.close()
            if not reused:
                raise
        self.counters["reconnects"] += 1
        await self.open()
        return await asyncio.wait_for(self.exchange(request), self.timeout)


async def user(index, args, targets, context, start, records, counters, stop):
    source = args.source[index % len(args.source)] if args.source else None
    connections = {}
    offset = index * args.interval / args.users
    turn, k = index, 0
    while offset + k * args.interval < args.duration and not stop.is_set():
        due = start + offset + k * args.interval
        k += 1
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        target, request = targets[turn % len(targets)]
        turn += 1
        key = (target.scheme, target.netloc)
        if key not in connections:
            connections[key] = Connection(target, context, source, args.timeout, counters)
        sent = time.monotonic()
        status, error = None, None
        try:
            status = await connections[key].request(request)
        except asyncio.TimeoutError:
            error = "timeout"
            connections[key].close()
        except Exception as exc:  # noqa: BLE001 - every failure is a figure of the report
            error = type(exc).__name__
            connections[key].close()
        records.append((due, sent, time.monotonic(), status, error))
    for connection in connections.values():
        connection.close()


def requests_of(args):
    """(target, request bytes) per --url (a GET) and per --post (a POST of a small JSON note: a write)."""
    headers = "".join(f"{h.split(':', 1)[0].strip()}: {h.split(':', 1)[1].strip()}\r\n" for h in args.header)
    targets = []
    for method, url in [("GET", u) for u in args.url] + [("POST", u) for u in args.post]:
        target = urllib.parse.urlsplit(url)
        path = (target.path or "/") + (("?" + target.query) if target.query else "")
        body = json.dumps({"title": "userload", "body": "written by benchmarks/userload.py"}).encode() \
            if method == "POST" else b""
        extra = f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n" if method == "POST" else ""
        request = (f"{method} {path} HTTP/1.1\r\nHost: {target.netloc}\r\nUser-Agent: teamflow-userload\r\n"
                   f"Accept: */*\r\n{extra}{headers}\r\n").encode() + body
        targets.append((target, request))
    return targets


async def run_users(args, indexes, start):
    """Users INDEXES of the run starting at START (monotonic s); their records and counters."""
    context = ssl.create_default_context(cafile=args.cafile)
    targets = requests_of(args)
    records, counters = [], {"open": 0, "max_open": 0, "reconnects": 0}
    stop = asyncio.Event()

    async def watch_stop_file():
        while args.stop_file and not stop.is_set():
            if os.path.exists(args.stop_file):
                stop.set()
            await asyncio.sleep(0.2)

    watcher = asyncio.ensure_future(watch_stop_file())
    await asyncio.gather(*(user(i, args, targets, context, start, records, counters, stop) for i in indexes))
    watcher.cancel()
    return records, counters


def _process(args, indexes, start, pipe):
    pipe.send(asyncio.run(run_users(args, indexes, start)))
    pipe.close()


def cpu_seconds():
    """CPU seconds of this process and of its children that ended, user and system."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(args):
    began, cpu_before = time.monotonic(), cpu_seconds()
    processes = max(1, min(args.processes, args.users))
    # every process keeps the same schedule: it starts once they all have (fork is quick)
    start = time.monotonic() + 0.5 + 0.1 * processes
    if processes == 1:
        records, counters = asyncio.run(run_users(args, range(args.users), start))
        reconnects, max_open = counters["reconnects"], counters["max_open"]
    else:
        context = multiprocessing.get_context("fork")
        pipes, workers = [], []
        for number in range(processes):
            receiver, sender = context.Pipe(duplex=False)
            worker = context.Process(target=_process, args=(args, range(number, args.users, processes), start, sender))
            worker.start()
            sender.close()
            pipes.append(receiver)
            workers.append(worker)
        records, reconnects, max_open = [], 0, 0
        for receiver in pipes:
            mine, counters = receiver.recv()
            records += mine
            reconnects += counters["reconnects"]
            max_open += counters["max_open"]  # each process's own peak: together, at most this many
        for worker in workers:
            worker.join()
    ended = max((r[2] for r in records), default=start)
    summary = summarize(records, start, ended, args.users, args.interval, reconnects, max_open)
    summary["urls"] = args.url + ["POST " + url for url in args.post]
    summary["duration_s"] = round(ended - start, 2)
    summary["sources"] = len(args.source) or 1
    wall, cpu = time.monotonic() - began, cpu_seconds() - cpu_before
    summary["client"] = {"processes": processes, "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
                         "cpu_cores": round(cpu / wall, 2) if wall else None}
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", action="append", default=[], help="a URL to GET")
    parser.add_argument("--post", action="append", default=[], help="a URL to POST a small JSON note to (a write)")
    parser.add_argument("--users", type=int, default=100, help="users, one connection each")
    parser.add_argument("--interval", type=float, default=5, help="seconds between one user's requests")
    parser.add_argument("--duration", type=float, default=30, help="seconds of arrivals")
    parser.add_argument("--timeout", type=float, default=10, help="seconds per request")
    parser.add_argument("--source", action="append", default=[], help="local address to connect from")
    parser.add_argument("--processes", type=int, default=1, help="client processes the users are split among")
    parser.add_argument("--cafile", help="CA to verify HTTPS with (default: the system's)")
    parser.add_argument("--header", action="append", default=[], help="NAME: VALUE, on every request")
    parser.add_argument("--out", help="also write the summary here")
    parser.add_argument("--stop-file", help="stop sending (before --duration ends) once this file exists")
    args = parser.parse_args(argv)
    if not args.url and not args.post:
        parser.error("give at least one --url or --post")
    summary = run(args)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
