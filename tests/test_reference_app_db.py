"""Unit tests of the reference app's database layer (reference-app/backend/teamflow_app/db.py).

The pools are fakes (the layer's own logic is under test: what it retries and what it refuses to);
the app on a real Patroni cluster is what the scenarios test.
"""

import asyncio
import sys

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from conftest import ROOT

sys.path.insert(0, str(ROOT / "reference-app" / "backend"))
from teamflow_app import db  # noqa: E402

pytestmark = pytest.mark.unit


class FakeCursor:
    def __init__(self, row):
        self.row = row

    async def fetchone(self):
        return self.row


class FakeConnection:
    def __init__(self, plan, statuses=()):
        self.plan = plan
        self.statuses = statuses
        self.closed = False
        self.commits = 0
        self.rollbacks = 0
        self.queries = []

    async def commit(self):
        outcome = self.plan.pop(0) if self.plan and self.plan[0] in ("commit-fails",) else None
        if outcome == "commit-fails":
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        self.commits += 1

    async def rollback(self):
        self.rollbacks += 1

    async def close(self):
        self.closed = True

    async def execute(self, query, params=None):
        """txid_current() says 1234; txid_status() answers the pool's next status (an exception is raised)."""
        self.queries.append((query, params))
        if "txid_current" in query:
            return FakeCursor((1234,))
        if "txid_status" in query:
            status = self.statuses.pop(0)
            if isinstance(status, Exception):
                raise status
            return FakeCursor((status,))
        return FakeCursor(None)


class FakePool:
    """connection() hands out connections; PLAN says what each attempt meets, in order."""

    instances = []

    def __init__(self, url, **kwargs):
        self.url = url
        self.options = kwargs
        self.plan = []
        self.statuses = []
        self.attempts = 0
        self.connections = []
        FakePool.instances.append(self)

    def connection(self, timeout=None):
        pool = self

        class Context:
            async def __aenter__(self):
                pool.attempts += 1
                if pool.plan and pool.plan[0] == "no-server":
                    pool.plan.pop(0)
                    raise PoolTimeout("couldn't get a connection")
                conn = FakeConnection(pool.plan, pool.statuses)
                pool.connections.append(conn)
                return conn

            async def __aexit__(self, *exc):
                return False

        return Context()


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    async def sleep(self, seconds):
        self.now += seconds


def database(retry_seconds=5):
    FakePool.instances = []
    clock = Clock()
    database = db.Database("host=a,b target_session_attrs=read-write", "host=a,b target_session_attrs=prefer-standby",
                           1, 2, retry_seconds, "test", pool_class=FakePool, sleep=clock.sleep, clock=clock)
    return database, FakePool.instances[0], FakePool.instances[1], clock


def run(coroutine):
    return asyncio.run(coroutine)


def test_the_pools_get_the_writer_and_reader_urls():
    _, writer, reader, _ = database()
    assert "read-write" in writer.url and "prefer-standby" in reader.url


def test_the_pools_reconnect_within_seconds_and_find_dead_peers_fast():
    _, writer, reader, _ = database()
    for pool in (writer, reader):
        assert pool.options["reconnect_timeout"] == db.RECONNECT_SECONDS <= 5
        assert pool.options["kwargs"]["tcp_user_timeout"] <= 1000 and pool.options["kwargs"]["keepalives"] == 1


def test_a_write_that_failed_before_commit_is_retried_until_the_leader_answers():
    data, writer, _, _ = database()
    writer.plan = ["no-server", "no-server", "no-server"]
    calls = []

    async def work(conn):
        calls.append(conn)
        return 42

    assert run(data.write(work)) == 42
    assert writer.attempts == 4 and len(calls) == 1 and calls[0].commits == 1


def test_a_write_on_a_former_leader_closes_that_connection_and_is_retried():
    data, writer, _, _ = database()
    outcomes = [psycopg.errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"), None]

    async def work(conn):
        outcome = outcomes.pop(0)
        if outcome:
            raise outcome
        return "written"

    assert run(data.write(work)) == "written"
    assert writer.connections[0].closed and writer.connections[1].commits == 1


def test_a_write_whose_commit_got_no_answer_is_not_retried():
    data, writer, _, _ = database()
    writer.plan = ["commit-fails"]

    async def work(conn):
        return 1

    with pytest.raises(db.CommitOutcomeUnknown):
        run(data.write(work))
    assert writer.attempts == 1


def noted(writes, found):
    """WORK that inserts (counted in WRITES) and a LANDED check that answers FOUND's next value."""
    async def work(conn):
        writes.append(conn)
        return ("row", len(writes))

    async def landed(conn, result):
        assert result == ("row", len(writes))
        return found.pop(0)
    return work, landed


def test_a_write_whose_commit_got_no_answer_but_landed_is_answered_once():
    data, writer, _, _ = database()
    writer.plan, writer.statuses = ["commit-fails"], ["committed"]
    writes = []
    work, landed = noted(writes, [True])
    assert run(data.write(work, landed=landed)) == ("row", 1)
    assert len(writes) == 1
    # the id asked about is the transaction's own, on a connection after the failed one
    assert writer.connections[0].queries[-1] == ("SELECT txid_current()", None)
    assert writer.connections[1].queries[0] == ("SELECT txid_status(%s)", (1234,))


def test_a_write_whose_commit_got_no_answer_and_did_not_land_is_written_again():
    data, writer, _, _ = database()
    writer.plan, writer.statuses = ["commit-fails"], ["aborted"]
    writes = []
    work, landed = noted(writes, [False])
    assert run(data.write(work, landed=landed)) == ("row", 2)
    assert len(writes) == 2 and writes[1].commits == 1


def test_a_leader_that_never_had_the_transaction_gets_it_written_again():
    data, writer, _, _ = database()
    writer.plan = ["commit-fails"]
    writer.statuses = [psycopg.errors.InvalidParameterValue("transaction ID 1234 is in the future")]
    writes = []
    work, landed = noted(writes, [False])
    assert run(data.write(work, landed=landed)) == ("row", 2)
    assert writer.connections[1].rollbacks == 1


def test_a_commit_still_in_progress_is_waited_for_before_the_rows_are_looked_for():
    data, writer, _, clock = database()
    writer.plan, writer.statuses = ["commit-fails"], ["in progress", "in progress", "committed"]
    writes = []
    work, landed = noted(writes, [True])
    assert run(data.write(work, landed=landed)) == ("row", 1)
    assert len(writes) == 1 and writer.attempts == 4 and 0 < clock.now < 1


def test_a_commit_outcome_no_leader_tells_within_the_retry_time_is_unknown():
    data, writer, _, clock = database(retry_seconds=3)
    writer.plan = ["commit-fails"] + ["no-server"] * 100
    writes = []
    work, landed = noted(writes, [])
    with pytest.raises(db.CommitOutcomeUnknown):
        run(data.write(work, landed=landed))
    assert len(writes) == 1 and 3 <= clock.now < 5


def test_a_write_gives_up_after_the_retry_time():
    data, writer, _, clock = database(retry_seconds=3)
    writer.plan = ["no-server"] * 100

    async def work(conn):
        return 1

    with pytest.raises(db.DatabaseUnavailable):
        run(data.write(work))
    assert 3 <= clock.now < 5


def test_reads_are_retried_and_other_errors_are_not():
    data, _, reader, _ = database()
    reader.plan = ["no-server", "no-server"]

    async def work(conn):
        return "rows"

    assert run(data.read(work)) == "rows" and reader.attempts == 3

    async def broken(conn):
        raise psycopg.errors.UndefinedTable("relation does not exist")

    with pytest.raises(psycopg.errors.UndefinedTable):
        run(data.read(broken))


def test_an_unreachable_database_fails_reads_fast_not_after_the_retry_time():
    data, _, reader, clock = database(retry_seconds=30)
    reader.plan = ["no-server"] * 100

    async def work(conn):
        return "rows"

    with pytest.raises(db.DatabaseUnavailable, match="no database member answers"):
        run(data.read(work))
    first = clock.now
    assert first < 1.5, first
    # the next request finds the database still failing: it gives up at its first failure, after one probe slice
    with pytest.raises(db.DatabaseUnavailable):
        run(data.read(work))
    assert clock.now - first <= db.ATTEMPT_SECONDS + 0.1


def test_a_write_keeps_waiting_for_a_leader_while_a_replica_answers_and_gives_up_fast_when_none_does():
    data, writer, reader, clock = database(retry_seconds=30)
    writer.plan = ["no-server"] * 20

    async def work(conn):
        return 1

    # no leader for 20 tries (about 17 s), the replica answers each probe: the write waits, then succeeds
    assert run(data.write(work)) == 1
    assert writer.attempts == 21 and 0 < reader.attempts < 20 and clock.now > 10
    # no member at all: it gives up within about a second of its first failure
    writer.plan, reader.plan = ["no-server"] * 100, ["no-server"] * 100
    started = clock.now
    with pytest.raises(db.DatabaseUnavailable, match="no database member answers"):
        run(data.write(work))
    assert clock.now - started < 2


def test_an_answer_ends_the_outage_for_later_requests():
    data, _, reader, clock = database(retry_seconds=30)
    reader.plan = ["no-server"] * 3

    async def work(conn):
        return "rows"

    assert run(data.read(work)) == "rows"
    clock.now += 60
    reader.plan = ["no-server"]
    # a failure long after the last one is a new outage: retried, not given up at once
    assert run(data.read(work)) == "rows"


def test_a_probe_passes_over_connections_to_a_member_that_went_away():
    """After a kill -9 of the leader, the pool holds connections that fail at once: the probe that decides
    whether to keep waiting tries the next one, which reaches the replica."""
    data, writer, reader, clock = database(retry_seconds=30)
    writer.plan = ["no-server"] * 6
    reader.plan = ["no-server"] * 3  # the probe's first three connections are stale

    async def work(conn):
        return 1

    assert run(data.write(work)) == 1


def test_a_statement_names_the_request_it_serves_when_its_id_is_plain():
    token = db.logs.request_id.set("4f1c2a9e0d6b4c1e9a572b1f0c3d4e5f")
    try:
        assert db.tagged("SELECT 1") == "/* request_id=4f1c2a9e0d6b4c1e9a572b1f0c3d4e5f */ SELECT 1"
    finally:
        db.logs.request_id.reset(token)
    # no request, or an id that could close the comment: the statement as it is
    assert db.tagged("SELECT 1") == "SELECT 1"
    token = db.logs.request_id.set("abcdefgh */ DROP TABLE notes; --")
    try:
        assert db.tagged("SELECT 1") == "SELECT 1"
    finally:
        db.logs.request_id.reset(token)
