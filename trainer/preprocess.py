"""Preprocessing of raw features: none, or standardisation with the training rows' statistics."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer.errors import DatasetError

Array = np.ndarray
PREPROCESSING = ("none", "standardize")
NO_PREPROCESSING: dict[str, Any] = {"kind": "none"}
PIECE_ROWS = 4096  # rows at a time: no float64 copy of a whole dataset


@dataclass(frozen=True)
class Standardize:
    """x -> (x - mean) / scale, per feature; scale is the standard deviation, or 1 for a
    feature that is constant over the rows it was fitted on."""

    mean: Array  # (n_features,) float64
    scale: Array

    @classmethod
    def fit(cls, x: Array, rows: Array, check_stop: Callable[[], None] | None = None
            ) -> Standardize:
        """The statistics of x[rows] alone (a job's training rows: never validation or
        test rows), summed in float64 piece by piece (two passes, so no cancellation)."""
        n = len(rows)
        if n == 0:
            raise DatasetError("cannot standardize: there are no training rows")
        total = np.zeros(x.shape[1])
        for piece in _pieces(x, rows, check_stop):
            total += piece.sum(axis=0)
        mean = total / n
        squares = np.zeros(x.shape[1])
        for piece in _pieces(x, rows, check_stop):
            squares += np.square(piece - mean).sum(axis=0)
        std = np.sqrt(squares / n)
        return cls(mean, np.where(std > 0, std, 1.0))

    def apply(self, x: Array, dtype: np.dtype | type = np.float64, rows: Array | None = None
              ) -> Array:
        """A new array of `dtype`: the rows of x (or x[rows]) standardized, in float64."""
        n = len(x) if rows is None else len(rows)
        out = np.empty((n, x.shape[1]), dtype=dtype)
        for start in range(0, n, PIECE_ROWS):
            stop = min(start + PIECE_ROWS, n)
            piece = x[start:stop] if rows is None else x[rows[start:stop]]
            out[start:stop] = (piece.astype(np.float64) - self.mean) / self.scale
        return out

    def to_meta(self) -> dict[str, Any]:
        return {"kind": "standardize", "mean": self.mean.tolist(), "scale": self.scale.tolist()}


def from_meta(meta: dict[str, Any] | None) -> Standardize | None:
    """The preprocessing a model's meta names (None: the raw features as they are)."""
    if not meta or meta.get("kind", "none") == "none":
        return None
    if meta["kind"] != "standardize":
        raise ValueError(f"unknown preprocessing {meta['kind']!r}")
    return Standardize(np.asarray(meta["mean"], dtype=np.float64),
                       np.asarray(meta["scale"], dtype=np.float64))


def raw_features(x: Array, meta: dict[str, Any] | None) -> Array:
    """Raw features as the model saw them in training: stored as float32 first (as an
    upload's are), then the model's preprocessing; float64."""
    stored = np.asarray(x, dtype=np.float32)
    how = from_meta(meta)
    return stored.astype(np.float64) if how is None else how.apply(stored)


def _pieces(x: Array, rows: Array, check_stop: Callable[[], None] | None) -> Iterator[Array]:
    for start in range(0, len(rows), PIECE_ROWS):
        if check_stop is not None:
            check_stop()
        yield x[rows[start : start + PIECE_ROWS]].astype(np.float64)
