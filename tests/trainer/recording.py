"""Helpers of the training-loop tests: a recorder of every callback, small datasets, a clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trainer import Callbacks, Checkpoint, Dataset, EpochRecord, TrainConfig, TrainResult, train
from trainer.datasets import load_dataset
from trainer.network import Network
from trainer.rundata import rng_streams
from trainer.splits import Splits, make_splits

BLOBS = load_dataset("blobs")  # 1000 points, 4 classes, 2 features
SPIRAL = load_dataset("spiral")  # 900 points, 3 classes, 2 features


def frozen_clock() -> float:
    """Time never passes: chunks are cut by count only and durations are exactly 0."""
    return 0.0


@dataclass
class Recorder:
    """Every callback of a run, in order: the curve and the epoch table come from here."""

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
    evaluate_test: bool = True, **callback_options: Any,
) -> tuple[TrainResult, Recorder]:
    recorder = Recorder()
    result = train(config, dataset, recorder.callbacks(**callback_options), resume=resume,
                   clock=frozen_clock, evaluate_test=evaluate_test)
    return result, recorder


def splits_of(config: TrainConfig, dataset: Dataset) -> Splits:
    """The splits train() makes for this config: the first of the seed's generators."""
    return make_splits(dataset, config.validation_fraction, rng_streams(config.seed)[0])


def net_of(params: list[np.ndarray], config: TrainConfig) -> Network:
    return Network([p.copy() for p in params], config.activation, config.loss)


def assert_same_result(a: TrainResult, b: TrainResult) -> None:
    """Bit for bit: the weights, the metrics and the warnings."""
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


def stop_after(calls: int) -> Callable[[], bool]:
    """should_stop that answers True from its `calls`-th call on."""
    count = iter(range(1, 10**9))
    return lambda: next(count) >= calls


def tiny_dataset() -> Dataset:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 3)).astype(np.float32)
    return Dataset("tiny", x, rng.integers(0, 3, size=60), 3)
