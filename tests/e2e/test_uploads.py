"""Your data in, your model out, end to end: a CSV uploaded with the real CLI, trained on by
the real worker, its test rows predicted through the API with exactly the accuracy the job
reports; the model's standardisation is its training rows'; uploads in sweeps; the
worker's cache; an upload refused while it streams in."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np

from app.csv_upload import read_csv
from scripts.stack import bearer, make_tenant
from tests.e2e.conftest import Service, wait_for
from tests.e2e.test_cli import descent, lines
from trainer.rundata import rng_streams
from trainer.splits import make_splits
from trainer.uploads import check_upload, from_bytes, to_bytes

KINDS = ("circle", "square", "triangle")
JOB = {"hidden_sizes": [16], "activation": "relu", "learning_rate": 0.1, "batch_size": 16,
       "epochs": 15, "seed": 4}


def write_shapes(path: Path, rows: int = 300, seed: int = 0) -> list[list[str]]:
    """Three kinds of shape, four features on very different scales (so standardisation
    matters), overlapping a little; returns the CSV's cells as written."""
    rng = np.random.default_rng(seed)
    t = rng.permutation(np.arange(rows) % 3)
    centres = np.array([[0, 0, 3, 3], [3, 0, 0, 3], [0, 3, 3, 0]])
    x = (centres[t] + rng.normal(size=(rows, 4)) * 0.9) * np.array([1, 1000, 0.01, 1])
    cells = [["width", "height", "depth", "weight", "shape"]]
    cells += [[f"{v:.6g}" for v in row] + [KINDS[k]] for row, k in zip(x, t, strict=True)]
    path.write_text("\n".join(",".join(row) for row in cells) + "\n")
    return cells


def upload_shapes(service: Service, tmp_path: Path, name: str, rows: int, seed: int
                  ) -> dict[str, Any]:
    """Upload a shapes CSV through the API as `name`; its description."""
    path = tmp_path / "shapes.csv"
    write_shapes(path, rows=rows, seed=seed)
    answer = service.client.post("/v1/datasets", data={"name": name},
                                 files={"file": ("shapes.csv", path.read_bytes())})
    assert answer.status_code == 201, answer.text
    made: dict[str, Any] = answer.json()
    return made


def job_test_rows(path: Path, seed: int, validation_fraction: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Which rows of the file were the job's test and training rows: the same reader, the
    same stored form and the same seeded split as the service."""
    upload = read_csv(path)
    blob = to_bytes(upload, preprocess="standardize", test_fraction=check_upload(upload, None))
    splits = make_splits(from_bytes(blob, "shapes"), validation_fraction,
                         rng_streams(seed)[0])
    assert splits.test_rows is not None
    return splits.test_rows, splits.train_rows


def test_a_csv_uploaded_with_the_cli_trains_and_predicts_its_test_rows_exactly(
    service: Service, tmp_path: Path,
) -> None:
    path = tmp_path / "shapes.csv"
    cells = write_shapes(path)
    uploaded = descent(service, "--json", "upload", str(path), "--name", "shapes-e2e")
    assert uploaded.returncode == 0, uploaded.stderr
    made = lines(uploaded.stdout)[0]["data"]
    assert made["classes"] == list(KINDS) and made["n_features"] == 4

    job = service.submit(dataset="shapes-e2e", **JOB)
    ended = service.wait_status(job["id"], ("succeeded", "failed"), timeout=120)
    assert ended["status"] == "succeeded", ended["error"]
    assert ended["spec"]["dataset"] == made["id"]
    metrics = service.client.get(f"/v1/jobs/{job['id']}/metrics").json()
    test = metrics["test"]
    assert [c["label"] for c in test["per_class"]] == list(KINDS)
    assert test["accuracy"] > 0.8

    test_rows, train_rows = job_test_rows(path, JOB["seed"], ended["spec"]["validation_fraction"])
    raw = [[float(v) for v in cells[1 + row][:4]] for row in test_rows]
    truth = [cells[1 + row][4] for row in test_rows]
    answer = service.client.post(f"/v1/jobs/{job['id']}/predict", json={"instances": raw})
    assert answer.status_code == 200, answer.text
    predicted = answer.json()
    assert predicted["classes"] == list(KINDS)
    hits = sum(p == t for p, t in zip(predicted["predictions"], truth, strict=True))
    assert len(truth) == test["n"] and hits / len(truth) == test["accuracy"]

    # The model carries the standardisation of the job's training rows, none other.
    model = np.load(io.BytesIO(service.client.get(f"/v1/jobs/{job['id']}/model").content))
    meta = json.loads(model["meta"].tobytes())
    features = np.array([[float(v) for v in row[:4]] for row in cells[1:]], dtype=np.float32)
    training = features[train_rows].astype(np.float64)
    assert meta["preprocess"]["kind"] == "standardize" and meta["dataset"] == "shapes-e2e"
    np.testing.assert_allclose(meta["preprocess"]["mean"], training.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(meta["preprocess"]["scale"], training.std(axis=0), rtol=1e-9)
    everything = features.astype(np.float64).mean(axis=0)
    assert not np.allclose(meta["preprocess"]["mean"], everything, rtol=1e-6)

    # The CLI predicts the file as uploaded, leaving its label column out.
    test_csv = tmp_path / "test.csv"
    test_csv.write_text("\n".join(",".join(cells[i]) for i in [0, *(1 + test_rows)]) + "\n")
    cli = descent(service, "predict", job["id"], str(test_csv), "--label-column", "shape")
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.split() == predicted["predictions"]
    assert f"accuracy {test['accuracy']:.4f} on {len(truth)} rows" in cli.stderr


def test_datasets_lists_an_upload_and_delete_waits_for_its_jobs(
    service: Service, tmp_path: Path,
) -> None:
    made = upload_shapes(service, tmp_path, "shapes-delete", rows=90, seed=1)
    long = service.submit(dataset="shapes-delete", hidden_sizes=[512], epochs=1000,
                          batch_size=1)

    listed = descent(service, "datasets")
    refused = descent(service, "dataset-delete", "shapes-delete")
    service.client.post(f"/v1/jobs/{long['id']}/cancel")
    service.wait_status(long["id"], ("cancelled",), timeout=60)
    deleted = descent(service, "dataset-delete", made["id"])

    assert listed.returncode == 0 and "shapes-delete" in listed.stdout
    assert made["id"] in listed.stdout and "your uploads" in listed.stdout
    assert refused.returncode == 2 and long["id"] in refused.stderr
    assert deleted.returncode == 0, deleted.stderr
    assert service.client.get(f"/v1/datasets/{made['id']}").status_code == 404


def test_a_worker_reads_an_upload_once_for_its_jobs_and_a_sweep_trains_on_one(
    service: Service, tmp_path: Path,
) -> None:
    made = upload_shapes(service, tmp_path, "shapes-cache", rows=150, seed=2)

    first = service.submit(dataset="shapes-cache", **{**JOB, "epochs": 2})
    service.wait_status(first["id"], ("succeeded",), timeout=60)
    second = service.submit(dataset=made["id"], **{**JOB, "epochs": 2, "seed": 5})
    service.wait_status(second["id"], ("succeeded",), timeout=60)
    sweep = service.client.post("/v1/sweeps", json={
        "base": {"dataset": "shapes-cache", **{**JOB, "epochs": 3}},
        "space": {"learning_rate": {"values": [0.05, 0.2]}}}).json()
    ended = wait_for(lambda: (s := service.client.get(f"/v1/sweeps/{sweep['id']}").json())
                     ["status"] in ("succeeded", "failed") and s, 120, "the sweep to end")

    assert ended["status"] == "succeeded", ended.get("error")
    assert ended["test"]["accuracy"] > 0.5 and ended["spec"]["base"]["dataset"] == made["id"]
    assert [c["label"] for c in ended["test"]["per_class"]] == list(KINDS)
    assert service.log is not None
    reads = [line for line in service.log.read_text().splitlines()
             if "upload shapes-cache (" in line and "read from the store" in line]
    workers = int(service.env.get("DESCENT_WORKER_CONCURRENCY", "1"))
    assert 1 <= len(reads) <= workers, reads  # once per worker process, not once per job


def complete(answer: bytes) -> bool:
    """Whether `answer` holds a whole HTTP response with a Content-Length."""
    head, found, body = answer.partition(b"\r\n\r\n")
    if not found:
        return False
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return len(body) >= length


def test_an_upload_over_the_quota_is_refused_while_it_streams_in(service: Service) -> None:
    key = make_tenant(service.env, "small-uploads", max_dataset_bytes=100_000)
    url = urllib.parse.urlsplit(service.api.url)
    body_start = (b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; "
                  b"filename=\"big.csv\"\r\n\r\na,b,label\r\n")
    piece = b"1,2,x\r\n" * 9000  # 63 kB per chunk
    chunks = 1600  # the whole would be 100 MB
    sent = 0
    with socket.create_connection((url.hostname, url.port), timeout=30) as connection:
        connection.sendall(
            b"POST /v1/datasets HTTP/1.1\r\nHost: api\r\nTransfer-Encoding: chunked\r\n"
            + b"".join(f"{k}: {v}\r\n".encode() for k, v in bearer(key).items())
            + b"Content-Type: multipart/form-data; boundary=xyz\r\n\r\n")
        connection.setblocking(False)
        answer = b""
        for chunk in [body_start] + [piece] * chunks:
            with contextlib.suppress(BlockingIOError):
                answer += connection.recv(65536)
            if answer:
                break
            try:
                connection.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        connection.setblocking(True)
        while not complete(answer):
            answer += connection.recv(65536)

    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"max_dataset_bytes" in answer
    # Answered long before the end: what was sent is the 100 kB allowed plus what the
    # sockets' buffers took in before the answer was seen.
    assert sent < len(piece) * chunks / 4


def test_an_npz_with_string_labels_and_a_test_fraction(service: Service) -> None:
    rng = np.random.default_rng(3)
    t = np.array(["no", "yes"])[np.arange(80) % 2]
    x = rng.normal(size=(80, 3)) + (t == "yes")[:, None] * 3
    buffer = io.BytesIO()
    np.savez(buffer, x=x, t=t)

    made = service.client.post("/v1/datasets", data={"name": "yes-no", "test_fraction": "0.25"},
                               files={"file": ("yes-no.npz", buffer.getvalue())})
    assert made.status_code == 201, made.text
    job = service.submit(dataset="yes-no", hidden_sizes=[4], batch_size=8, epochs=5)
    ended = service.wait_status(job["id"], ("succeeded", "failed"), timeout=60)
    metrics: dict[str, Any] = service.client.get(f"/v1/jobs/{job['id']}/metrics").json()

    assert made.json()["n_test"] == 20 and ended["status"] == "succeeded"
    assert metrics["test"]["n"] == 20
    assert [c["label"] for c in metrics["test"]["per_class"]] == ["no", "yes"]
