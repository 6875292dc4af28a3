"""The database as the app uses it: a writer pool on the cluster's leader and a reader pool that prefers
a replica, both through libpq's multi-host connection strings (the settings' DATABASE_URL and
DATABASE_READ_URL), so a failover needs no configuration change.

What a fault does to a request:
- a read is retried, on a new connection, until it succeeds or DB_RETRY_SECONDS have passed;
- a write is retried the same way when it failed before its COMMIT was sent (nothing was written), so
  a failover or a switchover fails no write that comes back within DB_RETRY_SECONDS;
- a write whose COMMIT was sent but not answered (the leader went away while it waited for the synchronous
  replica, as on a switchover) may or may not be in. With a `landed` check the layer asks the leader that
  answers next: once the transaction is no longer in progress there (txid_status), the check looks for the
  write's own rows (its result: a note's id and creation time). Found, the write succeeded; not found, nothing
  was written and it is retried. Without a check, or with no leader within DB_RETRY_SECONDS:
  CommitOutcomeUnknown, which the app answers with 503 and says so. (The transaction id alone would not do:
  after a failover that lost a transaction the new leader hands its id out again.)
- when the time is up: DatabaseUnavailable, 503.

Every statement carries the request's id in a leading comment (`/* request_id=... */`), which PostgreSQL's
log shows with a slow statement: the log host finds it with the request's nginx and app lines.

Waiting is worth it only while the cluster is there (a replica answers while a new leader is elected).
When no member has answered for DB_UNREACHABLE_SECONDS (0.5 s) since the first failure, requests give up,
so an unreachable database gives a fast 503, never a hung request:
- a request about to give up asks the reader pool for `SELECT 1` (any member): an answer keeps it waiting
  (and ends the outage for every request of the process);
- a request waits for a pooled connection in slices of ATTEMPT_SECONDS (0.5 s), and checks in between;
- the pools' reconnection back-off starts again every RECONNECT_SECONDS (2 s), so they reconnect within
  seconds once the database answers again;
- the connections send TCP keepalives and give up on unacknowledged data after 0.5 s (tcp_user_timeout),
  so a query on a server that vanished fails within half a second instead of the kernel's minutes (on a LAN an
  acknowledgement takes well under a millisecond).
"""

import asyncio
import logging
import re
import time

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from . import logs

log = logging.getLogger("teamflow.db")

# errors after which another connection may well succeed: the server is gone or restarting, or the
# connection landed on a member that is (now) a replica
RETRYABLE = (psycopg.OperationalError, psycopg.errors.ReadOnlySqlTransaction,
             psycopg.errors.AdminShutdown, PoolTimeout)


class DatabaseUnavailable(Exception):
    """No connection answered within the retry time."""


class CommitOutcomeUnknown(Exception):
    """The COMMIT was sent and the connection failed before its answer: the write may or may not be in."""


# libpq settings of every connection: dead peers found in seconds, not minutes
CONNECTION_SETTINGS = {"keepalives": 1, "keepalives_idle": 2, "keepalives_interval": 1, "keepalives_count": 2,
                       "tcp_user_timeout": 500}
ATTEMPT_SECONDS = 0.5
# a pool whose connection attempts fail backs off (1, 2, 4, ... s) until this many seconds have passed, then
# starts again from 1 s when a request waits: after an outage the pools reconnect within seconds, not after a
# back-off grown during it
RECONNECT_SECONDS = 2


# a request id as nginx passes it (its own, or the client's when it looks like one); any other is left out of
# the SQL: it could close the comment
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{8,128}")


class TaggedConnection(psycopg.AsyncConnection):
    """A connection whose statements start with a comment naming the request they serve."""

    async def execute(self, query, params=None, **kwargs):
        return await super().execute(tagged(query), params, **kwargs)


def tagged(query):
    """QUERY with the current request's id in a leading comment, when there is a request with a plain id."""
    rid = logs.request_id.get()
    if isinstance(query, str) and REQUEST_ID.fullmatch(rid):
        return f"/* request_id={rid} */ {query}"
    return query


class Database:
    def __init__(self, writer_url, reader_url, pool_min, pool_max, retry_seconds, application_name,
                 unreachable_seconds=0.5, pool_class=AsyncConnectionPool, sleep=asyncio.sleep, clock=time.monotonic):
        kwargs = dict(CONNECTION_SETTINGS, application_name=application_name)
        self.writer = pool_class(writer_url, min_size=pool_min, max_size=pool_max, open=False, kwargs=kwargs,
                                 reconnect_timeout=RECONNECT_SECONDS, connection_class=TaggedConnection)
        self.reader = pool_class(reader_url or writer_url, min_size=pool_min, max_size=pool_max, open=False,
                                 kwargs=kwargs, reconnect_timeout=RECONNECT_SECONDS, connection_class=TaggedConnection)
        self.retry_seconds = retry_seconds
        self.unreachable_seconds = unreachable_seconds
        self._sleep = sleep
        self._clock = clock
        # when the first failure after the last answer of any member happened; None: the last try succeeded
        self._failing_since = None

    async def open(self):
        await self.writer.open(wait=False)
        await self.reader.open(wait=False)

    async def close(self):
        await self.writer.close()
        await self.reader.close()

    async def read(self, work, timeout=None):
        """WORK(conn) on the reader pool, retried on a new connection while the database is unreachable."""
        deadline = self._clock() + (self.retry_seconds if timeout is None else timeout)
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self.reader.connection(timeout=self._slice(deadline)) as conn:
                    result = await work(conn)
                self._failing_since = None
                return result
            except RETRYABLE as exc:
                await self._wait_or_give_up("read", attempt, deadline, exc)

    async def write(self, work, landed=None):
        """WORK(conn) in one transaction on the writer pool; retried when it failed before COMMIT. When the COMMIT
        got no answer, LANDED(conn, result) (if given) tells on the leader whether the result's rows are in: the
        result when they are, the work again when they are not; CommitOutcomeUnknown without LANDED."""
        deadline = self._clock() + self.retry_seconds
        attempt = 0
        while True:
            attempt += 1
            committing = False
            try:
                async with self.writer.connection(timeout=self._slice(deadline)) as conn:
                    try:
                        result = await work(conn)
                        if landed is not None:
                            cur = await conn.execute("SELECT txid_current()")
                            xid = (await cur.fetchone())[0]
                        committing = True
                        await conn.commit()
                        self._failing_since = None
                        return result
                    except psycopg.errors.ReadOnlySqlTransaction:
                        # a former leader, now a replica: this connection will never write again
                        await conn.close()
                        raise
            except RETRYABLE as exc:
                if committing:
                    log.warning("commit outcome unknown", extra={"fields": {"event": "db_commit_unknown"}})
                    if landed is None:
                        raise CommitOutcomeUnknown(str(exc)) from exc
                    if await self._landed(landed, result, xid, deadline, exc):
                        return result
                    continue  # nothing was written: the work again, on the leader that answered
                # no leader: a member that answers (a replica, while a new leader is elected) keeps it waiting
                await self._wait_or_give_up("write", attempt, deadline, exc)

    async def _landed(self, landed, result, xid, deadline, exc):
        """Whether a write whose COMMIT got no answer is in, as the leader that answers before DEADLINE says: once
        transaction XID is not in progress there (a leader that lost it says its id is in the future),
        LANDED(conn, result). CommitOutcomeUnknown when no leader says so within the retry time."""
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self.writer.connection(timeout=self._slice(deadline)) as conn:
                    try:
                        cur = await conn.execute("SELECT txid_status(%s)", (xid,))
                        in_progress = (await cur.fetchone())[0] == "in progress"
                    except psycopg.errors.InvalidParameterValue:
                        await conn.rollback()  # the id is in the future: this leader never had the transaction
                        in_progress = False
                    self._failing_since = None
                    if not in_progress:
                        found = bool(await landed(conn, result))
                        fields = {"event": "db_commit_resolved", "outcome": "committed" if found else "not written"}
                        log.warning("commit outcome resolved", extra={"fields": fields})
                        return found
            except RETRYABLE as error:
                try:
                    await self._wait_or_give_up("write", attempt, deadline, error)
                except DatabaseUnavailable as unavailable:
                    raise CommitOutcomeUnknown(str(exc)) from unavailable
                continue
            # the old leader still waits for its synchronous replica to confirm the COMMIT
            if self._clock() >= deadline:
                raise CommitOutcomeUnknown(f"{exc} (the transaction is still in progress)")
            await self._sleep(0.1)

    async def _answers(self):
        """SELECT 1 on the reader pool (any member), within one slice: whether a member answered. A pooled
        connection to a member that went away fails at once and is discarded: the next one is tried."""
        end = self._clock() + ATTEMPT_SECONDS
        while True:
            try:
                async with self.reader.connection(timeout=max(end - self._clock(), 0.05)) as conn:
                    await conn.execute("SELECT 1")
            except RETRYABLE:
                if self._clock() >= end:
                    return False
                await self._sleep(0.05)
                continue
            self._failing_since = None
            return True

    def _slice(self, deadline):
        return min(max(deadline - self._clock(), 0.1), ATTEMPT_SECONDS)

    async def _wait_or_give_up(self, kind, attempt, deadline, exc):
        """Sleep before the next attempt, or raise DatabaseUnavailable: the retry time is over, or no member has
        answered for unreachable_seconds and none answers SELECT 1 now (a replica does while a new leader is
        elected)."""
        now = self._clock()
        if self._failing_since is None:
            self._failing_since = now
        if now >= deadline:
            raise DatabaseUnavailable(f"{kind}: {type(exc).__name__}") from exc
        if now - self._failing_since >= self.unreachable_seconds and not await self._answers():
            raise DatabaseUnavailable(f"{kind}: no database member answers ({type(exc).__name__})") from exc
        fields = {"event": "db_retry", "kind": kind, "attempt": attempt, "error": type(exc).__name__}
        log.info("database retry", extra={"fields": fields})
        await self._sleep(min(0.2 * attempt, 1.0))
