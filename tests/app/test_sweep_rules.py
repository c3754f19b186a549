"""A sweep's pure rules (app.sweeps): the trials of a space, the chosen epoch, the median
stopping rule and the ranking."""

from __future__ import annotations

import math

import pytest

from app.sweeps import (
    Dimension,
    chosen_epoch,
    grid,
    grid_size,
    median_verdict,
    objective_at,
    random_trials,
    rank_key,
)


def test_a_grid_is_every_combination_the_last_dimension_fastest() -> None:
    dims = [Dimension("learning_rate", values=(0.1, 1.0)),
            Dimension("hidden_sizes", values=([10], [20], [30]))]
    trials = grid(dims)
    assert grid_size(dims) == len(trials) == 6
    assert trials[:3] == [{"learning_rate": 0.1, "hidden_sizes": [10]},
                          {"learning_rate": 0.1, "hidden_sizes": [20]},
                          {"learning_rate": 0.1, "hidden_sizes": [30]}]
    assert trials[3] == {"learning_rate": 1.0, "hidden_sizes": [10]}


def test_random_draws_are_seeded_in_range_log_uniform_and_integers_rounded() -> None:
    dims = [Dimension("learning_rate", low=1e-4, high=10.0, log=True),
            Dimension("momentum", low=0.0, high=0.9),
            Dimension("epochs", low=2, high=5, integer=True),
            Dimension("activation", values=("sigmoid", "relu"))]
    trials = random_trials(dims, 400, seed=7)
    assert trials == random_trials(dims, 400, seed=7)
    assert trials != random_trials(dims, 400, seed=8)
    rates = [t["learning_rate"] for t in trials]
    assert all(1e-4 <= r <= 10.0 for r in rates)
    # log-uniform: about as many draws below 0.03 (the middle in the log) as above
    below = sum(r < math.sqrt(1e-4 * 10.0) for r in rates)
    assert 150 < below < 250
    assert all(0.0 <= t["momentum"] <= 0.9 for t in trials)
    assert {t["epochs"] for t in trials} == {2, 3, 4, 5}
    assert all(isinstance(t["epochs"], int) for t in trials)
    assert {t["activation"] for t in trials} == {"sigmoid", "relu"}


def test_the_chosen_epoch_is_the_least_validation_loss_the_earliest_on_ties() -> None:
    rows = {1: {"val_loss": 0.9}, 2: {"val_loss": 0.4}, 3: {"val_loss": 0.4},
            4: {"val_loss": None}}
    assert chosen_epoch(rows) == 2
    assert chosen_epoch({}) is None
    assert objective_at({"val_accuracy": float("nan")}, "val_accuracy") is None
    assert objective_at({"val_accuracy": 0.5}, "val_accuracy") == 0.5


@pytest.mark.parametrize(
    ("value", "others", "objective", "prune"),
    [
        (0.5, [0.6, 0.7, 0.8], "val_accuracy", True),   # below the median 0.7
        (0.7, [0.6, 0.7, 0.8], "val_accuracy", False),  # at the median: kept
        (0.9, [0.6, 0.7], "val_accuracy", False),
        (0.9, [0.3, 0.5], "val_loss", True),            # a loss above the median 0.4
        (0.2, [0.3, 0.5], "val_loss", False),
        (0.1, [], "val_accuracy", False),               # alone at that epoch: kept
        (None, [0.5], "val_accuracy", False),
    ],
)
def test_the_median_rule(value: float | None, others: list[float], objective: str,
                         prune: bool) -> None:
    verdict, _median, n = median_verdict(value, others, objective)
    assert verdict is prune and n == len(others)


def test_the_median_rule_waits_for_min_trials_others() -> None:
    assert median_verdict(0.1, [0.9], "val_accuracy", min_trials=2)[0] is False
    assert median_verdict(0.1, [0.9, 0.8], "val_accuracy", min_trials=2)[0] is True


def test_ranking_is_best_first_ties_by_trial_and_no_value_last() -> None:
    views = [(0, 0.8), (1, 0.9), (2, None), (3, 0.9)]
    by_accuracy = sorted(views, key=lambda v: rank_key("val_accuracy", v[1], v[0]))
    assert [t for t, _ in by_accuracy] == [1, 3, 0, 2]
    by_loss = sorted(views, key=lambda v: rank_key("val_loss", v[1], v[0]))
    assert [t for t, _ in by_loss] == [0, 1, 3, 2]
