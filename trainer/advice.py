"""What a run tells its user: which setting a divergence blames, and end-of-run warnings."""

from __future__ import annotations

import math

from trainer.checkpoint import EpochRecord
from trainer.config import TrainConfig
from trainer.errors import Diverged

EXPLODE_FACTOR = 100.0  # a loss this many times above its start (or chance) has diverged
# A relative decrease of the training loss below this over a whole run warns of a tiny rate.
# Measured: Fashion-MNIST, 784-50-10 sigmoid, 5 epochs (2,700 iterations): lr 1e-4 moved the
# loss 3.7% and ended at chance (2.29 against ln 10 = 2.30; 17% validation accuracy), while
# every rate from 1e-3 to 10 moved it by 17% or more.
BARELY_MOVED = 0.05
# A relative drop per epoch above this in each of a run's last three epochs (two, if it ran
# only three) warns that it stopped too soon. The book's settings on digits (sigmoid [50],
# lr 0.1, batch 100, 10 epochs: 69% test accuracy) still fall by 1.4%, 1.5% and 1.7%;
# converged runs fall by < 0.5%, or go up and down by more than this (hence three epochs).
STILL_FALLING = 0.01
RECENT_EPOCHS = 4  # epoch rows a run (and its checkpoint) keeps for these warnings


def chance_loss(loss: str, n_classes: int) -> float:
    """The loss of a network that knows nothing: uniform outputs (cross-entropy), or 0.5."""
    return math.log(n_classes) if loss == "cross_entropy" else 0.5


def explode_threshold(initial_loss: float, chance: float) -> float:
    return EXPLODE_FACTOR * max(initial_loss, chance)


def rate_too_large(iteration: int, loss: float, learning_rate: float) -> Diverged:
    return Diverged(
        iteration, loss, "learning_rate",
        f"learning_rate {learning_rate!r} is too large, try {learning_rate / 10:g}",
    )


def check_initial_weights(
    config: TrainConfig, weights_finite: bool, initial_loss: float, chance: float
) -> None:
    """Raise Diverged before any step when the initial weights are not finite or already
    explode the loss: the learning rate cannot be to blame, the initialisation is (or, with
    the default initialisation, the scale of the features)."""
    if weights_finite and math.isfinite(initial_loss) and initial_loss <= EXPLODE_FACTOR * chance:
        return
    if not weights_finite:
        what = f"the initial weights are not finite in {config.resolved_dtype}"
    else:
        what = f"the initial weights give a loss {initial_loss:.4g} (chance is {chance:.4g})"
    std = config.weight_init_std
    if std is not None:
        raise Diverged(
            0, initial_loss, "weight_init_std",
            f"{what}: weight_init_std {std!r} is too large; use null (Xavier for sigmoid, "
            "He for relu) or the book's 0.01",
        )
    raise Diverged(
        0, initial_loss, "dataset",
        f"{what} with the default (Xavier/He) initialisation: the features are too large; "
        "scale them (for example, standardize the dataset)",
    )


def learning_rate_warnings(
    initial: float, final: float, iterations: int, learning_rate: float
) -> list[str]:
    """Warn when the training loss barely moved over the run (rate too small) or rose.

    `initial` and `final` are the loss on the same fixed training subset before the first
    step and after the last one, so mini-batch noise cannot fake or hide a change.
    """
    if not (math.isfinite(initial) and math.isfinite(final)) or initial <= 0:
        return []
    change = (initial - final) / initial
    if change < -BARELY_MOVED:
        return [
            f"the training loss rose over {iterations} iterations ({initial:.4g} -> {final:.4g}): "
            f"learning_rate {learning_rate:g} may be too large"
        ]
    if change < BARELY_MOVED:
        return [
            f"the training loss barely moved over {iterations} iterations "
            f"({initial:.4g} -> {final:.4g}, {-100 * change:+.2f}%): "
            f"learning_rate {learning_rate:g} may be too small"
        ]
    return []


def stopped_too_soon_warnings(recent: list[EpochRecord], epochs: int) -> list[str]:
    """Warn when a run that went all its `epochs` ended with its loss still falling fast.

    The loss is the validation loss, or without a validation set the training loss on
    the fixed evaluation subset; `recent` are the run's last rows (three at least).
    """
    rows = recent[-RECENT_EPOCHS:]
    if len(rows) < 3 or rows[-1].epoch != epochs:
        return []
    losses = [r.val_loss if r.val_loss is not None else r.train_loss for r in rows]
    if not all(math.isfinite(v) and v > 0 for v in losses):
        return []
    drops = [(a - b) / a for a, b in zip(losses, losses[1:], strict=False)]
    if min(drops) < STILL_FALLING:
        return []
    which = "training loss" if rows[-1].val_loss is None else "validation loss"
    per_epoch = ", ".join(
        f"{100 * d:.1f}% in epoch {r.epoch}" for d, r in zip(drops, rows[1:], strict=True)
    )
    return [
        f"the {which} was still falling fast when the run ended ({per_epoch}; "
        f"{losses[0]:.4g} -> {losses[-1]:.4g}): more epochs would likely help"
    ]
