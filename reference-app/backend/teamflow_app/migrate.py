"""teamflow-migrate: apply the schema migrations of this release, once.

    teamflow-migrate --env-file /etc/teamflow/teamflow.env

Reads DATABASE_URL from the environment file (so no secret is on the command
line), takes an advisory lock, applies the migrations not applied yet, each in
its own transaction, and records the release in release_history. Prints one
JSON line: {"release", "applied", "recorded"}; "changed" is true when either
list is not empty.
"""

import argparse
import importlib.resources
import json
import os
import socket
import sys

import psycopg

from . import _build

LOCK_ID = 7_340_012


def read_env_file(path):
    """KEY=VALUE lines as systemd's EnvironmentFile= reads the ones this role writes."""
    values = {}
    with open(path, encoding="utf-8") as handle:
        for raw in handle:
            line = raw.strip()
            if not line or line.startswith(("#", ";")) or "=" not in line:
                continue
            key, value = line.split("=", 1)
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1].encode("utf-8").decode("unicode_escape")
            values[key.strip()] = value
    return values


def migrations():
    folder = importlib.resources.files("teamflow_app") / "migrations"
    return sorted((item.name, item.read_text(encoding="utf-8")) for item in folder.iterdir() if item.name.endswith(".sql"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-file", help="systemd environment file with DATABASE_URL")
    parser.add_argument("--release", default=_build.VERSION)
    args = parser.parse_args(argv)
    env = read_env_file(args.env_file) if args.env_file else os.environ
    applied = []
    with psycopg.connect(env["DATABASE_URL"], autocommit=True, application_name="teamflow-migrate") as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_ID,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT name FROM schema_migrations")}
        for name, sql in migrations():
            if name in done:
                continue
            with conn.transaction():
                conn.execute(sql)
                conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
            applied.append(name)
        cur = conn.execute(
            "INSERT INTO release_history (version, migrated_from) VALUES (%s, %s) ON CONFLICT (version) DO NOTHING RETURNING version",
            (args.release, socket.getfqdn()),
        )
        recorded = [row[0] for row in cur.fetchall()]
        conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))
    print(json.dumps({"release": args.release, "applied": applied, "recorded": recorded,
                      "changed": bool(applied or recorded)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
