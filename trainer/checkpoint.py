"""The full state of a run at an epoch end, and its portable byte form (npz + JSON)."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from trainer.errors import TrainerError

Array = np.ndarray


def npz_bytes(meta: dict[str, Any], arrays: dict[str, Array]) -> bytes:
    """arrays, plus `meta` as UTF-8 JSON in a uint8 array, as the bytes of an .npz."""
    named = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays}
    buffer = io.BytesIO()
    np.savez(buffer, **named)  # type: ignore[arg-type]
    return buffer.getvalue()


@contextmanager
def read_npz(blob: bytes, what: str) -> Iterator[tuple[dict[str, Any], Any]]:
    """(meta, arrays) of `npz_bytes` output. A bad file, or a missing or wrong entry that the
    caller's block runs into (a KeyError, or meta that is not an object), is "<what> is
    unreadable"."""
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            yield json.loads(bytes(data["meta"]).decode()), data
    except (
        OSError, ValueError, KeyError, TypeError, AttributeError, EOFError, zipfile.BadZipFile
    ) as exc:
        raise TrainerError(f"{what} is unreadable: {exc}") from exc


@dataclass(frozen=True)
class EpochRecord:
    """One row of the curve's per-epoch table; val_* are None without a validation set."""

    epoch: int
    iteration: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpochRecord:
        return cls(**data)


@dataclass
class Checkpoint:
    """Everything a resumed run needs to continue bitwise identically."""

    epoch: int  # epochs completed
    iteration: int  # iterations completed
    params: list[Array]
    best_params: list[Array]
    best_epoch: int
    best_val_loss: float
    epochs_without_improvement: int
    velocity: list[Array]
    rng_state: dict[str, Any]  # the shuffling generator's bit_generator.state
    losses: Array  # float32, one per iteration so far
    epochs: list[EpochRecord]
    elapsed_seconds: float
    initial_loss: float  # training loss before the first step: the divergence reference

    def to_bytes(self) -> bytes:
        meta = {
            "epoch": self.epoch,
            "iteration": self.iteration,
            "best_epoch": self.best_epoch,
            "best_val_loss": self.best_val_loss,
            "epochs_without_improvement": self.epochs_without_improvement,
            "rng_state": self.rng_state,
            "epochs": [e.to_dict() for e in self.epochs],
            "elapsed_seconds": self.elapsed_seconds,
            "initial_loss": self.initial_loss,
            "n_params": len(self.params),
            "n_velocity": len(self.velocity),
        }
        arrays: dict[str, Array] = {"losses": self.losses}
        for k, p in enumerate(self.params):
            arrays[f"param_{k}"] = p
        for k, p in enumerate(self.best_params):
            arrays[f"best_{k}"] = p
        for k, v in enumerate(self.velocity):
            arrays[f"velocity_{k}"] = v
        return npz_bytes(meta, arrays)

    @classmethod
    def from_bytes(cls, blob: bytes) -> Checkpoint:
        with read_npz(blob, "checkpoint") as (meta, data):
            n_params = meta["n_params"]
            return cls(
                epoch=meta["epoch"],
                iteration=meta["iteration"],
                params=[data[f"param_{k}"] for k in range(n_params)],
                best_params=[data[f"best_{k}"] for k in range(n_params)],
                best_epoch=meta["best_epoch"],
                best_val_loss=meta["best_val_loss"],
                epochs_without_improvement=meta["epochs_without_improvement"],
                velocity=[data[f"velocity_{k}"] for k in range(meta["n_velocity"])],
                rng_state=meta["rng_state"],
                losses=data["losses"],
                epochs=[EpochRecord.from_dict(e) for e in meta["epochs"]],
                elapsed_seconds=meta["elapsed_seconds"],
                initial_loss=meta["initial_loss"],
            )
