"""The database as the app uses it: a writer pool on the cluster's leader and a reader pool that prefers
a replica, both through libpq's multi-host connection strings (the settings' DATABASE_URL and
DATABASE_READ_URL), so a failover needs no configuration change.

What a fault does to a request:
- a read is retried, on a new connection, until it succeeds or DB_RETRY_SECONDS have passed;
- a write is retried the same way when it failed before its COMMIT was sent (nothing was written), so
  a failover or a switchover fails no write that comes back within DB_RETRY_SECONDS;
- a write whose COMMIT was sent but not answered is never retried (it may have been written):
  CommitOutcomeUnknown, which the app answers with 503 and says so;
- when the time is up: DatabaseUnavailable, 503.
"""

import asyncio
import logging
import time

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

log = logging.getLogger("teamflow.db")

# errors after which another connection may well succeed: the server is gone or restarting, or the
# connection landed on a member that is (now) a replica
RETRYABLE = (psycopg.OperationalError, psycopg.errors.ReadOnlySqlTransaction,
             psycopg.errors.AdminShutdown, PoolTimeout)


class DatabaseUnavailable(Exception):
    """No connection answered within the retry time."""


class CommitOutcomeUnknown(Exception):
    """The COMMIT was sent and the connection failed before its answer: the write may or may not be in."""


class Database:
    def __init__(self, writer_url, reader_url, pool_min, pool_max, retry_seconds, application_name,
                 pool_class=AsyncConnectionPool, sleep=asyncio.sleep, clock=time.monotonic):
        kwargs = {"application_name": application_name}
        self.writer = pool_class(writer_url, min_size=pool_min, max_size=pool_max, open=False, kwargs=kwargs)
        self.reader = pool_class(reader_url or writer_url, min_size=pool_min, max_size=pool_max, open=False,
                                 kwargs=kwargs)
        self.retry_seconds = retry_seconds
        self._sleep = sleep
        self._clock = clock

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
                async with self.reader.connection(timeout=self._left(deadline)) as conn:
                    return await work(conn)
            except RETRYABLE as exc:
                await self._wait_or_give_up("read", attempt, deadline, exc)

    async def write(self, work):
        """WORK(conn) in one transaction on the writer pool; retried only when it failed before COMMIT."""
        deadline = self._clock() + self.retry_seconds
        attempt = 0
        while True:
            attempt += 1
            committing = False
            try:
                async with self.writer.connection(timeout=self._left(deadline)) as conn:
                    try:
                        result = await work(conn)
                        committing = True
                        await conn.commit()
                        return result
                    except psycopg.errors.ReadOnlySqlTransaction:
                        # a former leader, now a replica: this connection will never write again
                        await conn.close()
                        raise
            except RETRYABLE as exc:
                if committing:
                    log.warning("commit outcome unknown", extra={"fields": {"event": "db_commit_unknown"}})
                    raise CommitOutcomeUnknown(str(exc)) from exc
                await self._wait_or_give_up("write", attempt, deadline, exc)

    def _left(self, deadline):
        return max(deadline - self._clock(), 0.5)

    async def _wait_or_give_up(self, kind, attempt, deadline, exc):
        if self._clock() >= deadline:
            raise DatabaseUnavailable(f"{kind}: {type(exc).__name__}") from exc
        fields = {"event": "db_retry", "kind": kind, "attempt": attempt, "error": type(exc).__name__}
        log.info("database retry", extra={"fields": fields})
        await self._sleep(min(0.2 * attempt, 1.0))
