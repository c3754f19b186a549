"""Tests of the training loop: mini-batches, callbacks, validation, resume, divergence, test set."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import pytest

from trainer import (
    Callbacks,
    Checkpoint,
    Dataset,
    Diverged,
    EpochRecord,
    InvalidConfig,
    Stopped,
    TrainConfig,
    TrainResult,
    load_dataset,
    train,
)
from trainer import loop as loop_module
from trainer.loop import OVERFITTING_GAP, learning_rate_warnings, rng_streams
from trainer.metrics import evaluate, report_test_set
from trainer.network import Network
from trainer.splits import Splits, make_splits

BLOBS = load_dataset("blobs")  # 1000 points, 4 classes, 2 features
SPIRAL = load_dataset("spiral")  # 900 points, 3 classes, 2 features


def frozen_clock() -> float:
    """Time never passes: chunks are cut by count only and durations are exactly 0."""
    return 0.0


@dataclass
class Recorder:
    """Every callback of a run, in order."""

    events: list[str] = field(default_factory=list)
    chunks: list[tuple[int, np.ndarray]] = field(default_factory=list)
    records: list[EpochRecord] = field(default_factory=list)
    checkpoints: list[bytes] = field(default_factory=list)
    delivered_at_epoch: list[int] = field(default_factory=list)  # iterations reported so far

    def callbacks(self, **kwargs: Any) -> Callbacks:
        return Callbacks(
            on_iterations=self.on_iterations,
            on_epoch=self.on_epoch,
            on_checkpoint=self.on_checkpoint,
            **kwargs,
        )

    def on_iterations(self, first: int, losses: np.ndarray) -> None:
        self.events.append("iterations")
        self.chunks.append((first, np.array(losses, copy=True)))

    def on_epoch(self, record: EpochRecord) -> None:
        self.events.append("epoch")
        self.records.append(record)
        self.delivered_at_epoch.append(len(self.iterations()))

    def on_checkpoint(self, checkpoint: Checkpoint) -> None:
        self.events.append("checkpoint")
        self.checkpoints.append(checkpoint.to_bytes())

    def iterations(self) -> list[int]:
        return [first + k for first, losses in self.chunks for k in range(len(losses))]

    def losses(self) -> np.ndarray:
        if not self.chunks:
            return np.empty(0, dtype=np.float32)
        return np.concatenate([losses for _, losses in self.chunks])


def run(
    config: TrainConfig, dataset: Dataset = BLOBS, resume: Checkpoint | None = None,
    **callback_options: Any,
) -> tuple[TrainResult, Recorder]:
    recorder = Recorder()
    result = train(config, dataset, recorder.callbacks(**callback_options), resume=resume,
                   clock=frozen_clock)
    return result, recorder


def splits_of(config: TrainConfig, dataset: Dataset) -> Splits:
    """The splits train() makes for this config: the first of the seed's generators."""
    return make_splits(dataset, config.validation_fraction, rng_streams(config.seed)[0])


def net_of(params: list[np.ndarray], config: TrainConfig) -> Network:
    return Network([p.copy() for p in params], config.activation, config.loss)


def assert_same_run(a: TrainResult, b: TrainResult) -> None:
    """Bit for bit: the curve, the epoch table, the weights, the metrics and the warnings."""
    assert a.losses.dtype == b.losses.dtype == np.float32
    assert a.losses.tobytes() == b.losses.tobytes()
    assert a.epochs == b.epochs
    assert len(a.params) == len(b.params)
    for p, q in zip(a.params, b.params, strict=True):
        assert p.dtype == q.dtype
        assert p.tobytes() == q.tobytes()
    assert a.metrics == b.metrics
    assert a.warnings == b.warnings


def id_dataset(n: int = 103, n_classes: int = 3) -> Dataset:
    """Feature 0 of sample i is i: which samples a batch holds can be read off the batch."""
    rng = np.random.default_rng(5)
    ids = np.arange(n, dtype=np.float32)
    x = np.column_stack([ids, rng.normal(size=n).astype(np.float32)])
    return Dataset("ids", x, np.arange(n, dtype=np.int64) % n_classes, n_classes)


def ids_of(x: np.ndarray) -> np.ndarray:
    return np.asarray(x[:, 0]).astype(np.int64)


# --- mini-batches and progress ---------------------------------------------------------------


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
    assert len(batches) == 3 * per_epoch == result.metrics["iterations"] == len(result.losses)
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


def test_progress_is_reported_in_contiguous_chunks_numbered_from_one() -> None:
    config = TrainConfig(hidden_sizes=(8,), batch_size=20, epochs=3)  # 36 iterations per epoch
    result, recorder = run(config, report_every=5)
    n = 3 * math.ceil(720 / 20)
    assert recorder.iterations() == list(range(1, n + 1))
    assert len(recorder.chunks) < n  # chunks, never one call per iteration
    assert all(1 <= len(losses) <= 5 for _, losses in recorder.chunks)
    assert all(losses.dtype == np.float32 for _, losses in recorder.chunks)
    assert recorder.losses().tobytes() == result.losses.tobytes()
    # every epoch's iterations are delivered before its epoch row, and no later ones
    assert recorder.delivered_at_epoch == [r.iteration for r in recorder.records] == [36, 72, 108]
    assert recorder.events[-2:] == ["epoch", "checkpoint"]


def test_default_chunks_are_large_and_cut_at_epoch_ends() -> None:
    result, recorder = run(TrainConfig(hidden_sizes=(8,), batch_size=20, epochs=2))
    assert [(first, len(losses)) for first, losses in recorder.chunks] == [(1, 36), (37, 36)]


def test_progress_is_also_flushed_by_time() -> None:
    ticks = iter(range(10**6))
    recorder = Recorder()
    train(TrainConfig(hidden_sizes=(8,), batch_size=20, epochs=1), BLOBS,
          recorder.callbacks(report_every=1000, report_seconds=3.0),
          clock=lambda: float(next(ticks)))
    assert recorder.iterations() == list(range(1, 37))
    assert len(recorder.chunks) > 1  # far fewer than 1000 iterations, yet several chunks
    assert all(len(losses) <= 3 for _, losses in recorder.chunks)


# --- the epoch table and validation ---------------------------------------------------------


def test_epoch_rows_hold_train_and_validation_numbers_of_that_epochs_weights() -> None:
    config = TrainConfig(hidden_sizes=(8,), batch_size=50, epochs=3, learning_rate=0.5)
    result, recorder = run(config)
    assert [f.name for f in fields(EpochRecord)] == [
        "epoch", "iteration", "train_loss", "train_accuracy", "val_loss", "val_accuracy"
    ]  # no place for a test number
    assert recorder.records == result.epochs
    assert [r.epoch for r in result.epochs] == [1, 2, 3]
    splits = splits_of(config, BLOBS)
    for record, blob in zip(result.epochs, recorder.checkpoints, strict=True):
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
    assert all(r.val_loss is None and r.val_accuracy is None for r in result.epochs)
    assert all(math.isfinite(r.train_loss) for r in result.epochs)
    assert result.metrics["validation"] is None
    assert result.metrics["best_epoch"] == 3
    last = Checkpoint.from_bytes(recorder.checkpoints[-1])
    for p, q in zip(result.params, last.params, strict=True):
        np.testing.assert_array_equal(p, q)
    assert result.metrics["iterations"] == 3 * math.ceil(800 / 50)  # no validation taken out


def test_the_best_epoch_is_the_lowest_validation_loss_and_its_weights_are_returned() -> None:
    config = TrainConfig(hidden_sizes=(16,), batch_size=20, epochs=6, learning_rate=2.0)
    result, recorder = run(config)
    val_losses = [r.val_loss for r in result.epochs if r.val_loss is not None]
    assert len(val_losses) == 6
    best = result.metrics["best_epoch"]
    assert best == int(np.argmin(val_losses)) + 1
    assert best < 6, "choose a config whose last epoch is not the best: the test is weaker"
    best_checkpoint = Checkpoint.from_bytes(recorder.checkpoints[best - 1])
    for p, q in zip(result.params, best_checkpoint.params, strict=True):
        np.testing.assert_array_equal(p, q)
    assert result.metrics["validation"]["loss"] == result.epochs[best - 1].val_loss
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
    assert len(result.epochs) == ran == len(recorder.checkpoints)
    assert result.epochs[ran - 1].val_loss >= result.epochs[best - 1].val_loss
    assert result.metrics["iterations"] == ran * math.ceil(720 / 20)

    # the returned weights are the best epoch's, bit for bit ...
    best_params = Checkpoint.from_bytes(recorder.checkpoints[best - 1]).params
    for p, q in zip(result.params, best_params, strict=True):
        np.testing.assert_array_equal(p, q)
    # ... and they are what the metrics were computed on
    row = result.epochs[best - 1]
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
    result, _ = run(config)
    val = [r.val_loss for r in result.epochs if r.val_loss is not None]
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

    def counting_report(net: Network, x: np.ndarray, t: np.ndarray, n: int) -> dict:
        recorder.events.append("test")
        test_calls.append(x.copy())
        return report(net, x, t, n)

    def watching_evaluate(
        net: Network, x: np.ndarray, t: np.ndarray, rows: np.ndarray | None = None
    ) -> Any:
        seen = x if rows is None else x[rows]
        evaluated.append(bool((seen == MARKER).any()))
        return plain_evaluate(net, x, t, rows)

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
    result, _ = run(config)
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
    assert len(result.losses) == metrics["iterations"]


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


# --- reproducibility and resume ---------------------------------------------------------------


def test_same_config_seed_and_data_give_bitwise_identical_runs() -> None:
    config = TrainConfig(hidden_sizes=(16, 8), activation="relu", batch_size=32, epochs=3,
                         learning_rate=0.3, momentum=0.5, seed=11)
    a, rec_a = run(config, SPIRAL)
    b, rec_b = run(config, SPIRAL)
    assert_same_run(a, b)
    assert rec_a.checkpoints == rec_b.checkpoints
    assert rec_a.losses().tobytes() == rec_b.losses().tobytes()


def test_a_different_seed_gives_a_different_run() -> None:
    config = TrainConfig(hidden_sizes=(16,), batch_size=32, epochs=2, seed=1)
    a, _ = run(config, SPIRAL)
    b, _ = run(replace(config, seed=2), SPIRAL)
    assert not np.array_equal(a.losses, b.losses)
    assert not np.array_equal(a.params[0], b.params[0])
    assert a.metrics["test"] != b.metrics["test"]


RESUME_CASES = {
    "float32": (TrainConfig(hidden_sizes=(16,), activation="relu", batch_size=32, epochs=4,
                            learning_rate=0.3), SPIRAL),
    "momentum": (TrainConfig(hidden_sizes=(12, 6), batch_size=25, epochs=4,
                             learning_rate=0.2, momentum=0.9, loss="sum_squares"), SPIRAL),
    "early-stopping": (TrainConfig(hidden_sizes=(16,), batch_size=20, epochs=20,
                                   learning_rate=1.0, early_stopping_patience=1), BLOBS),
    # validation worsens, improves, then stalls twice: a checkpoint holds a stale count of 1
    "early-stopping-patience-2": (TrainConfig(hidden_sizes=(16,), activation="relu",
                                              batch_size=20, epochs=20, learning_rate=1.0,
                                              early_stopping_patience=2), BLOBS),
    "no-validation": (TrainConfig(hidden_sizes=(8,), batch_size=40, epochs=3,
                                  validation_fraction=0.0), BLOBS),
    "float64": (TrainConfig(hidden_sizes=(8,), batch_size=40, epochs=3, dtype="float64",
                            momentum=0.5), BLOBS),
}


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_resuming_from_any_epochs_checkpoint_is_bitwise_identical(case: str) -> None:
    config, dataset = RESUME_CASES[case]
    full, recorder = run(config, dataset)
    epochs_run = full.metrics["epochs_run"]
    assert len(recorder.checkpoints) == epochs_run >= 3
    patience = config.early_stopping_patience
    if patience is not None:
        assert epochs_run < config.epochs
        stale = [Checkpoint.from_bytes(b).epochs_without_improvement
                 for b in recorder.checkpoints[:-1]]
        assert max(stale) == patience - 1
    last = epochs_run
    for k in range(1, last + 1):
        checkpoint = Checkpoint.from_bytes(recorder.checkpoints[k - 1])
        assert checkpoint.epoch == k
        resumed, rec = run(config, dataset, resume=checkpoint)
        assert_same_run(full, resumed)
        assert rec.checkpoints == recorder.checkpoints[k:]
        assert rec.records == full.epochs[k:]
        assert rec.iterations() == list(range(checkpoint.iteration + 1,
                                               full.metrics["iterations"] + 1))
        assert rec.losses().tobytes() == full.losses[checkpoint.iteration :].tobytes()


def test_resuming_from_the_checkpoint_that_triggered_early_stopping_trains_no_more() -> None:
    config, dataset = RESUME_CASES["early-stopping"]
    full, recorder = run(config, dataset)
    last = Checkpoint.from_bytes(recorder.checkpoints[-1])
    resumed, rec = run(config, dataset, resume=last)
    assert rec.chunks == []
    assert resumed.metrics["epochs_run"] == full.metrics["epochs_run"]
    assert_same_run(full, resumed)


def test_a_stopped_run_resumed_from_its_last_checkpoint_matches_the_uninterrupted_run() -> None:
    config = TrainConfig(hidden_sizes=(8,), batch_size=40, epochs=3, momentum=0.9)
    full, _ = run(config)
    calls = iter(range(10**6))
    with pytest.raises(Stopped):
        stopped = Recorder()
        train(config, BLOBS, stopped.callbacks(should_stop=lambda: next(calls) >= 25),
              clock=frozen_clock)
    assert len(stopped.checkpoints) == 1  # 18 iterations per epoch: stopped in epoch 2
    resumed, _ = run(config, resume=Checkpoint.from_bytes(stopped.checkpoints[-1]))
    assert_same_run(full, resumed)


def test_a_checkpoint_of_another_configuration_is_refused() -> None:
    _, recorder = run(TrainConfig(hidden_sizes=(8,), batch_size=50, epochs=1))
    checkpoint = Checkpoint.from_bytes(recorder.checkpoints[0])
    for other in (TrainConfig(hidden_sizes=(9,), batch_size=50, epochs=2),
                  TrainConfig(hidden_sizes=(8,), batch_size=50, epochs=2, dtype="float64")):
        with pytest.raises(InvalidConfig) as info:
            train(other, BLOBS, resume=checkpoint)
        assert info.value.field == "resume"


# --- stopping, divergence, warnings -------------------------------------------------------------


def stop_after(calls: int) -> Callable[[], bool]:
    """should_stop that answers True from its `calls`-th call on, counting its calls."""
    count = iter(range(1, 10**6))
    return lambda: next(count) >= calls


@pytest.mark.parametrize("calls", [1, 2, 7, 19, 20])
def test_should_stop_is_checked_before_every_batch(calls: int) -> None:
    config = TrainConfig(hidden_sizes=(8,), batch_size=40, epochs=3)  # 18 iterations per epoch
    recorder = Recorder()
    with pytest.raises(Stopped) as info:
        train(config, BLOBS, recorder.callbacks(should_stop=stop_after(calls), report_every=4),
              clock=frozen_clock)
    done = calls - 1  # the calls-th check comes before iteration `calls`, which never runs
    assert info.value.iteration == done
    assert info.value.code == "cancelled"
    assert str(done) in str(info.value)
    assert recorder.iterations() == list(range(1, done + 1))  # everything done was reported
    assert len(recorder.records) == done // 18
    assert "test" not in recorder.events


def test_should_stop_that_never_fires_is_asked_once_per_batch() -> None:
    asked: list[int] = []

    def should_stop() -> bool:
        asked.append(1)
        return False

    config = TrainConfig(hidden_sizes=(8,), batch_size=40, epochs=2)
    result = train(config, BLOBS, Callbacks(should_stop=should_stop), clock=frozen_clock)
    assert len(asked) == result.metrics["iterations"] == 36


def test_a_huge_learning_rate_diverges_naming_the_iteration_and_a_smaller_rate() -> None:
    config = TrainConfig(activation="relu", learning_rate=10.0, hidden_sizes=(32,), batch_size=50)
    recorder = Recorder()
    with pytest.raises(Diverged) as info:
        train(config, BLOBS, recorder.callbacks(), clock=frozen_clock)
    error = info.value
    assert error.code == "diverged"
    assert error.iteration >= 1
    assert error.learning_rate == 10.0
    message = str(error)
    assert f"iteration {error.iteration}" in message
    assert "too large" in message and "try 1" in message
    # the iterations up to the diverged one were reported; the test set never was touched
    assert recorder.iterations() == list(range(1, error.iteration + 1))
    assert recorder.losses()[-1] == np.float32(error.loss)


def test_a_non_finite_loss_diverges_at_once() -> None:
    rng = np.random.default_rng(0)
    x = np.full((60, 3), 3e38, dtype=np.float32) * np.sign(rng.normal(size=(60, 3))).astype(
        np.float32)
    dataset = Dataset("huge", x, np.arange(60, dtype=np.int64) % 2, 2)
    config = TrainConfig(hidden_sizes=(4,), activation="relu", batch_size=10, learning_rate=0.1)
    with np.errstate(all="ignore"), pytest.raises(Diverged) as info:
        train(config, dataset, clock=frozen_clock)
    assert info.value.iteration == 1
    assert not math.isfinite(info.value.loss)
    assert "try 0.01" in str(info.value)


def test_a_tiny_learning_rate_warns_that_it_is_too_small() -> None:
    result, _ = run(TrainConfig(learning_rate=1e-5, hidden_sizes=(16,), batch_size=50, epochs=3))
    assert len(result.warnings) == 1
    assert "too small" in result.warnings[0]
    assert "1e-05" in result.warnings[0]


def test_a_good_learning_rate_does_not_warn() -> None:
    result, _ = run(TrainConfig(learning_rate=0.5, hidden_sizes=(16,), batch_size=50, epochs=3))
    assert result.warnings == []


@pytest.mark.parametrize(
    ("initial", "final", "expected"),
    [
        (1.0, 0.5, None),
        (1.0, 0.995, "too small"),
        (1.0, 1.0, "too small"),
        (1.0, 1.5, "too large"),
        (math.nan, 0.5, None),
        (1.0, math.inf, None),
        (0.0, 0.0, None),
    ],
)
def test_learning_rate_warnings(initial: float, final: float, expected: str | None) -> None:
    warnings = learning_rate_warnings(initial, final, 100, 0.1)
    if expected is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and expected in warnings[0] and "100 iterations" in warnings[0]


# --- the numerical gradient in the loop ---------------------------------------------------------


def tiny_dataset() -> Dataset:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 3)).astype(np.float32)
    return Dataset("tiny", x, rng.integers(0, 3, size=60), 3)


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
    assert len(numerical.losses) == len(backprop.losses) == 2 * math.ceil(44 / 8)
    np.testing.assert_allclose(rec_n.losses(), rec_b.losses(), rtol=1e-6)
    for p, q in zip(numerical.params, backprop.params, strict=True):
        np.testing.assert_allclose(p, q, rtol=0, atol=1e-6 * float(np.abs(q).max()))
    assert numerical.metrics["test"]["confusion_matrix"] == \
        backprop.metrics["test"]["confusion_matrix"]
