"""How busy the machine is: CPU of our processes, of the others, and hypervisor steal (psutil)."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

from bench.service.log import log

try:
    import psutil
except ImportError:  # the load figures say n/a
    psutil = None

HAVE_PSUTIL = psutil is not None


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process (0 when gone or without psutil)."""
    if psutil is None:
        return 0.0
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def process_status(pid: int) -> str:
    """psutil's status of a live process ("?" when gone or without psutil)."""
    status = "?"
    if psutil is not None:
        with contextlib.suppress(psutil.Error):
            status = psutil.Process(pid).status()
    return status


class LoadMeter:
    """How busy the machine was besides us: other processes (named) and hypervisor steal.

    Another benchmark on a 2-core machine halves what two workers can get, so every
    phase says how much CPU was left to it. Needs psutil; without it, `measure` is None.
    """

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float, dict[int, tuple[float, float]], set[int]] | None:
        if psutil is None:
            return None
        times = psutil.cpu_times()
        busy = sum(getattr(times, name, 0.0)
                   for name in ("user", "nice", "system", "irq", "softirq"))
        # pid -> (CPU s with its reaped children, CPU s of its own)
        table: dict[int, tuple[float, float]] = {}
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                t = process.cpu_times()
                own = t.user + t.system
                table[process.pid] = (own + t.children_user + t.children_system, own)
        me = psutil.Process()
        tree = {me.pid} | {child.pid for child in me.children(recursive=True)}
        return time.monotonic(), busy, getattr(times, "steal", 0.0), table, tree

    def measure(self) -> dict[str, Any] | None:
        now_sample, then_sample = self._sample(), self.start
        if now_sample is None or then_sample is None:
            return None
        now, busy, steal, table, tree = now_sample
        then, busy0, steal0, table0, tree0 = then_sample
        wall = max(now - then, 1e-9)
        ours_now = tree | (tree0 & table.keys())
        ours = (sum(table[p][0] for p in ours_now if p in table)
                - sum(table0[p][0] for p in tree0 if p in table0))
        others = {pid: (own - table0.get(pid, (0.0, 0.0))[1]) / wall
                  for pid, (_, own) in table.items() if pid not in ours_now}
        top = sorted(others.items(), key=lambda item: -item[1])[:2]
        return {
            "ours": ours / wall,
            "others": max(busy - busy0 - ours, 0.0) / wall,
            "steal": (steal - steal0) / wall,
            "top": [(pid, share, command_of(pid)) for pid, share in top if share >= 0.1],
        }

    def others(self) -> float:
        measured = self.measure()
        return measured["others"] if measured else 0.0

    def summary(self) -> str:
        m = self.measure()
        if m is None:
            return "n/a (psutil is not installed)"
        text = (f"ours {m['ours']:.2f}, other processes {m['others']:.2f}, "
                f"steal {m['steal']:.2f}")
        if m["top"]:
            text += " (" + ", ".join(f"pid {pid} {share:.2f}: {cmd}"
                                     for pid, share, cmd in m["top"]) + ")"
        return text


def command_of(pid: int) -> str:
    if psutil is None:
        return "?"
    try:
        return " ".join(psutil.Process(pid).cmdline())[:70] or "?"
    except psutil.Error:
        return "?"


def wait_for_quiet(limit: float) -> str | None:
    """Wait (up to `limit` s) until other processes use < 0.3 cores; else say who is busy."""
    deadline = time.monotonic() + limit
    while True:
        meter = LoadMeter()
        time.sleep(2.0)
        m = meter.measure()
        if m is None or m["others"] < 0.3:
            return None
        busy = (f"other processes use {m['others']:.2f} of {os.cpu_count()} cores: "
                + ", ".join(f"pid {pid} {share:.2f} {cmd}" for pid, share, cmd in m["top"]))
        if time.monotonic() > deadline:
            return busy
        log(f"machine busy ({busy}); waiting up to {deadline - time.monotonic():.0f} s more")
