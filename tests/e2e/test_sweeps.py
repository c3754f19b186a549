"""Sweeps end to end, with real workers: validation chooses the winner, its test set is
evaluated once (and scores exactly as a plain job of the same spec), the median rule
prunes, cancel ends the sweep, and a worker killed mid-sweep loses nothing."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from app.sweeps import dispatch_order
from scripts.stack import RedisServer, stack_env, start_worker
from tests.e2e.conftest import FAST, Service, running_service, wait_for

SPIRAL = {"dataset": "spiral", "hidden_sizes": [16], "activation": "relu", "batch_size": 20,
          "epochs": 6}
SWEEP_END = ("succeeded", "failed", "cancelled")


def submit(service: Service, body: dict[str, Any]) -> dict[str, Any]:
    response = service.client.post("/v1/sweeps", json=body)
    assert response.status_code == 202, response.text
    sweep: dict[str, Any] = response.json()
    return sweep


def sweep_of(service: Service, sweep_id: str) -> dict[str, Any]:
    response = service.client.get(f"/v1/sweeps/{sweep_id}")
    assert response.status_code == 200, response.text
    sweep: dict[str, Any] = response.json()
    return sweep


def wait_end(service: Service, sweep_id: str, timeout: float = 180) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        sweep = sweep_of(service, sweep_id)
        return sweep if sweep["status"] in SWEEP_END else None

    sweep: dict[str, Any] = wait_for(ended, timeout, f"sweep {sweep_id} to end")
    return sweep


def metrics_of(service: Service, job_id: str) -> dict[str, Any]:
    response = service.client.get(f"/v1/jobs/{job_id}/metrics")
    assert response.status_code == 200, response.text
    metrics: dict[str, Any] = response.json()
    return metrics


def test_validation_chooses_and_the_winners_test_set_is_evaluated_once(
    service: Service,
) -> None:
    blobs = {"dataset": "blobs", "hidden_sizes": [32], "activation": "relu", "batch_size": 50,
             "epochs": 6}
    body = {"name": "e2e rates", "base": blobs, "method": "grid",
            "space": {"learning_rate": {"values": [0.00001, 0.05, 0.5, 10.0]}},
            "objective": "val_accuracy", "max_concurrent": 2}
    sweep = wait_end(service, submit(service, body)["id"])

    assert sweep["status"] == "succeeded", sweep
    assert sweep["counts"]["succeeded"] == 3 and sweep["counts"]["failed"] == 1
    # A trial that diverged is an outcome on the leaderboard, not the sweep's failure.
    diverged = next(t for t in sweep["trials"] if t["params"]["learning_rate"] == 10.0)
    assert diverged["status"] == "failed" and diverged["error"]["code"] == "diverged"
    assert "learning_rate 10.0 is too large" in diverged["error"]["message"]
    assert diverged["objective_value"] is not None or diverged["epochs_run"] == 0
    trials = [t for t in sweep["trials"] if t["status"] == "succeeded"]
    values = [t["objective_value"] for t in trials]
    assert values == sorted(values, reverse=True)  # best first
    winner = sweep["winner"]
    assert winner["trial"] == trials[0]["trial"] and winner["objective_value"] == values[0]
    assert winner["params"]["learning_rate"] != 0.00001  # the rate too small to learn loses
    slow = next(t for t in trials if t["params"]["learning_rate"] == 0.00001)
    assert any("may be too small" in w for w in slow["warnings"]), slow["warnings"]
    # Losers never saw their test set; the winner's was evaluated once, after the fact...
    for trial in trials:
        metrics = metrics_of(service, trial["job_id"])
        assert metrics["best_epoch"] == trial["best_epoch"]
        if trial["job_id"] == winner["job_id"]:
            assert metrics["test"] == sweep["test"] and metrics["overfitting"] is not None
        else:
            assert metrics["test"] is None and metrics["overfitting"] is None
    # ...on the chosen model, scoring exactly what the same spec scores as a plain job.
    spec = service.job(winner["job_id"])["spec"]
    plain = service.wait_status(service.submit(**spec)["id"], ("succeeded", "failed"), 120)
    assert plain["status"] == "succeeded"
    assert metrics_of(service, plain["id"])["test"] == sweep["test"]

    picture = service.client.get(f"/v1/sweeps/{sweep['id']}/plot.png")
    assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG")


def test_the_median_rule_prunes_a_trial_worse_than_the_others(service: Service) -> None:
    # One worker process runs the trials one after another (max_concurrent 1), in the
    # grid's seeded dispatch order: each is judged against the rows of those before it at
    # the same epoch, once two others are there. The rate too small to learn runs last.
    rates = [0.0] * 3
    for position, trial in enumerate(dispatch_order("grid", 3, 0)):
        rates[trial] = [0.5, 0.3, 0.0005][position]
    body = {"base": {**SPIRAL, "epochs": 8}, "method": "grid",
            "space": {"learning_rate": {"values": rates}},
            "objective": "val_loss", "max_concurrent": 1,
            "early_stopping": {"rule": "median", "grace_epochs": 2, "min_trials": 2}}
    sweep = wait_end(service, submit(service, body)["id"])

    assert sweep["status"] == "succeeded", sweep
    pruned = [t for t in sweep["trials"] if t["status"] == "pruned"]
    assert [t["params"]["learning_rate"] for t in pruned] == [0.0005]
    assert pruned[0]["epochs_run"] == 3  # judged at the first epoch after the grace
    assert any(w.startswith("pruned at epoch 3: val_loss") for w in pruned[0]["warnings"])
    assert sweep["winner"]["params"]["learning_rate"] in (0.5, 0.3)
    job = service.job(pruned[0]["job_id"])
    assert job["status"] == "pruned" and job["sweep_id"] == sweep["id"]
    answer = service.client.get(f"/v1/jobs/{pruned[0]['job_id']}/metrics")
    assert answer.status_code == 409 and answer.json()["status"] == "pruned"


def test_cancelling_a_sweep_cancels_its_trials(service: Service) -> None:
    body = {"base": {"dataset": "digits", "hidden_sizes": [256], "batch_size": 8,
                     "epochs": 1000},
            "method": "grid", "space": {"learning_rate": {"values": [0.01, 0.02, 0.03]}},
            "max_concurrent": 2}
    sweep = submit(service, body)
    made = [t["job_id"] for t in sweep["trials"] if t["job_id"]]
    wait_for(lambda: any(service.job(j)["status"] == "running" for j in made), 60,
             "a trial to run")
    answer = service.client.post(f"/v1/sweeps/{sweep['id']}/cancel")
    assert answer.status_code == 202, answer.text

    ended = wait_end(service, sweep["id"], 60)
    assert ended["status"] == "cancelled" and ended["winner"] is None
    made = [t for t in ended["trials"] if t["job_id"]]
    assert len(made) == 2 and all(t["status"] == "cancelled" for t in made)


def test_a_worker_killed_mid_sweep_loses_nothing(redis_server: RedisServer, tmp_path: Path) -> None:
    body = {"base": {"dataset": "digits", "hidden_sizes": [128], "activation": "relu",
                     "batch_size": 8, "epochs": 8},
            "method": "grid", "space": {"learning_rate": {"values": [0.01, 0.02]}},
            "max_concurrent": 2}
    with running_service(redis_server, tmp_path, DESCENT_CHECKPOINT_SECONDS="0") as service:
        sweep = submit(service, body)
        jobs = {t["trial"]: t["job_id"] for t in sweep["trials"]}
        wait_for(lambda: service.job(jobs[0])["progress"]["epoch"] >= 2, 120, "two epochs")
        for pid in [service.worker.pid, *service.pool_pids()]:
            os.kill(pid, signal.SIGKILL)
        env = stack_env(service.settings.redis_url, **FAST,
                        DESCENT_KEY_PREFIX=service.settings.key_prefix)
        replacement = start_worker(env, name="replacement", log=tmp_path / "new.log",
                                   args=["--without-mingle", "--without-gossip"])
        try:
            ended = wait_end(service, sweep["id"], 300)
            assert ended["status"] == "succeeded", ended
            assert ended["counts"]["succeeded"] == 2 and ended["test"] is not None
            # The killed trial resumed from its checkpoint, its curve whole, no repeats.
            resumed = service.job(jobs[0])
            assert resumed["attempts"] == 2
            curve = service.full_curve(jobs[0])
            assert curve["iterations"] == list(range(1, curve["total"] + 1))
        finally:
            replacement.stop()
