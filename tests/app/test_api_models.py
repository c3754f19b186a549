"""The model out: GET /v1/jobs/{id}/model (an .npz NumPy loads alone, with the README's own
lines) and POST /v1/jobs/{id}/predict, on a model really trained on digits."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.store.tenants import TenantStore
from tests.app.conftest import FakeWorker, MakeClient
from trainer import TrainConfig, load_dataset, model_to_bytes, train
from trainer.rundata import rng_streams
from trainer.splits import make_splits

README = Path(__file__).resolve().parents[2] / "README.md"
SPEC = {"dataset": "digits", "hidden_sizes": [32], "activation": "relu",
        "learning_rate": 0.2, "batch_size": 32, "epochs": 4}


@pytest.fixture(scope="module")
def trained() -> tuple[bytes, dict[str, Any], np.ndarray, np.ndarray]:
    """A digits model as a worker would store it, its metrics, and its test rows."""
    config = TrainConfig.from_dict({k: v for k, v in SPEC.items() if k != "dataset"})
    dataset = load_dataset("digits")
    result = train(config, dataset)
    blob = model_to_bytes(result.params, config.activation, config.loss, dataset="digits")
    splits = make_splits(dataset, config.validation_fraction, rng_streams(config.seed)[0])
    return blob, result.metrics, splits.x_test, splits.t_test


@pytest.fixture
def job_id(client: TestClient, worker: FakeWorker,
           trained: tuple[bytes, dict[str, Any], np.ndarray, np.ndarray]) -> str:
    blob, metrics, _, _ = trained
    answer = client.post("/v1/jobs", json=SPEC)
    assert answer.status_code == 202, answer.text
    job: str = answer.json()["id"]
    worker.start(job)
    worker.finish(job, "succeeded", metrics=metrics, weights=blob)
    return job


def readme_predict(path: Path) -> Any:
    """The README's NumPy lines, run as they are written (with the file's path)."""
    block = re.search(r"```python\n(# the model, with NumPy alone\n.*?)```", README.read_text(),
                      re.S)
    assert block, "the README's NumPy example is missing"
    scope: dict[str, Any] = {}
    exec(block.group(1).replace('"model.npz"', repr(str(path))), scope)  # noqa: S102
    return scope["predict"]


def test_the_model_downloads_as_an_npz_that_numpy_alone_loads_and_predicts_with(
    client: TestClient, job_id: str, tmp_path: Path,
    trained: tuple[bytes, dict[str, Any], np.ndarray, np.ndarray],
) -> None:
    _, metrics, x_test, t_test = trained
    answer = client.get(f"/v1/jobs/{job_id}/model")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/octet-stream"
    assert f'filename="descent-model-{job_id}.npz"' in answer.headers["content-disposition"]
    path = tmp_path / "model.npz"
    path.write_bytes(answer.content)
    with np.load(path, allow_pickle=False) as model:
        assert sorted(model.files) == ["W1", "W2", "b1", "b2", "meta"]
        meta = json.loads(model["meta"].tobytes())
    assert meta["sizes"] == [64, 32, 10] and meta["activation"] == "relu"
    assert meta["dataset"] == "digits" and meta["classes"] == list(range(10))
    assert meta["preprocess"] == {"kind": "none"}

    predicted = readme_predict(path)(x_test)
    assert np.mean(predicted == t_test) == metrics["test"]["accuracy"]
    served = client.post(f"/v1/jobs/{job_id}/predict",
                         json={"instances": x_test.tolist()}).json()
    assert served["predictions"] == predicted.tolist()


def test_predict_gives_labels_probabilities_and_the_jobs_test_accuracy(
    client: TestClient, job_id: str,
    trained: tuple[bytes, dict[str, Any], np.ndarray, np.ndarray],
) -> None:
    _, metrics, x_test, t_test = trained
    answer = client.post(f"/v1/jobs/{job_id}/predict", json={"instances": x_test.tolist()})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["classes"] == list(range(10))
    probabilities = np.asarray(body["probabilities"])
    assert probabilities.shape == (len(x_test), 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-9)
    assert body["predictions"] == probabilities.argmax(axis=1).tolist()
    assert np.mean(np.asarray(body["predictions"]) == t_test) == metrics["test"]["accuracy"]


@pytest.mark.parametrize(
    ("instances", "words"),
    [
        ([[0.0] * 63], "instances[0] must be a list of 64 numbers (the model's features), "
                       "got 63 values"),
        ([[0.0] * 64, [0.0] * 65], "instances[1] must be a list of 64 numbers"),
        ([[0.0] * 63 + ["x"]], "instances[0][63] must be a number, got 'x'"),
        # JSON has no infinity; a number too large for a double is refused where it is
        ([[0.0] * 10 + [1e999] + [0.0] * 53], "number is infinity when parsed as double: "
                                              "line 1 column 67"),
        ([], "non-empty list"),
        ([[0.0] * 64] * 10_001, "10,001 rows; at most 10,000"),
    ],
)
def test_bad_instances_are_a_422_that_says_where(
    client: TestClient, job_id: str, instances: list[Any], words: str
) -> None:
    body = json.dumps({"instances": instances}).replace("Infinity", "1e999")
    answer = client.post(f"/v1/jobs/{job_id}/predict", content=body,
                         headers={"content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    [error] = answer.json()["detail"]
    assert words in error["msg"], error


def test_no_model_is_a_409_and_another_tenants_job_a_404(
    client: TestClient, worker: FakeWorker, job_id: str, make_client: MakeClient,
    tenants: TenantStore,
) -> None:
    queued = client.post("/v1/jobs", json=SPEC).json()["id"]
    for answer in (client.get(f"/v1/jobs/{queued}/model"),
                   client.post(f"/v1/jobs/{queued}/predict", json={"instances": [[0] * 64]})):
        assert answer.status_code == 409
        assert "its status is 'queued'" in answer.json()["detail"]
    unkept = client.post("/v1/jobs", json=SPEC).json()["id"]
    worker.start(unkept)
    worker.finish(unkept, "succeeded")  # over DESCENT_MAX_WEIGHTS_BYTES: no weights
    assert "DESCENT_MAX_WEIGHTS_BYTES" in client.get(f"/v1/jobs/{unkept}/model").json()["detail"]
    other = make_client()
    other.headers["Authorization"] = f"Bearer {tenants.create_tenant('bob')[1]}"
    assert other.get(f"/v1/jobs/{job_id}/model").status_code == 404
    assert other.post(f"/v1/jobs/{job_id}/predict",
                      json={"instances": [[0] * 64]}).status_code == 404


def test_a_body_over_the_predict_limit_is_a_413(make_client: MakeClient, job_id: str) -> None:
    small = make_client(max_predict_body_bytes=10_000)
    rows = np.zeros((100, 64)).tolist()
    answer = small.post(f"/v1/jobs/{job_id}/predict", json={"instances": rows})
    assert answer.status_code == 413
    assert "DESCENT_MAX_PREDICT_BODY_BYTES" in answer.json()["detail"]
    # the rest of the API keeps its own, smaller limit
    assert small.post("/v1/jobs", content=b"x" * 1_000_001).status_code == 413


def test_models_are_read_once_per_process(
    client: TestClient, job_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.api import predict as module

    reads: list[int] = []
    original = module.read_model
    monkeypatch.setattr(module, "read_model", lambda blob: reads.append(1) or original(blob))
    for _ in range(3):
        answer = client.post(f"/v1/jobs/{job_id}/predict", json={"instances": [[0] * 64]})
        assert answer.status_code == 200
    assert len(reads) == 1
    assert io.BytesIO(client.get(f"/v1/jobs/{job_id}/model").content).getbuffer().nbytes > 0


def test_the_model_cache_keeps_the_recently_used_within_its_bytes(
    trained: tuple[bytes, dict[str, Any], np.ndarray, np.ndarray],
) -> None:
    from app.api.predict import ModelCache

    blob = trained[0]
    cache = ModelCache(max_bytes=2 * len(blob))
    for job in ("a", "b"):
        cache.load(job, blob)
    assert cache.get("a") is not None  # a is now the most recently used
    cache.load("c", blob)
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert cache.held == 2 * len(blob)
    assert ModelCache(max_bytes=len(blob) - 1).load("d", blob).n_features == 64  # not kept
