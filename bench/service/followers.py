"""8. Followers of a job's event stream: 1 and then `plan.followers` clients follow one
running job each time (one API process).

Delivery latency: from the worker's progress flush to a follower's receipt of the
progress event that carries its last point. A thread of this process subscribes to the
events channel; when it hears the job's PUBLISH (the worker's script makes it in the same
step as the write) it notes the time and the job's iteration count (one STRLEN). A
progress event ending at iteration P was flushed by the first write whose count reached
P. The followers are lean HTTP/1.1 clients on asyncio streams (uvloop) that read the
chunked body and only find each progress event's id, with this process's garbage
collector off, so that what is measured is the server and not a client's parsing or
pauses: 200 streams of a job that ends an epoch every 10-20 ms are 10,000-20,000 events a
second.

Also the Redis commands per flush during each run (INFO's total_commands_processed, every
client's, the worker's included, less this bench's STRLENs), which must not grow with the
followers (each follower's own connection costs a few, once); and the API process's CPU
per flush, which does (a write per follower). Targets: p50 <= 100 ms, p99 <= 300 ms."""

from __future__ import annotations

import asyncio
import bisect
import gc
import re
import threading
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

import redis
import uvloop

from app.store.curve import BYTES_PER_POINT
from app.store.keys import KeyLayout
from bench.service.harness import Plan, Row, Stack
from bench.service.load import process_cpu
from bench.service.log import log
from bench.service.stats import pct

# A job of about 12 s, ending an epoch (a write, with its row) every 20 ms or so.
SPEC = {"dataset": "digits", "hidden_sizes": [256], "epochs": 600, "batch_size": 8}
TARGETS = (100.0, 300.0)
PROGRESS_ID = re.compile(rb"id: (\d+)\r\nevent: progress\r\n")


class Flushes(threading.Thread):
    """Hears the job's PUBLISHes on its own connection: (iteration count, when) each."""

    def __init__(self, url: str, prefix: str, job_id: str) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(KeyLayout(prefix).events)
        self.losses = KeyLayout(prefix).job(job_id).losses
        self.job_id = job_id.encode()
        self.totals: list[int] = []
        self.times: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            message = self.pubsub.get_message(timeout=0.1)
            if message is not None and message["data"] == self.job_id:
                heard = time.monotonic()
                self.totals.append(int(self.client.strlen(self.losses)) // BYTES_PER_POINT)
                self.times.append(heard)

    def when(self, iteration: int) -> float | None:
        """When the write that brought `iteration` was heard (None: not heard yet)."""
        k = bisect.bisect_left(self.totals, iteration)
        return self.times[k] if k < len(self.times) else None

    def close(self) -> None:
        self.stop.set()
        self.join(5)
        self.pubsub.close()
        self.client.close()


@dataclass
class Receipts:
    """The last iteration of each chunk with progress after each follower's first, and
    when it was received (arrays: nothing for this process's collector to walk)."""

    iterations: array[int] = field(default_factory=lambda: array("q"))
    times: array[float] = field(default_factory=lambda: array("d"))
    events: int = 0


async def _follow(host: str, port: int, request: bytes, receipts: Receipts,
                  joined: list[int], all_joined: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        if head[9:12] != b"200":
            raise RuntimeError(f"the event stream answered {head[:40]!r}")
        first = True
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
            if size == 0:
                return
            chunk = await reader.readexactly(size + 2)
            now = time.monotonic()
            if first:  # the status and the catch-up
                first = False
                joined[0] -= 1
                if joined[0] == 0:
                    all_joined.set()
                continue
            found = PROGRESS_ID.findall(chunk)
            if found:
                receipts.iterations.append(int(found[-1]))
                receipts.times.append(now)
                receipts.events += len(found)
            if b"event: end\r\n" in chunk:
                return
    finally:
        writer.close()


async def _run(stack: Stack, job_id: str, followers: int, flushes: Flushes
               ) -> dict[str, Any]:
    info = redis.Redis.from_url(stack.settings.redis_url)
    assert stack.api is not None
    api_pid = stack.api.pid
    host, _, port = str(stack.http.base_url).split("://", 1)[1].rstrip("/").partition(":")
    request = (f"GET /v1/jobs/{job_id}/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
               f"Authorization: Bearer {stack.api_key}\r\nAccept: text/event-stream\r\n"
               "\r\n").encode()
    receipts = Receipts()
    joined, all_joined = [followers], asyncio.Event()
    window: dict[str, float] = {}

    async def count_once_joined() -> None:
        """Redis's and the API's work are counted from when every follower has joined
        (their own connections cost a few commands each, once) to the job's end."""
        await all_joined.wait()
        window.update(commands=info.info("stats")["total_commands_processed"],
                      flushes=len(flushes.times), started=time.monotonic(),
                      cpu=process_cpu(api_pid), client=time.process_time())

    counter = asyncio.create_task(count_once_joined())
    await asyncio.gather(*(_follow(host, int(port), request, receipts, joined, all_joined)
                           for _ in range(followers)))
    await counter
    seconds = time.monotonic() - window["started"]
    heard = len(flushes.times) - int(window["flushes"])
    commands = (info.info("stats")["total_commands_processed"] - window["commands"]
                - heard)  # less the STRLEN of each
    cpu = process_cpu(api_pid) - window["cpu"]
    client = time.process_time() - window["client"]
    info.close()
    delays = [(got - heard_at) * 1000
              for iteration, got in zip(receipts.iterations, receipts.times, strict=True)
              if (heard_at := flushes.when(iteration)) is not None]
    return {"followers": followers, "p50": pct(delays, 50), "p99": pct(delays, 99),
            "max": max(delays), "events": receipts.events, "receipts": len(delays),
            "flushes": heard, "seconds": seconds, "per_flush": commands / max(heard, 1),
            "cpu_per_flush": cpu * 1000 / max(heard, 1),
            "api_cores": cpu / seconds, "client_cores": client / seconds}


def _measure(stack: Stack, followers: int) -> dict[str, Any]:
    job_id = stack.submit(SPEC)["id"]
    flushes = Flushes(stack.settings.redis_url, stack.prefix, job_id)
    flushes.start()
    gc.collect()
    gc.disable()  # the client's own pauses are not the server's latency
    try:
        return uvloop.run(_run(stack, job_id, followers, flushes))
    finally:
        gc.enable()
        flushes.close()


def measure(stack: Stack, plan: Plan) -> dict[str, Any]:
    log(f"8. followers: 1, then {plan.followers}, of one running job")
    if stack.worker is None:
        stack.start_worker(1)
    runs = [_measure(stack, n) for n in (1, plan.followers)]
    for run in runs:
        log(f"followers {run['followers']}: delivery p50 {run['p50']:.1f} ms, p99 "
            f"{run['p99']:.1f} ms, max {run['max']:.1f} ms over {run['receipts']} receipts "
            f"({run['events']} progress events); {run['per_flush']:.1f} Redis commands "
            f"and {run['cpu_per_flush']:.2f} ms of API CPU per flush ({run['flushes']} "
            f"flushes in {run['seconds']:.1f} s); cores busy: API {run['api_cores']:.2f}, "
            f"bench client {run['client_cores']:.2f}")
    return {"runs": runs}


def rows(result: dict[str, Any]) -> list[Row]:
    one, many = result["runs"]
    ok = many["p50"] <= TARGETS[0] and many["p99"] <= TARGETS[1]
    return [
        (f"8 {many['followers']} followers of one job: flush -> receipt p50/p99",
         f"{many['p50']:.1f} / {many['p99']:.1f} ms ({many['receipts']} receipts)",
         f"<= {TARGETS[0]:.0f} / {TARGETS[1]:.0f} ms", "ok" if ok else "MISSED"),
        ("8   max; cores busy: API, bench client",
         f"{many['max']:.1f} ms; {many['api_cores']:.2f}, {many['client_cores']:.2f}", "", ""),
        ("8 1 follower: flush -> receipt p50/p99",
         f"{one['p50']:.1f} / {one['p99']:.1f} ms", "(report)", ""),
        ("8 Redis commands per flush (all clients), 1 vs many followers",
         f"{one['per_flush']:.1f} vs {many['per_flush']:.1f} "
         f"({many['per_flush'] / one['per_flush']:.2f}x)", "~1x",
         "ok" if many["per_flush"] <= 1.2 * one["per_flush"] else "GREW"),
        ("8 API CPU per flush, 1 vs many followers",
         f"{one['cpu_per_flush']:.2f} vs {many['cpu_per_flush']:.1f} ms "
         f"({many['cpu_per_flush'] / max(many['followers'], 1) * 1000:.0f} us a follower)",
         "(report)", ""),
    ]
