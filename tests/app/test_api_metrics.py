"""GET /metrics: Prometheus text; store-derived figures agree across API processes."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.store.reaper import Reaper
from scripts.stack import free_port
from tests.app.conftest import FakeWorker

SPIRAL = {"dataset": "spiral", "epochs": 2}


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of one scrape."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_jobs_by_status_queue_depth_and_workers_come_from_the_store(
    make_client: Callable[..., TestClient], worker: FakeWorker
) -> None:
    # Two apps on one store stand for two API processes behind a load balancer.
    first, second = make_client(), make_client()
    ids = [first.post("/v1/jobs", json={**SPIRAL, "seed": seed}).json()["id"]
           for seed in range(4)]  # the tenant's 2 slots: 2 sent, 2 waiting
    worker.start(ids[0])
    first.post(f"/v1/jobs/{ids[1]}/cancel")  # its slot goes to the third

    for client in (first, second):
        metrics = scrape(client)
        assert metrics[("descent_store_up", ())] == 1
        assert metrics[("descent_jobs", (("status", "queued"),))] == 2
        assert metrics[("descent_jobs", (("status", "running"),))] == 1
        assert metrics[("descent_jobs", (("status", "cancelled"),))] == 1
        assert metrics[("descent_queue_depth", ())] == 3  # no real worker consumes here
        assert metrics[("descent_jobs_waiting", ())] == 1
        assert metrics[("descent_workers_online", ())] == 0


def test_an_ended_job_adds_its_duration_and_iterations(
    client: TestClient, worker: FakeWorker
) -> None:
    job_id = client.post("/v1/jobs", json=SPIRAL).json()["id"]
    worker.start(job_id)
    worker.losses(job_id, [1.0] * 26)
    worker.finish(job_id, "succeeded", metrics={})

    metrics = scrape(client)

    assert metrics[("descent_iterations_trained_total", ())] == 26
    done = (("status", "succeeded"),)
    assert metrics[("descent_job_duration_seconds_count", done)] == 1
    assert metrics[("descent_job_duration_seconds_bucket", (("le", "+Inf"), *done))] == 1
    assert 0 <= metrics[("descent_job_duration_seconds_sum", done)] < 60


def test_http_requests_are_counted_by_route_template_and_code(client: TestClient) -> None:
    client.get("/v1/jobs/" + "0" * 32)
    client.get("/v1/jobs/" + "1" * 32)
    client.get("/nowhere")

    metrics = scrape(client)

    job = (("code", "404"), ("method", "GET"), ("route", "/v1/jobs/{job_id}"))
    assert metrics[("descent_http_requests_total", job)] == 2
    lost = (("code", "404"), ("method", "GET"), ("route", "unmatched"))
    assert metrics[("descent_http_requests_total", lost)] == 1
    timed = (("method", "GET"), ("route", "/v1/jobs/{job_id}"))
    assert metrics[("descent_http_request_seconds_count", timed)] == 2


def test_metrics_answer_without_redis_and_say_so(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(redis_url=f"redis://127.0.0.1:{free_port()}/0")

    metrics = scrape(client)

    assert metrics[("descent_store_up", ())] == 0
    assert ("descent_jobs", (("status", "queued"),)) not in metrics


def test_jobs_the_reaper_ends_are_counted_once(
    client: TestClient, worker: FakeWorker, reaper: Reaper
) -> None:
    job_id = client.post("/v1/jobs", json=SPIRAL).json()["id"]
    worker.start(job_id)
    worker.losses(job_id, [1.0] * 5)
    worker.store.release_lease(job_id, worker.token)  # its worker died

    assert reaper.reap(job_id, max_attempts=1) == "failed"
    assert reaper.reap(job_id, max_attempts=1) is None  # ended: never counted twice

    metrics = scrape(client)
    failed = (("status", "failed"),)
    assert metrics[("descent_job_duration_seconds_count", failed)] == 1
    assert metrics[("descent_iterations_trained_total", ())] == 5


def test_head_is_counted_under_its_route_and_odd_methods_under_other(
    client: TestClient,
) -> None:
    client.head("/healthz")
    client.request("FOO", "/healthz")
    client.request("BAR", "/healthz")

    metrics = scrape(client)

    head = (("code", "200"), ("method", "HEAD"), ("route", "/healthz"))
    assert metrics[("descent_http_requests_total", head)] == 1
    odd = (("code", "405"), ("method", "other"), ("route", "/healthz"))
    assert metrics[("descent_http_requests_total", odd)] == 2
