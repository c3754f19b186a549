"""A sweep's rules, pure (DESIGN.md "Sweeps"): the trials a search space makes, a trial's
objective at an epoch and at its chosen epoch, the median stopping rule, the ranking.

The Redis side is app.store.sweeps; the validation at the door is app.api.sweep_admission.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Objective = Literal["val_accuracy", "val_loss"]
OBJECTIVES: dict[str, str] = {"val_accuracy": "max", "val_loss": "min"}
SIGNIFICANT = 6  # digits a drawn number keeps: readable params, far finer than any effect


@dataclass(frozen=True)
class Dimension:
    """One varied field: a list of `values`, or a range low..high (`log`: uniform in the
    logarithm; `integer`: rounded)."""

    field: str
    values: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False

    def draw(self, rng: np.random.Generator) -> Any:
        if self.values is not None:
            return self.values[int(rng.integers(len(self.values)))]
        assert self.low is not None and self.high is not None
        if self.log:
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            value = rng.uniform(self.low, self.high)
        if self.integer:
            return min(max(round(value), math.ceil(self.low)), math.floor(self.high))
        return float(f"{value:.{SIGNIFICANT}g}")


def grid(dimensions: Sequence[Dimension]) -> list[dict[str, Any]]:
    """Every combination of the dimensions' values, the last dimension varying fastest."""
    names = [d.field for d in dimensions]
    pools = [d.values or () for d in dimensions]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*pools)]


def grid_size(dimensions: Sequence[Dimension]) -> int:
    return math.prod(len(d.values or ()) for d in dimensions)


def random_trials(dimensions: Sequence[Dimension], trials: int, seed: int) -> list[dict[str, Any]]:
    """`trials` draws, each dimension in order, from one generator seeded with `seed`."""
    rng = np.random.default_rng(seed)
    return [{d.field: d.draw(rng) for d in dimensions} for _ in range(trials)]


def dispatch_order(method: str, count: int, seed: int) -> list[int]:
    """The order a sweep makes its trials in. A grid's is shuffled, seeded: in product
    order one corner of the space would run first, and the median rule judges each trial
    against the trials that ran before it. Random draws are in random order already."""
    if method != "grid":
        return list(range(count))
    return [int(i) for i in np.random.default_rng(seed).permutation(count)]


def objective_at(row: Mapping[str, Any] | None, objective: str) -> float | None:
    """The objective in an epoch row; None when absent or not a number."""
    if row is None:
        return None
    value = row.get(objective)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def chosen_epoch(rows: Mapping[int, Mapping[str, Any]]) -> int | None:
    """The epoch whose weights a run keeps (trainer.loop): the least validation loss, the
    earliest on ties; None before the first epoch row."""
    best: tuple[float, int] | None = None
    for epoch in sorted(rows):
        loss = objective_at(rows[epoch], "val_loss")
        if loss is not None and (best is None or loss < best[0]):
            best = (loss, epoch)
    return best[1] if best else None


def better(a: float, b: float, objective: str) -> bool:
    """Whether objective value `a` is strictly better than `b`."""
    return a > b if OBJECTIVES[objective] == "max" else a < b


def median_verdict(
    value: float | None, others: Iterable[float], objective: str, min_trials: int = 1
) -> tuple[bool, float | None, int]:
    """The median rule at one epoch: (prune, the others' median, how many others).
    A trial is pruned when its objective is worse than the median of the other trials'
    objectives at the same epoch; with fewer than `min_trials` others there, or no value,
    it is not (one other trial's number is no median to judge by)."""
    values = [v for v in others if v is not None and math.isfinite(v)]
    if value is None or not values or len(values) < min_trials:
        return False, None, len(values)
    median = float(statistics.median(values))
    return better(median, value, objective), median, len(values)


def rank_key(objective: str, value: float | None, trial: int) -> tuple[int, float, int]:
    """Sorts trials best first: those with a value by it, ties by the lower trial number,
    then those without one."""
    if value is None:
        return (1, 0.0, trial)
    return (0, -value if OBJECTIVES[objective] == "max" else value, trial)
