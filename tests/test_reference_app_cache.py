"""Unit tests of the reference app's cache (reference-app/backend/teamflow_app/cache.py).

The Redis client is a fake (the cache's own logic is under test: when it goes to Redis and what a failure
does); the app with Redis stopped on the site lab is what the scenario tests.
"""

import asyncio
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "reference-app" / "backend"))
from teamflow_app import cache  # noqa: E402

pytestmark = pytest.mark.unit


class FakeRedis:
    def __init__(self):
        self.data = {}
        self.down = False
        self.calls = 0

    async def _answer(self, value=None):
        self.calls += 1
        if self.down:
            raise ConnectionError("Connection refused")
        return value

    async def get(self, key):
        return await self._answer(self.data.get(key))

    async def set(self, key, value, ex=None):
        await self._answer()
        self.data[key] = value

    async def ping(self):
        return await self._answer(True)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def make():
    redis, clock, errors = FakeRedis(), Clock(), []
    return cache.Cache(redis, 2, clock=clock, on_error=errors.append), redis, clock, errors


def run(coroutine):
    return asyncio.run(coroutine)


def test_a_value_set_is_read_back_and_the_status_is_ok():
    c, _, _, _ = make()
    run(c.set("k", "v", 60))
    assert run(c.get("k")) == "v" and c.status() == "ok"


def test_redis_down_is_a_miss_and_is_not_asked_again_until_the_retry_time():
    c, redis, clock, errors = make()
    redis.down = True
    assert run(c.get("k")) is None
    assert c.status() == "error: ConnectionError" and errors == ["get"]
    calls = redis.calls
    # within the retry time: no call reaches Redis (a write is skipped, a read is a miss)
    clock.now = 1.9
    run(c.set("k", "v", 60))
    assert run(c.get("k")) is None and redis.calls == calls
    # after it: Redis is asked again, and its answer ends the outage
    clock.now = 2.1
    redis.down = False
    run(c.set("k", "v", 60))
    assert run(c.get("k")) == "v" and c.status() == "ok"


def test_the_health_ping_asks_redis_even_while_it_is_marked_down():
    c, redis, clock, _ = make()
    redis.down = True
    assert run(c.get("k")) is None
    redis.down = False
    assert run(c.ping()) is True and c.status() == "ok"
