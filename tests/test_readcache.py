"""The read cache of hot routes: one read for concurrent misses, freshness, errors, forgetting."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from api.readcache import ReadCache
from pipeline.errors import NotFound

JOB, ADA, BOB = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


class Reader:
    """Counts reads and answers a new version each time."""

    def __init__(self, delay: float = 0.0, error: Exception | None = None) -> None:
        self.reads = 0
        self.delay = delay
        self.error = error

    async def __call__(self) -> dict[str, Any]:
        self.reads += 1
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return {"version": self.reads}


def test_concurrent_misses_share_one_read() -> None:
    cache, read = ReadCache(), Reader(delay=0.05)

    async def many() -> list[dict[str, Any]]:
        return await asyncio.gather(*(cache.get((JOB, ADA), read) for _ in range(50)))

    answers = asyncio.run(many())
    assert read.reads == 1 and all(a == {"version": 1} for a in answers)


def test_a_slightly_stale_view_is_answered_while_one_read_replaces_it() -> None:
    cache, read = ReadCache(fresh_seconds=0.05), Reader(delay=0.01)

    async def scenario() -> list[dict[str, Any]]:
        first = await cache.get((JOB, ADA), read)
        again = await cache.get((JOB, ADA), read)
        await asyncio.sleep(0.08)  # stale, but within four times the freshness
        stale = await asyncio.gather(*(cache.get((JOB, ADA), read) for _ in range(10)))
        await asyncio.sleep(0.03)  # the background read has landed
        return [first, again, *stale, await cache.get((JOB, ADA), read)]

    answers = asyncio.run(scenario())
    assert answers[:12] == [{"version": 1}] * 12 and answers[12] == {"version": 2}
    assert read.reads == 2


def test_a_view_older_than_the_stale_limit_waits_for_a_new_read() -> None:
    cache, read = ReadCache(fresh_seconds=0.02), Reader()

    async def scenario() -> list[dict[str, Any]]:
        first = await cache.get((JOB, ADA), read)
        await asyncio.sleep(0.1)  # past four times the freshness
        return [first, await cache.get((JOB, ADA), read)]

    assert asyncio.run(scenario()) == [{"version": 1}, {"version": 2}]


def test_a_read_that_began_before_forget_does_not_store_its_old_view() -> None:
    cache, read = ReadCache(), Reader(delay=0.05)

    async def scenario() -> dict[str, Any]:
        early = asyncio.create_task(cache.get((JOB, ADA), read))
        await asyncio.sleep(0.01)
        cache.forget(lambda key: key[0] == JOB)  # the job changed while the first read was under way
        await early
        return await cache.get((JOB, ADA), read)

    assert asyncio.run(scenario()) == {"version": 2}


def test_callers_are_cached_apart_and_errors_are_cached_like_views() -> None:
    cache = ReadCache()
    hidden = Reader(error=NotFound("There is no job.", code="job.not_found"))
    owner = Reader()

    async def scenario() -> None:
        for _ in range(3):
            with pytest.raises(NotFound):
                await cache.get((JOB, BOB), hidden)
        assert await cache.get((JOB, ADA), owner) == {"version": 1}

    asyncio.run(scenario())
    assert hidden.reads == 1 and owner.reads == 1


def test_forget_drops_every_callers_view_of_the_job() -> None:
    cache, read = ReadCache(), Reader()

    async def scenario() -> list[dict[str, Any]]:
        await cache.get((JOB, ADA), read)
        await cache.get((JOB, BOB), read)
        cache.forget(lambda key: key[0] == JOB)
        return [await cache.get((JOB, ADA), read), await cache.get((JOB, BOB), read)]

    assert asyncio.run(scenario()) == [{"version": 3}, {"version": 4}]


def test_the_cache_keeps_at_most_its_size() -> None:
    cache, read = ReadCache(max_entries=3), Reader()

    async def scenario() -> None:
        for _ in range(5):
            await cache.get((uuid.uuid4(), ADA), read)

    asyncio.run(scenario())
    assert len(cache._entries) == 3
