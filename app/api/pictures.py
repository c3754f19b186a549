"""Pictures of a job's curve (matplotlib, Agg): the mini-batch loss, faint, with its moving
average strong and each epoch's train and validation loss as points; below, the train and
validation accuracy per epoch. Rendered from what GET /curve returns."""

from __future__ import annotations

import io
import math
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

FORMATS = {"png": "image/png", "svg": "image/svg+xml"}
POINTS = 4000  # the raw curve's points drawn (the moving average sees every point)
CACHE_ENTRIES = 128  # finished jobs' pictures kept per API process
_cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()
_lock = threading.Lock()  # the cache is shared by the request threads


def responses(media: str, description: str, not_found: dict[int | str, dict[str, Any]]
              ) -> dict[int | str, dict[str, Any]]:
    """A picture route's OpenAPI answers: the image as a binary string, or a 404."""
    return {200: {"content": {media: {"schema": {"type": "string", "format": "binary"}}},
                  "description": description}, **not_found}


def cached(job_id: str, fmt: str) -> bytes | None:
    with _lock:
        picture = _cache.get((job_id, fmt))
        if picture is not None:
            _cache.move_to_end((job_id, fmt))
        return picture


def keep(job_id: str, fmt: str, picture: bytes) -> None:
    with _lock:
        _cache[(job_id, fmt)] = picture
        while len(_cache) > CACHE_ENTRIES:
            _cache.popitem(last=False)


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last `window` finite values at each point (NaN where there is none)."""
    finite = np.isfinite(values)
    filled = np.where(finite, values, 0.0)
    sums = np.cumsum(np.concatenate([[0.0], filled]))
    counts = np.cumsum(np.concatenate([[0], finite.astype(np.int64)]))
    start = np.maximum(np.arange(1, len(values) + 1) - window, 0)
    end = np.arange(1, len(values) + 1)
    n = counts[end] - counts[start]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (sums[end] - sums[start]) / np.maximum(n, 1), np.nan)


def title_of(job: dict[str, Any]) -> str:
    spec = job["spec"]
    layers = "-".join(str(n) for n in spec["hidden_sizes"])
    name = job["name"] or f"job {job['id'][:8]}"
    parts = [f"{name}: {job['status']}", f"{spec['dataset']}, hidden {layers} "
             f"{spec['activation']}, {spec['loss']}", f"lr {spec['learning_rate']:g}"
             + (f", momentum {spec['momentum']:g}" if spec["momentum"] else "")
             + f", batch {spec['batch_size']}"]
    return " · ".join(parts)


def render(job: dict[str, Any], curve: dict[str, Any], fmt: str) -> bytes:
    """The picture of `curve` (a full GET /curve answer) as PNG or SVG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    iterations = np.asarray(curve["iterations"], dtype=np.int64)
    losses = np.asarray([math.nan if v is None else v for v in curve["loss"]], dtype=float)
    rows = curve["epochs"]
    figure = Figure(figsize=(9, 6.2), dpi=110, layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    figure.suptitle(title_of(job), fontsize=11)
    if len(losses):
        step = max(1, math.ceil(len(losses) / POINTS))
        window = max(1, min(len(losses) // 40, 500))
        smooth = window >= 5  # too few iterations to smooth: the raw loss, drawn strong
        top.plot(iterations[::step], losses[::step], color="#4878d0",
                 alpha=0.25 if smooth else 1.0, lw=0.8 if smooth else 1.8,
                 label="mini-batch loss")
        if smooth:
            top.plot(iterations[::step], moving_average(losses, window)[::step],
                     color="#1f3f8f", lw=2.0, label=f"moving average ({window} iterations)")
    if rows:
        at = [row["iteration"] for row in rows]
        top.plot(at, [row["train_loss"] for row in rows], "o", color="#ee854a", ms=5,
                 label="train loss (epoch)")
        val = [(row["iteration"], row["val_loss"]) for row in rows if row["val_loss"] is not None]
        if val:
            top.plot(*zip(*val, strict=True), "s", color="#d65f5f", ms=5,
                     label="validation loss (epoch)")
        bottom.plot(at, [100 * row["train_accuracy"] for row in rows], "o-", color="#ee854a",
                    label="train")
        val_acc = [(row["iteration"], 100 * row["val_accuracy"]) for row in rows
                   if row["val_accuracy"] is not None]
        if val_acc:
            bottom.plot(*zip(*val_acc, strict=True), "s-", color="#d65f5f", label="validation")
        bottom.legend(loc="lower right", fontsize=9)
    finite = losses[np.isfinite(losses)]
    if len(finite) and finite.min() > 0 and finite.max() / finite.min() > 30:
        top.set_yscale("log")
    if job.get("error"):
        message = job["error"]["message"]
        top.set_title(f"{job['error']['code']}: {message[:110]}"
                      + ("..." if len(message) > 110 else ""),
                      loc="left", fontsize=9, color="#b00020")
    if not rows:
        bottom.text(0.5, 0.5, "no epoch has finished", transform=bottom.transAxes,
                    ha="center", va="center", color="#777777")
        bottom.set_yticks([])
    if not len(losses):
        top.text(0.5, 0.5, "no iterations yet", transform=top.transAxes, ha="center",
                 va="center", color="#777777")
    top.set_ylabel("loss")
    if top.get_legend_handles_labels()[0]:
        top.legend(loc="best", fontsize=9)
    top.grid(alpha=0.3)
    bottom.set_ylabel("accuracy (%)")
    bottom.set_xlabel("iteration (mini-batch)")
    bottom.grid(alpha=0.3)
    buffer = io.BytesIO()
    # SVG text stays text (searchable, selectable, smaller), in the viewer's own font.
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        figure.savefig(buffer, format=fmt,
                       metadata={"Software": None} if fmt == "png" else None)
    return buffer.getvalue()


def render_sweep(sweep: dict[str, Any], rows: dict[int, dict[int, dict[str, Any]]],
                 fmt: str) -> bytes:
    """Every trial's objective per epoch (the validation curves), the winner strong and
    labelled, pruned and failed trials dashed and grey; the leaderboard's order in the
    legend (best first, at most 12 named)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    objective = sweep["objective"]
    percent = objective == "val_accuracy"
    label = "validation accuracy (%)" if percent else "validation loss"
    winner = (sweep["winner"] or {}).get("trial")
    figure = Figure(figsize=(11, 5.6), dpi=110, layout="constrained")
    axes = figure.subplots()
    name = sweep["name"] or f"sweep {sweep['id'][:8]}"
    test = sweep.get("test")
    told = f" · winner's test accuracy {100 * test['accuracy']:.2f}%" if test else ""
    figure.suptitle(f"{name}: {sweep['status']} · {sweep['trial_count']} trials, "
                    f"{sweep['method']} · {objective}{told}", fontsize=11)
    colours = matplotlib.colormaps["viridis"]
    trials = sweep["trials"] or []
    shown_names = {view["trial"] for view in trials[:12]}
    finite: list[float] = []
    for rank, view in enumerate(trials):
        epochs = rows.get(view["trial"], {})
        points = [(e, row.get(objective)) for e, row in sorted(epochs.items())
                  if isinstance(row.get(objective), int | float)
                  and math.isfinite(row[objective])]
        if not points:
            continue
        x, y = zip(*points, strict=True)
        y = tuple(100 * v for v in y) if percent else y
        finite.extend(y)
        params = ", ".join(f"{k} {_short(v)}" for k, v in view["params"].items())
        text = f"#{view['trial']} {params} ({view['status']})"
        if view["trial"] == winner:
            axes.plot(x, y, "o-", color="#c0392b", lw=2.6, ms=6, zorder=5,
                      label=f"winner {text}")
        elif view["status"] in ("pruned", "failed", "cancelled"):
            axes.plot(x, y, "x--", color="#9e9e9e", lw=1.0, ms=4, alpha=0.8,
                      label=text if view["trial"] in shown_names else None)
        else:
            colour = colours(rank / max(1, len(trials) - 1) * 0.85)
            axes.plot(x, y, ".-", color=colour, lw=1.3, ms=5, alpha=0.9,
                      label=text if view["trial"] in shown_names else None)
    if not finite:
        axes.text(0.5, 0.5, "no trial has finished an epoch yet", transform=axes.transAxes,
                  ha="center", va="center", color="#777777")
    elif not percent and min(finite) > 0 and max(finite) / min(finite) > 30:
        axes.set_yscale("log")
    axes.set_xlabel("epoch")
    axes.set_ylabel(label)
    axes.grid(alpha=0.3)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    if axes.get_legend_handles_labels()[0]:  # beside the chart: never over a curve
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                    title="trials, best first", title_fontsize=8, frameon=False)
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        figure.savefig(buffer, format=fmt,
                       metadata={"Software": None} if fmt == "png" else None)
    return buffer.getvalue()


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "-".join(str(v) for v in value)
    return str(value)
