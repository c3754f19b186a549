"""Domain errors of the trainer; app/ turns them into HTTP answers, worker/ into job states."""

from __future__ import annotations

from collections.abc import Callable


class TrainerError(Exception):
    """Base class of every error the trainer raises on purpose."""

    code = "internal"


class InvalidConfig(TrainerError, ValueError):
    """A training configuration that cannot run; the message names the field and the value."""

    code = "invalid_config"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class DatasetError(TrainerError):
    """A dataset that cannot be read or is malformed; the message says what is wrong."""

    code = "invalid_dataset"


class DatasetUnavailable(DatasetError):
    """A known dataset whose files are absent; the message says how to make it available."""


class UnknownDataset(DatasetError):
    """A dataset name that is not in the catalogue; the message lists the known ones."""


class Diverged(TrainerError):
    """The loss became non-finite or exploded; `field` names the setting to blame.

    Usually `learning_rate` (too large); `weight_init_std` when the initial weights already
    explode the loss before any step; `dataset` when even the default initialisation does.
    """

    code = "diverged"

    def __init__(self, iteration: int, loss: float, field: str, advice: str) -> None:
        where = f"at iteration {iteration}" if iteration else "before the first step"
        super().__init__(f"training diverged {where}: loss {loss!r}; {advice}")
        self.iteration = iteration
        self.loss = loss
        self.field = field


class Stopped(TrainerError):
    """`should_stop` returned true (cancellation); `iteration` iterations were completed."""

    code = "cancelled"

    def __init__(self, iteration: int) -> None:
        super().__init__(f"stopped on request after iteration {iteration}")
        self.iteration = iteration


# Called between the pieces of a long computation (initialisation, an evaluation pass, a
# numerical gradient); raises Stopped to abandon it. The training loop's asks should_stop().
StopCheck = Callable[[], None]
