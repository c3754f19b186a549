"""Tests of cancellation: should_stop is heard in every long phase of a run, and cheaply."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.trainer.recording import BLOBS, Recorder, frozen_clock, stop_after, tiny_dataset
from trainer import Callbacks, Stopped, TrainConfig, metrics, numerical, numerical_gradient, train
from trainer import loop as loop_module
from trainer.network import Network, init_params


class Calls:
    """Counts calls of a Network method (or a function) while delegating to it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> None:
        self.count = 0
        original = getattr(owner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)


@pytest.mark.parametrize("done", [0, 1, 7, 18, 19, 20])
def test_should_stop_is_checked_before_every_batch(done: int) -> None:
    """Stopping after `done` iterations: iteration done + 1 never runs, and everything
    done was reported. After 18 (an epoch end) it stops in the epoch's evaluation."""
    config = TrainConfig(hidden_sizes=(8,), batch_size=40, epochs=3)  # 18 iterations per epoch
    recorder = Recorder()
    callbacks = recorder.callbacks(should_stop=lambda: len(recorder.iterations()) >= done,
                                   report_every=1)
    with pytest.raises(Stopped) as info:
        train(config, BLOBS, callbacks, clock=frozen_clock)
    assert info.value.iteration == done
    assert info.value.code == "cancelled"
    assert f"after iteration {done}" in str(info.value)
    assert recorder.iterations() == list(range(1, done + 1))
    assert len(recorder.records) == max(done - 1, 0) // 18
    assert "test" not in recorder.events


def test_should_stop_is_asked_once_per_batch_and_a_few_times_per_epoch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked = [0]
    at_batch: list[int] = []  # asks so far, at each training step
    gradient = Network.gradient

    def watching(self: Network, x: np.ndarray, t: np.ndarray) -> Any:
        at_batch.append(asked[0])
        return gradient(self, x, t)

    def should_stop() -> bool:
        asked[0] += 1
        return False

    monkeypatch.setattr(Network, "gradient", watching)
    config = TrainConfig(hidden_sizes=(8,), batch_size=40, epochs=2)
    result = train(config, BLOBS, Callbacks(should_stop=should_stop), clock=frozen_clock)
    assert result.metrics["iterations"] == len(at_batch) == 36
    between = np.diff(at_batch)
    assert (np.delete(between, 17) == 1).all()  # the hot path: one question per batch
    assert 1 < between[17] <= 5  # the epoch end: its evaluation passes ask too
    assert asked[0] <= 36 + 2 * 5 + 5  # and the rest of the run only a handful of times


def test_a_run_stops_during_weight_initialisation(monkeypatch: pytest.MonkeyPatch) -> None:
    real = loop_module.init_params
    checks: list[int] = []
    returned: list[int] = []

    def spying(*args: Any) -> Any:
        *rest, check_stop = args

        def check() -> None:
            checks.append(1)
            check_stop()

        params = real(*rest, check)
        returned.append(1)
        return params

    monkeypatch.setattr(loop_module, "init_params", spying)
    config = TrainConfig(hidden_sizes=(8, 8, 8), batch_size=40)  # four layers
    recorder = Recorder()
    with pytest.raises(Stopped) as info:
        train(config, BLOBS, recorder.callbacks(should_stop=stop_after(3)), clock=frozen_clock)
    assert len(checks) == 3 and returned == []  # two layers made, the third never
    assert info.value.iteration == 0 and recorder.events == []


def test_a_run_stops_during_its_initial_evaluation_before_iteration_1(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metrics, "EVAL_BATCH", 100)  # the 720-row eval subset in 8 pieces
    chunks = Calls(monkeypatch, Network, "logits")
    steps = Calls(monkeypatch, Network, "gradient")
    recorder = Recorder()
    # calls 1-2: before each of the two layers' initialisation; 3-5: before eval pieces
    with pytest.raises(Stopped) as info:
        train(TrainConfig(hidden_sizes=(8,), batch_size=40), BLOBS,
              recorder.callbacks(should_stop=stop_after(5)), clock=frozen_clock)
    assert chunks.count == 2  # stopped between the second piece and the third
    assert steps.count == 0 and info.value.iteration == 0
    assert recorder.events == []


def test_a_run_stops_during_a_numerical_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(numerical, "CHUNK_ELEMENTS", 7)  # many pieces even for a tiny net
    gradients = Calls(monkeypatch, loop_module, "numerical_gradient")
    losses = Calls(monkeypatch, Network, "mean_loss")
    config = TrainConfig(hidden_sizes=(4,), gradient="numerical", batch_size=8, epochs=1)
    # calls 1-2: initialisation, 3: the initial evaluation, 4: before batch 1, 5-: pieces
    with pytest.raises(Stopped) as info:
        train(config, tiny_dataset(), Callbacks(should_stop=stop_after(8)), clock=frozen_clock)
    assert gradients.count == 1 and losses.count == 0  # inside the first numerical gradient
    assert info.value.iteration == 0


def test_numerical_gradient_consults_check_stop_between_pieces() -> None:
    rng = np.random.default_rng(0)
    net = Network(init_params((6, 5, 4, 3), "sigmoid", rng, dtype="float64"), "sigmoid",
                  "cross_entropy")
    x, t = rng.normal(size=(8, 6)), rng.integers(0, 3, size=8)
    calls = [0]

    def count() -> None:
        calls[0] += 1

    whole = numerical_gradient(net, x, t, check_stop=count)
    assert calls[0] >= 2 * net.n_layers  # per layer, both signs: at least once each

    def stop_halfway() -> None:
        calls[0] -= 1
        if calls[0] <= 0:
            raise Stopped(0)

    calls[0] //= 2
    with pytest.raises(Stopped):
        numerical_gradient(net, x, t, check_stop=stop_halfway)
    again = numerical_gradient(net, x, t)  # nothing was left half-changed
    for a, b in zip(whole, again, strict=True):
        np.testing.assert_array_equal(a, b)


def test_evaluate_and_init_params_consult_check_stop_per_piece(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    params = init_params((3, 4, 5, 2), "relu", np.random.default_rng(0),
                         check_stop=lambda: calls.append(1))
    assert len(calls) == 3  # one per layer
    monkeypatch.setattr(metrics, "EVAL_BATCH", 10)
    x, t = np.zeros((95, 3), np.float32), np.zeros(95, np.int64)
    metrics.evaluate(Network(params, "relu", "cross_entropy"), x, t,
                     check_stop=lambda: calls.append(2))
    assert calls.count(2) == 10  # one per piece of 10 rows
