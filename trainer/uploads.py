"""Uploaded datasets: an .npz checked, any upload's tables checked, and the stored form.

An upload becomes an `Upload` (raw float32 features, labels as indices into `classes`),
then `to_bytes` writes it in a fixed layout that the same content always gives byte for byte
(so it can be addressed by its SHA-256), and `from_bytes` makes a Dataset of it without a
copy. The CSV reader lives in app.csv_upload (it needs pyarrow; the trainer needs NumPy).
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import IO, Any, BinaryIO

import numpy as np
import numpy.typing as npt

from trainer.datasets import Dataset
from trainer.errors import DatasetError
from trainer.preprocess import PREPROCESSING
from trainer.splits import DEFAULT_TEST_FRACTION, held_out_test_size

MAX_CLASSES = 1000  # an uploaded label of 10**9 must not become a 10**9-wide output layer
MAX_FEATURES = 100_000
MIN_PER_CLASS = 2  # with a test set held out, a class needs a row for training and for test
MAGIC = b"DESCENT-DATASET/1\n"
_NPZ_ARRAYS = ("x", "t", "x_test", "t_test")
Source = str | os.PathLike[str] | BinaryIO


class UploadTooLarge(DatasetError):
    """An upload whose arrays would take more than allowed (an .npz that expands)."""

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


@dataclass(frozen=True)
class Upload:
    """An upload's rows: x (n, f) float32 raw features, t (n,) int64 indices into `classes`
    (the original labels, sorted), and its own test split when the file had one."""

    x: np.ndarray
    t: np.ndarray
    classes: list[Any]
    x_test: np.ndarray | None = None
    t_test: np.ndarray | None = None
    columns: list[str] | None = None  # the CSV's feature columns, in order
    label_column: str | None = None

    @property
    def n_features(self) -> int:
        return int(self.x.shape[1])


def check_upload(upload: Upload, test_fraction: float | None) -> float:
    """Refuse what a job could not train on: fewer than two classes, or (when the test
    set is held out of the rows) a class too small to be in both the training and the test
    rows. Returns the test fraction in effect (DEFAULT_TEST_FRACTION when not given; None
    when the file has its own test split)."""
    counts = np.bincount(upload.t, minlength=len(upload.classes))
    if len(upload.classes) < 2 or np.count_nonzero(counts) < 2:
        only = upload.classes[int(np.argmax(counts))] if len(upload.classes) else None
        raise DatasetError(f"the labels have only one class ({only!r}); need at least 2")
    if upload.x_test is not None:
        if test_fraction is not None:
            raise DatasetError("test_fraction is for a file without a test split; this one "
                               "has x_test and t_test")
        return DEFAULT_TEST_FRACTION
    fraction = DEFAULT_TEST_FRACTION if test_fraction is None else test_fraction
    if not 0 < fraction < 1:
        raise DatasetError(f"test_fraction must be > 0 and < 1, got {fraction!r}")
    small = np.flatnonzero(counts < MIN_PER_CLASS)
    if len(small):
        label = upload.classes[int(small[0])]
        raise DatasetError(
            f"class {label!r} has {int(counts[small[0]])} row; each class needs at least "
            f"{MIN_PER_CLASS} so that the test set held out of the rows can have it too"
        )
    return fraction


def labels_to_classes(labels: np.ndarray, where: str) -> tuple[np.ndarray, list[Any]]:
    """(indices, classes): the distinct labels sorted, each label as its index there."""
    classes, t = np.unique(labels, return_inverse=True)
    if len(classes) > MAX_CLASSES:
        raise DatasetError(
            f"{where} has {len(classes):,} distinct labels; at most {MAX_CLASSES} classes "
            "(is it the label column?)"
        )
    return t.astype(np.int64).reshape(-1), [item.item() for item in classes]


# --- .npz ----------------------------------------------------------------------------------


def read_npz(source: Source, max_bytes: int | None = None) -> Upload:
    """An Upload from an .npz with arrays x (n, f), t (n,) and optionally x_test, t_test.

    Pickled (object) arrays are refused before anything is loaded, as are arrays that would
    expand beyond `max_bytes` (UploadTooLarge). Labels are integers 0..999 or strings.
    Raises DatasetError saying what is wrong and where (array, row, column).
    """
    arrays = _read_npz(source, max_bytes)
    x, t = _features(arrays["x"], "x"), _labels(arrays["t"], "t")
    if len(t) != len(x):
        raise DatasetError(f"t has {len(t)} labels but x has {len(x)} rows")
    if len(x) < 2:
        raise DatasetError(f"x has {len(x)} rows; need at least 2 samples")
    if ("x_test" in arrays) != ("t_test" in arrays):
        given, absent = ("x_test", "t_test") if "x_test" in arrays else ("t_test", "x_test")
        raise DatasetError(f"{given} is given without {absent}: give both or neither")
    if "x_test" not in arrays:
        indices, classes = labels_to_classes(t, "t")
        return Upload(x, indices, classes)
    x_test, t_test = _features(arrays["x_test"], "x_test"), _labels(arrays["t_test"], "t_test")
    if len(t_test) != len(x_test):
        raise DatasetError(f"t_test has {len(t_test)} labels but x_test has {len(x_test)} rows")
    if len(x_test) == 0:
        raise DatasetError("x_test has 0 rows; leave x_test and t_test out instead")
    if x_test.shape[1] != x.shape[1]:
        raise DatasetError(f"x_test has {x_test.shape[1]} features but x has {x.shape[1]}")
    if t.dtype.kind != t_test.dtype.kind:
        raise DatasetError(f"t holds {_kind(t)} labels but t_test {_kind(t_test)} ones")
    indices, classes = labels_to_classes(t, "t")
    unseen = ~np.isin(t_test, t)
    if unseen.any():
        index = int(np.argmax(unseen))
        raise DatasetError(
            f"t_test has the label {t_test[index].item()!r} at index {index}, which t never "
            "has: labels out of range of what the model learns"
        )
    test_indices = np.searchsorted(np.asarray(classes, dtype=t.dtype), t_test).astype(np.int64)
    return Upload(x, indices, classes, x_test, test_indices)


def _kind(labels: np.ndarray) -> str:
    return "string" if labels.dtype.kind == "U" else "integer"


def _read_npz(source: Source, max_bytes: int | None) -> dict[str, np.ndarray]:
    where = f"{os.fspath(source)}: " if isinstance(source, str | os.PathLike) else ""
    try:
        with zipfile.ZipFile(source) as archive:
            names = archive.namelist()
            found = [name.removesuffix(".npy") for name in names]
            odd = any(not name.endswith(".npy") for name in names)
            if odd or not set(found) <= set(_NPZ_ARRAYS) or not {"x", "t"} <= set(found):
                raise DatasetError(
                    f"{where}the .npz must hold arrays x and t, optionally x_test and t_test; "
                    f"found {', '.join(found) or 'none'}"
                )
            total = 0
            for key in found:
                with archive.open(f"{key}.npy") as member:
                    shape, dtype = _npy_header(member, key)
                total += int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if max_bytes is not None and total > max_bytes:
                raise UploadTooLarge(
                    f"{where}the .npz's arrays take {total:,} bytes once loaded, over the "
                    f"limit of {max_bytes:,}", total)
        if not isinstance(source, str | os.PathLike):
            source.seek(0)
        with np.load(source, allow_pickle=False) as loaded:
            return {key: loaded[key] for key in found}
    except zipfile.BadZipFile as exc:
        raise DatasetError(
            f"{where}not a readable .npz archive (a zip of .npy arrays): {exc}") from None
    except (OSError, ValueError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{where}cannot read the .npz archive: {exc}") from exc


def _npy_header(member: IO[bytes], key: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype of one .npy member, read from its header alone."""
    version = np.lib.format.read_magic(member)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, _, dtype = read_header(member)
    if dtype.hasobject:
        raise DatasetError(
            f"array {key} holds Python objects (dtype {dtype}), which load only by unpickling; "
            "save numeric arrays (and string labels as a fixed-width string array)"
        )
    return shape, dtype


def _features(array: np.ndarray, key: str) -> np.ndarray:
    if array.ndim != 2:
        raise DatasetError(f"{key} must be 2-D (samples x features), got shape {array.shape}")
    if array.dtype.kind not in "iuf":
        raise DatasetError(f"{key} must be numeric (integer or float), got dtype {array.dtype}")
    if array.shape[1] == 0:
        raise DatasetError(f"{key} has no features (shape {array.shape})")
    if array.shape[1] > MAX_FEATURES:
        raise DatasetError(f"{key} has {array.shape[1]:,} features; at most {MAX_FEATURES:,}")
    _first_bad_cell(~np.isfinite(array), f"{key} holds NaN or infinity", array)
    with np.errstate(over="ignore"):
        converted = np.ascontiguousarray(array, dtype=np.float32)
    _first_bad_cell(~np.isfinite(converted), f"{key} has a value beyond float32", array)
    return converted


def _labels(array: np.ndarray, key: str) -> np.ndarray:
    if array.ndim != 1:
        raise DatasetError(f"{key} must be 1-D (one label per sample), got shape {array.shape}")
    if array.dtype.kind == "U":
        return array
    if array.dtype.kind == "f":
        _first_bad_row(
            ~np.isfinite(array) | (array != np.round(array)),
            f"{key} must hold integer labels (or strings)", array,
        )
    elif array.dtype.kind not in "iu":
        raise DatasetError(f"{key} must hold integer or string labels, got dtype {array.dtype}")
    _first_bad_row(array < 0, f"{key} has a label out of range 0..{MAX_CLASSES - 1}", array)
    _first_bad_row(array >= MAX_CLASSES,
                   f"{key} has a label out of range 0..{MAX_CLASSES - 1}", array)
    return array.astype(np.int64)


def _first_bad_row(bad: npt.ArrayLike, message: str, values: np.ndarray) -> None:
    """Raise `message` naming the first index where `bad` is true, and its value."""
    bad = np.asarray(bad)
    if bad.any():
        index = int(np.argmax(bad))
        raise DatasetError(f"{message}: {values[index].item()!r} at index {index}")


def _first_bad_cell(bad: np.ndarray, message: str, values: np.ndarray) -> None:
    """Raise `message` naming the first (row, column) where `bad` is true, and its value."""
    rows = bad.any(axis=1)
    if rows.any():
        row = int(np.argmax(rows))
        column = int(np.argmax(bad[row]))
        raise DatasetError(
            f"{message}: {values[row, column].item()!r} at row {row}, column {column}"
        )


# --- the stored form -------------------------------------------------------------------


def to_bytes(upload: Upload, *, preprocess: str, test_fraction: float) -> bytearray:
    """The upload as stored: MAGIC, the meta's length (8 bytes, little-endian), the meta
    (JSON with sorted keys), then the arrays t, (t_test,) x, (x_test) raw and little-endian,
    each starting at a multiple of 8 bytes. The same upload and options give the same
    bytes."""
    if preprocess not in PREPROCESSING:
        raise DatasetError(f"preprocess must be one of {', '.join(PREPROCESSING)}, "
                           f"got {preprocess!r}")
    arrays = {"x": upload.x, "t": upload.t}
    if upload.x_test is not None and upload.t_test is not None:
        arrays |= {"x_test": upload.x_test, "t_test": upload.t_test}
    dtypes = {"x": "<f4", "t": "<i8", "x_test": "<f4", "t_test": "<i8"}
    meta = {
        "arrays": {key: [list(a.shape), dtypes[key]] for key, a in arrays.items()},
        "classes": upload.classes, "columns": upload.columns,
        "label_column": upload.label_column, "preprocess": preprocess,
        "test_fraction": test_fraction,
    }
    head = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
    offsets, end = {}, len(MAGIC) + 8 + len(head)
    for key in sorted(arrays):  # the meta's order (its keys are sorted)
        offsets[key] = end + (-end % 8)
        end = offsets[key] + arrays[key].size * np.dtype(dtypes[key]).itemsize
    out = bytearray(end)  # zeros: the padding; each array is copied in once
    out[: len(MAGIC) + 8 + len(head)] = MAGIC + struct.pack("<Q", len(head)) + head
    for key, array in arrays.items():
        view = np.frombuffer(out, dtype=dtypes[key], count=array.size, offset=offsets[key])
        view.reshape(array.shape)[...] = array
    return out


def read_meta(blob: bytes | bytearray | memoryview) -> tuple[dict[str, Any], int]:
    """The stored form's meta and where its arrays begin."""
    view = memoryview(blob)
    if bytes(view[: len(MAGIC)]) != MAGIC:
        raise DatasetError("not a stored Descent dataset")
    (size,) = struct.unpack_from("<Q", view, len(MAGIC))
    start = len(MAGIC) + 8
    return json.loads(bytes(view[start : start + size])), start + size


def from_bytes(blob: bytes | bytearray | memoryview, name: str) -> Dataset:
    """The Dataset that `to_bytes` stored: its arrays are read-only views of `blob`."""
    meta, offset = read_meta(blob)
    arrays: dict[str, np.ndarray] = {}
    for key, (shape, dtype) in sorted(meta["arrays"].items()):
        offset += -offset % 8
        count = int(np.prod(shape, dtype=np.int64))
        arrays[key] = np.frombuffer(blob, dtype=dtype, count=count, offset=offset).reshape(shape)
        arrays[key].flags.writeable = False  # shared by every job of the process
        offset += arrays[key].nbytes
    return Dataset(
        name, arrays["x"], arrays["t"], len(meta["classes"]), arrays.get("x_test"),
        arrays.get("t_test"), classes=tuple(meta["classes"]), preprocess=meta["preprocess"],
        test_fraction=meta["test_fraction"],
    )


def sizes(upload: Upload, test_fraction: float) -> tuple[int, int]:
    """(n_train, n_test) of a job's data: the file's own test split, or the held-out rows."""
    if upload.x_test is not None:
        return len(upload.x), len(upload.x_test)
    n_test = held_out_test_size(len(upload.x), test_fraction)
    return len(upload.x) - n_test, n_test
