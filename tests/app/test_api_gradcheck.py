"""POST /v1/gradient-check: computed in the API process, refused with 422s that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import data
from app.api.routes import gradcheck
from tests.app.conftest import ADMIN_TOKEN, MakeClient
from trainer import dataset_info

PATH = "/v1/gradient-check"
DIGITS = {"dataset": "digits", "hidden_sizes": [10]}


def refused(response: Any, field: str) -> dict[str, Any]:
    """The 422 entry naming `field` in its loc and its msg."""
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    matching = [error for error in errors if error["loc"] == ["body", field]]
    assert matching, f"no error names {field!r}: {errors}"
    error: dict[str, Any] = matching[0]
    assert field in error["msg"], error
    return error


@pytest.mark.parametrize(
    ("body", "n_features", "n_classes"),
    [
        ({**DIGITS, "activation": "relu", "batch_size": 12, "seed": 3}, 64, 10),
        ({"dataset": "spiral", "hidden_sizes": [8, 6], "loss": "sum_squares"}, 2, 3),
    ],
    ids=["digits", "spiral"],
)
def test_a_check_answers_every_field_of_the_contract(
    client: TestClient, body: dict[str, Any], n_features: int, n_classes: int
) -> None:
    response = client.post(PATH, json=body)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == {"parameters", "max_relative_error", "agree", "h",
                           "numerical_seconds", "backprop_seconds"}
    sizes = [n_features, *body["hidden_sizes"], n_classes]
    expected = []
    for layer, (n_in, n_out) in enumerate(zip(sizes, sizes[1:], strict=False), start=1):
        expected += [(f"W{layer}", [n_in, n_out]), (f"b{layer}", [n_out])]
    assert [(p["name"], p["shape"]) for p in answer["parameters"]] == expected
    for p in answer["parameters"]:
        assert 0 <= p["mean_relative_error"] <= p["max_relative_error"] <= 1e-6
    assert answer["max_relative_error"] == max(
        p["max_relative_error"] for p in answer["parameters"]
    )
    assert answer["agree"] is True
    assert answer["h"] == 1e-4
    assert answer["numerical_seconds"] > 0 and answer["backprop_seconds"] > 0


def test_the_same_body_gives_the_same_errors_and_another_seed_others(
    client: TestClient,
) -> None:
    def errors(seed: int) -> list[float]:
        response = client.post(PATH, json={**DIGITS, "seed": seed})
        assert response.status_code == 200, response.text
        return [p["max_relative_error"] for p in response.json()["parameters"]]

    assert errors(1) == errors(1)
    assert errors(1) != errors(2)


def test_without_a_key_it_is_a_401(client: TestClient) -> None:
    for body in (DIGITS, {"activation": "tanh"}):  # a bad body too: the key comes first
        response = client.post(PATH, json=body, headers={"Authorization": ""})

        assert response.status_code == 401, response.text
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"activation": "tanh"}, "activation", 'got "tanh"'),
        ({"loss": "hinge"}, "loss", 'got "hinge"'),
        ({"hidden_sizes": []}, "hidden_sizes", "got []"),
        ({"hidden_sizes": [10, 4097]}, "hidden_sizes", "hidden_sizes[1] must be 1 to 4096"),
        ({"batch_size": 0}, "batch_size", "got 0"),
        ({"batch_size": 1001}, "batch_size", "got 1001"),
        ({"batch_size": 10.5}, "batch_size", "got 10.5"),
        ({"weight_init_std": 0}, "weight_init_std", "got 0"),
        ({"seed": -1}, "seed", "got -1"),
        ({"seed": True}, "seed", "got true"),
        ({"dataset": "digitz"}, "dataset", 'did you mean "digits"?'),
    ],
    ids=lambda value: str(value)[:30],
)
def test_a_bad_value_is_422_naming_the_field_and_the_value(
    client: TestClient, changes: dict[str, Any], field: str, fragment: str
) -> None:
    error = refused(client.post(PATH, json={**DIGITS, **changes}), field)

    assert fragment in error["msg"]
    assert error["input"] == changes[field]


def test_an_unknown_field_is_422_naming_it(client: TestClient) -> None:
    response = client.post(PATH, json={**DIGITS, "batchsize": 5})

    error = refused(response, "batchsize")
    assert "not a known field" in error["msg"] and 'did you mean "batch_size"?' in error["msg"]


def test_a_job_spec_field_is_not_one_of_a_gradient_check(client: TestClient) -> None:
    error = refused(client.post(PATH, json={**DIGITS, "epochs": 3}), "epochs")

    assert "not a known field" in error["msg"]


def test_integer_valued_floats_are_integers(client: TestClient) -> None:
    response = client.post(PATH, json={**DIGITS, "hidden_sizes": [10.0], "batch_size": 4.0})

    assert response.status_code == 200, response.text
    assert response.json()["parameters"][0]["shape"] == [64, 10]


def test_a_batch_larger_than_the_training_set_is_422_with_its_size(client: TestClient) -> None:
    # The job's first batch is checked, so the bound is a job's: after its 10% validation.
    training = dataset_info("blobs").n_train - round(dataset_info("blobs").n_train * 0.1)

    response = client.post(PATH, json={"dataset": "blobs", "batch_size": training + 1})

    error = refused(response, "batch_size")
    assert f"({training}), got {training + 1}" in error["msg"]


def test_an_unavailable_dataset_is_422_saying_how_to_get_it(
    make_client: MakeClient, tmp_path: Path
) -> None:
    client = make_client(data_dir=str(tmp_path))  # empty: MNIST is not there
    assert not dataset_info("mnist", str(tmp_path)).available

    error = refused(client.post(PATH, json={"dataset": "mnist"}), "dataset")

    assert "'mnist' is not available here" in error["msg"]
    assert "t10k-images-idx3-ubyte.gz" in error["msg"] and "DESCENT_DATA_DIR" in error["msg"]
    assert error["input"] == "mnist"


def test_weights_that_explode_the_loss_are_422_on_weight_init_std(client: TestClient) -> None:
    response = client.post(PATH, json={**DIGITS, "weight_init_std": 1000.0})

    error = refused(response, "weight_init_std")
    assert "too large for a gradient check" in error["msg"]
    assert error["input"] == 1000.0


def test_over_the_inline_limit_it_is_422_with_the_estimate_and_a_batch_size_that_fits(
    make_client: MakeClient,
) -> None:
    client = make_client(max_inline_seconds=0.1)

    body = {"dataset": "digits", "hidden_sizes": [64, 64], "batch_size": 100}
    response = client.post(PATH, json=body)

    error = refused(response, "batch_size")
    assert error["type"] == "cost_limit" and error["input"] == 100
    assert "estimated at" in error["msg"]
    assert "limit of 0.1 s (DESCENT_MAX_INLINE_SECONDS)" in error["msg"]
    fitting = int(error["msg"].split("use batch_size ")[1].split()[0].rstrip(","))
    assert 1 <= fitting < 100
    assert client.post(PATH, json={**body, "batch_size": fitting}).status_code == 200


def test_over_the_limit_even_for_one_sample_it_names_hidden_sizes(
    make_client: MakeClient,
) -> None:
    client = make_client(max_inline_seconds=0.001)

    body = {"dataset": "digits", "hidden_sizes": [256, 256], "batch_size": 1}
    error = refused(client.post(PATH, json=body), "hidden_sizes")

    assert error["type"] == "cost_limit" and error["input"] == [256, 256]
    assert "even batch_size 1 is estimated at" in error["msg"]


def test_a_refused_check_computes_nothing(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(gradcheck, "check_initial_gradients", lambda *a: calls.append(a))
    client = make_client(max_inline_seconds=0.001)

    response = client.post(PATH, json={"dataset": "digits", "hidden_sizes": [256, 256]})

    assert response.status_code == 422
    assert calls == []


def test_the_dataset_is_loaded_once_per_process(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    data.builtin_dataset.cache_clear()
    loads: list[str] = []
    real = data.load_dataset

    def counting(name: str, data_dir: str | None = None) -> Any:
        loads.append(name)
        return real(name, data_dir)

    monkeypatch.setattr(data, "load_dataset", counting)

    for seed in (0, 1, 2):
        assert client.post(PATH, json={**DIGITS, "seed": seed}).status_code == 200

    assert loads == ["digits"]
    data.builtin_dataset.cache_clear()


def test_the_route_is_in_the_openapi_with_its_answer(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"][PATH]["post"]

    assert {"200", "422", "429"} <= set(operation["responses"])
    assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "GradientCheckSpec"
    )


def test_a_check_is_a_submission_and_a_tenant_over_its_rate_gets_a_429(
    client: TestClient,
) -> None:
    """A check costs seconds of an API process's CPU: it counts against
    submissions_per_minute with the tenant's jobs and sweeps (a refused one does not)."""
    bob = client.post("/v1/admin/tenants", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                      json={"name": "bob", "quotas": {"submissions_per_minute": 2}}).json()
    as_bob = {"Authorization": f"Bearer {bob['api_key']}"}
    assert client.post(PATH, json={**DIGITS, "batch_size": 10**6}, headers=as_bob
                       ).status_code == 422  # not computed: not counted
    assert client.post(PATH, json=DIGITS, headers=as_bob).status_code == 200
    assert client.post("/v1/jobs", json={"dataset": "spiral", "epochs": 1},
                       headers=as_bob).status_code == 202

    refused = client.post(PATH, json=DIGITS, headers=as_bob)

    assert refused.status_code == 429
    body = refused.json()
    assert (body["quota"], body["limit"], body["current"]) == ("submissions_per_minute", 2, 2)
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert client.get("/v1/me", headers=as_bob).json()["usage"]["submissions_last_minute"] == 2
    assert client.post(PATH, json=DIGITS).status_code == 200  # alice is not bob
