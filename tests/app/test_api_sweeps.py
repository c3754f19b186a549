"""The sweeps API against a real Redis, its trials worked by a FakeWorker: validation at
the door, trials made a few at a time through the fair queue, the leaderboard, the winner
and its one test evaluation, cancel, failure, and tenant isolation."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from app.store.keys import queue_key
from app.store.queue import EVALUATE_TASK
from app.store.sweeps import SweepStore
from app.store.tenants import QuotaChanges, TenantStore
from app.sweeps import dispatch_order
from tests.app.conftest import FakeWorker, MakeClient

BASE = {"dataset": "spiral", "epochs": 3, "batch_size": 50}
GRID = {"name": "rates", "base": BASE, "method": "grid",
        "space": {"learning_rate": {"values": [0.01, 0.1, 1.0]}}, "max_concurrent": 2}
TEST_BLOCK = {"loss": 0.5, "accuracy": 0.8, "n": 10, "confusion_matrix": [[4, 1], [1, 4]],
              "per_class": [{"label": 0, "precision": 0.8, "recall": 0.8, "f1": 0.8,
                             "support": 5},
                            {"label": 1, "precision": 0.8, "recall": 0.8, "f1": 0.8,
                             "support": 5}]}


@pytest.fixture
def sweeps(redis_client: redis.Redis, key_prefix: str) -> SweepStore:
    return SweepStore(redis_client, prefix=key_prefix)


def submit(client: TestClient, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = client.post("/v1/sweeps", json=body or GRID)
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"/v1/sweeps/{response.json()['id']}"
    return response.json()


def refused(client: TestClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post("/v1/sweeps", json=body)
    assert response.status_code == 422, response.text
    detail: list[dict[str, Any]] = response.json()["detail"]
    return detail


def row(epoch: int, val_loss: float, val_accuracy: float) -> dict[str, Any]:
    return {"epoch": epoch, "iteration": 10 * epoch, "train_loss": val_loss,
            "train_accuracy": val_accuracy, "val_loss": val_loss, "val_accuracy": val_accuracy}


def succeed(worker: FakeWorker, job_id: str, rows: list[dict[str, Any]]) -> None:
    """Run a trial to success through the worker's store calls, as worker/ would."""
    worker.start(job_id)
    for epoch_row in rows:
        worker.epoch(job_id, epoch_row)
    best = min(rows, key=lambda r: (r["val_loss"], r["epoch"]))
    metrics = {"test": None, "overfitting": None, "best_epoch": best["epoch"],
               "epochs_run": len(rows), "iterations": 10 * len(rows), "early_stopped": False,
               "train": {"loss": 0.1, "accuracy": 0.95}, "validation": None,
               "duration_seconds": 1.0}
    worker.finish(job_id, "succeeded", metrics=metrics, weights=b"model")


def trial_jobs(sweep: dict[str, Any]) -> dict[int, str]:
    return {t["trial"]: t["job_id"] for t in sweep["trials"] if t["job_id"]}


def evaluations(client: redis.Redis, key_prefix: str, sweep_id: str) -> int:
    found = 0
    for raw in client.lrange(queue_key(key_prefix), 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] == EVALUATE_TASK:
            args = json.loads(base64.b64decode(message["body"]))[0]
            found += args == [sweep_id]
    return found


# --- the door ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "loc", "words"),
    [
        ({"space": {"learnig_rate": {"values": [0.1]}}}, ["body", "space", "learnig_rate"],
         'did you mean "learning_rate"'),
        ({"space": {"dataset": {"values": ["digits"]}}}, ["body", "space", "dataset"],
         "one dataset"),
        ({"space": {"learning_rate": {"low": 0.01, "high": 1.0}}},
         ["body", "space", "learning_rate"], "grid tries listed values only"),
        ({"space": {"learning_rate": {"values": [0.1, 20.0]}}},
         ["body", "space", "learning_rate", "values", 1], "20"),
        ({"space": {"activation": {"values": ["tanh"]}}},
         ["body", "space", "activation", "values", 0], "tanh"),
        ({"base": {**BASE, "validation_fraction": 0}},
         ["body", "base", "validation_fraction"], "chooses its winner by the validation"),
        ({"base": {**BASE, "epochs": 0}}, ["body", "base", "epochs"], "epochs"),
        ({"method": "random", "space": {"learning_rate": {"low": 0.1, "high": 1}}},
         ["body", "trials"], "required with method random"),
        ({"method": "random", "trials": 3,
          "space": {"learning_rate": {"low": 0.0, "high": 1, "log": True}}},
         ["body", "space", "learning_rate", "low"], "log range needs low > 0"),
        ({"method": "random", "trials": 3,
          "space": {"learning_rate": {"low": 0.1, "high": 50}}},
         ["body", "space", "learning_rate", "high"], "50"),
        ({"method": "random", "trials": 3,
          "space": {"hidden_sizes": {"low": 1, "high": 50}}},
         ["body", "space", "hidden_sizes"], "takes a list of values"),
        ({"space": {"learning_rate": {"values": [0.1] * 5}, "momentum": {"values": [0.0] * 13}}},
         ["body", "space"], "65 trials, over your quota max_sweep_trials of 64"),
        ({"space": {"batch_size": {"values": [50, 100000]}}},
         ["body", "space", "batch_size"], "trial 1 (batch_size 100000)"),
    ],
)
def test_a_bad_sweep_is_a_422_that_names_the_field_and_the_value(
    client: TestClient, sweeps: SweepStore, change: dict[str, Any], loc: list[Any], words: str
) -> None:
    detail = refused(client, {**GRID, **change})
    assert any(d["loc"] == loc and words in d["msg"] for d in detail), detail
    assert sweeps.list_sweeps(tenant=_tenant(client))[0] == []  # nothing was stored


def test_sweeps_need_a_key(make_client: MakeClient) -> None:
    anonymous = make_client()
    anonymous.headers.pop("Authorization")
    assert anonymous.post("/v1/sweeps", json=GRID).status_code == 401
    assert anonymous.get("/v1/sweeps").status_code == 401


# --- trials, the leaderboard, the winner ---------------------------------------------------


def test_a_grid_makes_at_most_max_concurrent_trials_as_jobs_of_the_tenant(
    client: TestClient,
) -> None:
    sweep = submit(client)
    assert sweep["status"] == "queued" and sweep["trial_count"] == 3
    assert [t["params"] for t in sorted(sweep["trials"], key=lambda t: t["trial"])] == [
        {"learning_rate": 0.01}, {"learning_rate": 0.1}, {"learning_rate": 1.0}]
    made = trial_jobs(sweep)
    assert len(made) == 2  # max_concurrent 2: the third waits for one to end
    assert list(made) == sorted(dispatch_order("grid", 3, 0)[:2])  # a seeded shuffle
    for trial, job_id in made.items():
        job = client.get(f"/v1/jobs/{job_id}").json()
        assert job["sweep_id"] == sweep["id"] and job["trial"] == trial
        assert job["status"] == "queued" and job["name"] == f"rates · trial {trial}"
        assert job["spec"]["learning_rate"] == [0.01, 0.1, 1.0][trial]
        assert job["spec"]["epochs"] == 3  # the base's
    listed = client.get("/v1/jobs").json()["items"]
    assert set(made.values()) <= {j["id"] for j in listed}
    assert sweep["estimated_seconds"] > 0


def test_the_winner_is_the_best_objective_and_its_test_set_is_evaluated_once(
    client: TestClient, sweeps: SweepStore, worker: FakeWorker, redis_client: redis.Redis,
    key_prefix: str,
) -> None:
    sweep = submit(client)
    sweep_id = sweep["id"]

    def run(trial: int, job_id: str) -> None:
        if trial == 0:  # best epoch 2 (least val loss), accuracy 0.7 there
            succeed(worker, job_id, [row(1, 0.9, 0.5), row(2, 0.5, 0.7), row(3, 0.6, 0.95)])
        elif trial == 1:  # 0.9 at epoch 1
            succeed(worker, job_id, [row(1, 0.4, 0.9), row(2, 0.45, 0.92)])
        else:
            worker.start(job_id)
            worker.epoch(job_id, row(1, 2.0, 0.1))
            worker.finish(job_id, "failed", error={"code": "diverged", "message": "exploded"})

    first, second = trial_jobs(sweep).items()
    run(*first)
    sweeps.advance(sweep_id)  # what the worker does after a trial: the third is made
    made = trial_jobs(client.get(f"/v1/sweeps/{sweep_id}").json())
    assert sorted(made) == [0, 1, 2]
    run(*second)
    sweeps.advance(sweep_id)
    assert evaluations(redis_client, key_prefix, sweep_id) == 0  # one trial has not ended
    third = next(t for t in made if t not in (first[0], second[0]))
    run(third, made[third])
    sweeps.advance(sweep_id)
    sweeps.advance(sweep_id)  # twice: the evaluation is still sent once

    board = client.get(f"/v1/sweeps/{sweep_id}").json()
    assert board["status"] == "running" and board["test"] is None
    assert [t["trial"] for t in board["trials"]] == [1, 0, 2]  # best first
    first, second, third = board["trials"]
    assert (first["best_epoch"], first["objective_value"]) == (1, 0.9)
    assert (second["best_epoch"], second["objective_value"]) == (2, 0.7)
    assert third["status"] == "failed" and third["error"]["code"] == "diverged"
    assert board["winner"]["trial"] == 1 and board["winner"]["job_id"] == made[1]
    assert evaluations(redis_client, key_prefix, sweep_id) == 1

    owed = sweeps.winner_to_evaluate(sweep_id)
    assert owed is not None and owed["winner"]["job_id"] == made[1]
    overfit = {"gap": 0.15, "threshold": 0.05, "flagged": True}
    late = client.post(f"/v1/sweeps/{sweep_id}/cancel")
    assert late.status_code == 409 and "being evaluated" in late.json()["detail"]
    assert sweeps.record_test(sweep_id, TEST_BLOCK, overfit)
    assert not sweeps.record_test(sweep_id, {**TEST_BLOCK, "accuracy": 0.1}, overfit)
    done = client.get(f"/v1/sweeps/{sweep_id}").json()
    assert done["status"] == "succeeded" and done["test"]["accuracy"] == 0.8
    assert client.get(f"/v1/jobs/{made[1]}/metrics").json()["test"]["accuracy"] == 0.8
    assert client.get(f"/v1/jobs/{made[0]}/metrics").json()["test"] is None
    assert sweeps.winner_to_evaluate(sweep_id) is None


def test_a_tie_goes_to_the_lower_trial(
    client: TestClient, sweeps: SweepStore, worker: FakeWorker
) -> None:
    body = {**GRID, "space": {"learning_rate": {"values": [0.1, 0.2]}}}
    sweep = submit(client, body)
    made = trial_jobs(sweep)
    succeed(worker, made[1], [row(1, 0.5, 0.8)])
    succeed(worker, made[0], [row(1, 0.5, 0.8)])
    sweeps.advance(sweep["id"])
    assert client.get(f"/v1/sweeps/{sweep['id']}").json()["winner"]["trial"] == 0


def test_all_trials_failing_fails_the_sweep(
    client: TestClient, sweeps: SweepStore, worker: FakeWorker
) -> None:
    body = {**GRID, "space": {"learning_rate": {"values": [5.0, 10.0]}}}
    sweep = submit(client, body)
    for job_id in trial_jobs(sweep).values():
        worker.start(job_id)
        worker.finish(job_id, "failed", error={"code": "diverged", "message": "inf"})
    sweeps.advance(sweep["id"])
    failed = client.get(f"/v1/sweeps/{sweep['id']}").json()
    assert failed["status"] == "failed" and failed["winner"] is None
    assert failed["error"]["code"] == "no_trial_succeeded"
    assert "2 failed" in failed["error"]["message"]
    assert sweeps.active() == []


def test_cancel_cancels_the_unfinished_trials_and_ends_the_sweep(
    client: TestClient, sweeps: SweepStore, worker: FakeWorker
) -> None:
    sweep = submit(client)
    running, queued = trial_jobs(sweep).values()
    worker.start(running)  # running: asked to stop; the other, queued: cancelled at once
    answer = client.post(f"/v1/sweeps/{sweep['id']}/cancel")
    assert answer.status_code == 202 and answer.json()["cancel_requested"]
    assert client.get(f"/v1/jobs/{queued}").json()["status"] == "cancelled"
    assert client.get(f"/v1/jobs/{running}").json()["cancel_requested"]
    assert len(trial_jobs(answer.json())) == 2  # no third trial is made
    worker.finish(running, "cancelled")
    sweeps.advance(sweep["id"])
    ended = client.get(f"/v1/sweeps/{sweep['id']}").json()
    assert ended["status"] == "cancelled" and ended["finished_at"]
    again = client.post(f"/v1/sweeps/{sweep['id']}/cancel")
    assert again.status_code == 409 and "already ended cancelled" in again.json()["detail"]


def test_list_and_picture(client: TestClient, worker: FakeWorker) -> None:
    first, second = submit(client), submit(client)
    page = client.get("/v1/sweeps", params={"limit": 1}).json()
    assert [s["id"] for s in page["items"]] == [second["id"]] and page["next_cursor"]
    rest = client.get("/v1/sweeps", params={"cursor": page["next_cursor"]}).json()
    assert [s["id"] for s in rest["items"]] == [first["id"]] and rest["next_cursor"] is None
    (ran, ran_job), (idle, _) = trial_jobs(first).items()
    worker.start(ran_job)
    worker.epoch(ran_job, row(1, 0.5, 0.7))
    curves = client.get(f"/v1/sweeps/{first['id']}/curves").json()
    assert curves["objective"] == "val_accuracy" and curves["winner"] is None
    assert sorted((t["trial"], t["epochs"], t["values"]) for t in curves["trials"]) == sorted(
        [(ran, [1], [0.7]), (idle, [], [])])
    picture = client.get(f"/v1/sweeps/{first['id']}/plot.png")
    assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG")
    assert picture.headers["cache-control"] == "no-store"  # it is still running
    assert client.get(f"/v1/sweeps/{first['id']}/plot.svg").text.lstrip().startswith("<?xml")


def test_another_tenants_sweep_is_a_404(
    client: TestClient, make_client: MakeClient, tenants: TenantStore
) -> None:
    sweep = submit(client)
    other = make_client()
    other.headers["Authorization"] = f"Bearer {tenants.create_tenant('bob')[1]}"
    for method, path in [("get", ""), ("post", "/cancel"), ("get", "/plot.png"),
                         ("get", "/curves")]:
        answer = getattr(other, method)(f"/v1/sweeps/{sweep['id']}{path}")
        assert answer.status_code == 404, (path, answer.text)
        assert answer.json() == {"detail": f"sweep {sweep['id']!r} not found"}
    assert other.get("/v1/sweeps").json()["items"] == []
    assert client.get(f"/v1/sweeps/{sweep['id']}").json()["cancel_requested"] is False


def _tenant(client: TestClient) -> str:
    tenant: str = client.get("/v1/me").json()["tenant"]["id"]
    return tenant


def test_the_median_rule_judges_at_the_latest_epoch_that_others_have_reached(
    client: TestClient, sweeps: SweepStore, worker: FakeWorker
) -> None:
    body = {**GRID, "max_concurrent": 3, "objective": "val_loss",
            "early_stopping": {"rule": "median", "grace_epochs": 1, "min_trials": 2}}
    sweep = submit(client, body)
    a, b, c = trial_jobs(sweep).values()
    for job_id in (a, b, c):
        worker.start(job_id)
    for job_id, losses in ((a, [0.9, 0.5]), (b, [0.9, 0.6]), (c, [0.9, 0.8, 0.7])):
        for epoch, loss in enumerate(losses, start=1):
            worker.epoch(job_id, row(epoch, loss, 0.5))
    # c at epoch 3: nobody else is there; at epoch 2 its 0.8 is worse than the others' 0.55
    prune, why = sweeps.prune_verdict(sweep["id"], c, 3, row(3, 0.7, 0.5))
    assert prune and why.startswith("pruned at epoch 3: val_loss 0.8 at epoch 2 is worse "
                                    "than the median 0.55 of 2 other trials there"), why
    # b at epoch 2: the median of a and c there is 0.65, and 0.6 is better: it goes on
    assert sweeps.prune_verdict(sweep["id"], b, 2, row(2, 0.6, 0.5)) == (False, "")
    # within the grace epochs nobody is judged
    assert sweeps.prune_verdict(sweep["id"], c, 1, row(1, 5.0, 0.5)) == (False, "")


def test_trials_count_as_the_tenants_active_jobs(
    client: TestClient, sweeps: SweepStore, worker: FakeWorker, tenants: TenantStore
) -> None:
    tenant = _tenant(client)
    tenants.set_quotas(tenant, QuotaChanges(max_active_jobs=2))
    other = client.post("/v1/jobs", json=BASE)
    assert other.status_code == 202, other.text
    sweep = submit(client)  # max_concurrent 2, but one active job of the tenant already
    made = trial_jobs(sweep)
    assert len(made) == 1
    waiting = [t for t in sweep["trials"] if t["job_id"] is None]
    assert len(waiting) == 2 and all(t["status"] == "queued" for t in waiting)
    assert client.post("/v1/jobs", json=BASE).status_code == 429  # the quota holds

    worker.start(other.json()["id"])
    worker.finish(other.json()["id"], "succeeded")
    sweeps.advance(sweep["id"])  # as the reaper would
    assert len(trial_jobs(client.get(f"/v1/sweeps/{sweep['id']}").json())) == 2
    assert sweeps.active() == [sweep["id"]]


def test_a_sweep_is_one_submission_of_the_tenant(
    client: TestClient, tenants: TenantStore, sweeps: SweepStore
) -> None:
    tenants.set_quotas(_tenant(client), QuotaChanges(submissions_per_minute=2))
    first = submit(client)  # its trials are made by the sweep, not submitted
    assert len(trial_jobs(first)) == 2
    assert client.post("/v1/jobs", json=BASE).status_code == 202
    refused = client.post("/v1/sweeps", json=GRID)
    assert refused.status_code == 429, refused.text
    body = refused.json()
    assert body["quota"] == "submissions_per_minute" and body["limit"] == 2
    assert body["current"] == 2 and int(refused.headers["Retry-After"]) >= 1
    assert [s["id"] for s in sweeps.list_sweeps(tenant=_tenant(client))[0]] == [first["id"]]


def test_a_sweep_lists_as_running_once_a_trial_has_started(
    client: TestClient, sweeps: SweepStore, worker: FakeWorker
) -> None:
    sweep = submit(client)
    listed = client.get("/v1/sweeps").json()["items"][0]
    assert listed["status"] == "queued" and listed["trials"] is None
    worker.start(next(iter(trial_jobs(sweep).values())))
    assert client.get(f"/v1/sweeps/{sweep['id']}").json()["status"] == "running"
    sweeps.advance(sweep["id"])  # the reaper's round, or a trial's end
    assert client.get("/v1/sweeps").json()["items"][0]["status"] == "running"
