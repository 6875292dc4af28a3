"""The scenario's Patroni cluster as the tests see it: its members, who leads, SQL as postgres."""

import json

from scenario_helpers import scenario_host

MEMBERS = ["pg-primary", "pg-replica"]


def remote(name):
    return scenario_host(name)


def superuser_sql(name, sql):
    return remote(name).check_output("runuser -u postgres -- psql -XAtq -d teamflow -c %s", sql)


def patroni(name, path="patroni"):
    """GET https://NAME:8008/PATH on the member itself; the JSON, or {} when it does not answer."""
    result = remote(name).run("python3 -c %s %s", (
        "import json, ssl, sys, urllib.request as u\n"
        "c = ssl.create_default_context(cafile='/etc/teamflow-pki/ca.crt')\n"
        "try:\n"
        "    print(u.urlopen(sys.argv[1], context=c, timeout=5).read().decode())\n"
        "except Exception:\n"
        "    print('{}')\n"), f"https://{name}:8008/{path}")
    return json.loads(result.stdout or "{}") if result.rc == 0 else {}


def leader():
    for name in MEMBERS:
        if patroni(name).get("role") in ("master", "primary"):
            return name
    return None


def streaming(name):
    return superuser_sql(name, "SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), 'none')") == "streaming"
