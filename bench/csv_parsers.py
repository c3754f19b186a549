"""Which CSV reader for uploads (issue 11): the standard library's `csv`, NumPy's `loadtxt`
and `pyarrow.csv`, side by side in one run, on a 60,000 x 785 CSV shaped like
Fashion-MNIST (784 pixel columns of 0-255, mostly zeros, then a label), from memory.

    python bench/csv_parsers.py [--rows 60000] [--repeat 3]

Each reader must give the same (rows, 784) float32 features and (rows,) labels; the median
of `--repeat` runs is reported in MB/s and as a ratio to the fastest, with the peak memory
each one allocated on top of the input (tracemalloc sees NumPy's buffers, not pyarrow's
own memory pool). The last row is the reader the API uses, with its checks, on a file.
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

COLUMNS = 785


def make_csv(rows: int, seed: int = 0) -> bytes:
    """Pixels like Fashion-MNIST's: half zeros, the rest 1-255; a header row."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(1, 256, size=(rows, COLUMNS - 1))
    pixels[rng.random(size=pixels.shape) < 0.5] = 0
    labels = rng.integers(0, 10, size=rows)
    table = np.column_stack([pixels, labels])
    header = ",".join([*(f"pixel{i}" for i in range(COLUMNS - 1)), "label"])
    out = io.StringIO()
    out.write(header + "\n")
    np.savetxt(out, table, fmt="%d", delimiter=",")
    return out.getvalue().encode()


def with_csv_module(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    reader = csv.reader(io.StringIO(data.decode()))
    next(reader)
    rows = [[float(v) for v in line] for line in reader]
    table = np.asarray(rows, dtype=np.float32)
    return table[:, :-1], table[:, -1].astype(np.int64)


def with_numpy(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    table = np.loadtxt(io.BytesIO(data), delimiter=",", skiprows=1, dtype=np.float32)
    return table[:, :-1], table[:, -1].astype(np.int64)


def with_pyarrow(data: bytes, threads: bool) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(pa.BufferReader(data), read_options=pacsv.ReadOptions(
        use_threads=threads, block_size=8 << 20))
    features = np.column_stack([table.column(i).to_numpy() for i in range(COLUMNS - 1)])
    return features.astype(np.float32), table.column(COLUMNS - 1).to_numpy().astype(np.int64)


def with_descent(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """What POST /v1/datasets runs on the spooled file: app.csv_upload.read_csv (pyarrow,
    threads, float32 feature columns) with every check, labels as class indices."""
    import tempfile

    from app.csv_upload import read_csv

    with tempfile.NamedTemporaryFile(suffix=".csv") as spooled:
        spooled.write(data)
        spooled.flush()
        upload = read_csv(spooled.name)
    classes = np.asarray(upload.classes)
    return upload.x, classes[upload.t].astype(np.int64)


def measure(parse: Callable[[bytes], tuple[np.ndarray, np.ndarray]], data: bytes,
            repeat: int) -> tuple[float, float, tuple[np.ndarray, np.ndarray]]:
    seconds = []
    peak = 0
    result: tuple[np.ndarray, np.ndarray] | None = None
    for attempt in range(repeat):
        if attempt == 0:
            tracemalloc.start()
        started = time.perf_counter()
        result = parse(data)
        seconds.append(time.perf_counter() - started)
        if attempt == 0:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    assert result is not None
    return statistics.median(seconds), peak / 2**20, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = make_csv(args.rows)
    megabytes = len(data) / 1e6
    print(f"{args.rows:,} x {COLUMNS} CSV, {megabytes:,.1f} MB, median of {args.repeat}")
    readers: dict[str, Callable[[bytes], tuple[np.ndarray, np.ndarray]]] = {
        "csv (standard library)": with_csv_module,
        "numpy.loadtxt": with_numpy,
    }
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        print("pyarrow is not installed: its rows are left out")
    else:
        readers["pyarrow.csv, 1 thread"] = lambda d: with_pyarrow(d, False)
        readers["pyarrow.csv, threads"] = lambda d: with_pyarrow(d, True)
        readers["Descent's reader (pyarrow, float32 columns, checks; from a file)"] = (
            with_descent)
    results = {}
    reference: tuple[np.ndarray, np.ndarray] | None = None
    for name, parse in readers.items():
        seconds, peak, (x, t) = measure(parse, data, args.repeat)
        if reference is None:
            reference = (x, t)
        assert x.shape == (args.rows, COLUMNS - 1) and np.array_equal(x, reference[0])
        assert np.array_equal(t, reference[1]), name
        results[name] = (seconds, peak)
    fastest = min(seconds for seconds, _ in results.values())
    width = max(map(len, results))
    print(f"{'reader':<{width}}  {'seconds':>8}  {'MB/s':>7}  {'x fastest':>9}  "
          f"{'peak MiB (Python)':>17}")
    for name, (seconds, peak) in results.items():
        print(f"{name:<{width}}  {seconds:8.2f}  {megabytes / seconds:7.1f}  "
              f"{seconds / fastest:9.1f}  {peak:17.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
