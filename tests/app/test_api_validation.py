"""POST /v1/jobs refuses bad specs at the door: 422 naming field and value, 413 for huge bodies."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.store.jobs import JobStore
from tests.roles import TENANT
from trainer import dataset_info

SPIRAL = {"dataset": "spiral", "epochs": 2}
SPIRAL_TRAIN_ROWS = 648  # 720 training rows minus the default 10 % validation split


def refused(response: Any, field: str) -> dict[str, Any]:
    """The 422 entry naming `field` (its loc and its msg)."""
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    matching = [error for error in errors if field in error["loc"]]
    assert matching, f"no error names {field!r}: {errors}"
    error: dict[str, Any] = matching[0]
    assert field in error["msg"], error
    return error


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"hidden_sizes": []}, "hidden_sizes", "got []"),
        ({"hidden_sizes": [1] * 9}, "hidden_sizes", "at most 8 items"),
        ({"hidden_sizes": [10, 0]}, "hidden_sizes", "hidden_sizes[1] must be 1 to 4096, got 0"),
        ({"hidden_sizes": [4097]}, "hidden_sizes", "got 4097"),
        ({"hidden_sizes": "50"}, "hidden_sizes", 'got "50"'),
        ({"activation": "tanh"}, "activation", 'got "tanh"'),
        ({"loss": "hinge"}, "loss", 'got "hinge"'),
        ({"gradient": "adam"}, "gradient", 'got "adam"'),
        ({"dtype": "float16"}, "dtype", 'got "float16"'),
        ({"learning_rate": 0}, "learning_rate", "got 0"),
        ({"learning_rate": -1}, "learning_rate", "got -1"),
        ({"learning_rate": 10.5}, "learning_rate", "got 10.5"),
        ({"learning_rate": "fast"}, "learning_rate", 'got "fast"'),
        ({"momentum": -0.1}, "momentum", "got -0.1"),
        ({"momentum": 1.0}, "momentum", "got 1.0"),
        ({"batch_size": 0}, "batch_size", "got 0"),
        ({"batch_size": SPIRAL_TRAIN_ROWS + 1}, "batch_size", "(648), got 649"),
        ({"epochs": 0}, "epochs", "got 0"),
        ({"epochs": 1001}, "epochs", "got 1001"),
        ({"epochs": True}, "epochs", "got true"),
        ({"validation_fraction": -0.1}, "validation_fraction", "got -0.1"),
        ({"validation_fraction": 0.6}, "validation_fraction", "got 0.6"),
        ({"early_stopping_patience": 0}, "early_stopping_patience", "got 0"),
        ({"weight_init_std": 0}, "weight_init_std", "got 0"),
        ({"seed": -1}, "seed", "got -1"),
        ({"seed": 2**53}, "seed", "got 9007199254740992"),
        ({"name": "n" * 201}, "name", 'at most 200 characters, got "nnn'),
    ],
    ids=lambda value: str(value)[:40],
)
def test_out_of_bounds_values_are_422_naming_field_and_value(
    client: TestClient, store: JobStore, changes: dict[str, Any], field: str, fragment: str
) -> None:
    response = client.post("/v1/jobs", json={**SPIRAL, **changes})

    error = refused(response, field)
    assert error["loc"] == ["body", field]
    assert fragment in error["msg"]
    assert error["input"] == changes[field]
    assert store.list_jobs(tenant=TENANT)[0] == []


@pytest.mark.parametrize(
    "changes",
    [
        {"hidden_sizes": [1] * 8},
        {"hidden_sizes": [1, 4096]},
        {"learning_rate": 10},
        {"momentum": 0.99},
        {"batch_size": SPIRAL_TRAIN_ROWS},
        {"batch_size": 1, "epochs": 1},
        {"epochs": 1},
        {"validation_fraction": 0.5},
        {"validation_fraction": 0, "batch_size": 720},
        {"early_stopping_patience": 1},
        {"weight_init_std": 0.01},
        {"seed": 2**53 - 1},
        {"name": "n" * 200},
    ],
    ids=str,
)
def test_values_on_the_bounds_are_accepted(client: TestClient, changes: dict[str, Any]) -> None:
    response = client.post("/v1/jobs", json={**SPIRAL, **changes})

    assert response.status_code == 202, response.text
    for field, value in changes.items():
        assert (response.json()["name"] if field == "name" else response.json()["spec"][field]) \
            == value


@pytest.mark.parametrize("raw", [b'{"dataset":"spiral","weight_init_std":Infinity}',
                                 b'{"dataset":"spiral","learning_rate":NaN}'])
def test_non_finite_numbers_are_422(client: TestClient, raw: bytes) -> None:
    response = client.post("/v1/jobs", content=raw, headers={"Content-Type": "application/json"})

    field = "weight_init_std" if b"weight" in raw else "learning_rate"
    assert "finite" in refused(response, field)["msg"]


def test_an_unknown_field_is_422(client: TestClient) -> None:
    response = client.post("/v1/jobs", json={**SPIRAL, "learning_rat": 0.5})

    error = refused(response, "learning_rat")
    assert error["loc"] == ["body", "learning_rat"]
    assert "not a known field" in error["msg"]
    assert error["input"] == 0.5


def test_an_unknown_dataset_is_422_listing_the_known_ones(client: TestClient) -> None:
    response = client.post("/v1/jobs", json={"dataset": "cifar-10"})

    error = refused(response, "dataset")
    assert "'cifar-10'" in error["msg"]
    assert error["input"] == "cifar-10"
    for name in ("fashion-mnist", "mnist", "digits", "spiral", "blobs"):
        assert name in error["msg"]


def test_an_unavailable_dataset_is_422_with_the_hint(client: TestClient) -> None:
    info = dataset_info("mnist")
    if info.available:
        pytest.skip("mnist is installed here")
    assert info.hint

    response = client.post("/v1/jobs", json={"dataset": "mnist"})

    error = refused(response, "dataset")
    assert "'mnist'" in error["msg"] and "not available" in error["msg"]
    assert "t10k-images-idx3-ubyte.gz" in error["msg"]  # the trainer's hint...
    assert "data directory DESCENT_DATA_DIR" in error["msg"]  # ...naming the setting
    assert error["input"] == "mnist"


def test_a_missing_dataset_is_422(client: TestClient) -> None:
    response = client.post("/v1/jobs", json={"epochs": 2})

    error = refused(response, "dataset")
    assert error["loc"] == ["body", "dataset"]
    assert "required" in error["msg"]


def test_numerical_gradient_in_float32_is_422(client: TestClient) -> None:
    response = client.post("/v1/jobs", json={"dataset": "blobs", "gradient": "numerical",
                                             "dtype": "float32", "hidden_sizes": [4]})

    error = refused(response, "dtype")
    assert "float32" in error["msg"] and "numerical" in error["msg"]
    assert error["input"] == "float32"


def test_early_stopping_without_a_validation_set_is_422(client: TestClient) -> None:
    response = client.post("/v1/jobs", json={**SPIRAL, "early_stopping_patience": 2,
                                             "validation_fraction": 0})

    error = refused(response, "early_stopping_patience")
    assert "validation_fraction" in error["msg"]
    assert error["input"] == 2


def test_an_absurdly_expensive_job_is_422_with_the_estimate_and_the_limit(
    client: TestClient, store: JobStore
) -> None:
    # digits comes with scikit-learn, so this holds on a machine without optional datasets.
    spec = {"dataset": "digits", "gradient": "numerical", "hidden_sizes": [4096],
            "epochs": 1000}

    response = client.post("/v1/jobs", json=spec)

    error = refused(response, "gradient")
    assert error["type"] == "cost_limit"
    assert "estimated at" in error["msg"]
    assert "limit of 3,600 s" in error["msg"] and "DESCENT_MAX_JOB_SECONDS" in error["msg"]
    assert "gradient backprop" in error["msg"]
    assert error["input"] == "numerical"
    assert store.list_jobs(tenant=TENANT)[0] == []


def test_the_cost_advice_of_a_backprop_job_names_only_what_would_help(
    client: TestClient,
) -> None:
    spec = {"dataset": "digits", "hidden_sizes": [4096, 4096, 4096], "epochs": 1000,
            "batch_size": 1}

    error = refused(client.post("/v1/jobs", json=spec), "epochs")

    assert error["type"] == "cost_limit"
    assert "fewer epochs, a smaller network or a larger batch_size" in error["msg"]
    assert "backprop" not in error["msg"]


def test_the_cost_advice_leaves_out_the_batch_size_when_it_is_already_large(
    client: TestClient,
) -> None:
    spec = {"dataset": "digits", "hidden_sizes": [4096, 4096, 4096], "epochs": 1000,
            "batch_size": 64}

    error = refused(client.post("/v1/jobs", json=spec), "epochs")

    assert error["msg"].endswith("use fewer epochs or a smaller network")


def test_the_cost_limit_follows_the_settings(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_job_seconds=0.001)

    response = client.post("/v1/jobs", json={"dataset": "digits", "epochs": 5})

    error = refused(response, "epochs")
    assert "limit of 0 s" in error["msg"]
    assert error["input"] == 5


def test_too_many_iterations_is_422(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_iterations=100)

    response = client.post("/v1/jobs", json={"dataset": "spiral", "batch_size": 10,
                                             "epochs": 2})

    error = refused(response, "epochs")
    assert "130 iterations" in error["msg"] and "DESCENT_MAX_ITERATIONS" in error["msg"]


@pytest.mark.parametrize(
    "raw",
    [b'{"dataset": "spiral",', b"{not json}", b'{"dataset": "spiral"} trailing'],
)
def test_malformed_json_is_422(client: TestClient, raw: bytes) -> None:
    response = client.post("/v1/jobs", content=raw, headers={"Content-Type": "application/json"})

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["type"] == "json_invalid"
    assert error["loc"][0] == "body"
    assert "not valid JSON" in error["msg"] and "at character" in error["msg"]


@pytest.mark.parametrize("body", [[1, 2], "spiral", 3])
def test_a_body_that_is_not_an_object_is_422(client: TestClient, body: Any) -> None:
    response = client.post("/v1/jobs", json=body)

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body"]
    assert error["input"] == body


def test_json_without_a_json_content_type_is_422(client: TestClient) -> None:
    response = client.post("/v1/jobs", content=b'{"dataset": "spiral"}',
                           headers={"Content-Type": "text/plain"})

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert "Content-Type: application/json" in error["msg"]
    assert error["input"] == '{"dataset": "spiral"}'


def test_an_empty_body_is_422(client: TestClient) -> None:
    response = client.post("/v1/jobs", content=b"", headers={"Content-Type": "application/json"})

    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "missing"


# --- 413 and the integrity of other jobs ---------------------------------------------------


def test_a_body_over_the_limit_is_413_naming_the_limit(
    make_client: Callable[..., TestClient], store: JobStore
) -> None:
    client = make_client(max_body_bytes=2000)

    response = client.post("/v1/jobs", content=b" " * 5000,
                           headers={"Content-Type": "application/json"})

    assert response.status_code == 413
    detail = response.json()["detail"]
    assert "5000 bytes" in detail
    assert "2000 bytes" in detail and "DESCENT_MAX_BODY_BYTES" in detail
    assert store.list_jobs(tenant=TENANT)[0] == []


def test_a_chunked_body_over_the_limit_is_413(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_body_bytes=2000)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must count as it reads
        for _ in range(5):
            yield b" " * 1000

    response = client.post("/v1/jobs", content=chunks(),
                           headers={"Content-Type": "application/json"})

    assert response.status_code == 413
    assert "2000 bytes" in response.json()["detail"]


def test_a_chunked_body_under_the_limit_is_accepted(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(max_body_bytes=2000)

    def chunks() -> Iterator[bytes]:
        yield b'{"dataset": '
        yield b'"spiral"}'

    response = client.post("/v1/jobs", content=chunks(),
                           headers={"Content-Type": "application/json"})

    assert response.status_code == 202, response.text
    assert response.json()["spec"]["dataset"] == "spiral"


def test_bad_requests_leave_other_jobs_untouched(
    make_client: Callable[..., TestClient], store: JobStore
) -> None:
    client = make_client(max_body_bytes=2000)
    job = client.post("/v1/jobs", json={**SPIRAL, "name": "keep me"}).json()
    curve = client.get(f"/v1/jobs/{job['id']}/curve").json()

    garbage = [
        client.post("/v1/jobs", content=b"\x00\xff" * 2500,
                    headers={"Content-Type": "application/json"}),
        client.post("/v1/jobs", content=b"{garbage", headers={"Content-Type": "application/json"}),
        client.post("/v1/jobs", json={**SPIRAL, "id": job["id"], "status": "failed"}),
        client.post("/v1/jobs", json={"dataset": f"../job:{job['id']}"}),
        client.post(f"/v1/jobs/{job['id']}x/cancel"),
    ]

    assert [response.status_code for response in garbage] == [413, 422, 422, 422, 404]
    assert client.get(f"/v1/jobs/{job['id']}").json() == job
    assert client.get(f"/v1/jobs/{job['id']}/curve").json() == curve
    assert [item["id"] for item in store.list_jobs(tenant=TENANT)[0]] == [job["id"]]


def test_a_job_too_large_for_memory_is_422_with_the_estimate_and_the_limit(
    make_client: Callable[..., TestClient], store: JobStore
) -> None:
    client = make_client(max_job_memory_bytes=4 * 2**30, max_job_seconds=10**9,
                         max_iterations=10**9)
    spec = {"dataset": "digits", "hidden_sizes": [4096] * 8, "dtype": "float64",
            "momentum": 0.9, "epochs": 1}

    error = refused(client.post("/v1/jobs", json=spec), "hidden_sizes")

    assert error["type"] == "memory_limit"
    assert "GiB of memory" in error["msg"] and "limit of 4.00 GiB" in error["msg"]
    assert "DESCENT_MAX_JOB_MEMORY_BYTES" in error["msg"]
    assert "dtype float32" in error["msg"] and "no momentum" in error["msg"]
    assert store.list_jobs(tenant=TENANT)[0] == []
    smaller = {**spec, "hidden_sizes": [64]}
    assert client.post("/v1/jobs", json=smaller).status_code == 202
