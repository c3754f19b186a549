"""A run's state at an epoch end and its portable byte form (npz + JSON); the epoch row."""

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


FORMAT = "descent-checkpoint/2"  # 1 carried every iteration's loss and every epoch's row


@dataclass
class Checkpoint:
    """What a resumed run needs to continue bitwise identically, and nothing that the curve
    in the job store already holds: its size depends on the network, not on the run's length.
    """

    epoch: int  # epochs completed
    iteration: int  # iterations completed
    params: list[Array]
    velocity: list[Array]  # the optimiser's momentum ([] without momentum)
    rng_state: dict[str, Any]  # the shuffling generator's bit_generator.state
    best_params: list[Array]  # the model chosen so far, of epoch best_epoch
    best_epoch: int
    best_val_loss: float | None  # None without a validation set (the last epoch is chosen)
    epochs_without_improvement: int
    recent_epochs: list[EpochRecord]  # the last few rows: what the end-of-run warnings read
    initial_loss: float  # training loss before the first step: the divergence reference
    elapsed_seconds: float

    def to_bytes(self) -> bytes:
        meta = {
            "format": FORMAT,
            "epoch": self.epoch,
            "iteration": self.iteration,
            "rng_state": self.rng_state,
            "best_epoch": self.best_epoch,
            "best_val_loss": self.best_val_loss,
            "epochs_without_improvement": self.epochs_without_improvement,
            "recent_epochs": [e.to_dict() for e in self.recent_epochs],
            "initial_loss": self.initial_loss,
            "elapsed_seconds": self.elapsed_seconds,
            "n_params": len(self.params),
            "n_velocity": len(self.velocity),
        }
        arrays: dict[str, Array] = {}
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
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
            n_params = meta["n_params"]
            return cls(
                epoch=meta["epoch"],
                iteration=meta["iteration"],
                params=[data[f"param_{k}"] for k in range(n_params)],
                velocity=[data[f"velocity_{k}"] for k in range(meta["n_velocity"])],
                rng_state=meta["rng_state"],
                best_params=[data[f"best_{k}"] for k in range(n_params)],
                best_epoch=meta["best_epoch"],
                best_val_loss=meta["best_val_loss"],
                epochs_without_improvement=meta["epochs_without_improvement"],
                recent_epochs=[EpochRecord.from_dict(e) for e in meta["recent_epochs"]],
                initial_loss=meta["initial_loss"],
                elapsed_seconds=meta["elapsed_seconds"],
            )
