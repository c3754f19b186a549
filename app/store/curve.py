"""Pure helpers for loss curves: float32 bytes in and out, and even downsampling."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

FLOAT32 = np.dtype("<f4")
BYTES_PER_POINT = FLOAT32.itemsize


def losses_to_bytes(losses: Any) -> bytes:
    """A 1-D array of losses as float32 little-endian bytes (4 per iteration)."""
    array = np.asarray(losses, dtype=FLOAT32)
    if array.ndim != 1:
        raise ValueError(f"losses must be a 1-D array, got shape {array.shape}")
    return array.tobytes()


def bytes_to_losses(data: bytes) -> np.ndarray:
    """float32 little-endian bytes back to a 1-D float32 array (a trailing partial is dropped)."""
    whole = len(data) - len(data) % BYTES_PER_POINT
    return np.frombuffer(data[:whole], dtype=FLOAT32)


def downsample_indices(n: int, max_points: int) -> np.ndarray:
    """At most `max_points` evenly spread indices into range(n), always keeping the last.

    Deterministic integer arithmetic: with two or more points the first index is 0, the
    last is n - 1, and the indices are strictly increasing; one point keeps only n - 1.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    if max_points == 1:
        return np.array([n - 1], dtype=np.int64)
    steps = np.arange(max_points, dtype=np.int64)
    return steps * (n - 1) // (max_points - 1)


def finite_or_none(values: np.ndarray) -> list[float | None]:
    """float32 values widened to Python floats; NaN and infinities become None (JSON null)."""
    widened = values.astype(np.float64)
    finite = np.isfinite(widened)
    as_list: list[float | None] = widened.tolist()
    if not finite.all():
        for i in np.flatnonzero(~finite):
            as_list[int(i)] = None
    return as_list


def curve_arrays(
    data: bytes, since: int, max_points: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """(iterations, losses widened to float64, next) for the bytes that hold iterations
    since+1, since+2, ...: arrays, for orjson to write without Python lists (its NaN and
    infinities come out as null, as finite_or_none makes them)."""
    losses = bytes_to_losses(data)
    picked = downsample_indices(len(losses), max_points)
    iterations = picked + (since + 1)
    following = int(iterations[-1]) if len(iterations) else since
    return iterations, losses[picked].astype(np.float64), following


def curve_slice(
    data: bytes, since: int, max_points: int
) -> tuple[list[int], list[float | None], int]:
    """As curve_arrays, as Python lists (non-finite losses as None)."""
    iterations, losses, following = curve_arrays(data, since, max_points)
    return iterations.tolist(), finite_or_none(losses), following


def check_curve_query(since: int, max_points: int) -> None:
    if since < 0:
        raise ValueError(f"since must be >= 0, got {since}")
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")


def curve_document(
    found: list[Any], since: int, max_points: int, arrays: bool = False
) -> dict[str, Any]:
    """The Curve answer from lua.READ_CURVE's {status, length, losses after since, rows};
    with `arrays`, iterations and losses are NumPy arrays (for orjson), else lists."""
    status, length, data, rows = found
    total = int(length) // BYTES_PER_POINT
    slicer = curve_arrays if arrays else curve_slice
    iterations, losses, following = slicer(data, min(since, total), max_points)
    # Rows follow the cursor too: a poll gets only the epochs that ended after `since`.
    epochs = [row for row in map(orjson.loads, rows) if int(row["iteration"]) > since]
    return {
        "iterations": iterations,
        "loss": losses,
        "next": following,
        "total": total,
        "epochs": sorted(epochs, key=lambda row: int(row["epoch"])),
        "status": status.decode() if isinstance(status, bytes) else status,
    }


def dumps(value: Any) -> bytes:
    """JSON bytes of an answer that may hold NumPy arrays (non-finite floats as null)."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float replaced by None, so strict JSON can encode it."""
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value
