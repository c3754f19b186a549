"""GET /v1/jobs/{id}/curve.png and curve.svg."""

from __future__ import annotations

import struct

import numpy as np
from fastapi.testclient import TestClient

from tests.app.conftest import ADMIN_TOKEN, FakeWorker

SPIRAL = {"dataset": "spiral", "epochs": 2}
ROW = {"epoch": 1, "iteration": 400, "train_loss": 0.9, "train_accuracy": 0.6,
       "val_loss": 1.0, "val_accuracy": 0.55}


def png_size(body: bytes) -> tuple[int, int]:
    assert body[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", body[16:24])  # the IHDR chunk
    return width, height


def test_a_running_jobs_curve_as_png_and_svg(client: TestClient, worker: FakeWorker) -> None:
    job_id = client.post("/v1/jobs", json=SPIRAL).json()["id"]
    worker.start(job_id)
    worker.losses(job_id, np.linspace(2.0, 0.5, 400) + np.random.default_rng(0).random(400))
    worker.epoch(job_id, ROW)

    png = client.get(f"/v1/jobs/{job_id}/curve.png")
    svg = client.get(f"/v1/jobs/{job_id}/curve.svg")

    assert png.status_code == svg.status_code == 200
    assert png.headers["content-type"] == "image/png"
    assert png.headers["cache-control"] == "no-store"  # it is still changing
    width, height = png_size(png.content)
    assert (width, height) == (990, 682)
    assert svg.headers["content-type"].startswith("image/svg+xml")
    text = svg.text
    assert "<svg" in text and "running" in text and "spiral" in text
    assert "validation loss (epoch)" in text and "moving average" in text


def test_a_finished_jobs_picture_is_kept(client: TestClient, worker: FakeWorker) -> None:
    job_id = client.post("/v1/jobs", json=SPIRAL).json()["id"]
    worker.start(job_id)
    worker.losses(job_id, [2.0, 1.5, 1.0])
    worker.finish(job_id, "failed", error={"code": "diverged", "message": "loss nan"})

    first = client.get(f"/v1/jobs/{job_id}/curve.svg")
    again = client.get(f"/v1/jobs/{job_id}/curve.svg")

    assert first.headers["cache-control"].startswith("private, max-age=")
    assert first.content == again.content
    assert "diverged: loss nan" in first.text


def test_a_queued_job_has_a_picture_and_another_tenants_has_none(client: TestClient) -> None:
    job_id = client.post("/v1/jobs", json=SPIRAL).json()["id"]
    assert client.get(f"/v1/jobs/{job_id}/curve.png").status_code == 200
    made = client.post("/v1/admin/tenants", json={"name": "bob"},
                       headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    bob = {"Authorization": f"Bearer {made['api_key']}"}

    theirs = client.get(f"/v1/jobs/{job_id}/curve.png", headers=bob)
    nobody = client.get(f"/v1/jobs/{'f' * 32}/curve.png", headers=bob)

    assert theirs.status_code == nobody.status_code == 404
