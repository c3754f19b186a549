"""4. Curve polling: 100 concurrent incremental pollers (since=0, then since=next) of a
100,000-iteration curve that a writer thread keeps extending: back to back, then each
once a second from a random phase.

The pollers speak HTTP/1.1 over asyncio streams (one keep-alive connection each, a GET
written as bytes, the answer read by its Content-Length) rather than through httpx: on
this 2-core machine the load generator shares the cores with the API under test, and
httpx spent about 0.9 ms of CPU per request (nearly a core at 1,000 polls/s), which the
API then waited for. The client's own share of the CPU is printed with the results."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import uvloop

from app.store.keys import queue_key
from app.store.leases import LeaseHolder
from bench.service.harness import Plan, Row, Stack, job_spec
from bench.service.load import process_cpu
from bench.service.log import log
from bench.service.stats import pct

PACED_PERIOD = 1.0  # seconds between two polls of one paced poller
TWO = 2  # API processes in the last window (this machine's cores)



@dataclass
class PollStats:
    latencies: list[float] = field(default_factory=list)
    first_bytes: list[int] = field(default_factory=list)
    incremental_bytes: list[int] = field(default_factory=list)
    incremental_points: list[int] = field(default_factory=list)
    errors: int = 0
    window: float = 0.0  # seconds from the last first read to the last poll's answer


class CurveWriter(threading.Thread):
    """Simulates a running job: appends 1000 iterations every 0.1 s under its lease."""

    def __init__(self, holder: LeaseHolder, job_id: str, token: str, first: int) -> None:
        super().__init__(daemon=True)
        self.holder, self.job_id, self.token, self.next = holder, job_id, token, first
        self.stop_event = threading.Event()
        self.write_seconds: list[float] = []
        self.rng = np.random.default_rng(1)

    def append(self, n: int) -> None:
        losses = fake_losses(self.rng, self.next, n)
        last = self.next + n - 1
        progress = {"epoch": 0, "epochs": 1, "iteration": last, "iterations": None,
                    "fraction": 0.0, "eta_seconds": None}
        started = time.perf_counter()
        self.holder.record_iterations(self.job_id, self.token, self.next, losses, progress)
        self.write_seconds.append(time.perf_counter() - started)
        self.next = last + 1

    def run(self) -> None:
        while not self.stop_event.wait(0.1):
            self.append(1000)


def drop_messages(stack: Stack, job_id: str) -> None:
    """Take the job's messages out of the broker queue (no worker is reading it)."""
    client, key = stack.store.client, queue_key(stack.prefix)
    messages: list[bytes] = client.lrange(key, 0, -1)  # type: ignore[assignment]
    for message in messages:
        if job_id.encode() in message:
            client.lrem(key, 0, message)


def fake_losses(rng: np.random.Generator, first: int, n: int) -> np.ndarray:
    steps = np.arange(first, first + n, dtype=np.float64)
    return (2.3 * np.exp(-steps / 20_000) + 0.2 + 0.05 * rng.standard_normal(n)).astype(
        np.float32)


class Connection:
    """One keep-alive HTTP/1.1 connection that GETs and reads answers by Content-Length
    (which every curve answer has): the least a client can do per request."""

    def __init__(self, base_url: str, api_key: str) -> None:
        host_port = base_url.split("://", 1)[1].rstrip("/")
        self.host, _, port = host_port.partition(":")
        self.port = int(port or 80)
        self.head = (f"Host: {host_port}\r\nAuthorization: Bearer {api_key}\r\n"
                     "Accept: application/json\r\n\r\n").encode()
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self, target: str) -> tuple[int, bytes]:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        try:
            writer.write(b"GET " + target.encode() + b" HTTP/1.1\r\n" + self.head)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line[:15].lower() == b"content-length:")
            return status, await reader.readexactly(length)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


async def _pollers(
    base_url: str, api_key: str, path: str, pollers: int, seconds: float, period: float = 0.0
) -> PollStats:
    """`pollers` clients (with the tenant's `api_key`) each read the whole curve once
    (since=0, downsampled), and once all have, poll since=next for `seconds`: as fast as
    they are answered (period 0), or each once per `period` seconds from a random phase.

    Only the incremental polls of that window are timed: 100 first reads of the whole
    curve at once are a different request, and the polls queued behind them would make
    the tail a measure of the start rather than of polling."""
    stats = PollStats()
    loop = asyncio.get_running_loop()
    rng = np.random.default_rng(2)
    window: dict[str, float] = {}
    all_read = asyncio.Event()
    remaining = pollers

    async def poll(connection: Connection, since: int) -> tuple[bytes, int, int] | None:
        try:
            status, body = await connection.get(f"{path}?since={since}")
            if status != 200:
                raise ValueError(f"HTTP {status}")
            curve = orjson.loads(body)
            return body, len(curve["iterations"]), int(curve["next"])
        except (OSError, asyncio.IncompleteReadError, StopIteration, ValueError, KeyError,
                TypeError):
            stats.errors += 1
            await asyncio.sleep(0.05)
            return None

    async def poller(phase: float) -> None:
        nonlocal remaining
        connection = Connection(base_url, api_key)
        try:
            while (first := await poll(connection, 0)) is None:
                pass
            stats.first_bytes.append(len(first[0]))
            since = first[2]
            remaining -= 1
            if remaining == 0:
                window["start"] = loop.time()
                window["end"] = window["start"] + seconds
                all_read.set()
            await all_read.wait()
            due = window["start"] + phase
            while loop.time() < window["end"]:
                if period:
                    await asyncio.sleep(max(0.0, due - loop.time()))
                    due += period
                started = time.perf_counter()
                answer = await poll(connection, since)
                if answer is None:
                    continue
                stats.latencies.append(time.perf_counter() - started)
                body, points, since = answer
                stats.incremental_bytes.append(len(body))
                stats.incremental_points.append(points)
        finally:
            connection.close()

    phases = rng.uniform(0, period, pollers) if period else np.zeros(pollers)
    await asyncio.gather(*(poller(float(phase)) for phase in phases))
    stats.window = loop.time() - window["start"]
    return stats


def measure(stack: Stack, plan: Plan) -> dict[str, Any]:
    log(f"4. curve polling: {plan.pollers} pollers, {plan.poll_seconds:g} s back to back, "
        f"then {plan.poll_seconds:g} s at 1 poll/s each, then back to back on {TWO} API "
        "processes")
    store, holder = stack.store, stack.holder
    # This process plays the job's worker: no worker may take the job's message (store.
    # create_job sends it), so none runs (in a whole run, scaling has stopped it already),
    # and the message is dropped.
    stack.stop_worker()
    tenant = stack.tenant_id
    job, _ = store.create_job(job_spec("fashion-mnist", 1), tenant=tenant, name="bench curve")
    job_id, token = job["id"], uuid.uuid4().hex
    drop_messages(stack, job_id)
    if not holder.acquire_lease(job_id, token, 3600) or holder.start_attempt(job_id, token) != 1:
        raise RuntimeError(f"could not start the simulated job {job_id}")
    writer = CurveWriter(holder, job_id, token, 1)
    for _ in range(10):
        writer.append(10_000)
    writer.write_seconds.clear()
    path = f"/v1/jobs/{job_id}/curve"
    started = time.perf_counter()
    full = stack.http.get(path, params={"since": 0, "max_points": 100_000})
    full_seconds = time.perf_counter() - started
    full.raise_for_status()
    assert len(full.json()["iterations"]) == 100_000
    assert stack.api is not None and stack.redis is not None
    pids = {"api": stack.api.pid, "redis": stack.redis.pid}
    cpu_before = {name: process_cpu(pid) for name, pid in pids.items()}
    own_before, wall_before = time.process_time(), time.monotonic()
    base_url = str(stack.http.base_url)
    writer.start()
    try:
        stats = uvloop.run(_pollers(base_url, stack.api_key, path, plan.pollers,
                                     plan.poll_seconds))
        wall = time.monotonic() - wall_before
        cores = {name: (process_cpu(pid) - cpu_before[name]) / wall
                 for name, pid in pids.items()}
        cores["bench client+writer"] = (time.process_time() - own_before) / wall
        paced = uvloop.run(_pollers(base_url, stack.api_key, path, plan.pollers,
                                     plan.poll_seconds, period=PACED_PERIOD))
        with stack.more_api(TWO) as api:
            two = uvloop.run(_pollers(api.url, stack.api_key, path, plan.pollers,
                                      plan.poll_seconds))
    finally:
        writer.stop_event.set()
        writer.join(timeout=5)
    total = store.read_curve(job_id, tenant=tenant, since=0, max_points=1)
    holder.finish(job_id, "succeeded", token=token)
    requests = len(stats.latencies)
    result = {
        "requests": requests,
        "rps": requests / stats.window,
        "p50": pct(stats.latencies, 50) * 1000,
        "p90": pct(stats.latencies, 90) * 1000,
        "p99": pct(stats.latencies, 99) * 1000,
        "max": max(stats.latencies, default=float("nan")) * 1000,
        "errors": stats.errors,
        "full_bytes": len(full.content),
        "full_ms": full_seconds * 1000,
        "first_bytes": pct([float(b) for b in stats.first_bytes], 50),
        "inc_bytes": pct([float(b) for b in stats.incremental_bytes], 50),
        "inc_points": pct([float(p) for p in stats.incremental_points], 50),
        "empty_share": (sum(1 for p in stats.incremental_points if p == 0)
                        / max(1, len(stats.incremental_points))),
        "cores": cores,
        "total_iterations": total["total"] if total else 0,
        "write_p99_ms": pct(writer.write_seconds, 99) * 1000,
        "write_max_ms": max(writer.write_seconds, default=float("nan")) * 1000,
        "writes": len(writer.write_seconds),
        "wall": wall,
        "paced_rps": len(paced.latencies) / paced.window,
        "paced_p50": pct(paced.latencies, 50) * 1000,
        "paced_p99": pct(paced.latencies, 99) * 1000,
        "paced_bytes": pct([float(b) for b in paced.incremental_bytes], 50),
        "paced_points": pct([float(p) for p in paced.incremental_points], 50),
        "paced_errors": paced.errors,
        "two_rps": len(two.latencies) / two.window,
        "two_p50": pct(two.latencies, 50) * 1000,
        "two_p99": pct(two.latencies, 99) * 1000,
        "two_errors": two.errors,
    }
    log(f"polling: {requests} back-to-back requests, {stats.errors} errors; "
        f"paced: {paced.errors} errors; {TWO} processes: {two.errors} errors")
    return result


def rows(p: dict[str, Any]) -> list[Row]:
    return [
        ("4 curve polls/s, 100 back-to-back pollers", f"{p['rps']:.0f}", "(report)", ""),
        ("4   latency p50/p99", f"{p['p50']:.1f} / {p['p99']:.1f} ms", "p99 <= 150 ms",
         "ok" if p["p99"] <= 150 else "MISSED"),
        ("4   latency p90 and max", f"{p['p90']:.1f} / {p['max']:.1f} ms", "", ""),
        (f"4 the same with {TWO} API processes (WEB_CONCURRENCY)", f"{p['two_rps']:.0f}",
         "(report)", ""),
        ("4   latency p50/p99", f"{p['two_p50']:.1f} / {p['two_p99']:.1f} ms",
         "p99 <= 150 ms", "ok" if p["two_p99"] <= 150 else "MISSED"),
        ("4 curve polls/s, 100 pollers at 1/s each", f"{p['paced_rps']:.0f}", "(report)", ""),
        ("4   latency p50/p99", f"{p['paced_p50']:.1f} / {p['paced_p99']:.1f} ms",
         "(report)", ""),
        ("4 body bytes: incremental poll (median)", f"{p['inc_bytes']:.0f} B "
         f"({p['inc_points']:.0f} points)", "", ""),
        ("4 body bytes: paced incremental poll (median)", f"{p['paced_bytes']:.0f} B "
         f"({p['paced_points']:.0f} points)", "", ""),
        ("4 body bytes: first poll (1000 points)", f"{p['first_bytes']:.0f} B", "", ""),
        ("4 body bytes: full poll (100,000 points)", f"{p['full_bytes']:,} B "
         f"({p['full_ms']:.0f} ms)", "", ""),
    ]


def notes(p: dict[str, Any]) -> list[str]:
    cores = ", ".join(f"{name} {value:.2f}" for name, value in p["cores"].items())
    return [f"polling (uvicorn 1 process): CPU cores busy during the back-to-back "
            f"window: {cores}; "
            f"{p['empty_share']:.0%} of incremental polls had no new points; "
            f"curve grew to {p['total_iterations']:,} iterations; writer "
            f"{p['writes']} appends, p99 {p['write_p99_ms']:.1f} ms, "
            f"max {p['write_max_ms']:.1f} ms; pollers speak HTTP/1.1 on asyncio streams "
            f"(uvloop), one keep-alive connection each; only incremental polls are timed"]
