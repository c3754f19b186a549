"""Tests of the training loop: mini-batches, the epoch table, validation, the test set."""

from __future__ import annotations

import math
from dataclasses import fields, replace
from typing import Any

import numpy as np
import pytest

from tests.trainer.recording import (
    BLOBS,
    SPIRAL,
    Recorder,
    frozen_clock,
    id_dataset,
    ids_of,
    net_of,
    run,
    splits_of,
    tiny_dataset,
)
from trainer import (
    Checkpoint,
    Dataset,
    EpochRecord,
    TrainConfig,
    evaluate_test_set,
    load_dataset,
    overfitting,
    train,
)
from trainer import loop as loop_module
from trainer.loop import OVERFITTING_GAP
from trainer.metrics import evaluate, report_test_set
from trainer.network import Network

# --- mini-batches --------------------------------------------------------------------------------


def test_each_epoch_visits_every_training_sample_once_in_shuffled_mini_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dataset = id_dataset(103)  # 21 held out for test, 8 for validation: 74 to train on
    config = TrainConfig(hidden_sizes=(4,), batch_size=10, epochs=3, learning_rate=0.01,
                         weight_init_std=0.01)
    batches: list[np.ndarray] = []
    original = Network.gradient

    def recording(self: Network, x: np.ndarray, t: np.ndarray) -> tuple[float, list]:
        batches.append(ids_of(x))
        np.testing.assert_array_equal(t, ids_of(x) % 3)  # labels travel with their samples
        return original(self, x, t)

    monkeypatch.setattr(Network, "gradient", recording)
    result, recorder = run(config, dataset)

    splits = splits_of(config, dataset)
    train_ids = set(ids_of(splits.x_train).tolist())
    held_out = set(ids_of(splits.x_val).tolist()) | set(ids_of(splits.x_test).tolist())
    assert len(train_ids) == 74 and not train_ids & held_out
    per_epoch = math.ceil(74 / 10)
    assert len(batches) == 3 * per_epoch == result.metrics["iterations"]
    assert recorder.iterations() == list(range(1, len(batches) + 1))
    orders = []
    for epoch in range(3):
        epoch_batches = batches[epoch * per_epoch : (epoch + 1) * per_epoch]
        assert [len(b) for b in epoch_batches] == [10] * 7 + [4]  # the short batch counts
        seen = np.concatenate(epoch_batches)
        assert sorted(seen.tolist()) == sorted(train_ids)  # each exactly once
        orders.append(seen)
    assert not np.array_equal(orders[0], orders[1])  # reshuffled every epoch
    assert [r.iteration for r in recorder.records] == [8, 16, 24]


@pytest.mark.parametrize("batch_size", [1, 7, 10, 29])
def test_iterations_are_epochs_times_the_batches_per_epoch(batch_size: int) -> None:
    dataset = id_dataset(40)  # 8 test, 3 validation: 29 to train on
    n_train = 29
    config = TrainConfig(hidden_sizes=(3,), batch_size=batch_size, epochs=3, learning_rate=0.01,
                         weight_init_std=0.01)
    result, recorder = run(config, dataset)
    expected = 3 * math.ceil(n_train / batch_size)
    assert result.metrics["iterations"] == expected
    assert recorder.iterations() == list(range(1, expected + 1))


# --- the epoch table and validation ---------------------------------------------------------


def test_epoch_rows_hold_train_and_validation_numbers_of_that_epochs_weights() -> None:
    config = TrainConfig(hidden_sizes=(8,), batch_size=50, epochs=3, learning_rate=0.5)
    result, recorder = run(config)
    assert [f.name for f in fields(EpochRecord)] == [
        "epoch", "iteration", "train_loss", "train_accuracy", "val_loss", "val_accuracy"
    ]  # no place for a test number
    assert [r.epoch for r in recorder.records] == [1, 2, 3]
    splits = splits_of(config, BLOBS)
    for record, blob in zip(recorder.records, recorder.checkpoints, strict=True):
        checkpoint = Checkpoint.from_bytes(blob)
        assert checkpoint.epoch == record.epoch
        net = net_of(checkpoint.params, config)
        train_eval = evaluate(net, splits.x_train, splits.t_train)
        val_eval = evaluate(net, splits.x_val, splits.t_val)
        assert record.train_loss == pytest.approx(train_eval.loss, rel=1e-12)
        assert record.train_accuracy == train_eval.accuracy
        assert record.val_loss == pytest.approx(val_eval.loss, rel=1e-12)
        assert record.val_accuracy == val_eval.accuracy
        assert record.val_loss is not None and math.isfinite(record.val_loss)


def test_without_a_validation_set_rows_have_none_and_the_last_epoch_is_chosen() -> None:
    config = TrainConfig(hidden_sizes=(8,), batch_size=50, epochs=3, validation_fraction=0.0)
    result, recorder = run(config)
    assert all(r.val_loss is None and r.val_accuracy is None for r in recorder.records)
    assert all(math.isfinite(r.train_loss) for r in recorder.records)
    assert result.metrics["validation"] is None
    assert result.metrics["best_epoch"] == 3
    last = Checkpoint.from_bytes(recorder.checkpoints[-1])
    for p, q in zip(result.params, last.params, strict=True):
        np.testing.assert_array_equal(p, q)
    assert result.metrics["iterations"] == 3 * math.ceil(800 / 50)  # no validation taken out


def test_the_best_epoch_is_the_lowest_validation_loss_and_its_weights_are_returned() -> None:
    config = TrainConfig(hidden_sizes=(16,), batch_size=20, epochs=6, learning_rate=2.0)
    result, recorder = run(config)
    val_losses = [r.val_loss for r in recorder.records if r.val_loss is not None]
    assert len(val_losses) == 6
    best = result.metrics["best_epoch"]
    assert best == int(np.argmin(val_losses)) + 1
    assert best < 6, "choose a config whose last epoch is not the best: the test is weaker"
    best_checkpoint = Checkpoint.from_bytes(recorder.checkpoints[best - 1])
    for p, q in zip(result.params, best_checkpoint.params, strict=True):
        np.testing.assert_array_equal(p, q)
    assert result.metrics["validation"]["loss"] == recorder.records[best - 1].val_loss
    assert result.metrics["epochs_run"] == 6
    assert result.metrics["early_stopped"] is False


def test_early_stopping_stops_and_evaluates_the_best_epochs_weights() -> None:
    config = TrainConfig(hidden_sizes=(16,), batch_size=20, epochs=20, learning_rate=1.0,
                         early_stopping_patience=1)
    result, recorder = run(config)
    metrics = result.metrics
    best, ran = metrics["best_epoch"], metrics["epochs_run"]
    assert ran < 20
    assert metrics["early_stopped"] is True
    assert ran == best + 1  # patience 1: one epoch without improvement
    assert len(recorder.records) == ran == len(recorder.checkpoints)
    assert recorder.records[ran - 1].val_loss >= recorder.records[best - 1].val_loss
    assert result.metrics["iterations"] == ran * math.ceil(720 / 20)

    # the returned weights are the best epoch's, bit for bit ...
    best_params = Checkpoint.from_bytes(recorder.checkpoints[best - 1]).params
    for p, q in zip(result.params, best_params, strict=True):
        np.testing.assert_array_equal(p, q)
    # ... and they are what the metrics were computed on
    row = recorder.records[best - 1]
    assert metrics["validation"] == {"loss": row.val_loss, "accuracy": row.val_accuracy}
    assert metrics["train"] == {"loss": row.train_loss, "accuracy": row.train_accuracy}
    splits = splits_of(config, BLOBS)
    net = net_of(result.params, config)
    assert evaluate(net, splits.x_val, splits.t_val).loss == pytest.approx(row.val_loss, rel=1e-12)
    assert report_test_set(net, splits.x_test, splits.t_test, 4) == metrics["test"]


@pytest.mark.parametrize("patience", [2, 3])
def test_early_stopping_waits_for_patience_epochs(patience: int) -> None:
    config = TrainConfig(hidden_sizes=(16,), batch_size=20, epochs=30, learning_rate=2.0,
                         early_stopping_patience=patience)
    result, recorder = run(config)
    val = [r.val_loss for r in recorder.records if r.val_loss is not None]
    best = result.metrics["best_epoch"]
    ran = result.metrics["epochs_run"]
    assert len(val) == ran < 30
    assert ran == best + patience
    assert all(v >= val[best - 1] for v in val[best:])
    # no earlier run of `patience` stale epochs
    stale = 0
    lowest = math.inf
    for epoch, v in enumerate(val[:-1], start=1):
        stale = 0 if v < lowest else stale + 1
        lowest = min(lowest, v)
        assert stale < patience, f"should have stopped after epoch {epoch}"


# --- the test set -----------------------------------------------------------------------------

MARKER = 12345.0


def marked_dataset() -> Dataset:
    """blobs with a test split of its own whose features are all MARKER."""
    rng = np.random.default_rng(8)
    x_test = np.full((37, 2), MARKER, dtype=np.float32)
    t_test = rng.integers(0, 4, size=37)
    return Dataset("marked", BLOBS.x, BLOBS.t, 4, x_test, t_test)


def test_the_test_set_is_evaluated_exactly_once_at_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dataset = marked_dataset()
    recorder = Recorder()
    test_calls: list[np.ndarray] = []
    evaluated: list[bool] = []
    report = loop_module.report_test_set
    plain_evaluate = loop_module.evaluate
    gradient = Network.gradient

    def counting_report(net: Network, x: np.ndarray, t: np.ndarray, n: int, *args: Any) -> dict:
        recorder.events.append("test")
        test_calls.append(x.copy())
        return report(net, x, t, n, *args)

    def watching_evaluate(
        net: Network, x: np.ndarray, t: np.ndarray, rows: np.ndarray | None = None,
        check_stop: Any = None,
    ) -> Any:
        seen = x if rows is None else x[rows]
        evaluated.append(bool((seen == MARKER).any()))
        return plain_evaluate(net, x, t, rows, check_stop)

    def watching_gradient(self: Network, x: np.ndarray, t: np.ndarray) -> Any:
        assert not (x == MARKER).any(), "a training batch holds a test sample"
        return gradient(self, x, t)

    monkeypatch.setattr(loop_module, "report_test_set", counting_report)
    monkeypatch.setattr(loop_module, "evaluate", watching_evaluate)
    monkeypatch.setattr(Network, "gradient", watching_gradient)
    config = TrainConfig(hidden_sizes=(8,), batch_size=50, epochs=3)
    result = train(config, dataset, recorder.callbacks(report_every=7), clock=frozen_clock)

    assert len(test_calls) == 1
    assert (test_calls[0] == MARKER).all() and len(test_calls[0]) == 37
    assert recorder.events[-1] == "test"  # after every callback of the run
    assert recorder.events.count("epoch") == 3
    assert evaluated and not any(evaluated)  # no other evaluation ever saw a test sample
    assert result.metrics["test"]["n"] == 37
    assert sum(map(sum, result.metrics["test"]["confusion_matrix"])) == 37
    # the numbers the callbacks saw are train / validation numbers only
    test_loss = result.metrics["test"]["loss"]
    seen = [v for r in recorder.records for v in (r.train_loss, r.val_loss)]
    assert test_loss not in seen
    assert not np.isin(np.float32(test_loss), recorder.losses())


class TrippedWire(AssertionError):
    pass


class Untouchable:
    """Stands in for a test split's array: its shape may be known, its values not read."""

    def __init__(self, shape: tuple[int, ...], dtype: Any) -> None:
        self.shape, self.dtype, self.ndim = shape, np.dtype(dtype), len(shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TrippedWire("the test set was read")

    def __getitem__(self, key: Any) -> Any:
        raise TrippedWire("the test set was read")


def untouchable_dataset() -> Dataset:
    """blobs whose own test split raises when any of its rows or labels is read."""
    x_test = Untouchable((37, 2), np.float32)
    t_test = Untouchable((37,), np.int64)
    return Dataset("untouchable", BLOBS.x, BLOBS.t, 4, x_test, t_test)  # type: ignore[arg-type]


def test_a_trial_trains_and_validates_without_reading_a_test_row() -> None:
    config = TrainConfig(hidden_sizes=(8,), batch_size=50, epochs=3, early_stopping_patience=1)
    result, recorder = run(config, untouchable_dataset(), evaluate_test=False)

    assert result.metrics["test"] is None and result.metrics["overfitting"] is None
    assert result.metrics["validation"] is not None and len(recorder.records) >= 1
    # the tripwire works: the same run that does evaluate the test set trips it
    with pytest.raises(TrippedWire):
        run(config, untouchable_dataset())


@pytest.mark.parametrize("dataset", [marked_dataset(), SPIRAL], ids=["own test split", "held out"])
def test_a_chosen_model_evaluated_later_scores_as_the_run_would_have(dataset: Dataset) -> None:
    config = TrainConfig(hidden_sizes=(8,), batch_size=50, epochs=4, learning_rate=0.5)
    trial, _ = run(config, dataset, evaluate_test=False)
    whole, _ = run(config, dataset)

    later = evaluate_test_set(config, dataset, Network(trial.params, "sigmoid", "cross_entropy"))
    assert later == whole.metrics["test"]
    assert overfitting(trial.metrics["train"]["accuracy"], later) == whole.metrics["overfitting"]


def test_training_does_not_modify_the_dataset() -> None:
    dataset = marked_dataset()
    assert dataset.x_test is not None and dataset.t_test is not None
    arrays = (dataset.x, dataset.t, dataset.x_test, dataset.t_test)
    copies = [a.copy() for a in arrays]
    run(TrainConfig(hidden_sizes=(8,), batch_size=50, epochs=1), dataset)
    for original, array in zip(copies, arrays, strict=True):
        np.testing.assert_array_equal(original, array)


def test_metrics_hold_every_documented_block() -> None:
    config = TrainConfig(hidden_sizes=(8,), batch_size=50, epochs=2)
    result, recorder = run(config)
    metrics = result.metrics
    for key in ("test", "train", "validation", "best_epoch", "epochs_run", "overfitting",
                "duration_seconds"):
        assert key in metrics
    assert set(metrics["test"]) >= {"loss", "accuracy", "n", "confusion_matrix", "per_class"}
    assert metrics["test"]["n"] == 200
    assert [row["label"] for row in metrics["test"]["per_class"]] == [0, 1, 2, 3]
    assert sum(row["support"] for row in metrics["test"]["per_class"]) == 200
    assert set(metrics["train"]) == {"loss", "accuracy"}
    assert set(metrics["validation"]) == {"loss", "accuracy"}
    assert metrics["duration_seconds"] == 0.0  # the injected clock never moved
    assert len(recorder.losses()) == metrics["iterations"] == 2 * math.ceil(720 / 50)
    assert metrics["epochs_run"] == 2 and metrics["early_stopped"] is False


def test_training_learns_the_builtin_datasets() -> None:
    spiral, _ = run(TrainConfig(hidden_sizes=(64,), activation="relu", learning_rate=1.0,
                                batch_size=30, epochs=30), SPIRAL)
    assert spiral.metrics["test"]["accuracy"] > 0.9  # spirals are not linearly separable
    pytest.importorskip("sklearn")
    digits, _ = run(TrainConfig(hidden_sizes=(32,), activation="relu", learning_rate=0.3,
                                batch_size=32, epochs=5), load_dataset("digits"))
    assert digits.metrics["test"]["accuracy"] > 0.85


# --- overfitting --------------------------------------------------------------------------------


def noise_dataset() -> Dataset:
    """Random labels: a wide network memorises the training set and stays at chance on test."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 10)).astype(np.float32)
    return Dataset("noise", x, rng.integers(0, 2, size=150), 2)


@pytest.mark.parametrize(
    ("config", "dataset", "flagged"),
    [
        (TrainConfig(hidden_sizes=(64,), activation="relu", learning_rate=1.0, batch_size=10,
                     epochs=60, validation_fraction=0.0), noise_dataset(), True),
        (TrainConfig(hidden_sizes=(16,), learning_rate=0.5, batch_size=20, epochs=5),
         BLOBS, False),
    ],
    ids=["memorised-noise", "blobs"],
)
def test_overfitting_gap_is_train_minus_test_accuracy_flagged_above_the_threshold(
    config: TrainConfig, dataset: Dataset, flagged: bool
) -> None:
    result, _ = run(config, dataset)
    block = result.metrics["overfitting"]
    gap = result.metrics["train"]["accuracy"] - result.metrics["test"]["accuracy"]
    assert block["gap"] == pytest.approx(gap, abs=1e-15)
    assert block["flagged"] is (gap > OVERFITTING_GAP)
    assert block["flagged"] is flagged


# --- the numerical gradient in the loop ---------------------------------------------------------


@pytest.mark.parametrize("hidden", [(5,), (4, 3)])
@pytest.mark.parametrize("loss", ["cross_entropy", "sum_squares"])
def test_numerical_training_follows_backprop_float64_iteration_by_iteration(
    loss: str, hidden: tuple[int, ...]
) -> None:
    base = TrainConfig(hidden_sizes=hidden, loss=loss, learning_rate=0.5, batch_size=8, epochs=2)
    numerical, rec_n = run(replace(base, gradient="numerical"), tiny_dataset(), report_every=1)
    backprop, rec_b = run(replace(base, gradient="backprop", dtype="float64"), tiny_dataset(),
                          report_every=1)
    assert numerical.params[0].dtype == np.float64
    assert len(rec_n.losses()) == len(rec_b.losses()) == 2 * math.ceil(44 / 8)
    np.testing.assert_allclose(rec_n.losses(), rec_b.losses(), rtol=1e-6)
    for p, q in zip(numerical.params, backprop.params, strict=True):
        np.testing.assert_allclose(p, q, rtol=0, atol=1e-6 * float(np.abs(q).max()))
    assert numerical.metrics["test"]["confusion_matrix"] == \
        backprop.metrics["test"]["confusion_matrix"]

