"""The event stream's engine: one Redis subscription per API process, one shared Feed per
followed job, and each follower's events (GET /v1/jobs/{id}/events).

The scripts that change a job publish its id on the deployment's events channel
(app.store.keys.KeyLayout.events). The EventHub holds this process's one subscription;
when a followed job changes, its Feed reads what is new from Redis once and wakes every
follower, so Redis's work per change does not grow with the number of followers. The hub
also reads each feed that heard nothing for a while (one timer for all of them), so a lost
message (a dropped subscription, a Redis restart) delays a follower by at most that long.

Each round of a follower's events (a status change, the new points, the epoch rows they
complete) goes out as one chunk, one write. Each event is encoded (sse_starlette's
ServerSentEvent, the one wire format) once per read of the feed and shared by the
followers at the same place in it, which after their catch-up is all of them: a change
costs this process one encoding and then a memo lookup and a write per follower.

Event ids: a `progress` event's id is the last iteration it carries; an `epoch` event's id
is "{iteration}:{epoch}", the points and the rows the client has with it. A progress
event's points stop at any epoch's end among them, and that row follows it, so that a
bare iteration says which rows the client has too: those that end before it. Last-Event-ID
resumes after either: points after that iteration, and the epoch rows not yet delivered
(for a bare iteration, the row that ends at it is resent). A stream, resumed or not,
starts with the job's `status`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass
from functools import partial
from itertools import takewhile
from typing import Any, TypeVar, cast

import numpy as np
import redis
from redis.asyncio import Redis as AsyncRedis
from sse_starlette import ServerSentEvent

from app.store.curve import BYTES_PER_POINT, bytes_to_losses, downsample_indices, dumps
from app.store.feed import FeedReader, Update
from app.store.keys import TERMINAL_STATUSES

logger = logging.getLogger(__name__)

QUIET_READ_SECONDS = 5.0  # a followed job re-read after this long without a read
RECONNECT_SECONDS = (0.2, 5.0)  # the subscription's backoff, first and most
STOP_SECONDS = 5.0
T = TypeVar("T")
_RESUME = re.compile(r"(\d{1,18})(?::(\d{1,9}))?")


@dataclass(frozen=True)
class Resume:
    """Where a follower starts: after iteration `after`; epoch rows beyond `epoch` (an
    epoch event's id), or with iteration >= `after` (a progress event's id, inclusive)
    or > `after` (a `since` query, as the curve's cursor)."""

    after: int = 0
    epoch: int | None = None
    inclusive_rows: bool = False

    @classmethod
    def parse(cls, last_event_id: str | None, since: int) -> Resume:
        """From a Last-Event-ID header (which wins) or the `since` query."""
        if last_event_id:
            found = _RESUME.fullmatch(last_event_id.strip())
            if found is None:
                raise ValueError(
                    f"Last-Event-ID must be an event id of this stream (an iteration, or "
                    f"'iteration:epoch'), got {last_event_id[:40]!r}"
                )
            epoch = found.group(2)
            return cls(int(found.group(1)), int(epoch) if epoch else None, epoch is None)
        return cls(since)

    def row_delivered(self, row: dict[str, Any]) -> bool:
        if self.epoch is not None:
            return int(row["epoch"]) <= self.epoch
        iteration = int(row["iteration"])
        return iteration < self.after if self.inclusive_rows else iteration <= self.after


class Feed:
    """One followed job in this process: its state and the losses since the feed began,
    read once per change and shared by its followers."""

    def __init__(self, job_id: str, reader: FeedReader) -> None:
        self.job_id = job_id
        self._reader = reader
        self.followers = 0
        self.base = 0  # the iteration count when the feed began: raw holds what follows
        self.raw = bytearray()
        self.rows: list[dict[str, Any]] = []
        self.state: Update | None = None
        self.version = 0  # counts the reads that changed state, raw or rows
        self._encoded: dict[Hashable, Any] = {}  # this version's events (see encoded)
        self.gone = False
        self._changed = asyncio.Event()
        self._reading: asyncio.Task[None] | None = None
        self._again = False
        self._ready = asyncio.Event()
        self.read_at = asyncio.get_running_loop().time()  # the last read's end, or birth

    @property
    def total(self) -> int:
        return self.base + len(self.raw) // BYTES_PER_POINT

    def poke(self) -> None:
        """Read what changed: now, or right after the read in flight."""
        if self._reading is not None and not self._reading.done():
            self._again = True
            return
        self._reading = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        while True:
            self._again = False
            try:
                await self._read_once()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                logger.warning("event feed of job %s: Redis unreachable (%s)", self.job_id, exc)
            except Exception:
                logger.exception("event feed of job %s: read failed", self.job_id)
            self.read_at = asyncio.get_running_loop().time()
            self._ready.set()
            if not self._again:
                return

    async def _read_once(self) -> None:
        first = self.state is None
        offset = 2**40 if first else self.total  # the first read takes no losses
        update = await self._reader.update(self.job_id, offset, len(self.rows) + 1)
        if update is None:
            self.gone = True
        else:
            if first:
                self.base = update.total
            elif update.total < self.total:  # rewound (a worker rewrites after an outage)
                keep = max(update.total - self.base, 0)
                del self.raw[keep * BYTES_PER_POINT:]
                self.base = min(self.base, update.total)
            self.raw += update.losses[: len(update.losses) - len(update.losses)
                                      % BYTES_PER_POINT]
            self.rows += update.rows
            self.state = update
        self.version += 1
        self._encoded = {}
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def ready(self) -> None:
        if self.state is None and not self.gone:
            self.poke()
        await self._ready.wait()

    async def changed(self) -> None:
        """Until the next read that succeeds (the hub reads a quiet feed every
        QUIET_READ_SECONDS)."""
        await self._changed.wait()

    def encoded(self, key: Hashable, encode: Callable[[], T]) -> T:
        """What `encode` gives for this version of the feed, made by the first follower
        to need it: an event on the wire, or (position, event). `key` holds what it
        depends on besides the version; a follower calls this with no await since it read
        the feed's state, so that the version is the one it read."""
        if key not in self._encoded:
            self._encoded[key] = encode()
        return cast(T, self._encoded[key])

    def holds(self, iteration: int) -> bool:
        """Whether the feed holds every iteration after `iteration` (else the earlier ones
        come from Redis)."""
        return iteration >= self.base

    def losses_after(self, iteration: int) -> bytes:
        """The float32 bytes of the iterations after `iteration`, which the feed holds."""
        return bytes(self.raw[(iteration - self.base) * BYTES_PER_POINT:])


class EventHub:
    """This process's one subscription to the events channel, and its feeds."""

    def __init__(self, client: AsyncRedis, reader: FeedReader) -> None:
        self._client = client
        self.reader = reader
        self.feeds: dict[str, Feed] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._listen()), loop.create_task(self._read_quiet())]

    async def stop(self) -> None:
        """Cancel the subscription and the timer. (redis-py may turn the cancellation of a
        read into a ConnectionError, which the loop would take for an outage: hence the
        flag.)"""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True),
                                   STOP_SECONDS)

    async def _read_quiet(self) -> None:
        """Read each feed that has not been read for QUIET_READ_SECONDS: what a lost
        message missed, or a first read that failed."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(QUIET_READ_SECONDS / 5)
            now = loop.time()
            for feed in list(self.feeds.values()):
                if now - feed.read_at >= QUIET_READ_SECONDS:
                    feed.poke()

    async def _listen(self) -> None:
        delay = RECONNECT_SECONDS[0]
        while not self._stopping:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.reader.keys.events)
                delay = RECONNECT_SECONDS[0]
                for feed in list(self.feeds.values()):  # what changed while unsubscribed
                    feed.poke()
                async for message in pubsub.listen():
                    changed = self.feeds.get(message["data"].decode())
                    if changed is not None:
                        changed.poke()
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                if self._stopping:
                    return
                logger.warning("event hub: subscription lost (%s); again in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_SECONDS[1])
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    @contextlib.asynccontextmanager
    async def follow(self, job_id: str) -> AsyncIterator[Feed]:
        feed = self.feeds.get(job_id)
        if feed is None:
            feed = self.feeds[job_id] = Feed(job_id, self.reader)
        feed.followers += 1
        try:
            yield feed
        finally:
            feed.followers -= 1
            if feed.followers == 0 and self.feeds.get(job_id) is feed:
                del self.feeds[job_id]


def _encode(event: str, data: Any, event_id: str | None = None) -> bytes:
    """One event on the wire (data is JSON: orjson's, which writes no line breaks)."""
    return ServerSentEvent(data=dumps(data).decode(), event=event, id=event_id).encode()


def _progress(state: Update, iterations: Any, losses: Any) -> bytes:
    """A progress event; iterations and losses are NumPy arrays (curve.dumps)."""
    keys = ("epoch", "epochs", "fraction", "eta_seconds")
    last = int(iterations[-1])
    return _encode("progress", {"iteration": last, **{k: state.progress.get(k) for k in keys},
                                "iterations": iterations, "loss": losses}, str(last))


def _round(state: Update, data: bytes, after: int, rows: list[dict[str, Any]],
           next_row: int, max_points: int) -> tuple[int, int, bytes]:
    """A round's points and rows, for a follower that has the points through `after` and
    the rows before `rows[next_row]` (rows: all the job's, in epoch order): its new
    position and row index, and the events.

    The rows that end by `after` come first (their points went before). The new points,
    the float32 `data` of iterations after+1 on, are downsampled as a curve is (at most
    `max_points`, the last kept) and cut at each epoch's end among them, which is kept:
    each piece is a progress event, followed by the row it ends. So when a progress
    event's id is an iteration, every row that ends before it came before it.
    """
    events: list[bytes] = []
    while next_row < len(rows) and int(rows[next_row]["iteration"]) <= after:
        row = rows[next_row]
        events.append(_encode("epoch", row, f"{after}:{row['epoch']}"))
        next_row += 1
    losses = bytes_to_losses(data)
    if not len(losses):
        return after, next_row, b"".join(events)
    ending = list(takewhile(lambda row: int(row["iteration"]) <= after + len(losses),
                            rows[next_row:]))
    ends = np.array([int(row["iteration"]) - after - 1 for row in ending], dtype=np.int64)
    kept = np.union1d(downsample_indices(len(losses), max_points), ends)
    iterations, values = kept + (after + 1), losses[kept].astype(np.float64)
    cuts = np.searchsorted(kept, ends, side="right")
    start = 0
    for row, cut in zip(ending, cuts.tolist(), strict=True):
        events.append(_progress(state, iterations[start:cut], values[start:cut]))
        events.append(_encode("epoch", row, f"{row['iteration']}:{row['epoch']}"))
        start = cut
    if start < len(kept):
        events.append(_progress(state, iterations[start:], values[start:]))
    return after + len(losses), next_row + len(ending), b"".join(events)


def _held_round(feed: Feed, state: Update, after: int, next_row: int, max_points: int
                ) -> tuple[int, int, bytes]:
    """_round on what the feed holds (the caller has checked that it holds `after`)."""
    return _round(state, feed.losses_after(after), after, feed.rows, next_row, max_points)


async def events(
    hub: EventHub, job_id: str, resume: Resume, max_points: int
) -> AsyncIterator[bytes]:
    """The follower's stream, a chunk of encoded events per round, until `end`. (The
    caller has checked that the job is the follower's tenant's.)"""
    async with hub.follow(job_id) as feed:
        await feed.ready()
        position = resume.after
        next_row = sum(1 for _ in takewhile(resume.row_delivered, feed.rows))
        sent_status: tuple[Any, ...] | None = None
        while True:
            state = feed.state
            if feed.gone:  # expired meanwhile: nothing more will come
                yield _encode("end", {"status": "gone"})
                return
            if state is None:  # the first read failed (Redis unreachable): read again
                await feed.changed()
                continue
            chunk: list[bytes] = []
            if not feed.holds(position):  # from before the feed began: read
                # from Redis, once (the feed holds the rest)
                earlier = await hub.reader.update(job_id, position, 1)
                if earlier is None:
                    yield _encode("end", {"status": "gone"})
                    return
                state = feed.state or state
                position, next_row, caught_up = _round(state, earlier.losses, position,
                                                       earlier.rows, next_row, max_points)
                chunk.append(caught_up)
            # No await from here to the round's yield: state, raw and rows are one version.
            version = feed.version
            status = (state.status, state.error, state.warnings)
            if status != sent_status:
                sent_status = status
                chunk.insert(0, feed.encoded("status", partial(_encode, "status", {
                    "status": state.status, "error": state.error,
                    "warnings": state.warnings})))
            position, next_row, held = feed.encoded(
                ("round", position, next_row, max_points),
                partial(_held_round, feed, state, position, next_row, max_points))
            chunk.append(held)
            ended = state.status in TERMINAL_STATUSES and position >= feed.total
            if ended:
                chunk.append(_encode("end", {"status": state.status}))
            if any(chunk):
                yield b"".join(chunk)
            if ended:
                return
            if position >= feed.total and feed.version == version:  # nothing new since
                await feed.changed()
