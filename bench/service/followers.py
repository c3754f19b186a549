"""8. Followers of a job's event stream: 1 and then `plan.followers` clients follow one
running job each time (one API process). Delivery latency: from the worker's progress
flush (the PUBLISH its script makes, heard by this process's own subscription to the
events channel) to a follower's receipt of the progress event that carries it; and the
Redis commands per flush during each run (INFO's total_commands_processed, every client's,
the worker's included), which must not grow with the followers (each follower's own
connection costs a few, once); and the API process's CPU per flush, which does (a write
per follower). Targets: p50 <= 100 ms, p99 <= 300 ms."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import redis
import redis.asyncio
from httpx_sse import aconnect_sse

from bench.service.harness import Plan, Row, Stack, bearer
from bench.service.load import process_cpu
from bench.service.log import log
from bench.service.stats import pct

# A job of about 12 s, flushing its progress every 0.25 s (the default).
SPEC = {"dataset": "digits", "hidden_sizes": [256], "epochs": 600, "batch_size": 8}
TARGETS = (100.0, 300.0)


async def _follow(client: httpx.AsyncClient, job_id: str, heard: list[float],
                  delays: list[float], joined: asyncio.Event, count: list[int]) -> None:
    async with aconnect_sse(client, "GET", f"/v1/jobs/{job_id}/events") as source:
        first = True
        async for sse in source.aiter_sse():
            if sse.event == "status" and first:
                count[0] -= 1
                if count[0] == 0:
                    joined.set()
            if sse.event == "progress":
                if not first and heard:  # the first one is the catch-up, not a flush
                    delays.append((time.monotonic() - heard[-1]) * 1000)
                first = False
            elif sse.event == "end":
                return


async def _run(stack: Stack, followers: int) -> dict[str, Any]:
    subscriber = redis.asyncio.Redis.from_url(stack.settings.redis_url)
    pubsub = subscriber.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(f"{stack.prefix}:events")
    heard: list[float] = []
    job_id = stack.submit(SPEC)["id"]

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["data"].decode() == job_id:
                heard.append(time.monotonic())

    listener = asyncio.create_task(listen())
    info = redis.Redis.from_url(stack.settings.redis_url)
    assert stack.api is not None
    api_pid = stack.api.pid
    delays: list[float] = []
    joined, count = asyncio.Event(), [followers]
    window: dict[str, float] = {}

    async def count_once_joined() -> None:
        """Redis's work is counted from when every follower has joined (their own
        connections cost a few commands each, once) to the job's end."""
        await joined.wait()
        window.update(commands=info.info("stats")["total_commands_processed"],
                      flushes=len(heard), started=time.monotonic(), cpu=process_cpu(api_pid))

    counter = asyncio.create_task(count_once_joined())
    async with httpx.AsyncClient(
        base_url=str(stack.http.base_url), headers=bearer(stack.api_key), trust_env=False,
        timeout=httpx.Timeout(30, read=120),
        limits=httpx.Limits(max_connections=followers + 10),
    ) as client:
        await asyncio.gather(*(_follow(client, job_id, heard, delays, joined, count)
                               for _ in range(followers)))
    await counter
    seconds = time.monotonic() - window["started"]
    commands = info.info("stats")["total_commands_processed"] - window["commands"]
    cpu = process_cpu(api_pid) - window["cpu"]
    flushes = len(heard) - int(window["flushes"])
    listener.cancel()
    await pubsub.aclose()
    await subscriber.aclose()
    info.close()
    return {"followers": followers, "p50": pct(delays, 50), "p99": pct(delays, 99),
            "events": len(delays), "flushes": flushes, "seconds": seconds,
            "per_flush": commands / max(flushes, 1),
            "cpu_per_flush": cpu * 1000 / max(flushes, 1)}


def measure(stack: Stack, plan: Plan) -> dict[str, Any]:
    log(f"8. followers: 1, then {plan.followers}, of one running job")
    if stack.worker is None:
        stack.start_worker(1)
    runs = [asyncio.run(_run(stack, n)) for n in (1, plan.followers)]
    for run in runs:
        log(f"followers {run['followers']}: delivery p50 {run['p50']:.1f} ms, p99 "
            f"{run['p99']:.1f} ms over {run['events']} events; {run['per_flush']:.1f} "
            f"Redis commands per flush ({run['flushes']} flushes in {run['seconds']:.1f} s)")
    return {"runs": runs}


def rows(result: dict[str, Any]) -> list[Row]:
    one, many = result["runs"]
    ok = many["p50"] <= TARGETS[0] and many["p99"] <= TARGETS[1]
    return [
        (f"8 {many['followers']} followers of one job: flush -> receipt p50/p99",
         f"{many['p50']:.1f} / {many['p99']:.1f} ms ({many['events']} events)",
         f"<= {TARGETS[0]:.0f} / {TARGETS[1]:.0f} ms", "ok" if ok else "MISSED"),
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
