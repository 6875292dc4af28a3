"""Redis as the app uses it: a cache, never a dependency a request waits on.

- Every call has a short time limit (REDIS_TIMEOUT_SECONDS, 0.25 s by default, for connecting and for the
  answer): Redis answers a LAN request in well under a millisecond, so a call that takes longer is a dead or
  unreachable Redis.
- A failed call marks Redis down for REDIS_RETRY_AFTER_SECONDS (2 s by default): in that time no call goes
  to Redis at all (a read is a miss, a write is skipped), so an outage costs each request nothing but the
  database read it would have done on a miss. The first call after that time tries Redis again.
- With Redis Sentinel (REDIS_SENTINELS), the client asks the sentinels where the master is when it connects;
  after a failover the old master's connections fail (a miss, as above) and the next connection goes to the
  new master. The sentinels get the same time limit.
- `status()` is what /health reports: "ok", or "error: <kind>" while Redis is down.

A write to PostgreSQL never depends on Redis: the cache only ever holds copies, with a TTL.
"""

import logging
import time
from urllib.parse import unquote, urlsplit

log = logging.getLogger("teamflow.cache")


def connect(settings):
    """The Redis client: REDIS_URL's server, or the master the sentinels name. One try per call: the cache
    marks Redis down instead of retrying."""
    import redis.asyncio as aioredis  # the app's dependency; the unit tests of Cache run without it
    from redis.asyncio.retry import Retry
    from redis.asyncio.sentinel import Sentinel
    from redis.backoff import NoBackoff

    limits = {"socket_timeout": settings.redis_timeout_seconds,
              "socket_connect_timeout": settings.redis_timeout_seconds, "retry": Retry(NoBackoff(), 0)}
    if not settings.redis_sentinels:
        return aioredis.from_url(settings.redis_url, **limits)
    url = urlsplit(settings.redis_url)
    login = {"username": unquote(url.username or "") or None, "password": unquote(url.password or "") or None}
    sentinel = Sentinel(list(settings.redis_sentinels), sentinel_kwargs={**limits, **login}, **limits, **login,
                        db=int(url.path.lstrip("/") or 0))
    return sentinel.master_for(settings.redis_sentinel_master, **limits)


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
