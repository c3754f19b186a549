"""The event stream's engine (app.api.events) in process: a round's events (pure), and
followers on the test's Redis: they share each change's encoded events, and a follower cut
off after any event resumes with exactly the rest."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
from redis.asyncio import Redis as AsyncRedis

import app.api.events as events_module
from app.api.events import EventHub, Resume, _round, events
from app.store.curve import losses_to_bytes
from app.store.feed import FeedReader, Update
from tests.app.test_store import running_job, write_losses
from tests.roles import AllRoles

Event = tuple[str, str | None, Any]  # (event, id, data)
STATE = Update(status="running", progress={"epoch": 1, "epochs": 3}, warnings=[], error=None,
               total=0, losses=b"", rows=[])


def parse(wire: bytes) -> list[Event]:
    """The events in a chunk of the stream (the test's own reading of the SSE format)."""
    out: list[Event] = []
    for block in wire.decode().split("\r\n\r\n"):
        if not block:
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\r\n"))
        out.append((fields["event"], fields.get("id"), json.loads(fields["data"])))
    return out


def row(epoch: int, iteration: int) -> dict[str, Any]:
    return {"epoch": epoch, "iteration": iteration, "train_loss": 1.0 / epoch}


def data(first: int, last: int) -> bytes:
    """float32 losses of iterations first..last, each iteration's loss its own number."""
    return losses_to_bytes(np.arange(first, last + 1, dtype=np.float32))


def test_a_rounds_points_stop_at_each_epochs_end_and_its_row_follows() -> None:
    rows = [row(1, 3), row(2, 7), row(3, 12)]

    position, next_row, wire = _round(STATE, data(1, 10), 0, rows, 0, 1000)

    assert (position, next_row) == (10, 2)  # epoch 3 ends later
    assert [(e, i, d.get("iterations")) for e, i, d in parse(wire)] == [
        ("progress", "3", [1, 2, 3]), ("epoch", "3:1", None),
        ("progress", "7", [4, 5, 6, 7]), ("epoch", "7:2", None),
        ("progress", "10", [8, 9, 10]),
    ]
    assert parse(wire)[0][2]["loss"] == [1.0, 2.0, 3.0]
    assert parse(wire)[0][2]["epochs"] == 3


def test_rows_whose_points_were_sent_come_first_and_empty_rounds_are_empty() -> None:
    rows = [row(1, 4), row(2, 8)]

    position, next_row, wire = _round(STATE, data(6, 8), 5, rows, 0, 1000)

    assert (position, next_row) == (8, 2)
    assert [(e, i) for e, i, _ in parse(wire)] == [
        ("epoch", "5:1"), ("progress", "8"), ("epoch", "8:2")]
    assert _round(STATE, b"", 8, rows, 2, 1000) == (8, 2, b"")


def test_a_downsampled_round_keeps_each_epochs_end_and_at_most_max_points_an_event() -> None:
    rows = [row(1, 50), row(2, 100)]

    position, next_row, wire = _round(STATE, data(1, 120), 0, rows, 0, 5)

    assert (position, next_row) == (120, 2)
    events = parse(wire)
    assert [e for e, _, _ in events] == ["progress", "epoch", "progress", "epoch", "progress"]
    pieces = [d["iterations"] for e, _, d in events if e == "progress"]
    assert all(1 <= len(piece) <= 5 for piece in pieces), pieces
    assert [piece[-1] for piece in pieces] == [50, 100, 120]
    assert pieces[0][0] == 1
    flat = [i for piece in pieces for i in piece]
    assert flat == sorted(set(flat))  # increasing, none twice
    assert [d["loss"] for e, _, d in events if e == "progress"][1][-1] == 100.0


async def until(condition: Callable[[], bool], what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


class Hub:
    """An EventHub on the test's Redis, subscribed."""

    def __init__(self, redis_url: str, key_prefix: str) -> None:
        self.client = AsyncRedis.from_url(redis_url)
        self.hub = EventHub(self.client, FeedReader(self.client, key_prefix))

    async def __aenter__(self) -> EventHub:
        self.hub.start()
        channel = self.hub.reader.keys.events
        deadline = time.monotonic() + 10
        while not (await self.client.pubsub_numsub(channel))[0][1]:
            assert time.monotonic() < deadline, "the hub did not subscribe"
            await asyncio.sleep(0.005)
        return self.hub

    async def __aexit__(self, *_: object) -> None:
        await self.hub.stop()
        await self.client.aclose()


def test_followers_share_each_changes_encoded_events(
    store: AllRoles, redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    followers, changes = 20, 6
    job_id = running_job(store)
    write_losses(store, job_id, 1, [2.0, 1.9])
    encoded: Counter[str] = Counter()
    encode = events_module._encode

    def counting(event: str, *args: Any) -> bytes:
        encoded[event] += 1
        return encode(event, *args)

    monkeypatch.setattr(events_module, "_encode", counting)

    async def scenario() -> list[list[bytes]]:
        async with Hub(redis_url, key_prefix) as hub:
            received: list[list[bytes]] = [[] for _ in range(followers)]

            async def follow(chunks: list[bytes]) -> None:
                async for chunk in events(hub, job_id, Resume(), 1000):
                    chunks.append(chunk)

            tasks = [asyncio.create_task(follow(chunks)) for chunks in received]
            await until(lambda: all(received), "every follower's catch-up")
            encoded.clear()
            for change in range(changes):
                first = 3 + 2 * change
                write_losses(store, job_id, first, [1.5, 1.4])  # PUBLISHes the change
                last = f"id: {first + 1}\r\n".encode()
                await until(lambda last=last: all(last in chunks[-1] for chunks in received),
                            f"every follower to get iteration {first + 1}")
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return received

    received = asyncio.run(scenario())

    # One encoding per change, not one per follower per change.
    assert encoded["progress"] == changes, encoded
    # After the catch-up (iterations 1-2, from Redis), each change is one chunk, the same
    # bytes for every follower.
    for chunks in received:
        assert b"id: 2\r\n" in chunks[0]
        assert chunks[1:] == received[0][1:]
        assert len(chunks) == 1 + changes


def whole(events: list[Event]) -> tuple[list[int], list[int]]:
    """The iterations and the epochs that the (non-status) events carry, in order."""
    iterations = [i for e, _, d in events if e == "progress" for i in d["iterations"]]
    return iterations, [d["epoch"] for e, _, d in events if e == "epoch"]


def test_a_follower_cut_off_after_any_event_resumes_with_exactly_the_rest(
    store: AllRoles, redis_url: str, key_prefix: str
) -> None:
    """Epochs of 5 iterations, written as a worker would (timed flushes, and each epoch's
    end with its row), three writes at a time so that rounds span epochs: the stream of
    the live job (the feed's path), then a resume from every event's id (the catch-up from
    Redis, as the job has finished by then)."""
    job_id = running_job(store)
    pending = [(1, 3), (4, 5), (6, 8), (9, 10), (11, 13), (14, 15), (16, 17)]

    def write(first: int, last: int) -> None:
        losses = np.arange(first, last + 1, dtype=np.float64)
        if last % 5 == 0:
            store.record_epoch(job_id, "worker-a", row(last // 5, last),
                               first_iteration=first, losses=losses)
        else:
            write_losses(store, job_id, first, losses.tolist())

    def more() -> None:
        """After each chunk the follower gets: the next three writes, then the end."""
        if pending:
            for first, last in pending[:3]:
                write(first, last)
            del pending[:3]
            if not pending:
                store.finish(job_id, "succeeded", token="worker-a")

    async def collect(stream: AsyncIterator[bytes], chunks: list[list[Event]] | None = None
                      ) -> list[Event]:
        out: list[Event] = []
        async for chunk in stream:
            out += parse(chunk)
            if chunks is not None:
                chunks.append(parse(chunk))
                more()
        return out

    async def scenario() -> tuple[list[list[Event]], list[Event], list[list[Event]]]:
        async with Hub(redis_url, key_prefix) as hub:
            chunks: list[list[Event]] = []
            live = await collect(events(hub, job_id, Resume(), 1000), chunks)
            resumed = [await collect(events(hub, job_id, Resume.parse(event_id, 0), 1000))
                       for _, event_id, _ in live if event_id]
            return chunks, live, resumed

    chunks, live, resumed = asyncio.run(scenario())

    assert whole(live) == (list(range(1, 18)), [1, 2, 3])
    assert live[-1] == ("end", None, {"status": "succeeded"})
    # Rounds spanned an epoch's end (the scenario's point): cut there, the row in between.
    split = [[e for e, _, _ in chunk] for chunk in chunks
             if sum(e == "progress" for e, _, _ in chunk) > 1]
    assert ["progress", "epoch", "progress"] in [kinds[:3] for kinds in split], chunks
    cuts = [i for i, (_, event_id, _) in enumerate(live) if event_id]
    assert len(cuts) == len(resumed) >= 8
    for cut, rest in zip(cuts, resumed, strict=True):
        assert rest[0][0] == "status" and rest[-1][0] == "end"
        seen = [e for e in live[: cut + 1] if e[0] != "status"]
        assert whole(seen + rest[1:]) == whole(live), (live[cut], rest)
