"""Search the logs every host shipped to this log host (role log_server).

  teamflow-logs [--request-id ID] [--host HOST]... [--unit UNIT] [--ident IDENT]
                [--level LEVEL] [--since TIME] [--until TIME] [--grep TEXT]
                [--store main|debug|all] [--json]

Prints the matching lines, oldest first: TIME HOST IDENT[UNIT] SEVERITY MESSAGE
(--json: the stored JSON lines). --request-id finds a request's lines on every
tier: nginx's access line (web host), the app's line (app host) and PostgreSQL's
slow statement (its comment carries the id). --level LEVEL keeps LEVEL and more
severe (emerg, alert, crit, err, warning, notice, info, debug). TIME is
YYYY-MM-DD[THH:MM[:SS]] (UTC) or an age such as 30m, 2h, 7d; --since defaults to
a day ago. The debug store is read only with --store debug or all, or --level debug.
"""

import argparse
import datetime
import json
import os
import re
import sys

ROOT = os.environ.get("TEAMFLOW_LOGS_DIR", "/var/log/teamflow")
LEVELS = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"]
ALIASES = {"error": "err", "warn": "warning", "critical": "crit", "emergency": "emerg", "panic": "emerg"}


def moment(text):
    """A datetime (UTC) from an ISO time or an age."""
    age = re.fullmatch(r"(\d+)([smhd])", text)
    now = datetime.datetime.now(datetime.timezone.utc)
    if age:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[age.group(2)]
        return now - datetime.timedelta(**{unit: int(age.group(1))})
    try:
        value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a time (YYYY-MM-DD[THH:MM[:SS]]) nor an age (30m, 2h, 7d)")
    return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)


def level(text):
    name = ALIASES.get(text.lower(), text.lower())
    if name not in LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(LEVELS)}")
    return LEVELS.index(name)


def files(stores, since, until, hosts):
    """The stored files that may hold lines between SINCE and UNTIL, by day."""
    first, last = (since - datetime.timedelta(days=1)).date(), (until + datetime.timedelta(days=1)).date()
    for store in stores:
        directory = os.path.join(ROOT, store)
        try:
            day_names = sorted(os.listdir(directory))
        except FileNotFoundError:
            continue
        for day in day_names:
            try:
                date = datetime.date.fromisoformat(day)
            except ValueError:
                continue
            if not first <= date <= last:
                continue
            for name in sorted(os.listdir(os.path.join(directory, day))):
                if name.endswith(".jsonl") and (not hosts or name[:-len(".jsonl")] in hosts):
                    yield os.path.join(directory, day, name)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], usage=__doc__.split("\n\n")[1])
    parser.add_argument("--request-id")
    parser.add_argument("--host", action="append", default=[])
    parser.add_argument("--unit")
    parser.add_argument("--ident")
    parser.add_argument("--level", type=level)
    parser.add_argument("--since", type=moment)
    parser.add_argument("--until", type=moment)
    parser.add_argument("--grep")
    parser.add_argument("--store", choices=["main", "debug", "all"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    now = datetime.datetime.now(datetime.timezone.utc)
    since = args.since or now - datetime.timedelta(days=1)
    until = args.until or now
    store = args.store or ("all" if args.level == LEVELS.index("debug") else "main")
    stores = ["main", "debug"] if store == "all" else [store]
    needles = [text for text in (args.request_id, args.grep) if text]

    found = []
    for path in files(stores, since, until, set(args.host)):
        with open(path, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if any(needle not in line for needle in needles):
                    continue
                try:
                    entry = json.loads(line)
                    when = moment(entry["time"])
                except (ValueError, KeyError, argparse.ArgumentTypeError):
                    continue
                if not since <= when <= until:
                    continue
                if args.unit and entry.get("unit") not in (args.unit, args.unit + ".service"):
                    continue
                if args.ident and entry.get("ident") != args.ident:
                    continue
                severity = entry.get("severity", "info")
                if args.level is not None and (severity not in LEVELS or LEVELS.index(severity) > args.level):
                    continue
                found.append((when, line.rstrip("\n"), entry))
    found.sort(key=lambda item: item[0])
    for when, line, entry in found:
        if args.json:
            print(line)
        else:
            unit = f"[{entry['unit']}]" if entry.get("unit") else ""
            print(f"{entry['time']} {entry.get('host', '-')} {entry.get('ident', '-')}{unit} {entry.get('severity', '-')} "
                  f"{entry.get('message', '')}")
    return 0 if found else 1


if __name__ == "__main__":
    sys.exit(main())
