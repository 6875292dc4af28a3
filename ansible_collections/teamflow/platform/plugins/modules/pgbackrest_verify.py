#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: TeamFlow platform engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgbackrest_verify
short_description: Prove that pgBackRest backups exist, are fresh, have a continuous WAL archive, and restore
version_added: 0.1.0
description:
  - Reads C(pgbackrest info --output=json) for a stanza and one repository and checks that the stanza is
    C(ok), that the newest full backup is younger than O(max_full_age) and the newest backup of any type
    younger than O(max_age), and that every WAL segment from the oldest kept backup to the newest archived
    one is in the repository (no gap). Optionally runs C(pgbackrest verify) too.
  - With O(restore_test=true) it restores the newest backup (or O(restore_set), or to O(restore_target)) into
    a scratch directory, starts a throwaway PostgreSQL on a free local port (Unix socket only, no TCP, no
    archiving) as the postgres user, lets it recover to the end of the archive (or the target), waits until it
    accepts connections, runs O(queries) and compares each result with its expected value, then stops the
    server and removes the scratch directory, also when something failed.
  - Fails with a message naming the check that failed; for a failed restore or start, the message carries the
    tail of the restore's or PostgreSQL's log.
  - Writes the result as node_exporter textfile metrics when O(textfile_dir) is set.
  - Runs as root (it writes metrics and runs pgBackRest and PostgreSQL as O(pg_user)).
author:
  - TeamFlow platform engineering (@teamflow)
options:
  stanza:
    description: The pgBackRest stanza.
    type: str
    required: true
  repo:
    description: The repository (its key, C(1) for C(repo1)) to check and restore from.
    type: int
    default: 1
  config:
    description: pgBackRest's configuration file; pgBackRest's default when not given.
    type: path
  max_full_age:
    description: Most seconds since the newest full backup ended. C(0) skips the check.
    type: int
    default: 93600
  max_age:
    description: Most seconds since the newest backup of any type ended. C(0) skips the check.
    type: int
    default: 7200
  check_archive:
    description: Check that the WAL archive is continuous from the oldest kept backup's first segment to the newest archived segment.
    type: bool
    default: true
  pgbackrest_verify:
    description: Also run C(pgbackrest verify) on the repository (reads and checksums every file; slow on large repositories).
    type: bool
    default: false
  restore_test:
    description: Restore a backup into a scratch directory, start it and run O(queries).
    type: bool
    default: false
  restore_set:
    description: Label of the backup to restore; the newest when not given.
    type: str
  restore_target:
    description:
      - A point in time to recover to (PostgreSQL timestamp, for example C(2026-11-26 05:00:00+00)); the end of the
        archive when not given.
    type: str
  queries:
    description: SQL to run on the restored server, each with the result it must give (or none, to report it).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: A name for the result and the failure message.
        type: str
        required: true
      sql:
        description: One SQL statement whose output (C(psql -At), trimmed) is compared.
        type: str
        required: true
      expected:
        description:
          - The output it must give, for example a row count or an C(md5) of a table's rows.
          - Without it the output is only reported (the query must still succeed), for example the time of the
            newest row, which tells how recent the restored data is.
        type: str
      database:
        description: Database to run it in.
        type: str
        default: postgres
  scratch_base:
    description: Directory under which the scratch directory of a restore test is made (it needs room for the database).
    type: path
    default: /var/tmp
  start_timeout:
    description: Seconds to wait for the restored server to finish recovery and accept connections.
    type: int
    default: 300
  pg_user:
    description: The operating system user that runs pgBackRest and PostgreSQL.
    type: str
    default: postgres
  pg_bin_dir:
    description: PostgreSQL's binaries; C(/usr/lib/postgresql/VERSION/bin) of the stanza's version when not given.
    type: path
  textfile_dir:
    description: node_exporter's textfile directory for C(pgbackrest_verify_STANZA_repoN.prom); no metrics when not given.
    type: path
notes:
  - Check mode runs the read-only checks and returns what a restore test would do in RV(restore_plan).
  - The restored server listens on a Unix socket in the scratch directory only; its C(archive_mode) is off, so it
    never archives into the repository.
requirements:
  - pgBackRest 2.37 or newer and the PostgreSQL server binaries of the stanza's version on the host.
seealso:
  - name: pgBackRest user guide, restore
    description: How pgBackRest restores and recovers.
    link: https://pgbackrest.org/user-guide.html#restore
"""

EXAMPLES = r"""
- name: Check age and WAL continuity of repo1
  teamflow.platform.pgbackrest_verify:
    stanza: teamflow
    max_full_age: 93600
    max_age: 7200

- name: Restore the newest backup of repo2 and prove the data is there
  teamflow.platform.pgbackrest_verify:
    stanza: teamflow
    repo: 2
    restore_test: true
    queries:
      - name: projects
        database: teamflow
        sql: SELECT count(*) >= 1 FROM projects
        expected: "t"
    textfile_dir: /var/lib/prometheus/node-exporter
  register: verification

- name: Restore to a point in time
  teamflow.platform.pgbackrest_verify:
    stanza: teamflow
    restore_test: true
    restore_target: "2026-11-26 05:00:00+00"
    max_age: 0
"""

RETURN = r"""
stanza_status:
  description: Status of the stanza as pgBackRest reports it.
  returned: always
  type: dict
  sample: {code: 0, message: ok}
backups:
  description: The repository's backups, oldest first.
  returned: always
  type: list
  elements: dict
  sample:
    - {label: 20261126-010000F, type: full, repo: 1, start: 1795660800, stop: 1795660830, size: 30886825,
       repository_size: 3803104, archive_start: "000000010000000000000002", archive_stop: "000000010000000000000003",
       error: false}
ages:
  description: Seconds since the newest full backup and the newest backup ended, with their labels.
  returned: always
  type: dict
  sample: {newest_full_label: 20261126-010000F, newest_full_age: 3600, newest_label: 20261126-013000F_20261126-043000I,
           newest_age: 600}
archive:
  description: The archive range of the current database and how many segments the continuity check found in place.
  returned: always
  type: dict
  sample: {min: "000000010000000000000001", max: "000000010000000000000042", checked_from: "000000010000000000000002",
           segments_checked: 65}
pgbackrest_verify:
  description: Whether C(pgbackrest verify) ran and passed.
  returned: always
  type: dict
  sample: {ran: true, passed: true}
restore_plan:
  description: What the restore test restores (and in check mode would restore).
  returned: when O(restore_test=true)
  type: dict
  sample: {set: 20261126-010000F, target: null, scratch_base: /var/tmp, queries: 1}
restore:
  description: The restore test's outcome.
  returned: when O(restore_test=true) and not in check mode
  type: dict
  sample: {label: 20261126-010000F, restore_seconds: 4.2, start_seconds: 3.1, duration_seconds: 7.3, port: 40123}
queries:
  description: Each query with its expected and actual result.
  returned: when O(restore_test=true) and not in check mode
  type: list
  elements: dict
  sample: [{name: projects, database: teamflow, expected: "t", actual: "t", passed: true}]
failed_check:
  description: Which check failed (C(stanza), C(age), C(archive), C(verify), C(restore), C(start), C(query)).
  returned: failure
  type: str
  sample: archive
"""

import os
import pwd
import shutil
import socket
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.teamflow.platform.plugins.module_utils import pgbackrest as pgbr


class Verification:
    """One run of the module: each check records its result or raises pgbr.CheckFailed."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.result = {"changed": False, "pgbackrest_verify": {"ran": False, "passed": None}}
        self.failed_check = None

    # --- commands -----------------------------------------------------------

    def as_pg_user(self, argv):
        if pwd.getpwuid(os.geteuid()).pw_name == self.params["pg_user"]:
            return argv
        return ["runuser", "-u", self.params["pg_user"], "--"] + argv

    def pgbackrest(self, *args):
        argv = ["pgbackrest", "--stanza=%s" % self.params["stanza"], "--repo=%d" % self.params["repo"]]
        if self.params["config"]:
            argv.append("--config=%s" % self.params["config"])
        return self.module.run_command(self.as_pg_user(argv + list(args)))

    # --- read-only checks ----------------------------------------------------

    def read_info(self):
        self.failed_check = "stanza"
        rc, out, err = self.pgbackrest("--output=json", "info")
        if rc != 0:
            raise pgbr.CheckFailed("pgbackrest info failed (rc %d): %s" % (rc, (err or out).strip()[-2000:]))
        entry = pgbr.parse_info(out, self.params["stanza"])
        code, message = pgbr.stanza_status(entry)
        self.result["stanza_status"] = {"code": code, "message": message}
        self.result["backups"] = pgbr.backups(entry, self.params["repo"])
        if code != pgbr.STATUS_OK:
            raise pgbr.CheckFailed("stanza '%s' is not ok: %s (code %s)" % (self.params["stanza"], message, code))
        return entry

    def check_ages(self):
        self.failed_check = "age"
        self.result["ages"] = pgbr.check_ages(
            self.result["backups"], time.time(),
            self.params["max_full_age"] or None, self.params["max_age"] or None)

    def check_archive(self, entry):
        self.failed_check = "archive"
        low, high = pgbr.archive_range(entry, self.params["repo"])
        good = [b for b in self.result["backups"] if not b["error"] and b["archive_start"]]
        start = min(b["archive_start"] for b in good) if good else low
        self.result["archive"] = {"min": low, "max": high, "checked_from": start, "segments_checked": 0}
        if not self.params["check_archive"]:
            return
        rc, out, err = self.pgbackrest(
            "--output=json", "--recurse", "repo-ls", "archive/%s/%s" % (self.params["stanza"], pgbr.archive_id(entry)))
        if rc != 0:
            raise pgbr.CheckFailed("pgbackrest repo-ls of the archive failed (rc %d): %s" % (rc, (err or out).strip()[-2000:]))
        segments = pgbr.archived_segments(out)
        self.result["archive"]["segments_checked"] = pgbr.check_archive_continuity(segments, start, high)

    def run_pgbackrest_verify(self):
        self.failed_check = "verify"
        self.result["pgbackrest_verify"]["ran"] = True
        rc, out, err = self.pgbackrest("--log-level-console=warn", "verify")
        text = (out + err).strip()
        passed = rc == 0 and "ERROR" not in text and "WARN" not in text
        self.result["pgbackrest_verify"]["passed"] = passed
        if not passed:
            raise pgbr.CheckFailed("pgbackrest verify found problems in repo%d: %s" % (self.params["repo"], text[-2000:]))

    # --- restore test --------------------------------------------------------

    def restore_plan(self):
        label = self.params["restore_set"]
        if not label and self.params["restore_target"]:
            label = "(newest before the target)"
        elif not label:
            good = [b for b in self.result["backups"] if not b["error"]]
            label = good[-1]["label"] if good else None
        return {"set": label, "target": self.params["restore_target"], "scratch_base": self.params["scratch_base"],
                "queries": len(self.params["queries"])}

    def restore_test(self, entry):
        plan = self.result["restore_plan"]
        if not plan["set"]:
            self.failed_check = "restore"
            raise pgbr.CheckFailed("no backup to restore in repo%d" % self.params["repo"])
        pg_user = pwd.getpwnam(self.params["pg_user"])
        bin_dir = self.params["pg_bin_dir"] or "/usr/lib/postgresql/%s/bin" % pgbr.pg_version(entry)
        scratch = tempfile.mkdtemp(prefix="pgbackrest-verify-", dir=self.params["scratch_base"])
        data = os.path.join(scratch, "data")
        log = os.path.join(scratch, "postgresql.log")
        started = False
        began = time.monotonic()
        try:
            os.chown(scratch, pg_user.pw_uid, pg_user.pw_gid)
            os.chmod(scratch, 0o700)
            self.failed_check = "restore"
            args = ["--pg1-path=%s" % data, "--archive-mode=off", "--log-level-console=warn"]
            if plan["target"]:
                # pgBackRest picks the newest backup before the target
                args += ["--type=time", "--target=%s" % plan["target"], "--target-action=promote"]
            else:
                args += ["--set=%s" % plan["set"]]
            rc, out, err = self.pgbackrest(*(args + ["restore"]))
            restored = time.monotonic()
            if rc != 0:
                raise pgbr.CheckFailed("restore of %s failed (rc %d): %s" % (plan["set"], rc, (err or out).strip()[-3000:]))

            self.failed_check = "start"
            port = free_port()
            self.write_scratch_config(data, bin_dir)
            # on the command line, so that nothing in the restored postgresql.auto.conf overrides them:
            # no TCP, a socket in the scratch directory, never archive into the repository, no TLS files
            options = "-c listen_addresses='' -c port=%d -c unix_socket_directories='%s' -c archive_mode=off -c ssl=off" % (
                port, scratch)
            rc, out, err = self.module.run_command(self.as_pg_user([
                os.path.join(bin_dir, "pg_ctl"), "-D", data, "-l", log, "-o", options,
                "-w", "-t", str(self.params["start_timeout"]), "start"]))
            started = True
            if rc != 0:
                raise pgbr.CheckFailed("the restored server did not start: %s\n--- postgresql log (tail) ---\n%s"
                                       % ((err or out).strip(), tail(log)))
            self.wait_until_promoted(bin_dir, scratch, port, log)
            ready = time.monotonic()
            self.result["restore"] = {
                "label": plan["set"], "target": plan["target"], "port": port,
                "restore_seconds": round(restored - began, 3), "start_seconds": round(ready - restored, 3),
                "duration_seconds": round(ready - began, 3),
            }

            self.failed_check = "query"
            self.result["queries"] = []
            for query in self.params["queries"]:
                rc, out, err = self.module.run_command(self.as_pg_user([
                    os.path.join(bin_dir, "psql"), "-XAtq", "-v", "ON_ERROR_STOP=1", "-h", scratch, "-p", str(port),
                    "-d", query["database"], "-c", query["sql"]]))
                actual = out.strip() if rc == 0 else "ERROR: " + err.strip()
                passed = rc == 0 and (query["expected"] is None or pgbr.compare_query(out, query["expected"]))
                self.result["queries"].append({"name": query["name"], "database": query["database"],
                                               "expected": query["expected"], "actual": actual, "passed": passed})
            failed = [q for q in self.result["queries"] if not q["passed"]]
            if failed:
                raise pgbr.CheckFailed("; ".join("query '%s' returned '%s', expected '%s'" % (q["name"], q["actual"], q["expected"])
                                                 for q in failed))
        finally:
            if started:
                self.module.run_command(self.as_pg_user([os.path.join(bin_dir, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"]))
            shutil.rmtree(scratch, ignore_errors=True)

    def write_scratch_config(self, data, bin_dir):
        """postgresql.conf, pg_hba.conf and pg_ident.conf of the restored cluster (Debian keeps them in /etc).

        The limits a recovering server must not go below come from pg_control.
        """
        rc, out, err = self.module.run_command([os.path.join(bin_dir, "pg_controldata"), data])
        control = {}
        for line in out.splitlines() if rc == 0 else []:
            name, separator, value = line.partition(" setting:")
            if separator:
                control[name.strip()] = value.strip()
        settings = {
            "hot_standby": "off",
            "shared_buffers": "128MB",
            "max_connections": control.get("max_connections", "100"),
            "max_worker_processes": control.get("max_worker_processes", "8"),
            "max_wal_senders": control.get("max_wal_senders", "10"),
            "max_prepared_transactions": control.get("max_prepared_xacts", "0"),
            "max_locks_per_transaction": control.get("max_locks_per_xact", "64"),
            "logging_collector": "off",
            "log_destination": "'stderr'",
            "shared_preload_libraries": "''",
        }
        files = {
            "postgresql.conf": "# pgbackrest_verify: throwaway restore test\n"
                               + "".join("%s = %s\n" % item for item in settings.items()),
            "pg_hba.conf": "local all %s peer\n" % self.params["pg_user"],
            "pg_ident.conf": "",
        }
        pg_user = pwd.getpwnam(self.params["pg_user"])
        for name, text in files.items():
            path = os.path.join(data, name)
            with open(path, "w") as out:
                out.write(text)
            os.chown(path, pg_user.pw_uid, pg_user.pw_gid)

    def wait_until_promoted(self, bin_dir, scratch, port, log):
        deadline = time.monotonic() + self.params["start_timeout"]
        while True:
            rc, out, err = self.module.run_command(self.as_pg_user([
                os.path.join(bin_dir, "psql"), "-XAtq", "-h", scratch, "-p", str(port), "-d", "postgres",
                "-c", "SELECT pg_is_in_recovery()"]))
            if rc == 0 and out.strip() == "f":
                return
            if time.monotonic() > deadline:
                raise pgbr.CheckFailed("the restored server did not finish recovery within %d s\n--- postgresql log (tail) ---\n%s"
                                       % (self.params["start_timeout"], tail(log)))
            time.sleep(0.5)

    # --- metrics -------------------------------------------------------------

    def write_metrics(self, ok):
        directory = self.params["textfile_dir"]
        if not directory or self.module.check_mode:
            return
        restore = self.result.get("restore") or {}
        text = pgbr.metrics(self.params["stanza"], self.params["repo"], ok, time.time(), restore.get("duration_seconds"))
        name = "pgbackrest_verify_%s_repo%d.prom" % (self.params["stanza"], self.params["repo"])
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".%s." % name, dir=directory)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, os.path.join(directory, name))

    # --- the whole run -------------------------------------------------------

    def run(self):
        try:
            entry = self.read_info()
            self.check_ages()
            self.check_archive(entry)
            if self.params["pgbackrest_verify"]:
                self.run_pgbackrest_verify()
            if self.params["restore_test"]:
                self.result["restore_plan"] = self.restore_plan()
                if not self.module.check_mode:
                    self.restore_test(entry)
        except pgbr.CheckFailed as err:
            self.write_metrics(False)
            self.module.fail_json(msg="%s check failed: %s" % (self.failed_check, err), failed_check=self.failed_check,
                                  **self.result)
        self.write_metrics(True)
        self.module.exit_json(**self.result)


def free_port():
    """A TCP port nothing listens on now (the server itself listens on a Unix socket named after it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tail(path, lines=30):
    try:
        with open(path, errors="replace") as log:
            return "".join(log.readlines()[-lines:])
    except OSError as err:
        return "(no log: %s)" % err


def main():
    module = AnsibleModule(
        argument_spec=dict(
            stanza=dict(type="str", required=True),
            repo=dict(type="int", default=1),
            config=dict(type="path"),
            max_full_age=dict(type="int", default=93600),
            max_age=dict(type="int", default=7200),
            check_archive=dict(type="bool", default=True),
            pgbackrest_verify=dict(type="bool", default=False),
            restore_test=dict(type="bool", default=False),
            restore_set=dict(type="str"),
            restore_target=dict(type="str"),
            queries=dict(type="list", elements="dict", default=[], options=dict(
                name=dict(type="str", required=True),
                sql=dict(type="str", required=True),
                expected=dict(type="str"),
                database=dict(type="str", default="postgres"),
            )),
            scratch_base=dict(type="path", default="/var/tmp"),
            start_timeout=dict(type="int", default=300),
            pg_user=dict(type="str", default="postgres"),
            pg_bin_dir=dict(type="path"),
            textfile_dir=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    if module.params["repo"] < 1:
        module.fail_json(msg="repo must be 1 or more (the repository's key), not %d" % module.params["repo"])
    if module.params["restore_set"] and module.params["restore_target"]:
        module.fail_json(msg="give restore_set or restore_target, not both")
    Verification(module).run()


if __name__ == "__main__":
    main()
