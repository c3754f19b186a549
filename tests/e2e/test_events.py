"""GET /v1/jobs/{id}/events through the API process, with a real worker writing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import redis
from httpx_sse import connect_sse

from scripts.stack import RedisServer, make_tenant
from tests.e2e.conftest import Service, bearer, running_service

# About 2 s of training in many small flushes.
RUNNING = {"dataset": "digits", "hidden_sizes": [64], "epochs": 12, "batch_size": 16}


def follow(client: httpx.Client, job_id: str, limit: int | None = None,
           **headers: str) -> list[tuple[str, str | None, Any]]:
    """(event, id, data) until `end`, or until `limit` events (then the client hangs up)."""
    out: list[tuple[str, str | None, Any]] = []
    with connect_sse(client, "GET", f"/v1/jobs/{job_id}/events",
                     params={"max_points": 100_000}, headers=headers, timeout=60) as source:
        assert source.response.status_code == 200, source.response.read()
        for sse in source.iter_sse():
            out.append((sse.event, sse.id or None, sse.json()))
            if sse.event == "end" or (limit is not None and len(out) >= limit):
                break
    return out


def points(events: list[tuple[str, str | None, Any]]) -> list[int]:
    return [i for event, _, data in events if event == "progress" for i in data["iterations"]]


def check_whole(service: Service, job_id: str, events: list[tuple[str, str | None, Any]]
                ) -> None:
    """The events carry exactly the job's curve and epoch rows, each once, in order."""
    curve = service.full_curve(job_id)
    assert points(events) == list(range(1, curve["total"] + 1))
    losses = [x for event, _, data in events if event == "progress" for x in data["loss"]]
    assert losses == curve["loss"]
    rows = [data for event, _, data in events if event == "epoch"]
    assert rows == curve["epochs"]
    assert events[-1][0] == "end"
    assert events[-1][2]["status"] == curve["status"] == "succeeded"


def test_a_follower_sees_the_run_in_order_and_then_end(service: Service) -> None:
    job_id = service.submit(**RUNNING)["id"]

    events = follow(service.client, job_id)

    assert events[0][0] == "status"
    statuses = [data["status"] for event, _, data in events if event == "status"]
    assert statuses[-1] == "succeeded" and "running" in statuses
    assert sum(event == "progress" for event, _, _ in events) >= 3  # it was live
    check_whole(service, job_id, events)
    for event, event_id, data in events:  # ids are iterations ("iteration:epoch" for rows)
        if event == "progress":
            assert event_id == str(data["iteration"]) == str(data["iterations"][-1])
        if event == "epoch":
            assert event_id is not None and event_id.endswith(f":{data['epoch']}")


def test_a_follower_that_reconnects_gets_exactly_the_rest(service: Service) -> None:
    job_id = service.submit(**RUNNING, seed=1)["id"]
    first = follow(service.client, job_id, limit=6)
    last_id = next(event_id for _, event_id, _ in reversed(first) if event_id)

    rest = follow(service.client, job_id, **{"Last-Event-ID": last_id})

    assert rest[0][0] == "status"  # a resumed stream starts with the status
    check_whole(service, job_id, [e for e in first if e[0] != "status"]
                + [e for e in rest if e[0] != "status"])


def test_a_finished_jobs_stream_replays_and_ends_at_once(service: Service) -> None:
    job_id = service.submit(**RUNNING, seed=2)["id"]
    service.wait_status(job_id, ("succeeded",))

    events = follow(service.client, job_id)

    assert [event for event, _, _ in events][:2] == ["status", "progress"]
    check_whole(service, job_id, events)
    since = follow(service.client, job_id, **{"Last-Event-ID": events[-2][1] or ""})
    assert [event for event, _, _ in since] == ["status", "end"]


def test_another_tenants_job_and_bad_resumes_are_refused(service: Service) -> None:
    job_id = service.submit(**RUNNING, seed=3)["id"]
    key = make_tenant(service.env, "stranger")
    with httpx.Client(base_url=service.api.url, trust_env=False, headers=bearer(key)) as other:
        theirs = other.get(f"/v1/jobs/{job_id}/events")
        nobody = other.get(f"/v1/jobs/{'f' * 32}/events")
    assert theirs.status_code == nobody.status_code == 404
    bad = service.client.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": "x1"})
    assert bad.status_code == 422
    assert "Last-Event-ID" in bad.json()["detail"][0]["msg"]


def test_redis_work_per_change_does_not_grow_with_followers(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """GETRANGE is what reads losses (the feed's read, a catch-up's): count it per
    PUBLISH of a change, with 1 follower and with 12."""
    import threading

    raw = redis.Redis.from_url(redis_server.url)

    def calls(command: str) -> int:
        stats = raw.info("commandstats").get(f"cmdstat_{command}", {})
        return int(stats.get("calls", 0))

    def run(service: Service, followers: int, seed: int) -> float:
        job_id = service.submit(**RUNNING, seed=seed)["id"]
        before = calls("getrange"), calls("publish")
        threads = [threading.Thread(target=follow, args=(service.client, job_id))
                   for _ in range(followers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        reads = calls("getrange") - before[0] - followers  # less each one's catch-up
        changes = calls("publish") - before[1]
        assert changes >= 10, changes
        return reads / changes

    with running_service(redis_server, tmp_path, quotas={"max_running_jobs": 4}) as service:
        alone = run(service, 1, seed=4)
        crowd = run(service, 12, seed=5)
    raw.close()

    print(f"getrange per change: {alone:.2f} alone, {crowd:.2f} with 12 followers")
    assert crowd <= alone + 0.5, (alone, crowd)
