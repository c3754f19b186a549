"""`descent`: Descent from a terminal (typer + rich), through the public HTTP API.

Exit codes: 0 succeeded (or done), 1 the job (or sweep) failed, or a gradient check
disagreed, 2 usage or HTTP error, 3 cancelled (or pruned), 4 timed out, 130 you stopped
following (the job goes on). The sweep commands live in client/sweep_cli.py, the model's
(model, predict) in client/model_cli.py, the datasets' (datasets, upload, dataset,
dataset-delete) in client/dataset_cli.py.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from client.api import TERMINAL, Descent, DescentError, Event

OK, FAILED, ERROR, CANCELLED, TIMED_OUT, STOPPED = 0, 1, 2, 3, 4, 130
EXIT_OF = {"succeeded": OK, "failed": FAILED, "cancelled": CANCELLED, "pruned": CANCELLED}
DEFAULT_URL = "http://127.0.0.1:8000"
KEY_FILE = Path(".run") / "api-key"  # what `make run` writes
SPARKS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 48  # characters of the sparkline of the curve
EPOCH_ROWS = 12  # the live view's last epochs
EVERY_POINT = 100_000  # the most points an event may carry (the API's limit)
AGREE = 1e-6  # a gradient check agrees at or below this relative error (the API's verdict)

app = typer.Typer(
    help="Descent, gradient descent as a service: train small networks and watch them learn.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)  # a message stays one line, for grep and logs


class State:
    url: str = DEFAULT_URL
    api_key: str | None = None
    json: bool = False


state = State()


def fail(message: str, code: int = ERROR) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def client() -> Descent:
    key = state.api_key
    if not key and KEY_FILE.exists():
        key = KEY_FILE.read_text().strip()
    if not key:
        fail("no API key: pass --api-key, set DESCENT_API_KEY, or run `make run` here "
             f"(it writes {KEY_FILE})")
    return Descent(state.url, key)


def emit(kind: str, data: Any, event_id: str | None = None) -> None:
    """One line of newline-delimited JSON (--json)."""
    line: dict[str, Any] = {"event": kind, "data": data}
    if event_id is not None:
        line["id"] = event_id
    sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def call(action: Any) -> Any:
    try:
        return action()
    except DescentError as exc:
        hint = ""
        if exc.status == 401:
            hint = " (check --api-key / DESCENT_API_KEY)"
        elif exc.retry_after is not None:
            hint = f" (retry in {exc.retry_after:.0f} s)"
        fail(f"{exc.detail}{hint}")


@app.callback()
def main_options(
    url: Annotated[str, typer.Option(envvar="DESCENT_URL", help="The API's address.")] = (
        DEFAULT_URL),
    api_key: Annotated[str | None, typer.Option(
        envvar="DESCENT_API_KEY", help=f"Your key (dsk_...); else {KEY_FILE} if present.",
        show_default=False)] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Newline-delimited JSON on stdout, for scripts.")] = False,
) -> None:
    state.url, state.api_key, state.json = url, api_key, as_json


# -- reading --------------------------------------------------------------------------------


@app.command()
def jobs(
    status: Annotated[str | None, typer.Option(help="Only jobs with this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 20,
) -> None:
    """Your jobs, newest first."""
    with client() as descent:
        items = call(lambda: list(descent.jobs(status=status, limit=limit)))
    if state.json:
        for item in items:
            emit("job", item)
        return
    table = Table("id", "status", "dataset", "progress", "created", "name")
    for job in items:
        progress = job["progress"]
        table.add_row(job["id"], colour(job["status"]), job["spec"]["dataset"],
                      f"{progress['epoch']}/{progress['epochs']} epochs",
                      (job["created_at"] or "")[:19].replace("T", " "), job["name"] or "")
    out.print(table)


@app.command()
def show(job_id: str) -> None:
    """A job: status, spec, progress, warnings, error."""
    with client() as descent:
        job = call(lambda: descent.job(job_id))
    if state.json:
        emit("job", job)
        return
    out.print(describe(job))


@app.command()
def metrics(job_id: str) -> None:
    """A succeeded job's test-set metrics."""
    with client() as descent:
        result = call(lambda: descent.metrics(job_id))
    if state.json:
        emit("metrics", result)
        return
    out.print(metrics_view(result))


@app.command()
def cancel(job_id: str) -> None:
    """Ask a job to stop; it ends `cancelled` within a mini-batch."""
    with client() as descent:
        job = call(lambda: descent.cancel(job_id))
    if state.json:
        emit("job", job)
        return
    out.print(f"job {job_id}: {colour(job['status'])}"
              + (" (stopping)" if job["status"] == "running" else ""))


@app.command()
def plot(
    job_id: str,
    output: Annotated[Path, typer.Option("-o", "--output", help="FILE.png or FILE.svg")],
) -> None:
    """Save the job's curve as a picture (PNG or SVG, by the file's suffix)."""
    save_picture(output, lambda descent, fmt: descent.picture(job_id, fmt))


def save_picture(output: Path, fetch: Callable[[Descent, str], bytes]) -> None:
    """Fetch a picture in the format the file's suffix names (png or svg) and write it."""
    fmt = output.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        fail(f"--output must end in .png or .svg, got {str(output)!r}")
    with client() as descent:
        picture = call(lambda: fetch(descent, fmt))
    output.write_bytes(picture)
    if state.json:
        emit("picture", {"path": str(output), "bytes": len(picture)})
    else:
        out.print(f"wrote {output} ({len(picture):,} bytes)")


# -- training -------------------------------------------------------------------------------


def read_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from a file, or exit 2 saying what is wrong with it."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        fail(f"cannot read the {what} {path}: {exc}")
    if not isinstance(found, dict):
        fail(f"the {what} {path} must be a JSON object")
    return found


def build_spec(spec_file: Path | None, options: dict[str, Any]) -> dict[str, Any]:
    spec = read_object(spec_file, "spec") if spec_file is not None else {}
    spec.update({name: value for name, value in options.items() if value is not None})
    if "dataset" not in spec:
        fail("which dataset? pass --dataset NAME (see `descent datasets`) or a SPEC.json")
    return spec


@app.command()
def train(
    spec_file: Annotated[Path | None, typer.Argument(
        help="A job spec (JSON); the options below override its fields.")] = None,
    dataset: Annotated[str | None, typer.Option(help="A dataset name.")] = None,
    hidden: Annotated[list[int] | None, typer.Option(
        help="A hidden layer's width; repeat for more layers.")] = None,
    activation: Annotated[str | None, typer.Option(help="sigmoid or relu.")] = None,
    loss: Annotated[str | None, typer.Option(help="cross_entropy or sum_squares.")] = None,
    gradient: Annotated[str | None, typer.Option(help="backprop or numerical.")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32 or float64.")] = None,
    lr: Annotated[float | None, typer.Option(help="The learning rate.")] = None,
    momentum: Annotated[float | None, typer.Option()] = None,
    batch_size: Annotated[int | None, typer.Option()] = None,
    epochs: Annotated[int | None, typer.Option()] = None,
    validation_fraction: Annotated[float | None, typer.Option()] = None,
    patience: Annotated[int | None, typer.Option(
        help="Early stopping after this many epochs without a better validation loss.")] = None,
    weight_init_std: Annotated[float | None, typer.Option()] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    name: Annotated[str | None, typer.Option()] = None,
    follow_it: Annotated[bool, typer.Option("--follow", help="Watch it train.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Stop following after this many "
                                                  "seconds (exit 4).")] = None,
) -> None:
    """Submit a training job (and with --follow, watch it to the end)."""
    spec = build_spec(spec_file, {
        "dataset": dataset, "hidden_sizes": hidden or None, "activation": activation,
        "loss": loss, "gradient": gradient, "dtype": dtype, "learning_rate": lr,
        "momentum": momentum, "batch_size": batch_size, "epochs": epochs,
        "validation_fraction": validation_fraction, "early_stopping_patience": patience,
        "weight_init_std": weight_init_std, "seed": seed, "name": name,
    })
    with client() as descent:
        job = call(lambda: descent.submit(spec))
        if state.json:
            emit("job", job)
        else:
            out.print(f"job [bold]{job['id']}[/] queued: {summary(job['spec'])}")
        if follow_it:
            raise typer.Exit(watch(descent, job, timeout))
        if not state.json:
            out.print(f"follow it with: descent follow {job['id']}")


@app.command()
def follow(
    job_id: str,
    timeout: Annotated[float | None, typer.Option(help="Stop following after this many "
                                                  "seconds (exit 4).")] = None,
) -> None:
    """Watch a job to its end: progress, the loss, each epoch, then the test metrics."""
    with client() as descent:
        job = call(lambda: descent.job(job_id))
        raise typer.Exit(watch(descent, job, timeout))


@app.command()
def gradcheck(
    dataset: Annotated[str, typer.Option(help="A dataset name.", show_default=False)],
    hidden: Annotated[list[int] | None, typer.Option(
        help="A hidden layer's width; repeat for more layers.  [default: 50]",
        show_default=False)] = None,
    activation: Annotated[str | None, typer.Option(help="sigmoid or relu.")] = None,
    loss: Annotated[str | None, typer.Option(help="cross_entropy or sum_squares.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="[default: 10]")] = None,
    seed: Annotated[int | None, typer.Option(help="A job's seed: its initial weights and "
                                             "first batch.")] = None,
    weight_init_std: Annotated[float | None, typer.Option()] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One line of JSON on stdout, for scripts.")] = False,
) -> None:
    """Check backprop against central differences at a network's initial weights
    (exit 1 if they disagree)."""
    options = {"dataset": dataset, "hidden_sizes": hidden or None, "activation": activation,
               "loss": loss, "batch_size": batch_size, "seed": seed,
               "weight_init_std": weight_init_std}
    body = {name: value for name, value in options.items() if value is not None}
    with client() as descent:
        result = call(lambda: descent.gradient_check(**body))
    if state.json or as_json:
        emit("gradient_check", result)
    else:
        out.print(gradcheck_view(body, result))
    raise typer.Exit(OK if result["agree"] else FAILED)


def gradcheck_view(body: dict[str, Any], result: dict[str, Any]) -> Group:
    layers = "-".join(str(n) for n in body.get("hidden_sizes", [50]))
    checked = (f"gradient check: {body['dataset']}, hidden {layers} "
               f"{body.get('activation', 'sigmoid')}, {body.get('loss', 'cross_entropy')}, "
               f"batch {body.get('batch_size', 10)}, seed {body.get('seed', 0)}")
    table = Table("parameter", "shape", "max relative error", "mean relative error")
    for column in table.columns[2:]:
        column.justify = "right"
    for p in result["parameters"]:
        shade = "green" if p["max_relative_error"] <= AGREE else "red"
        table.add_row(p["name"], " x ".join(str(n) for n in p["shape"]),
                      f"[{shade}]{p['max_relative_error']:.2e}[/]",
                      f"{p['mean_relative_error']:.2e}")
    worst = result["max_relative_error"]
    if result["agree"]:
        verdict = f"[bold green]agree[/]: max relative error {worst:.2e} <= {AGREE:g}"
    else:
        verdict = f"[bold red]disagree[/]: max relative error {worst:.2e} > {AGREE:g}"
    numerical, backprop = result["numerical_seconds"], result["backprop_seconds"]
    lines = Table(show_header=False, box=None)
    lines.add_row("verdict", verdict)
    lines.add_row("h", f"{result['h']:g} (central differences, float64)")
    lines.add_row("numerical gradient", duration(numerical))
    ratio = numerical / backprop if backprop > 0 else None
    lines.add_row("backprop", duration(backprop) + (
        "" if ratio is None else f", {ratio:,.0f}x faster" if ratio >= 10
        else f", {ratio:.1f}x faster"))
    if not result["agree"] and body.get("activation") == "relu":
        lines.add_row("", "[dim]relu: central differences are wrong where a pre-activation "
                      "lies within about h of the kink at 0 (likelier with small weights); if "
                      "another --seed or sigmoid agrees, that was it[/]")
    return Group(Text(checked, style="bold"), table, lines)


def duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    ms = seconds * 1000
    return f"{ms:.0f} ms" if ms >= 100 else f"{ms:.1f} ms" if ms >= 10 else f"{ms:.2f} ms"


# -- the live view --------------------------------------------------------------------------


def colour(status: str) -> str:
    shade = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "running": "cyan",
             "queued": "blue", "pruned": "yellow"}.get(status, "white")
    return f"[{shade}]{status}[/]"


def summary(spec: dict[str, Any]) -> str:
    layers = "-".join(str(n) for n in spec.get("hidden_sizes", []))
    return (f"{spec['dataset']}, hidden {layers} {spec.get('activation', '')}, "
            f"lr {spec.get('learning_rate')}, batch {spec.get('batch_size')}, "
            f"{spec.get('epochs')} epochs")


def sparkline(values: list[float], width: int = SPARK_WIDTH) -> str:
    """The whole curve so far in `width` characters: each the mean of its share of points."""
    if not values:
        return ""
    buckets = min(width, len(values))
    means = []
    for b in range(buckets):
        part = values[b * len(values) // buckets:(b + 1) * len(values) // buckets]
        means.append(sum(part) / len(part))
    low, high = min(means), max(means)
    span = (high - low) or 1.0
    return "".join(SPARKS[min(int((m - low) / span * len(SPARKS)), len(SPARKS) - 1)]
                   for m in means)


def describe(job: dict[str, Any]) -> Table:
    table = Table(show_header=False, box=None)
    progress = job["progress"]
    table.add_row("id", job["id"])
    table.add_row("status", colour(job["status"]) + (" (cancel requested)"
                                                      if job["cancel_requested"] else ""))
    table.add_row("spec", summary(job["spec"]))
    table.add_row("progress", f"epoch {progress['epoch']}/{progress['epochs']}, iteration "
                  f"{progress['iteration']}/{progress['iterations']}")
    table.add_row("attempts", str(job["attempts"]))
    for warning in job["warnings"]:
        table.add_row("[yellow]warning[/]", warning)
    if job["error"]:
        table.add_row("[red]error[/]", f"{job['error']['code']}: {job['error']['message']}")
    return table


def metrics_view(result: dict[str, Any]) -> Group:
    test = result.get("test") or {}
    lines = Table(show_header=False, box=None)
    if test:
        lines.add_row("test accuracy", f"[bold]{test['accuracy']:.2%}[/] on {test['n']} "
                      f"examples (loss {test['loss']:.4f})")
    else:
        lines.add_row("test", "[dim]not evaluated: a sweep's trial; the sweep evaluates "
                      "its winner's test set, once[/]")
    lines.add_row("train accuracy", f"{result['train']['accuracy']:.2%}")
    if result.get("validation"):
        lines.add_row("validation accuracy", f"{result['validation']['accuracy']:.2%}")
    gap = result["overfitting"]
    if gap:
        lines.add_row("overfitting gap", f"{gap['gap']:+.2%} (train - test)"
                      + ("  [yellow]overfitting[/]" if gap["flagged"] else ""))
    lines.add_row("best epoch", f"{result['best_epoch']} of {result['epochs_run']}"
                  + (" (stopped early)" if result.get("early_stopped") else ""))
    lines.add_row("duration", f"{result['duration_seconds']:.1f} s")
    return Group(Text("test metrics", style="bold"), lines)


class LiveView:
    """The picture while a job trains: a bar with ETA, the loss, a sparkline, epochs."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.status = job["status"]
        self.loss: float | None = None
        self.curve: list[float] = []  # every finite mini-batch loss received
        self.rows: list[dict[str, Any]] = []
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                            TextColumn("{task.percentage:>3.0f}%"), TimeRemainingColumn())
        total = job["progress"]["iterations"] or 1
        self.task = self.bar.add_task(self.status, total=total)

    def take(self, event: Event) -> None:
        data = event.data
        if event.event == "status":
            self.status = data["status"]
        elif event.event == "progress":
            finite = [x for x in data["loss"] if x is not None]
            self.curve.extend(x for x in finite if abs(x) != float("inf"))
            self.loss = finite[-1] if finite else None
            self.bar.update(self.task, completed=data["iteration"])
        elif event.event == "epoch":
            self.rows.append(data)
        self.bar.update(self.task, description=f"{self.status:<9}")

    def render(self) -> Group:
        loss = "" if self.loss is None else f"mini-batch loss {self.loss:.4f}   "
        shape = sparkline(self.curve)
        shown = self.rows[-EPOCH_ROWS:]
        title = "epochs" if len(shown) == len(self.rows) else (
            f"epochs (the last {len(shown)} of {len(self.rows)})")
        table = Table("epoch", "train loss", "train acc", "val loss", "val acc", title=title,
                      title_justify="left")
        for row in shown:
            table.add_row(str(row["epoch"]), f"{row['train_loss']:.4f}",
                          f"{row['train_accuracy']:.2%}", fmt(row.get("val_loss")),
                          pct(row.get("val_accuracy")))
        return Group(self.bar, Text(f"{loss}{shape and 'so far ' + shape}"), table)


def fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def pct(value: float | None) -> str:
    return "" if value is None else f"{value:.2%}"


def watch(descent: Descent, job: dict[str, Any], timeout: float | None) -> int:
    """Follow to the end; the exit code of how the job ended."""
    job_id = job["id"]
    deadline = None if timeout is None else time.monotonic() + timeout
    view = None if state.json else LiveView(job)
    final = job["status"]
    try:
        with Live(view.render(), console=out, refresh_per_second=8,
                  transient=False) if view else contextlib.nullcontext() as live:
            # Every point, also in the catch-up after a reconnection (which the API would
            # otherwise downsample to 1,000): --json promises scripts the whole curve.
            for event in descent.follow(job_id, max_points=EVERY_POINT):
                if state.json:
                    emit(event.event, event.data, event.id)
                elif view is not None and live is not None:
                    view.take(event)
                    live.update(view.render())
                if event.event in ("status", "end"):
                    final = event.data["status"]
                if deadline is not None and time.monotonic() > deadline:
                    if not state.json:
                        err.print(f"timed out after {timeout:g} s; job {job_id} goes on")
                    return TIMED_OUT
    except KeyboardInterrupt:
        err.print(f"\nstopped following; job {job_id} goes on. Cancel it with: "
                  f"descent cancel {job_id}")
        return STOPPED
    except DescentError as exc:
        fail(exc.detail)
    if final not in TERMINAL:
        fail(f"the stream of job {job_id} ended while it was {final}")
    ended = call(lambda: descent.job(job_id))
    if not state.json:
        out.print(describe(ended))
    if ended["status"] == "succeeded":
        result = call(lambda: descent.metrics(job_id))
        if state.json:
            emit("metrics", result)
        else:
            out.print(metrics_view(result))
    return EXIT_OF.get(ended["status"], FAILED)


def main() -> None:
    # Commands that live in modules of their own register themselves on `app`.
    from client import dataset_cli, model_cli, sweep_cli  # noqa: F401

    try:
        app()
    except KeyboardInterrupt:
        raise SystemExit(STOPPED) from None


if __name__ == "__main__":
    # `python -m client.cli` runs this file as __main__, a second copy of the module: run
    # the importable one, on whose `app` client.sweep_cli registers its commands.
    from client.cli import main as run

    run()

