"""What a run tells its user: which setting a divergence blames, and end-of-run warnings."""

from __future__ import annotations

import math

from trainer.errors import Diverged

EXPLODE_FACTOR = 100.0  # a loss this many times above its start (or chance) has diverged
BARELY_MOVED = 0.01  # a relative loss decrease below this over a run warns of a tiny rate
RECENT_EPOCHS = 1  # epoch rows a run (and its checkpoint) keeps: the warnings read the last


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
