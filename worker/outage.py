"""Waiting out a Redis outage: retry a store call with backoff, within a time budget."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from app.store.base import UNREACHABLE

logger = logging.getLogger(__name__)

T = TypeVar("T")


class RedisOutage(Exception):
    """Redis stayed unreachable for longer than the outage budget."""


class OutagePolicy:
    """Calls a function until Redis answers, backing off from 0.1 s to `max_delay`, for at
    most `budget_seconds` per outage; `on_recovered` runs before the retry that follows an
    outage (to take back a lease that lapsed, or to rewrite what the outage lost)."""

    def __init__(
        self,
        budget_seconds: float,
        *,
        max_delay: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budget = budget_seconds
        self.max_delay = max_delay
        self._sleep = sleep
        self._clock = clock
        self.outages = 0

    def call(
        self, fn: Callable[[], T], on_recovered: Callable[[], None] | None = None
    ) -> T:
        deadline: float | None = None
        delay = 0.1
        while True:
            try:
                if deadline is not None and on_recovered is not None:
                    on_recovered()
                result = fn()
            except UNREACHABLE as exc:
                now = self._clock()
                if deadline is None:
                    deadline = now + self.budget
                    self.outages += 1
                    logger.warning("Redis is unreachable (%s); waiting up to %g s", exc,
                                   self.budget)
                if now >= deadline:
                    raise RedisOutage(
                        f"Redis was unreachable for over {self.budget:g} s "
                        "(DESCENT_REDIS_OUTAGE_SECONDS)"
                    ) from exc
                self._sleep(min(delay, max(deadline - now, 0.0)))
                delay = min(delay * 2, self.max_delay)
                continue
            if deadline is not None:
                logger.info("Redis answers again")
            return result
