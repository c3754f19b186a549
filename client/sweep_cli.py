"""`descent sweep`, `sweeps`, `leaderboard`, `sweep-cancel` and `sweep-plot`: sweeps from a
terminal, with a live leaderboard. Registered on client.cli's app (which imports this)."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from client.api import SWEEP_TERMINAL, Descent, DescentError
from client.cli import (
    CANCELLED,
    FAILED,
    OK,
    STOPPED,
    TIMED_OUT,
    app,
    call,
    client,
    colour,
    emit,
    err,
    fail,
    out,
    read_object,
    save_picture,
    state,
)

SWEEP_EXIT = {"succeeded": OK, "failed": FAILED, "cancelled": CANCELLED}
POLL = 1.0  # seconds between two reads of a followed sweep
BOARD_ROWS = 20  # the leaderboard's rows on screen (the best)
NOTE_WIDTH = 24  # characters of a trial's note in the leaderboard, at least
NOTE_LINES = 3


@app.command()
def sweep(
    spec_file: Annotated[Path, typer.Argument(help="A sweep (JSON): base, method, space, "
                                              "objective, ...; see the README.")],
    follow_it: Annotated[bool, typer.Option("--follow", help="Watch the leaderboard to the "
                                            "end.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Stop following after this many "
                                                  "seconds (exit 4).")] = None,
) -> None:
    """Submit a sweep: trials of a base spec, chosen by validation; the winner's test set
    is evaluated once."""
    body = read_object(spec_file, "sweep")
    with client() as descent:
        found = call(lambda: descent.submit_sweep(body))
        if state.json:
            emit("sweep", found)
        else:
            estimate = found.get("estimated_seconds")
            out.print(f"sweep [bold]{found['id']}[/] {colour(found['status'])}: "
                      f"{found['trial_count']} trials ({found['method']}), objective "
                      f"{found['objective']}"
                      + (f", about {estimate:,.0f} s of training in all" if estimate else ""))
        if follow_it:
            raise typer.Exit(watch_sweep(descent, found["id"], timeout))
        if not state.json:
            out.print(f"follow it with: descent leaderboard {found['id']} --follow")


@app.command()
def sweeps(
    limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 20,
) -> None:
    """Your sweeps, newest first."""
    with client() as descent:
        items = call(lambda: list(descent.sweeps(limit=limit)))
    if state.json:
        for item in items:
            emit("sweep", item)
        return
    table = Table("id", "status", "trials", "objective", "winner", "created", "name")
    for item in items:
        winner = item["winner"]
        best = (f"trial {winner['trial']}: "
                f"{value(item['objective'], winner['objective_value'])}") if winner else ""
        table.add_row(item["id"], colour(item["status"]),
                      f"{item['trial_count']} ({item['method']})", item["objective"], best,
                      (item["created_at"] or "")[:19].replace("T", " "), item["name"] or "")
    out.print(table)


@app.command()
def leaderboard(
    sweep_id: str,
    follow_it: Annotated[bool, typer.Option("--follow", help="Watch it to the end.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Stop following after this many "
                                                  "seconds (exit 4).")] = None,
) -> None:
    """A sweep's leaderboard (best first), its winner and the winner's test metrics."""
    with client() as descent:
        if follow_it:
            raise typer.Exit(watch_sweep(descent, sweep_id, timeout))
        found = call(lambda: descent.sweep(sweep_id))
    if state.json:
        emit("sweep", found)
    else:
        out.print(board_view(found))
    raise typer.Exit(SWEEP_EXIT.get(found["status"], OK))


@app.command("sweep-cancel")
def sweep_cancel(sweep_id: str) -> None:
    """Cancel a sweep: its unfinished trials are cancelled, and it ends `cancelled`."""
    with client() as descent:
        found = call(lambda: descent.cancel_sweep(sweep_id))
    if state.json:
        emit("sweep", found)
    else:
        out.print(f"sweep {sweep_id}: cancelling its unfinished trials")


@app.command("sweep-plot")
def sweep_plot(
    sweep_id: str,
    output: Annotated[Path, typer.Option("-o", "--output", help="FILE.png or FILE.svg")],
) -> None:
    """Save every trial's validation curve, the winner marked (PNG or SVG by suffix)."""
    save_picture(output, lambda descent, fmt: descent.sweep_picture(sweep_id, fmt))


def watch_sweep(descent: Descent, sweep_id: str, timeout: float | None) -> int:
    """Follow a sweep to its end, redrawing the leaderboard; the exit code of its end."""
    deadline = None if timeout is None else time.monotonic() + timeout
    shown = ""
    found: dict[str, Any] | None = None
    try:
        with (Live(console=out, refresh_per_second=4, transient=False) if not state.json
              else contextlib.nullcontext()) as live:
            while True:
                try:
                    found = descent.sweep(sweep_id)
                except DescentError as exc:
                    if exc.status not in (0, 503):  # not a dropped connection: final
                        fail(exc.detail)
                    found = None
                if found is not None:
                    snapshot = json.dumps(found, sort_keys=True)
                    if snapshot != shown:
                        shown = snapshot
                        if state.json:
                            emit("sweep", found)
                        elif live is not None:
                            live.update(board_view(found))
                    if found["status"] in SWEEP_TERMINAL:
                        return SWEEP_EXIT[found["status"]]
                if deadline is not None and time.monotonic() > deadline:
                    err.print(f"timed out after {timeout:g} s; sweep {sweep_id} goes on")
                    return TIMED_OUT
                time.sleep(POLL)
    except KeyboardInterrupt:
        err.print(f"\nstopped following; sweep {sweep_id} goes on. Cancel it with: "
                  f"descent sweep-cancel {sweep_id}")
        return STOPPED


def value(objective: str, number: float | None) -> str:
    if number is None:
        return ""
    return f"{number:.2%}" if objective == "val_accuracy" else f"{number:.4f}"


def clip(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1].rstrip() + "…"


def params_text(params: dict[str, Any]) -> str:
    def short(v: Any) -> str:
        return "-".join(map(str, v)) if isinstance(v, list) else f"{v:g}" if isinstance(
            v, float) else str(v)
    return ", ".join(f"{k} {short(v)}" for k, v in params.items())


def board_view(found: dict[str, Any]) -> Group:
    """The leaderboard: trials best first, each with its status, chosen epoch, objective
    there, epochs run and what went wrong or what to know; then the winner's test."""
    objective = found["objective"]
    counts = found["counts"] or {}
    told = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
    head = Text.from_markup(
        f"[bold]{found['name'] or 'sweep ' + found['id'][:8]}[/] {colour(found['status'])}"
        f"  {found['trial_count']} trials ({found['method']}), {told}")
    trials = found["trials"] or []
    short = {"val_accuracy": "val acc", "val_loss": "val loss"}.get(objective, objective)
    table = Table("#", "trial", "params", "status", "best at", short, "ran",
                  title=None if len(trials) <= BOARD_ROWS
                  else f"the best {BOARD_ROWS} of {len(trials)}", title_justify="left",
                  caption=f"best at: the epoch whose model the trial keeps (least validation "
                  f"loss); {short}: {objective} there; ran: epochs run", caption_justify="left")
    for column in table.columns:
        column.no_wrap = True
    # At most NOTE_LINES lines a note (the whole of it: leaderboard --json, or the job).
    width = max(NOTE_WIDTH, out.width - 80)
    table.add_column("notes", max_width=width)
    winner = (found["winner"] or {}).get("trial")
    for rank, trial in enumerate(trials[:BOARD_ROWS], start=1):
        note = (f"[red]{trial['error']['code']}[/]: {trial['error']['message']}"
                if trial["error"] else " ".join(trial["warnings"]))
        style = "bold" if trial["trial"] == winner else None
        table.add_row(str(rank) if trial["objective_value"] is not None else "",
                      str(trial["trial"]), params_text(trial["params"]),
                      colour(trial["status"]), str(trial["best_epoch"] or ""),
                      value(objective, trial["objective_value"]), str(trial["epochs_run"]),
                      Text.from_markup(clip(note, NOTE_LINES * width - 8)), style=style)
    parts: list[Any] = [head, table]
    if found["winner"]:
        w = found["winner"]
        parts.append(Text.from_markup(
            f"winner: trial {w['trial']} ({params_text(w['params'])}), {objective} "
            f"{value(objective, w['objective_value'])} at epoch {w['best_epoch']}"))
    if found["test"]:
        test = found["test"]
        parts.append(Text.from_markup(
            f"test accuracy [bold]{test['accuracy']:.2%}[/] on {test['n']} examples "
            f"(loss {test['loss']:.4f}): the winner's, evaluated once"))
    elif found["error"]:
        parts.append(Text.from_markup(
            f"[red]{found['error']['code']}[/]: {found['error']['message']}"))
    return Group(*parts)
