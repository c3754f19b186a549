"""Liveness, readiness, the dataset catalogue, and the OpenAPI description of the contract."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from app.api.schemas import SPEC_EXAMPLE
from app.store.jobs import JobStore
from app.store.keys import KeyLayout
from app.store.registry import WorkerRegistry
from scripts.stack import free_port
from trainer import dataset_info

BUILTINS = ["fashion-mnist", "mnist", "digits", "spiral", "blobs"]


def test_healthz_is_200(client: TestClient) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_503_without_a_worker(client: TestClient) -> None:
    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["redis"] is True
    assert body["workers"] == 0
    assert "no worker" in body["detail"]


def test_readyz_is_200_once_a_worker_beats(
    client: TestClient, store: JobStore, key_prefix: str
) -> None:
    WorkerRegistry(store.client, key_prefix).beat("w1")

    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "redis": True, "workers": 1}


def test_readyz_ignores_workers_under_another_prefix(
    client: TestClient, store: JobStore, key_prefix: str
) -> None:
    WorkerRegistry(store.client, f"{key_prefix}-other").beat("w1")

    assert client.get("/readyz").status_code == 503


def test_readyz_is_503_when_the_only_worker_fell_silent(
    client: TestClient, store: JobStore, key_prefix: str
) -> None:
    # Heartbeats come every 3 s by default: one from a minute ago is a dead worker.
    WorkerRegistry(store.client, key_prefix, clock=lambda: time.time() - 60).beat("old")

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["workers"] == 0


def test_a_beat_forgets_long_silent_workers_and_readyz_only_reads(
    client: TestClient, store: JobStore, key_prefix: str
) -> None:
    workers = KeyLayout(key_prefix).workers
    WorkerRegistry(store.client, key_prefix, clock=lambda: time.time() - 60).beat("silent")
    WorkerRegistry(store.client, key_prefix, clock=lambda: time.time() - 3600).beat("gone")
    assert client.get("/readyz").status_code == 503
    assert store.client.zcard(workers) == 2  # the probe wrote nothing

    WorkerRegistry(store.client, key_prefix).beat("w1")

    members = {m.decode() for m in store.client.zrange(workers, 0, -1)}
    assert members == {"silent", "w1"}  # an hour is past FORGET_AFTER_SECONDS, a minute not
    assert client.get("/readyz").json() == {"status": "ready", "redis": True, "workers": 1}


def test_readyz_is_503_when_redis_is_unreachable(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(redis_url=f"redis://127.0.0.1:{free_port()}/0")

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["redis"] is False
    assert response.json()["status"] == "unavailable"
    assert client.get("/healthz").status_code == 200


def test_job_routes_answer_503_not_500_when_redis_is_unreachable(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(redis_url=f"redis://127.0.0.1:{free_port()}/0")

    submitted = client.post("/v1/jobs", json={"dataset": "spiral"})
    listed = client.get("/v1/jobs")

    for response in (submitted, listed):
        assert response.status_code == 503
        assert "Redis" in response.json()["detail"]
        assert response.headers["retry-after"] == "5"


def test_datasets_lists_every_builtin_with_its_shapes(client: TestClient) -> None:
    response = client.get("/v1/datasets")

    assert response.status_code == 200
    items = response.json()["items"]
    assert [item["name"] for item in items] == BUILTINS
    for item in items:
        info = dataset_info(item["name"])
        assert item["available"] is info.available
        for field in ("n_train", "n_test", "n_features", "n_classes"):
            assert item[field] == getattr(info, field), (item["name"], field)
            assert item[field] > 0
        if item["available"]:
            assert item["hint"] is None
        else:
            assert item["hint"], item


def test_datasets_shapes_are_those_of_the_data(client: TestClient) -> None:
    items = {item["name"]: item for item in client.get("/v1/datasets").json()["items"]}

    assert (items["spiral"]["n_train"], items["spiral"]["n_test"]) == (720, 180)
    assert (items["spiral"]["n_features"], items["spiral"]["n_classes"]) == (2, 3)
    assert (items["mnist"]["n_features"], items["mnist"]["n_classes"]) == (784, 10)


def test_an_unavailable_dataset_says_how_to_get_it(client: TestClient) -> None:
    items = {item["name"]: item for item in client.get("/v1/datasets").json()["items"]}
    if items["mnist"]["available"]:
        pytest.skip("mnist is installed here")

    assert "DESCENT_DATA_DIR" in items["mnist"]["hint"]


def test_openapi_describes_the_paths_of_the_design(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()

    paths = schema["paths"]
    assert set(paths["/v1/jobs"]) == {"get", "post"}
    assert set(paths["/v1/jobs/{job_id}"]) == {"get"}
    assert set(paths["/v1/jobs/{job_id}/curve"]) == {"get"}
    assert set(paths["/v1/jobs/{job_id}/metrics"]) == {"get"}
    assert set(paths["/v1/jobs/{job_id}/cancel"]) == {"post"}
    assert set(paths["/v1/datasets"]) == {"get", "post"}
    assert set(paths["/v1/datasets/{ref}"]) == {"get", "delete"}
    assert set(paths["/healthz"]) == {"get"}
    assert set(paths["/readyz"]) == {"get"}
    submit = paths["/v1/jobs"]["post"]
    assert "202" in submit["responses"] and "422" in submit["responses"]
    assert "409" in paths["/v1/jobs/{job_id}/metrics"]["get"]["responses"]
    assert "409" in paths["/v1/jobs/{job_id}/cancel"]["post"]["responses"]


def test_openapi_has_example_bodies_for_submit(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()

    body = schema["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    name = body["schema"]["$ref"].rsplit("/", 1)[-1]
    spec_schema = schema["components"]["schemas"][name]
    assert spec_schema["examples"][0] == SPEC_EXAMPLE
    assert spec_schema["additionalProperties"] is False
    assert spec_schema["required"] == ["dataset"]


def test_every_openapi_example_is_accepted(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    examples = schema["components"]["schemas"]["JobSpec"]["examples"]

    for example in examples:
        if not dataset_info(example["dataset"]).available:
            continue
        response = client.post("/v1/jobs", json=example)
        assert response.status_code == 202, (example, response.text)


def test_docs_answer_200(client: TestClient) -> None:
    response = client.get("/docs")

    assert response.status_code == 200
    assert "swagger" in response.text.lower()


def test_the_first_example_works_on_a_fresh_machine(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    first = schema["components"]["schemas"]["JobSpec"]["examples"][0]

    assert dataset_info(first["dataset"]).available  # no optional dataset package needed
    assert client.post("/v1/jobs", json=first).status_code == 202


def test_docs_load_every_asset_from_the_api_itself(client: TestClient) -> None:
    import re

    page = client.get("/docs").text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)

    assert assets, page
    for asset in assets:
        assert asset.startswith("/"), f"{asset} is not served by the API (needs internet)"
        assert client.get(asset).status_code == 200, asset


def test_the_api_version_is_the_package_version(client: TestClient) -> None:
    from importlib.metadata import version

    assert client.get("/openapi.json").json()["info"]["version"] == version("descent")


def test_every_answer_has_a_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    for path, operations in paths.items():
        for method, operation in operations.items():
            for code, answer in operation["responses"].items():
                if code == "204":  # No Content: nothing to describe
                    assert "content" not in answer, f"{method.upper()} {path} 204 has a body"
                    continue
                content = answer.get("content", {})
                schema = next(iter(content.values()), {}).get("schema")
                assert schema, f"{method.upper()} {path} {code} has no schema"
                assert schema != {}, f"{method.upper()} {path} {code} has an empty schema"
