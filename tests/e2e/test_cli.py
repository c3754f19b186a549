"""The `descent` command, run as a subprocess against the API process and a real worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from scripts.stack import RedisServer, start_api
from tests.e2e.conftest import Service, running_service

DESCENT = [sys.executable, "-m", "client.cli"]
ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--dataset", "digits", "--hidden", "32", "--activation", "relu", "--lr", "0.2",
         "--epochs", "3", "--batch-size", "32"]
LONG = ["--dataset", "digits", "--hidden", "256", "--epochs", "1000", "--batch-size", "8"]


def env_of(service: Service) -> dict[str, str]:
    key = service.client.headers["Authorization"].split()[1]
    return {**os.environ, "DESCENT_URL": service.api.url, "DESCENT_API_KEY": key,
            "NO_COLOR": "1", "COLUMNS": "100"}


def descent(service: Service, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*DESCENT, *args], env=env_of(service), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def iterations(events: list[dict[str, Any]]) -> list[int]:
    return [i for e in events if e["event"] == "progress" for i in e["data"]["iterations"]]


def test_datasets_as_json(service: Service) -> None:
    result = descent(service, "--json", "datasets")

    assert result.returncode == 0, result.stderr
    names = {line["data"]["name"] for line in lines(result.stdout)}
    assert {"digits", "spiral", "blobs"} <= names


def test_train_and_follow_as_json_exits_0_with_every_point(service: Service) -> None:
    result = descent(service, "--json", "train", *SMALL, "--follow")

    assert result.returncode == 0, result.stderr
    events = lines(result.stdout)
    assert events[0]["event"] == "job" and events[0]["data"]["status"] == "queued"
    kinds = [e["event"] for e in events]
    assert kinds[-2:] == ["end", "metrics"]
    assert kinds.count("epoch") == 3
    job_id = events[0]["data"]["id"]
    total = service.full_curve(job_id)["total"]
    assert iterations(events) == list(range(1, total + 1))
    assert events[-1]["data"]["test"]["accuracy"] > 0.5


def test_the_live_view_shows_progress_epochs_and_metrics(service: Service) -> None:
    result = descent(service, "train", *SMALL, "--follow")

    assert result.returncode == 0, result.stderr
    for seen in ("queued", "epochs", "train loss", "test accuracy", "overfitting gap"):
        assert seen in result.stdout, (seen, result.stdout)


def test_a_diverging_job_exits_1(service: Service) -> None:
    result = descent(service, "--json", "train", "--dataset", "blobs", "--hidden", "32",
                     "--activation", "relu", "--lr", "10", "--batch-size", "50",
                     "--epochs", "5", "--follow")

    assert result.returncode == 1, result.stderr
    assert lines(result.stdout)[-1]["data"]["status"] == "failed"


def test_a_bad_spec_exits_2_naming_the_field(service: Service) -> None:
    result = descent(service, "train", "--dataset", "nope")

    assert result.returncode == 2
    assert "dataset" in result.stderr and "nope" in result.stderr


def test_a_wrong_key_exits_2(service: Service) -> None:
    result = subprocess.run([*DESCENT, "jobs"], cwd=ROOT, capture_output=True, text=True,
                            env={**env_of(service), "DESCENT_API_KEY": "dsk_wrong"},
                            timeout=60)

    assert result.returncode == 2
    assert "unknown or revoked API key" in result.stderr


def test_cancelled_exits_3_and_a_timeout_4(service: Service) -> None:
    started = descent(service, "--json", "train", *LONG)
    job_id = lines(started.stdout)[0]["data"]["id"]

    timed_out = descent(service, "follow", job_id, "--timeout", "1")
    assert timed_out.returncode == 4, timed_out.stderr
    assert descent(service, "cancel", job_id).returncode == 0
    followed = descent(service, "--json", "follow", job_id)

    assert followed.returncode == 3, followed.stderr
    assert lines(followed.stdout)[-1]["data"]["status"] == "cancelled"


def test_ctrl_c_leaves_the_job_running_and_says_how_to_cancel(service: Service) -> None:
    started = descent(service, "--json", "train", *LONG)
    job_id = lines(started.stdout)[0]["data"]["id"]
    follower = subprocess.Popen([*DESCENT, "--json", "follow", job_id], env=env_of(service),
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    assert follower.stdout is not None
    follower.stdout.readline()  # it is following

    follower.send_signal(signal.SIGINT)
    _, stderr = follower.communicate(timeout=30)

    assert follower.returncode == 130
    assert f"descent cancel {job_id}" in stderr
    assert service.job(job_id)["status"] in ("queued", "running")
    service.client.post(f"/v1/jobs/{job_id}/cancel")


def test_following_survives_an_api_restart(redis_server: RedisServer, tmp_path: Path) -> None:
    with running_service(redis_server, tmp_path) as service:
        job_id = service.submit(dataset="digits", hidden_sizes=[128], epochs=40,
                                batch_size=16)["id"]
        # Unbuffered: communicate() reads the pipe itself, so lines that a buffered
        # readline() had read ahead would be lost to the test.
        follower = subprocess.Popen([*DESCENT, "--json", "follow", job_id],
                                    env=env_of(service), cwd=ROOT, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, bufsize=0)
        assert follower.stdout is not None
        seen = [json.loads(follower.stdout.readline()) for _ in range(3)]
        port = service.api.port
        service.api.stop()  # the follower is cut off, and retries until the API is back
        service.api = start_api(service.env, port=port, log=tmp_path / "api-again.log")
        service.api.wait_ready(60)
        stdout, stderr = follower.communicate(timeout=120)

        assert follower.returncode == 0, stderr.decode()
        events = seen + lines(stdout.decode())
        total = service.full_curve(job_id)["total"]
        assert iterations(events) == list(range(1, total + 1))
        assert events[-1]["event"] == "metrics"


def test_gradcheck_as_json_exits_0_when_backprop_agrees(service: Service) -> None:
    result = descent(service, "gradcheck", "--dataset", "digits", "--hidden", "10", "--json")

    assert result.returncode == 0, result.stderr
    [line] = lines(result.stdout)
    assert line["event"] == "gradient_check"
    check = line["data"]
    assert check["agree"] is True and check["max_relative_error"] <= 1e-6
    assert [(p["name"], p["shape"]) for p in check["parameters"]] == [
        ("W1", [64, 10]), ("b1", [10]), ("W2", [10, 10]), ("b2", [10])]


def test_gradcheck_shows_each_array_the_verdict_and_the_timings(service: Service) -> None:
    result = descent(service, "gradcheck", "--dataset", "spiral", "--hidden", "8",
                     "--hidden", "4", "--loss", "sum_squares", "--seed", "2")

    assert result.returncode == 0, result.stderr
    for seen in ("spiral, hidden 8-4 sigmoid, sum_squares, batch 10, seed 2", "W1", "2 x 8",
                 "b3", "agree: max relative error", "numerical gradient", "x faster"):
        assert seen in result.stdout, (seen, result.stdout)


def test_gradcheck_exits_1_when_backprop_and_central_differences_disagree(
    service: Service,
) -> None:
    # relu with the book's tiny weights: the second layer's pre-activations lie within h
    # of the kink, where central differences are wrong (a disagreement, not a bug).
    result = descent(service, "--json", "gradcheck", "--dataset", "digits", "--hidden", "10",
                     "--hidden", "10", "--activation", "relu", "--weight-init-std", "0.01")

    assert result.returncode == 1, result.stderr
    assert lines(result.stdout)[0]["data"]["agree"] is False


def test_a_refused_gradcheck_exits_2_with_the_estimate_and_the_field(service: Service) -> None:
    result = descent(service, "gradcheck", "--dataset", "digits", "--hidden", "256",
                     "--hidden", "256", "--batch-size", "1000", "--json")

    assert result.returncode == 2
    assert result.stdout == ""
    assert "estimated at" in result.stderr and "DESCENT_MAX_INLINE_SECONDS" in result.stderr
    assert "use batch_size" in result.stderr


SWEEP = {"name": "cli rates",
         "base": {"dataset": "digits", "hidden_sizes": [32], "activation": "relu",
                  "batch_size": 32, "epochs": 3},
         "method": "grid", "space": {"learning_rate": {"values": [0.00001, 0.2]}},
         "max_concurrent": 2}


def test_sweep_follow_as_json_ends_with_the_winners_test(service: Service, tmp_path: Path
                                                         ) -> None:
    spec = tmp_path / "sweep.json"
    spec.write_text(json.dumps(SWEEP))
    result = descent(service, "--json", "sweep", str(spec), "--follow")

    assert result.returncode == 0, result.stderr
    snapshots = [e["data"] for e in lines(result.stdout)]
    assert all(e["event"] == "sweep" for e in lines(result.stdout))
    # The submit's answer: queued, or running if a worker took a trial before it was read
    assert snapshots[0]["status"] in ("queued", "running") and snapshots[0]["test"] is None
    assert {s["id"] for s in snapshots} == {snapshots[0]["id"]}
    assert snapshots[-1]["status"] == "succeeded"
    final = snapshots[-1]
    assert final["winner"]["params"] == {"learning_rate": 0.2}
    assert final["test"]["accuracy"] > 0.5
    sweep_id = final["id"]

    listed = descent(service, "--json", "sweeps")
    assert sweep_id in [e["data"]["id"] for e in lines(listed.stdout)]
    board = descent(service, "leaderboard", sweep_id)
    assert board.returncode == 0, board.stderr
    for seen in ("cli rates", "succeeded", "learning_rate 0.2", "winner: trial 1",
                 "test accuracy", "barely"):
        assert seen in board.stdout, (seen, board.stdout)
    picture = tmp_path / "sweep.png"
    plotted = descent(service, "sweep-plot", sweep_id, "-o", str(picture))
    assert plotted.returncode == 0 and picture.read_bytes().startswith(b"\x89PNG")
    loser = next(t for t in final["trials"] if t["trial"] == 0)
    shown = descent(service, "metrics", loser["job_id"])
    assert shown.returncode == 0 and "not evaluated: a sweep's trial" in shown.stdout


def test_a_bad_sweep_exits_2_naming_the_field(service: Service, tmp_path: Path) -> None:
    spec = tmp_path / "sweep.json"
    spec.write_text(json.dumps({**SWEEP, "space": {"learning_rate": {"values": [0.1, 99]}}}))
    result = descent(service, "sweep", str(spec))

    assert result.returncode == 2
    assert "space.learning_rate.values[1]" in result.stderr and "99" in result.stderr


def test_model_and_predict(service: Service, tmp_path: Path) -> None:
    trained = descent(service, "--json", "train", *SMALL, "--follow")
    assert trained.returncode == 0, trained.stderr
    events = lines(trained.stdout)
    job_id = events[0]["data"]["id"]
    accuracy = events[-1]["data"]["test"]["accuracy"]

    path = tmp_path / "model.npz"
    saved = descent(service, "model", job_id, "-o", str(path))
    assert saved.returncode == 0, saved.stderr
    import numpy as np
    from sklearn.datasets import load_digits

    with np.load(path, allow_pickle=False) as model:
        assert {"W1", "b1", "W2", "b2", "meta"} == set(model.files)
    digits = load_digits()
    rows = tmp_path / "rows.csv"
    rows.write_text(",".join(f"pixel{i}" for i in range(64)) + "\n" + "\n".join(
        ",".join(f"{v:g}" for v in row) for row in digits.data[:200]) + "\n")
    printed = descent(service, "predict", job_id, str(rows))
    assert printed.returncode == 0, printed.stderr
    labels = [int(line) for line in printed.stdout.split()]
    assert len(labels) == 200
    assert np.mean(np.asarray(labels) == digits.target[:200]) > accuracy - 0.1
    written = tmp_path / "out.csv"
    assert descent(service, "predict", job_id, str(rows), "-o", str(written)).returncode == 0
    header, *table = written.read_text().splitlines()
    assert header.split(",")[:3] == ["prediction", "p_0", "p_1"] and len(table) == 200
    assert [int(r.split(",")[0]) for r in table] == labels

    rows.write_text("1,2,3\n4,x,6\n")
    refused = descent(service, "predict", job_id, str(rows))
    assert refused.returncode == 2 and "line 2: 'x' is not a number" in refused.stderr
