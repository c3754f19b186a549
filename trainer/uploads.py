"""Uploaded datasets: an .npz of x, t (and x_test, t_test) checked and made a Dataset."""

from __future__ import annotations

import os
import zipfile
import zlib
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from trainer.datasets import Dataset
from trainer.errors import DatasetError

MAX_CLASSES = 1000  # an uploaded label of 10**9 must not become a 10**9-wide output layer

_NPZ_ARRAYS = ("x", "t", "x_test", "t_test")


def load_npz(source: str | os.PathLike[str] | BinaryIO, name: str = "upload") -> Dataset:
    """A Dataset from an .npz with arrays x (n, f), t (n,) and optionally x_test, t_test.

    Raises DatasetError saying exactly what is wrong: not an .npz, a missing or unexpected
    array, a wrong shape or dtype, mismatched lengths, NaN or infinity, a label that is
    negative or not an integer, fewer than 2 samples or 2 classes.
    """
    arrays = _read_npz(source)
    x, t = _features(arrays["x"], "x"), _labels(arrays["t"], "t")
    if len(t) != len(x):
        raise DatasetError(f"t has {len(t)} labels but x has {len(x)} rows")
    if len(x) < 2:
        raise DatasetError(f"x has {len(x)} rows; need at least 2 samples")
    if ("x_test" in arrays) != ("t_test" in arrays):
        given, absent = ("x_test", "t_test") if "x_test" in arrays else ("t_test", "x_test")
        raise DatasetError(f"{given} is given without {absent}: give both or neither")
    x_test = t_test = None
    if "x_test" in arrays:
        x_test, t_test = _features(arrays["x_test"], "x_test"), _labels(arrays["t_test"], "t_test")
        if len(t_test) != len(x_test):
            raise DatasetError(f"t_test has {len(t_test)} labels but x_test has {len(x_test)} rows")
        if len(x_test) == 0:
            raise DatasetError("x_test has 0 rows; leave x_test and t_test out instead")
        if x_test.shape[1] != x.shape[1]:
            raise DatasetError(
                f"x_test has {x_test.shape[1]} features but x has {x.shape[1]}"
            )
    distinct = np.unique(t)
    if len(distinct) < 2:
        raise DatasetError(f"t has only one distinct label ({distinct[0]}); need 2 classes")
    n_classes = int(max(t.max(), t_test.max() if t_test is not None else 0)) + 1
    return Dataset(name, x, t, n_classes, x_test, t_test)


def _read_npz(source: str | os.PathLike[str] | BinaryIO) -> dict[str, np.ndarray]:
    where = f"{os.fspath(source)}: " if isinstance(source, str | os.PathLike) else ""
    try:
        if isinstance(source, str | os.PathLike):
            with open(source, "rb") as stream:
                head = stream.read(4)
        else:
            position = source.tell()
            head = source.read(4)
            source.seek(position)
        if not head.startswith(b"PK"):
            raise DatasetError(f"{where}not an .npz archive (a zip of .npy arrays)")
        with np.load(source, allow_pickle=False) as archive:
            found = list(archive.files)
            unexpected = [key for key in found if key not in _NPZ_ARRAYS]
            if unexpected or not {"x", "t"} <= set(found):
                raise DatasetError(
                    f"{where}the .npz must hold arrays x and t, optionally x_test and t_test; "
                    f"found {', '.join(found) or 'none'}"
                )
            return {key: archive[key] for key in found}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DatasetError(f"{where}cannot read the .npz archive: {exc}") from exc


def _features(array: np.ndarray, key: str) -> np.ndarray:
    if array.ndim != 2:
        raise DatasetError(f"{key} must be 2-D (samples x features), got shape {array.shape}")
    if array.dtype.kind not in "iuf":
        raise DatasetError(f"{key} must be numeric (integer or float), got dtype {array.dtype}")
    if array.shape[1] == 0:
        raise DatasetError(f"{key} has no features (shape {array.shape})")
    _first_bad_row(~np.isfinite(array).all(axis=1), f"{key} contains NaN or infinity")
    with np.errstate(over="ignore"):
        converted = np.ascontiguousarray(array, dtype=np.float32)
    _first_bad_row(~np.isfinite(converted).all(axis=1), f"{key} has a value beyond float32")
    return converted


def _labels(array: np.ndarray, key: str) -> np.ndarray:
    if array.ndim != 1:
        raise DatasetError(f"{key} must be 1-D (one label per sample), got shape {array.shape}")
    if array.dtype.kind == "f":
        _first_bad_row(
            ~np.isfinite(array) | (array != np.round(array)),
            f"{key} must hold integer labels", array,
        )
    elif array.dtype.kind not in "iu":
        raise DatasetError(f"{key} must hold integer labels, got dtype {array.dtype}")
    _first_bad_row(array < 0, f"{key} has a negative label", array)
    _first_bad_row(array >= MAX_CLASSES, f"{key} has a label >= {MAX_CLASSES}", array)
    return array.astype(np.int64)


def _first_bad_row(bad: npt.ArrayLike, message: str, values: np.ndarray | None = None) -> None:
    """Raise `message` naming the first index where `bad` is true (and its value, if given)."""
    bad = np.asarray(bad)
    if bad.any():
        index = int(np.argmax(bad))
        if values is None:
            raise DatasetError(f"{message} at row {index}")
        raise DatasetError(f"{message}: {values[index].item()!r} at index {index}")
