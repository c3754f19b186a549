"""Reader of the IDX format (MNIST's files): unsigned-byte tensors, gzip-compressed or raw."""

from __future__ import annotations

import gzip
import io
import math
import os
import zlib
from pathlib import Path

import numpy as np

from trainer.errors import DatasetError

UBYTE = 0x08
IMAGES_MAGIC = 0x00000803  # ubyte, 3 dimensions: (n, rows, cols)
LABELS_MAGIC = 0x00000801  # ubyte, 1 dimension: (n,)

# The type codes the format defines; only ubyte is read, the others are named in errors.
_TYPE_NAMES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "short",
    0x0C: "int",
    0x0D: "float",
    0x0E: "double",
}
# Corrupt, truncated and non-gzip input surface as any of these from gzip / zlib.
_READ_ERRORS = (OSError, EOFError, zlib.error)


def read_idx(path: str | os.PathLike[str], ndim: int) -> np.ndarray:
    """Read a whole IDX file of unsigned bytes with `ndim` dimensions.

    Returns a read-only uint8 array of the shape the header declares, viewing the
    decompressed bytes (no copy). Raises DatasetError naming the file and the problem:
    not gzip, truncated, wrong magic number, a zero dimension, or a payload that is
    not exactly the size the header declares.
    """
    path = Path(path)
    data = _read_all(path)
    shape = _parse_header(path, data, ndim)
    offset = _header_size(ndim)
    expected = math.prod(shape)
    actual = len(data) - offset
    if actual < expected:
        raise DatasetError(
            f"{path}: truncated payload: {actual} bytes after the header, "
            f"expected {expected} for shape {_shape_text(shape)}"
        )
    if actual > expected:
        raise DatasetError(
            f"{path}: wrong payload length: {actual} bytes after the header, "
            f"expected exactly {expected} for shape {_shape_text(shape)} "
            f"({actual - expected} trailing bytes)"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def read_idx_header(path: str | os.PathLike[str], ndim: int | None = None) -> tuple[int, ...]:
    """The shape an IDX file declares, reading (and decompressing) only its header.

    `ndim`, when given, is the number of dimensions the file must have. The payload
    is not checked: `read_idx` does that.
    """
    path = Path(path)
    try:
        with _open(path) as stream:
            head = stream.read(4)
            if len(head) == 4:
                head += stream.read(4 * head[3])
    except _READ_ERRORS as exc:
        raise DatasetError(f"{path}: cannot read the IDX header: {_reason(exc)}") from exc
    return _parse_header(path, head, ndim)


def _open(path: Path) -> io.BufferedIOBase:
    if path.suffix == ".gz":
        return gzip.GzipFile(path, "rb")
    return open(path, "rb")  # noqa: SIM115 - the caller closes it in a with-statement


def _read_all(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        # gzip.decompress on the whole buffer is faster than streaming through GzipFile.
        return gzip.decompress(raw) if path.suffix == ".gz" else raw
    except _READ_ERRORS as exc:
        raise DatasetError(f"{path}: cannot read the IDX file: {_reason(exc)}") from exc


def _parse_header(path: Path, data: bytes, ndim: int | None) -> tuple[int, ...]:
    if len(data) < 4:
        raise DatasetError(
            f"{path}: truncated header: {len(data)} bytes, the magic number needs 4"
        )
    magic = int.from_bytes(data[:4], "big")
    zeros, type_code, dims = data[0:2], data[2], data[3]
    expected_magic = f" (expected 0x{(UBYTE << 8) | ndim:08x})" if ndim is not None else ""
    if zeros != b"\x00\x00":
        raise DatasetError(
            f"{path}: bad magic number 0x{magic:08x}{expected_magic}: not an IDX file"
        )
    if type_code != UBYTE:
        type_name = _TYPE_NAMES.get(type_code, "unknown")
        raise DatasetError(
            f"{path}: bad magic number 0x{magic:08x}{expected_magic}: data type byte "
            f"0x{type_code:02x} ({type_name}) is not supported, expected 0x08 (unsigned byte)"
        )
    if ndim is not None and dims != ndim:
        raise DatasetError(
            f"{path}: bad magic number 0x{magic:08x}{expected_magic}: "
            f"{dims} dimensions, expected {ndim}"
        )
    if dims == 0:
        raise DatasetError(f"{path}: bad magic number 0x{magic:08x}: 0 dimensions")
    size = _header_size(dims)
    if len(data) < size:
        raise DatasetError(
            f"{path}: truncated header: {len(data)} bytes, {dims} dimensions need {size}"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    for axis, extent in enumerate(shape):
        if extent == 0:
            raise DatasetError(f"{path}: dimension {axis} has size 0 (shape {_shape_text(shape)})")
    return shape


def _header_size(ndim: int) -> int:
    return 4 + 4 * ndim


def _shape_text(shape: tuple[int, ...]) -> str:
    return " x ".join(str(extent) for extent in shape)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return f"truncated compressed data ({exc})"
    if isinstance(exc, gzip.BadGzipFile):
        return f"not a valid gzip file ({exc})"
    return str(exc) or type(exc).__name__
