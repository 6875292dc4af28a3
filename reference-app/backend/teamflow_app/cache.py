"""Redis as the app uses it: a cache, never a dependency a request waits on.

- Every call has a short time limit (REDIS_TIMEOUT_SECONDS, 0.25 s by default, for connecting and for the
  answer): Redis answers a LAN request in well under a millisecond, so a call that takes longer is a dead or
  unreachable Redis.
- A failed call marks Redis down for REDIS_RETRY_AFTER_SECONDS (2 s by default): in that time no call goes
  to Redis at all (a read is a miss, a write is skipped), so an outage costs each request nothing but the
  database read it would have done on a miss. The first call after that time tries Redis again.
- `status()` is what /health reports: "ok", or "error: <kind>" while Redis is down.

A write to PostgreSQL never depends on Redis: the cache only ever holds copies, with a TTL.
"""

import logging
import time

log = logging.getLogger("teamflow.cache")


class Cache:
    def __init__(self, client, retry_after, clock=time.monotonic, on_error=None):
        self.client = client
        self.retry_after = retry_after
        self._clock = clock
        self._down_until = 0.0
        self._error = None
        self._on_error = on_error or (lambda operation: None)

    def status(self):
        return "ok" if self._error is None else f"error: {self._error}"

    async def get(self, key):
        """The cached value, or None on a miss or while Redis is down."""
        return await self._call("get", None, lambda: self.client.get(key))

    async def set(self, key, value, ttl):
        await self._call("set", None, lambda: self.client.set(key, value, ex=ttl))

    async def ping(self):
        """Ask Redis now, even while it is marked down (the health check): True when it answered."""
        self._down_until = 0.0
        return await self._call("ping", False, self.client.ping)

    async def _call(self, operation, fallback, call):
        if self._clock() < self._down_until:
            return fallback
        try:
            result = await call()
        except Exception as exc:  # noqa: BLE001 - any failure of a cache is a miss
            kind = type(exc).__name__
            if self._error is None:
                log.warning("cache unavailable", extra={"fields": {"event": "cache_down", "error": kind}})
            self._error = kind
            self._down_until = self._clock() + self.retry_after
            self._on_error(operation)
            return fallback
        if self._error is not None:
            log.info("cache available again", extra={"fields": {"event": "cache_up"}})
            self._error = None
        return result
