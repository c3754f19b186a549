"""11. Your data in, your model out: uploads, predictions and the worker's dataset cache,
through the HTTP API.

- upload: POST /v1/datasets (multipart: file, name, preprocess) of a 60,000 x 785 CSV (784
  integer pixel-like features 0-255, about half zeros, then a label of 10 classes given by a
  fixed random linear teacher; NumPy, seed 0, written to a temporary file) and of the same
  data as an uncompressed .npz (np.savez: x float32, t int64), interleaved rounds, each
  upload deleted after (DELETE /v1/datasets/{id}: 204). The time runs from the POST's first
  byte to its 201; MB/s of the file, medians. In the same rounds, in this process: the parse
  alone (app.csv_upload.read_csv, which the API runs: pyarrow.csv, multithreaded;
  trainer.uploads.read_npz), and the parse + check + stored form (to_bytes), the API's whole
  work before Redis: HTTP / parse is what streaming, spooling and storing cost. And the body
  alone: the same POST with a name the form refuses, a 422 once the whole body is streamed
  in, spooled and hashed, before any parse. The rest (each round's HTTP - body - parse and
  stored form) is the blob's SHA-256 and its 8 MiB chunks written to Redis, plus whatever
  the parse costs more in the API than here.
- predict: a job trained on the upload (784-64-10, 1 epoch, batch 100), then POST
  /v1/jobs/{id}/predict with 1, 100 and 10,000 raw rows (each body built once with orjson,
  sent as bytes): p50/p99 and rows/s; the first request of each size is a warm-up, and the
  very first one (the model read into the API's cache) is reported apart.
- cache: a fresh worker process (warmed up with one small spiral job, so that only the
  upload is cold), then two jobs on the upload one after the other: each one's started_at ->
  finished_at, and the worker log's "bytes read from the store" lines of the upload.
  Target: 1 read for the 2 jobs.
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from app.api.predict import ModelCache
from app.csv_upload import read_csv
from bench.service.harness import Plan, Row, Stack
from bench.service.log import log
from bench.service.stats import median, pct, run_seconds
from trainer.uploads import check_upload, read_npz, to_bytes

FEATURES = 784
CLASSES = 10
ROWS, QUICK_ROWS = 60_000, 10_000
ROUNDS, QUICK_ROUNDS = 4, 2
# (rows a request, timed requests); each size's first request comes on top, as a warm-up.
PREDICTS = ((1, 200), (100, 100), (10_000, 20))
QUICK_PREDICTS = ((1, 50), (100, 30), (10_000, 2))
PREPROCESS = "standardize"  # the CSV's default, given to both files: the same stored data
TRAIN = {"hidden_sizes": [64], "epochs": 1, "batch_size": 100, "learning_rate": 0.1}
WARM_UP = {"dataset": "spiral", "hidden_sizes": [16], "epochs": 5, "batch_size": 50}
UPLOAD_TIMEOUT = 600.0
BAD_NAME = "-refused"  # must start with a letter or digit
READ_LINE = re.compile(r"upload (\S+) \(([0-9a-f]{12})\): (\d+) bytes read from the store "
                       r"in ([0-9.]+) s")


# --------------------------------------------------------------------------- the files


def make_files(directory: Path, rows: int, seed: int = 0) -> tuple[Path, Path, np.ndarray,
                                                                   np.ndarray]:
    """The CSV and the .npz of one dataset in `directory`: (csv, npz, pixels, labels)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(1, 256, size=(rows, FEATURES), dtype=np.uint8)
    pixels[rng.random(size=pixels.shape, dtype=np.float32) < 0.5] = 0
    teacher = rng.standard_normal((FEATURES, CLASSES)).astype(np.float32)
    labels = np.argmax((pixels.astype(np.float32) - 127.5) @ teacher, axis=1).astype(np.int64)
    csv_path = directory / f"upload-{rows}.csv"
    text = [str(value).encode() for value in range(256)]
    with csv_path.open("wb") as file:
        file.write(",".join([*(f"pixel{i}" for i in range(FEATURES)), "label"]).encode()
                   + b"\n")
        for row, label in zip(pixels.tolist(), labels.tolist(), strict=True):
            file.write(b",".join([text[value] for value in row]) + b"," + text[label] + b"\n")
    npz_path = directory / f"upload-{rows}.npz"
    np.savez(npz_path, x=pixels.astype(np.float32), t=labels)
    return csv_path, npz_path, pixels, labels


# --------------------------------------------------------------------------- the steps


def _post(stack: Stack, path: Path, name: str) -> tuple[float, Any]:
    """POST the file (streamed from disk by httpx): (seconds to the answer, the answer)."""
    kind = "text/csv" if path.suffix == ".csv" else "application/octet-stream"
    with path.open("rb") as file:
        started = time.perf_counter()
        answer = stack.http.post(
            "/v1/datasets", files={"file": (path.name, file, kind)},
            data={"name": name, "preprocess": PREPROCESS}, timeout=UPLOAD_TIMEOUT)
        return time.perf_counter() - started, answer


def _stream_only(stack: Stack, path: Path) -> float:
    """The body streamed in, spooled and hashed, and nothing more: a name the form refuses
    is found once the whole body is in, and the file is never parsed (a 422)."""
    spent, answer = _post(stack, path, BAD_NAME)
    if answer.status_code != 422 or "name" not in answer.text:
        raise RuntimeError(f"POST /v1/datasets named {BAD_NAME!r} -> {answer.status_code}: "
                           f"{answer.text[:300]}")
    return spent


def _upload(stack: Stack, path: Path, name: str) -> tuple[float, dict[str, Any]]:
    """POST the file: (seconds to the 201, the document)."""
    spent, answer = _post(stack, path, name)
    if answer.status_code != 201:
        raise RuntimeError(f"POST /v1/datasets ({path.name}) -> {answer.status_code}: "
                           f"{answer.text[:500]}")
    document: dict[str, Any] = answer.json()
    return spent, document


def _delete(stack: Stack, dataset_id: str) -> None:
    answer = stack.http.delete(f"/v1/datasets/{dataset_id}")
    if answer.status_code != 204:
        raise RuntimeError(f"DELETE /v1/datasets/{dataset_id} -> {answer.status_code}: "
                           f"{answer.text[:300]}")


def _parse(path: Path) -> tuple[float, float]:
    """In this process: (the parse alone, parse + check + stored form), seconds."""
    started = time.perf_counter()
    upload = read_csv(path) if path.suffix == ".csv" else read_npz(path)
    parsed = time.perf_counter()
    fraction = check_upload(upload, None)
    to_bytes(upload, preprocess=PREPROCESS, test_fraction=fraction)
    return parsed - started, time.perf_counter() - started


def _peak_rss(pid: int | None) -> float:
    """A process's peak resident memory so far (VmHWM), MiB; nan when unknown."""
    if pid is None:
        return float("nan")
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _check_limits(stack: Stack, largest: int) -> None:
    """The files fit DESCENT_MAX_UPLOAD_BYTES and, twice over, the tenant's quota."""
    me = stack.http.get("/v1/me").json()
    quota = int(me["quotas"]["max_dataset_bytes"])
    used = int(me["usage"]["dataset_bytes"])
    if largest > stack.settings.max_upload_bytes:
        raise RuntimeError(f"a {largest:,}-byte file is over DESCENT_MAX_UPLOAD_BYTES "
                           f"({stack.settings.max_upload_bytes:,}): raise it for the run")
    if used + 2 * largest > quota:
        raise RuntimeError(f"two {largest:,}-byte uploads would pass the tenant's "
                           f"max_dataset_bytes ({quota:,}, {used:,} used): raise "
                           "DESCENT_QUOTA_MAX_DATASET_BYTES for the run")


def _uploads(stack: Stack, csv_path: Path, npz_path: Path, rounds: int) -> dict[str, Any]:
    timed: dict[str, list[float]] = {key: [] for key in (
        "csv_http", "npz_http", "csv_parse", "npz_parse", "csv_store", "npz_store",
        "csv_stream", "npz_stream", "csv_rest", "npz_rest")}
    documents: dict[str, dict[str, Any]] = {}
    for number in range(rounds):
        for kind, path in (("csv", csv_path), ("npz", npz_path)):
            spent, document = _upload(stack, path, f"bench-{kind}-{number}")
            _delete(stack, document["id"])
            timed[f"{kind}_http"].append(spent)
            documents[kind] = document
            parse, store = _parse(path)
            timed[f"{kind}_parse"].append(parse)
            timed[f"{kind}_store"].append(store)
            timed[f"{kind}_stream"].append(_stream_only(stack, path))
            timed[f"{kind}_rest"].append(spent - timed[f"{kind}_stream"][-1] - store)
        log(f"uploads round {number + 1}/{rounds}: CSV {timed['csv_http'][-1]:.2f} s "
            f"(parse {timed['csv_parse'][-1]:.2f} s), .npz {timed['npz_http'][-1]:.2f} s "
            f"(parse {timed['npz_parse'][-1]:.2f} s)")
    return {"times": timed, "documents": documents}


def _reads(log_path: Path | None, digest: str) -> list[float]:
    """Seconds of each read of the blob `digest` that the worker's log shows."""
    if log_path is None or not log_path.exists():
        return []
    found = []
    for line in log_path.read_text(errors="replace").splitlines():
        match = READ_LINE.search(line)
        if match and digest.startswith(match.group(2)):
            found.append(float(match.group(4)))
    return found


def _cache(stack: Stack, name: str, digest: str) -> dict[str, Any]:
    stack.start_worker(1)  # a fresh process: nothing cached
    assert stack.worker is not None
    worker_log = stack.worker.log
    stack.wait(stack.submit(WARM_UP)["id"], 0.05)
    jobs = []
    for _ in range(2):
        job, _, _ = stack.wait(stack.submit({**TRAIN, "dataset": name})["id"], 0.05)
        jobs.append(job)
    time.sleep(0.2)  # the log's last lines written
    pool = stack.pool_pids()
    return {"jobs": jobs, "reads": _reads(worker_log, digest),
            "worker_rss": _peak_rss(pool[0] if pool else None)}


def _body_alone(stack: Stack, body: bytes, count: int) -> list[float]:
    """The same body to the predict of a job that does not exist: received whole (the
    body-size check reads it before the route runs), then a 404, nothing parsed; ms."""
    url = f"/v1/jobs/{uuid.uuid4().hex}/predict"
    spent = []
    for _ in range(count):
        started = time.perf_counter()
        answer = stack.http.post(url, content=body, timeout=120,
                                 headers={"content-type": "application/json"})
        spent.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 404:
            raise RuntimeError(f"POST {url} -> {answer.status_code}: {answer.text[:300]}")
    return spent


def _in_process(stack: Stack, job_id: str, body: bytes, count: int) -> list[float]:
    """What the route does with the body, in this process on the job's model (GET
    /v1/jobs/{id}/model): orjson.loads, Model.predict (the rows checked and made an array,
    the preprocessing, the forward pass), orjson.dumps of the answer; ms."""
    answer = stack.http.get(f"/v1/jobs/{job_id}/model")
    answer.raise_for_status()
    model = ModelCache(1 << 30).load(job_id, answer.content)
    spent = []
    for _ in range(count):
        started = time.perf_counter()
        result = model.predict(orjson.loads(body)["instances"])
        orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY)
        spent.append((time.perf_counter() - started) * 1000)
    return spent


def _predicts(stack: Stack, job_id: str, pixels: np.ndarray, labels: np.ndarray,
              sizes: tuple[tuple[int, int], ...]) -> dict[str, Any]:
    url = f"/v1/jobs/{job_id}/predict"
    headers = {"content-type": "application/json"}
    first: float | None = None
    result: dict[int, dict[str, Any]] = {}
    agreement = float("nan")
    for size, count in sizes:
        body = orjson.dumps({"instances": pixels[:size]}, option=orjson.OPT_SERIALIZE_NUMPY)
        spent = []
        for attempt in range(count + 1):
            started = time.perf_counter()
            answer = stack.http.post(url, content=body, headers=headers, timeout=120)
            seconds = time.perf_counter() - started
            if answer.status_code != 200:
                raise RuntimeError(f"POST {url} ({size} rows) -> {answer.status_code}: "
                                   f"{answer.text[:300]}")
            if attempt == 0:
                predictions = answer.json()["predictions"]
                if len(predictions) != size:
                    raise RuntimeError(f"{size} rows, {len(predictions)} predictions")
                if size == max(s for s, _ in sizes):
                    agreement = float(np.mean(np.asarray(predictions) == labels[:size]))
                if first is None:
                    first = seconds
            else:
                spent.append(seconds)
        result[size] = {"ms": [s * 1000 for s in spent], "body": len(body),
                        "rows_per_s": size / median(spent)}
        if size == max(s for s, _ in sizes):
            result[size]["body_ms"] = _body_alone(stack, body, count)
            result[size]["local_ms"] = _in_process(stack, job_id, body, min(count, 5))
        log(f"predict {size:,} row(s): {count} requests, p50 {pct(result[size]['ms'], 50):.1f}"
            f" ms, body {len(body) / 1e6:.2f} MB")
    return {"sizes": result, "first": first, "agreement": agreement}


# --------------------------------------------------------------------------- the measurement


def measure(stack: Stack, plan: Plan) -> dict[str, Any]:
    rows = QUICK_ROWS if plan.quick else ROWS
    rounds = QUICK_ROUNDS if plan.quick else ROUNDS
    sizes = QUICK_PREDICTS if plan.quick else PREDICTS
    log(f"11. uploads: a {rows:,} x {FEATURES + 1} CSV and .npz, {rounds} rounds; predict; "
        "the worker's dataset cache")
    started = time.monotonic()
    csv_path, npz_path, pixels, labels = make_files(stack.workdir, rows)
    sizes_bytes = {"csv": csv_path.stat().st_size, "npz": npz_path.stat().st_size}
    log(f"files written in {time.monotonic() - started:.1f} s: CSV "
        f"{sizes_bytes['csv'] / 1e6:.1f} MB, .npz {sizes_bytes['npz'] / 1e6:.1f} MB")
    _check_limits(stack, max(sizes_bytes.values()))
    api_pid = stack.api.pid if stack.api is not None else None
    rss_before = _peak_rss(api_pid)
    try:
        uploaded = _uploads(stack, csv_path, npz_path, rounds)
        rss_after = _peak_rss(api_pid)
        _, kept = _upload(stack, csv_path, "bench-upload")  # for the jobs and predictions
        cache = _cache(stack, kept["name"], kept["sha256"])
        predicts = _predicts(stack, cache["jobs"][-1]["id"], pixels, labels, sizes)
        _delete(stack, kept["id"])
    finally:
        csv_path.unlink(missing_ok=True)
        npz_path.unlink(missing_ok=True)
    return {**uploaded, **cache, **predicts, "rows": rows, "rounds": rounds,
            "file_bytes": sizes_bytes, "kept": kept, "api_rss": (rss_before, rss_after),
            "n_classes": int(len(np.unique(labels)))}


def rows(p: dict[str, Any]) -> list[Row]:
    times = {key: median(values) for key, values in p["times"].items()}
    mb = {kind: size / 1e6 for kind, size in p["file_bytes"].items()}
    rate = {kind: mb[kind] / times[f"{kind}_http"] for kind in mb}
    shape = f"{p['rows']:,} x {FEATURES + 1}"
    first, second = (run_seconds(job) for job in p["jobs"])
    reads = p["reads"]
    out: list[Row] = [
        (f"11 upload CSV {shape} ({mb['csv']:.0f} MB): POST -> 201, median",
         f"{times['csv_http']:.2f} s = {rate['csv']:.0f} MB/s", "(report)", ""),
        (f"11 upload .npz, the same data ({mb['npz']:.0f} MB)",
         f"{times['npz_http']:.2f} s = {rate['npz']:.0f} MB/s", "(report)", ""),
        ("11   CSV / .npz: time; MB/s",
         f"{times['csv_http'] / times['npz_http']:.2f}x; {rate['csv'] / rate['npz']:.2f}x",
         "", ""),
        ("11 parse alone in process: read_csv / read_npz",
         f"{times['csv_parse']:.2f} s ({mb['csv'] / times['csv_parse']:.0f} MB/s) / "
         f"{times['npz_parse']:.2f} s ({mb['npz'] / times['npz_parse']:.0f} MB/s)", "", ""),
        ("11   + check + stored form (to_bytes): CSV / .npz",
         f"{times['csv_store']:.2f} s / {times['npz_store']:.2f} s", "", ""),
        ("11   HTTP / parse alone: CSV / .npz",
         f"{times['csv_http'] / times['csv_parse']:.2f}x / "
         f"{times['npz_http'] / times['npz_parse']:.2f}x", "(report)", ""),
        ("11   the body alone (streamed, spooled, hashed; a 422): CSV / .npz",
         f"{times['csv_stream']:.2f} s ({mb['csv'] / times['csv_stream']:.0f} MB/s) / "
         f"{times['npz_stream']:.2f} s ({mb['npz'] / times['npz_stream']:.0f} MB/s)", "", ""),
        ("11   the rest: HTTP - body - (parse + stored form), each round's: CSV / .npz",
         f"{times['csv_rest']:.2f} s / {times['npz_rest']:.2f} s", "", ""),
    ]
    for size, figures in p["sizes"].items():
        ms = figures["ms"]
        out.append((f"11 predict {size:,} row{'s' if size > 1 else ''} "
                     f"({figures['body'] / 1e6:.2f} MB body) p50/p99",
                     f"{pct(ms, 50):.1f} / {pct(ms, 99):.1f} ms; "
                     f"{figures['rows_per_s']:,.0f} rows/s", "(report)", ""))
    largest = max(p["sizes"])
    alone = p["sizes"][largest]["body_ms"]
    out += [
        ("11   its body alone: an unknown job's predict (404), p50/p99",
         f"{pct(alone, 50):.1f} / {pct(alone, 99):.1f} ms", "", ""),
        ("11   the route's work in this process (parse, predict, answer), p50",
         f"{pct(p['sizes'][largest]['local_ms'], 50):.1f} ms", "", ""),
        ("11 predict's first request (the model into the API's cache)",
         f"{p['first'] * 1000:.1f} ms", "", ""),
        ("11 job on the upload, fresh worker: first / second (started -> finished)",
         f"{first:.2f} s / {second:.2f} s", "", ""),
        ("11   first - second; the logged read", f"{first - second:.2f} s; "
         + (", ".join(f"{s:.2f} s" for s in reads) or "none"), "", ""),
        ("11   reads of the upload from the store, 2 jobs", str(len(reads)), "1",
         "ok" if len(reads) == 1 else "MISSED"),
    ]
    return out


def notes(p: dict[str, Any]) -> list[str]:
    kept = p["kept"]
    before, after = p["api_rss"]
    return [
        f"uploads: {p['rows']:,} rows, {FEATURES} features 0-255 (about half zeros), "
        f"{p['n_classes']} classes from a random linear teacher; CSV "
        f"{p['file_bytes']['csv']:,} bytes, .npz (x float32, t int64, uncompressed) "
        f"{p['file_bytes']['npz']:,} bytes; stored form {kept['bytes']:,} bytes "
        f"({kept['n_train']:,} train / {kept['n_test']:,} test); preprocess {PREPROCESS} for "
        f"both; medians of {p['rounds']} interleaved rounds, each upload deleted after; "
        "the parse in this process shares the cores with the API's: the rest (HTTP - body - "
        "parse and stored form) is noisy, negative when the parse was slower here",
        f"uploads: the API's peak RSS {before:.0f} MiB before the uploads, {after:.0f} MiB "
        f"after them; the worker's pool process peaked at {p['worker_rss']:.0f} MiB with "
        "the upload cached",
        f"predict: job 784-64-10 sigmoid, 1 epoch, batch 100 on the upload; its predictions "
        f"agree with the labels on {p['agreement']:.1%} of the first rows; HTTP client "
        "httpx, one request at a time",
    ]
