"""The event stream's fan-out (app.api.events) in process, on the test's Redis: followers
of one job share each change's encoded events, and every one gets the whole curve."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis as AsyncRedis

import app.api.events as events_module
from app.api.events import EventHub, Resume, events
from app.store.feed import FeedReader
from tests.app.test_store import running_job, write_losses
from tests.roles import TENANT, AllRoles

FOLLOWERS = 20
CHANGES = 6


async def until(condition: Callable[[], bool], what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


def test_followers_share_each_changes_encoded_events(
    store: AllRoles, redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = running_job(store)
    write_losses(store, job_id, 1, [2.0, 1.9])
    encoded: Counter[str] = Counter()
    encode = events_module._encode

    def counting(event: str, *args: Any) -> bytes:
        encoded[event] += 1
        return encode(event, *args)

    monkeypatch.setattr(events_module, "_encode", counting)

    async def scenario() -> list[list[bytes]]:
        client = AsyncRedis.from_url(redis_url)
        reader = FeedReader(client, key_prefix)
        hub = EventHub(client, reader)
        hub.start()
        channel = reader.keys.events

        async def subscribed() -> bool:
            return bool((await client.pubsub_numsub(channel))[0][1])

        deadline = time.monotonic() + 10
        while not await subscribed():
            assert time.monotonic() < deadline, "the hub did not subscribe"
            await asyncio.sleep(0.005)
        received: list[list[bytes]] = [[] for _ in range(FOLLOWERS)]

        async def follow(chunks: list[bytes]) -> None:
            async for chunk in events(hub, job_id, TENANT, Resume(), 1000):
                chunks.append(chunk)

        tasks = [asyncio.create_task(follow(chunks)) for chunks in received]
        await until(lambda: all(received), "every follower's catch-up")
        encoded.clear()
        for change in range(CHANGES):
            first = 3 + 2 * change
            write_losses(store, job_id, first, [1.5, 1.4])  # PUBLISHes the change
            last = f"id: {first + 1}\r\n".encode()
            await until(lambda last=last: all(last in chunks[-1] for chunks in received),
                        f"every follower to get iteration {first + 1}")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await hub.stop()
        await client.aclose()
        return received

    received = asyncio.run(scenario())

    # One encoding per change, not one per follower per change.
    assert encoded["progress"] == CHANGES, encoded
    # After the catch-up (iterations 1-2, from Redis), each change is one chunk, the same
    # bytes for every follower.
    for chunks in received:
        assert b"id: 2\r\n" in chunks[0]
        assert chunks[1:] == received[0][1:]
        assert len(chunks) == 1 + CHANGES
