"""OutagePolicy: retry while Redis is unreachable, within the budget, recovering once."""

from __future__ import annotations

import pytest
import redis

from worker.outage import OutagePolicy, RedisOutage


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def flaky(failures: int, error: Exception) -> object:
    calls = {"n": 0}

    def call() -> str:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise error
        return "done"

    return call


def test_an_outage_is_waited_out_with_backoff_then_recovered_once() -> None:
    fake = FakeTime()
    policy = OutagePolicy(60, sleep=fake.sleep, clock=fake.clock)
    recovered: list[float] = []

    result = policy.call(flaky(6, redis.ConnectionError("down")),  # type: ignore[arg-type]
                         on_recovered=lambda: recovered.append(fake.now))

    assert result == "done"
    assert fake.sleeps == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0]  # doubling, capped at 2 s
    assert len(recovered) >= 1 and policy.outages == 1


def test_no_outage_no_recovery() -> None:
    fake = FakeTime()
    policy = OutagePolicy(60, sleep=fake.sleep, clock=fake.clock)
    recovered: list[int] = []

    assert policy.call(lambda: 7, on_recovered=lambda: recovered.append(1)) == 7
    assert recovered == [] and fake.sleeps == []


def test_an_outage_longer_than_the_budget_gives_up_naming_the_setting() -> None:
    fake = FakeTime()
    policy = OutagePolicy(5, sleep=fake.sleep, clock=fake.clock)

    with pytest.raises(RedisOutage, match="DESCENT_REDIS_OUTAGE_SECONDS"):
        policy.call(flaky(10**6, redis.TimeoutError("slow")))  # type: ignore[arg-type]
    assert 5 <= fake.now <= 5.1


def test_other_redis_errors_are_not_outages() -> None:
    policy = OutagePolicy(60, sleep=lambda _: None)

    with pytest.raises(redis.ResponseError):
        policy.call(flaky(1, redis.ResponseError("WRONGTYPE")))  # type: ignore[arg-type]
