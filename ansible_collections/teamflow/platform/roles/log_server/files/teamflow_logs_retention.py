"""Keep the log host's stores within their days and sizes, and write their metrics.

  teamflow-logs-retention --dir DIR --store NAME:DAYS:MAX_BYTES... --keep-free BYTES
                          [--textfile FILE] [--host NAME...]

Each store is DIR/NAME/YYYY-MM-DD/HOST.jsonl (role log_server). A run removes:
  1. the day directories of a store older than its DAYS (today is day 1);
  2. while a store is over its MAX_BYTES, its oldest day; if today alone is over
     it (a flood), today's largest file is emptied (rsyslog appends to it again);
  3. while the filesystem has less than --keep-free free, the oldest day of any
     store (debug first), today's aside.
With --textfile it writes, for node_exporter's textfile collector, each store's
size, cap and days, and for each --host the time of the last line received from it.
"""

import argparse
import collections
import datetime
import os
import shutil
import sys
import time

DAY = "%Y-%m-%d"
Store = collections.namedtuple("Store", "name days max_bytes")


def size_of(path):
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                pass
    return total


def days(store):
    """The store's day directories, oldest first, as (date, path)."""
    found = []
    try:
        entries = os.listdir(store)
    except FileNotFoundError:
        return found
    for name in entries:
        try:
            found.append((datetime.datetime.strptime(name, DAY).date(), os.path.join(store, name)))
        except ValueError:
            continue
    return sorted(found)


def say(message):
    print(message, flush=True)


def remove(path, why):
    shutil.rmtree(path, ignore_errors=True)
    say(f"removed {path}: {why}")


def parse_store(text):
    name, days_text, size_text = text.split(":")
    if not name.isidentifier() or int(days_text) < 1 or int(size_text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME:DAYS:MAX_BYTES")
    return Store(name, int(days_text), int(size_text))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--store", type=parse_store, action="append", required=True)
    parser.add_argument("--keep-free", type=int, default=0)
    parser.add_argument("--textfile")
    parser.add_argument("--host", action="append", default=[])
    args = parser.parse_args(argv)
    today = datetime.datetime.now(datetime.timezone.utc).date()

    for name, keep_days, max_bytes in args.store:
        store = os.path.join(args.dir, name)
        for date, path in days(store):
            if (today - date).days >= keep_days:
                remove(path, f"older than {keep_days} days")
        while size_of(store) > max_bytes:
            held = days(store)
            if len(held) > 1:
                remove(held[0][1], f"store {name} over {max_bytes} bytes")
                continue
            files = [os.path.join(held[0][1], f) for f in os.listdir(held[0][1])] if held else []
            files = [f for f in files if os.path.getsize(f) > 0]
            if not files:
                break
            largest = max(files, key=os.path.getsize)
            say(f"emptied {largest} ({os.path.getsize(largest)} bytes): store {name} over {max_bytes} bytes today")
            os.truncate(largest, 0)

    by_age = sorted(((date, path) for store in sorted(args.store, key=lambda s: s.name != "debug")
                     for date, path in days(os.path.join(args.dir, store.name)) if date < today),
                    key=lambda item: item[0])
    while by_age and shutil.disk_usage(args.dir).free < args.keep_free:
        date, path = by_age.pop(0)
        remove(path, f"less than {args.keep_free} bytes free")

    if args.textfile:
        write_metrics(args, today)


def write_metrics(args, today):
    lines = ["# HELP teamflow_logs_store_bytes Bytes a store of the log host holds.",
             "# TYPE teamflow_logs_store_bytes gauge"]
    for store in args.store:
        lines.append(f'teamflow_logs_store_bytes{{store="{store.name}"}} {size_of(os.path.join(args.dir, store.name))}')
    lines += ["# HELP teamflow_logs_store_max_bytes Size cap of a store of the log host.",
              "# TYPE teamflow_logs_store_max_bytes gauge"]
    lines += [f'teamflow_logs_store_max_bytes{{store="{store.name}"}} {store.max_bytes}' for store in args.store]
    lines += ["# HELP teamflow_logs_store_retention_days Days a store of the log host keeps.",
              "# TYPE teamflow_logs_store_retention_days gauge"]
    lines += [f'teamflow_logs_store_retention_days{{store="{store.name}"}} {store.days}' for store in args.store]
    last = {}
    for store in args.store:
        for _date, path in days(os.path.join(args.dir, store.name))[-2:]:
            for file in os.listdir(path):
                host = file[:-len(".jsonl")] if file.endswith(".jsonl") else None
                if host:
                    try:
                        last[host] = max(last.get(host, 0), os.stat(os.path.join(path, file)).st_mtime)
                    except FileNotFoundError:
                        pass
    lines += ["# HELP teamflow_logs_last_received_timestamp_seconds When the log host last stored a line of a host "
              "(0: none in two days).",
              "# TYPE teamflow_logs_last_received_timestamp_seconds gauge"]
    for host in sorted(set(args.host) | set(last)):
        lines.append(f'teamflow_logs_last_received_timestamp_seconds{{host="{host}"}} {last.get(host, 0):.0f}')
    lines += ["# HELP teamflow_logs_retention_last_run_timestamp_seconds When the retention of the log host last ran.",
              "# TYPE teamflow_logs_retention_last_run_timestamp_seconds gauge",
              f"teamflow_logs_retention_last_run_timestamp_seconds {time.time():.0f}"]
    temporary = f"{args.textfile}.{os.getpid()}"
    with open(temporary, "w") as out:
        out.write("\n".join(lines) + "\n")
    os.chmod(temporary, 0o644)
    os.replace(temporary, args.textfile)


if __name__ == "__main__":
    sys.exit(main())
