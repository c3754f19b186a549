"""`descent model` and `descent predict`: a trained model out, as a file or as predictions.
Registered on client.cli's app (which imports this)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Annotated

import typer

from client.cli import ERROR, app, call, client, emit, err, fail, out, state

ROWS_PER_CALL = 10_000  # the API's limit per request


@app.command()
def model(
    job_id: str,
    output: Annotated[Path, typer.Option("-o", "--output", help="FILE.npz")],
) -> None:
    """Save a succeeded job's model: an .npz that NumPy loads alone (see the README)."""
    with client() as descent:
        blob = call(lambda: descent.model(job_id))
    output.write_bytes(blob)
    if state.json:
        emit("model", {"path": str(output), "bytes": len(blob)})
    else:
        out.print(f"wrote {output} ({len(blob):,} bytes)")


def read_rows(path: Path, label_column: str | None = None
              ) -> tuple[list[list[float]], list[str]]:
    """The CSV's rows of numbers (a first row that is not all numbers is a header) and,
    with `label_column` (named in the header), that column's values as the true labels."""
    try:
        with path.open(newline="") as stream:
            lines = list(csv.reader(stream))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        fail(f"cannot read {path}: {exc}")
    labels: list[str] = []
    if label_column is not None:
        header = lines[0] if lines else []
        if label_column not in header:
            fail(f"{path}: the header has no column {label_column!r}")
        where = header.index(label_column)
        labels = [line.pop(where) for line in lines[1:] if line]
        lines[0].pop(where)
    rows: list[list[float]] = []
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        try:
            rows.append([float(value) for value in line])
        except ValueError:
            if number == 1:
                continue  # a header
            bad = next(v for v in line if not _is_number(v))
            fail(f"{path} line {number}: {bad!r} is not a number", ERROR)
    if not rows:
        fail(f"{path} has no rows of numbers")
    return rows, labels


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


@app.command()
def predict(
    job_id: str,
    rows_file: Annotated[Path, typer.Argument(help="A CSV of raw features, a row per "
                                              "instance (a header row is skipped).")],
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="Write a CSV: the label and each class's probability.")] = None,
    label_column: Annotated[str | None, typer.Option(
        help="A column of true labels to leave out of the features (as uploaded); the "
        "accuracy against it is printed.", show_default=False)] = None,
) -> None:
    """Predict with a succeeded job's model: a label per row of the CSV."""
    rows, truth = read_rows(rows_file, label_column)
    predictions: list[object] = []
    probabilities: list[list[float]] = []
    classes: list[object] = []
    with client() as descent:
        for start in range(0, len(rows), ROWS_PER_CALL):
            part = rows[start:start + ROWS_PER_CALL]
            answer = call(lambda part=part: descent.predict(job_id, part))
            predictions += answer["predictions"]
            probabilities += answer["probabilities"]
            classes = answer["classes"]
    if output is not None:
        with output.open("w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(["prediction", *(f"p_{c}" for c in classes)])
            for label, row in zip(predictions, probabilities, strict=True):
                writer.writerow([label, *(f"{p:.6g}" for p in row)])
    accuracy = (sum(str(p) == t for p, t in zip(predictions, truth, strict=True))
                / len(truth) if truth else None)
    if state.json:
        emit("predictions", {"predictions": predictions, "probabilities": probabilities,
                             "classes": classes, "accuracy": accuracy})
    elif output is not None:
        out.print(f"wrote {output}: {len(predictions):,} predictions")
    else:
        sys.stdout.write("".join(f"{label}\n" for label in predictions))
    if accuracy is not None and not state.json:
        err.print(f"accuracy {accuracy:.4f} on {len(truth):,} rows labelled in "
                  f"{label_column!r}", highlight=False)
