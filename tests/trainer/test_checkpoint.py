"""Tests of the checkpoint's byte form: a lossless round trip, and corrupt bytes refused."""

from __future__ import annotations

import io
import json
from dataclasses import fields

import numpy as np
import pytest

from trainer.checkpoint import Checkpoint, EpochRecord
from trainer.errors import TrainerError


def make_checkpoint(
    best_val_loss: float | None = 0.25, velocity: bool = True, epochs_with_val: bool = True
) -> Checkpoint:
    rng = np.random.default_rng(0)
    shuffle = np.random.default_rng(123)
    shuffle.permutation(10)  # a state that is not the initial one
    params = [rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)]
    records = [
        EpochRecord(1, 5, 1.5, 0.25, 1.25 if epochs_with_val else None,
                    0.5 if epochs_with_val else None),
        EpochRecord(2, 10, 0.75, 0.5, 0.625 if epochs_with_val else None,
                    0.75 if epochs_with_val else None),
        EpochRecord(3, 15, 0.5, 0.75, 0.875 if epochs_with_val else None,
                    0.625 if epochs_with_val else None),
    ]
    return Checkpoint(
        epoch=3,
        iteration=15,
        params=params,
        velocity=[p / 3 for p in params] if velocity else [],
        rng_state=dict(shuffle.bit_generator.state),
        best_params=[p * 2 for p in params],
        best_epoch=2,
        best_val_loss=best_val_loss,
        epochs_without_improvement=1,
        recent_epochs=records,
        initial_loss=1.0986,
        elapsed_seconds=1.5,
    )


def assert_same(a: Checkpoint, b: Checkpoint) -> None:
    for name in ("epoch", "iteration", "best_epoch", "best_val_loss",
                 "epochs_without_improvement", "rng_state", "recent_epochs", "elapsed_seconds",
                 "initial_loss"):
        assert getattr(a, name) == getattr(b, name), name
    for name in ("params", "best_params", "velocity"):
        xs, ys = getattr(a, name), getattr(b, name)
        assert len(xs) == len(ys), name
        for x, y in zip(xs, ys, strict=True):
            assert x.dtype == y.dtype and x.shape == y.shape
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("velocity", [True, False])
def test_round_trip_through_bytes_is_lossless(velocity: bool) -> None:
    checkpoint = make_checkpoint(velocity=velocity)
    blob = checkpoint.to_bytes()
    assert isinstance(blob, bytes)
    restored = Checkpoint.from_bytes(blob)
    assert_same(checkpoint, restored)
    assert restored.to_bytes() == blob


def test_round_trip_keeps_a_missing_best_loss_and_missing_validation() -> None:
    checkpoint = make_checkpoint(best_val_loss=None, epochs_with_val=False)
    restored = Checkpoint.from_bytes(checkpoint.to_bytes())
    assert restored.best_val_loss is None
    row = restored.recent_epochs[0]
    assert row.val_loss is None and row.val_accuracy is None
    assert_same(checkpoint, restored)


def test_a_checkpoint_holds_no_per_iteration_curve() -> None:
    """The curve lives in the job store: only the weights and a few numbers are kept."""
    checkpoint = make_checkpoint()
    assert "losses" not in {f.name for f in fields(Checkpoint)}
    with np.load(io.BytesIO(checkpoint.to_bytes())) as data:
        assert sorted(data.files) == ["best_0", "best_1", "meta", "param_0", "param_1",
                                      "velocity_0", "velocity_1"]


def test_a_checkpoint_of_the_old_format_is_refused_as_unreadable() -> None:
    """Format 1 carried the whole curve; a worker resuming one restarts cleanly instead."""
    meta = json.dumps({"epoch": 1, "iteration": 5, "n_params": 0, "n_velocity": 0})
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.frombuffer(meta.encode(), np.uint8), losses=np.zeros(5))
    with pytest.raises(TrainerError, match="checkpoint is unreadable: format None"):
        Checkpoint.from_bytes(buffer.getvalue())


def test_restored_rng_state_continues_the_same_stream() -> None:
    checkpoint = make_checkpoint()
    restored = Checkpoint.from_bytes(checkpoint.to_bytes())
    a, b = np.random.default_rng(), np.random.default_rng()
    a.bit_generator.state = checkpoint.rng_state
    b.bit_generator.state = restored.rng_state
    np.testing.assert_array_equal(a.permutation(50), b.permutation(50))


def test_epoch_record_dict_round_trip() -> None:
    record = EpochRecord(3, 30, 0.5, 0.9, None, None)
    assert EpochRecord.from_dict(record.to_dict()) == record
    assert record.to_dict()["val_loss"] is None


@pytest.mark.parametrize(
    "blob",
    [b"garbage" * 20, b"\x93NUMPY not really", make_checkpoint().to_bytes()[10:]],
    ids=["garbage", "npy-magic", "headless"],
)
def test_unreadable_bytes_raise_a_trainer_error(blob: bytes) -> None:
    with pytest.raises(TrainerError, match="checkpoint is unreadable"):
        Checkpoint.from_bytes(blob)


def test_an_npz_without_the_checkpoint_arrays_raises_a_trainer_error() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, something=np.zeros(3))
    with pytest.raises(TrainerError, match="checkpoint is unreadable"):
        Checkpoint.from_bytes(buffer.getvalue())


@pytest.mark.parametrize("damage", ["empty", "truncated", "flipped-byte"])
def test_empty_truncated_or_bit_flipped_bytes_raise_a_trainer_error(damage: str) -> None:
    blob = make_checkpoint().to_bytes()
    if damage == "empty":
        blob = b""
    elif damage == "truncated":
        blob = blob[: len(blob) // 2]
    else:
        damaged = bytearray(blob)
        damaged[len(blob) // 2] ^= 0xFF  # inside an array's data: the zip CRC no longer matches
        blob = bytes(damaged)
    with pytest.raises(TrainerError):
        Checkpoint.from_bytes(blob)
