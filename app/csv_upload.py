"""An uploaded CSV read with pyarrow.csv (multithreaded; measured against the standard
library's csv and NumPy in bench/csv_parsers.py), checked, and made a trainer Upload.

The header row names the columns; the label column (by name, default the last) may hold any
strings or numbers; every other column must hold finite numbers. Each refusal says what
and where: line numbers count the header as line 1, columns are named as in the header.
"""

from __future__ import annotations

import csv
import io
import math
import os
from typing import Any, NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from trainer.errors import DatasetError
from trainer.uploads import MAX_FEATURES, Upload, labels_to_classes

BLOCK_BYTES = 4 << 20  # pyarrow's unit of parallel parsing
HEADER_BYTES = 4 << 20  # the most of a header row read to learn the column names


def read_csv(path: str | os.PathLike[str], label_column: str | None = None) -> Upload:
    """The CSV file at `path` as an Upload; DatasetError says what is wrong and where.

    The feature columns are read as float32 straight away (a quarter faster than letting
    pyarrow infer 785 columns' types, and half the memory of its int64); a value that is
    not a number makes that fail without saying where, so the file is then read again with
    inferred types, on that error path only, to name the line and column.
    """
    names = _header(path)
    if len(names) < 2:
        raise DatasetError(
            f"the header names {len(names)} column; need at least one feature column and "
            "the label column (is the file comma-separated?)"
        )
    seen: dict[str, int] = {}
    for number, name in enumerate(names, start=1):
        if name in seen:
            raise DatasetError(f"the header names column {name!r} twice (columns "
                               f"{seen[name]} and {number})")
        seen[name] = number
    label = names[-1] if label_column is None else label_column
    if label not in seen:
        raise DatasetError(f"label_column {label!r} is not in the header; the columns are "
                           f"{_listed(names)}")
    features = [name for name in names if name != label]
    if len(features) > MAX_FEATURES:
        raise DatasetError(f"the file has {len(features):,} feature columns; at most "
                           f"{MAX_FEATURES:,}")
    try:
        table = _read(path, {name: pa.float32() for name in features})
    except _NotNumbers:
        table = _read(path, None)  # to say where
    if table.num_rows < 2:
        raise DatasetError(f"the file has {table.num_rows} data rows; need at least 2")
    x = _features(table, features, seen)
    labels = _label_values(table.column(label), label)
    del table
    t, classes = labels_to_classes(labels, f"label column {label!r}")
    return Upload(x, t, classes, columns=features, label_column=label)


class _NotNumbers(Exception):
    """A column given a number type holds something else (pyarrow does not say where)."""


def _header(path: str | os.PathLike[str]) -> list[str]:
    """The header row's names (a UTF-8 byte order mark is dropped, as pyarrow does)."""
    with open(path, "rb") as stream:
        first = stream.readline(HEADER_BYTES)
    if not first.strip():
        raise DatasetError("the file is empty: a CSV needs a header row and data rows")
    try:
        header = next(csv.reader([first.decode("utf-8-sig")]), None)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"the header is not UTF-8 text (byte {exc.object[exc.start]:#04x} "
                           f"at offset {exc.start}): is the file a CSV?") from None
    except csv.Error as exc:
        raise DatasetError(f"the header is not readable CSV: {exc}") from None
    return header or []


def _read(path: str | os.PathLike[str], types: dict[str, pa.DataType] | None) -> pa.Table:
    ragged: list[Any] = []

    def on_invalid_row(row: Any) -> str:
        ragged.append(row)
        return "error"

    try:
        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid_row),
            convert_options=pacsv.ConvertOptions(
                column_types=types, null_values=[""], strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
    except UnicodeDecodeError as exc:
        raise DatasetError(f"the file is not UTF-8 text (byte {exc.object[exc.start]:#04x}): "
                           "is it a CSV?") from None
    except pa.ArrowException as exc:
        if ragged:
            raise DatasetError(_ragged_line(path)) from None
        if types is not None and "conversion error" in str(exc):
            raise _NotNumbers from None
        raise DatasetError(f"the file is not a readable CSV: {_first_line(str(exc))}") from None


def _features(table: pa.Table, features: list[str], numbers: dict[str, int]) -> np.ndarray:
    """The feature columns as one (rows, features) float32 array, checked: every cell a
    finite number within float32's range, else DatasetError naming the first bad cell.
    The checks are whole-array ones, not a pass per column (785 columns of Python work
    tripled the time of the parse)."""
    x = np.empty((table.num_rows, len(features)), dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        for j, name in enumerate(features):
            column = table.column(name)
            if column.null_count or not (pa.types.is_integer(column.type)
                                         or pa.types.is_floating(column.type)):
                _refuse_column(column, f"column {name!r} (column {numbers[name]})")
            x[:, j] = column.to_numpy()
    bad = ~np.isfinite(x)
    if bad.any():
        rows = bad.any(axis=1)
        row = int(np.argmax(rows))
        j = int(np.argmax(bad[row]))
        value = table.column(features[j])[row].as_py()
        where = f"line {row + 2}, column {features[j]!r} (column {numbers[features[j]]})"
        if math.isfinite(value):
            raise DatasetError(f"{where}: {value!r} is beyond float32's range")
        raise DatasetError(f"{where}: {value} (NaN or infinity); every feature must be a "
                           "finite number")
    return x


def _refuse_column(column: pa.ChunkedArray, where: str) -> NoReturn:
    """Name the first cell of `column` that is empty or not a number."""
    if column.null_count:
        line = _first(np.asarray(column.is_null()))
        raise DatasetError(f"line {line}, {where}: the value is empty; every feature needs "
                           "a number")
    for index, value in enumerate(column.to_pylist()):  # text, bytes (not UTF-8), dates
        try:
            float(value)
        except (TypeError, ValueError):
            shown = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            raise DatasetError(
                f"line {index + 2}, {where}: {str(shown)!r} is not a number"[:300]
            ) from None
    raise DatasetError(f"{where} is not numeric (read as {column.type})")


def _label_values(column: pa.ChunkedArray, name: str) -> np.ndarray:
    if column.null_count:
        line = _first(np.asarray(column.is_null()))
        raise DatasetError(f"line {line}, label column {name!r}: the label is empty")
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        values = column.to_numpy()
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            index = int(np.argmax(~np.isfinite(values)))
            raise DatasetError(f"line {index + 2}, label column {name!r}: {values[index]} is "
                               "not a label")
        return values
    if pa.types.is_binary(column.type):  # not UTF-8 text
        line = _first(np.asarray([not _utf8(v) for v in column.to_pylist()]))
        raise DatasetError(f"line {line}, label column {name!r}: the label is not UTF-8 text")
    return np.asarray(column.cast(pa.string()).to_pylist(), dtype=np.str_)


def _utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _first(mask: np.ndarray) -> int:
    """The line of the first true row (the header is line 1)."""
    return int(np.argmax(mask)) + 2


def _ragged_line(path: str | os.PathLike[str]) -> str:
    """Where the first row with the wrong number of fields is (pyarrow's parallel parser
    does not know the line), found again with the standard library's reader: error path
    only."""
    with open(path, newline="", encoding="utf-8", errors="replace") as stream:
        reader = csv.reader(stream)
        header = next(reader, [])
        for row in reader:
            if len(row) != len(header):
                return (f"line {reader.line_num} has {len(row)} fields but the header has "
                        f"{len(header)}")
    return "a row has a different number of fields than the header"


def _first_line(message: str) -> str:
    return io.StringIO(message).readline().strip()[:300]


def _listed(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:10])
    return shown + (f" and {len(names) - 10} more" if len(names) > 10 else "")
