"""The frozen training configuration and the bounds every entry point enforces."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from trainer.errors import InvalidConfig

ACTIVATION_NAMES = ("sigmoid", "relu")
LOSS_NAMES = ("cross_entropy", "sum_squares")
GRADIENT_NAMES = ("backprop", "numerical")
DTYPE_NAMES = ("float32", "float64")

MAX_HIDDEN_LAYERS = 8
MAX_LAYER_SIZE = 4096
MAX_LEARNING_RATE = 10.0
MAX_EPOCHS = 1000
MAX_VALIDATION_FRACTION = 0.5


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run; the job spec minus `dataset` and `name`."""

    hidden_sizes: tuple[int, ...] = (50,)
    activation: str = "sigmoid"
    loss: str = "cross_entropy"
    gradient: str = "backprop"
    dtype: str | None = None
    learning_rate: float = 0.1
    momentum: float = 0.0
    batch_size: int = 100
    epochs: int = 10
    validation_fraction: float = 0.1
    early_stopping_patience: int | None = None
    weight_init_std: float | None = None
    seed: int = 0

    @property
    def resolved_dtype(self) -> str:
        """float64 for the numerical gradient (h = 1e-4 needs it), float32 otherwise."""
        if self.dtype is not None:
            return self.dtype
        return "float64" if self.gradient == "numerical" else "float32"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["hidden_sizes"] = list(self.hidden_sizes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "hidden_sizes" in known:
            known["hidden_sizes"] = tuple(known["hidden_sizes"])
        return cls(**known)

    def validate(self, n_train: int | None = None) -> None:
        """Raise InvalidConfig naming the first field out of bounds.

        `n_train` is the number of training samples after the validation split; when given,
        `batch_size` is checked against it.
        """
        sizes = self.hidden_sizes
        if not 1 <= len(sizes) <= MAX_HIDDEN_LAYERS:
            raise InvalidConfig(
                "hidden_sizes",
                f"hidden_sizes must have 1 to {MAX_HIDDEN_LAYERS} layers, got {len(sizes)}",
            )
        for size in sizes:
            if not 1 <= size <= MAX_LAYER_SIZE:
                raise InvalidConfig(
                    "hidden_sizes",
                    f"hidden_sizes entries must be 1 to {MAX_LAYER_SIZE}, got {size}",
                )
        _choice("activation", self.activation, ACTIVATION_NAMES)
        _choice("loss", self.loss, LOSS_NAMES)
        _choice("gradient", self.gradient, GRADIENT_NAMES)
        if self.dtype is not None:
            _choice("dtype", self.dtype, DTYPE_NAMES)
        if self.gradient == "numerical" and self.dtype == "float32":
            raise InvalidConfig(
                "dtype",
                "dtype float32 cannot be used with gradient numerical: central differences "
                "with h = 1e-4 drown in float32 rounding; use float64 or leave dtype null",
            )
        if not 0 < self.learning_rate <= MAX_LEARNING_RATE:
            raise InvalidConfig(
                "learning_rate",
                f"learning_rate must be > 0 and <= {MAX_LEARNING_RATE:g}, "
                f"got {self.learning_rate!r}",
            )
        if not 0 <= self.momentum < 1:
            raise InvalidConfig(
                "momentum", f"momentum must be >= 0 and < 1, got {self.momentum!r}"
            )
        if not 1 <= self.epochs <= MAX_EPOCHS:
            raise InvalidConfig("epochs", f"epochs must be 1 to {MAX_EPOCHS}, got {self.epochs}")
        if not 0 <= self.validation_fraction <= MAX_VALIDATION_FRACTION:
            raise InvalidConfig(
                "validation_fraction",
                f"validation_fraction must be >= 0 and <= {MAX_VALIDATION_FRACTION}, "
                f"got {self.validation_fraction!r}",
            )
        if self.early_stopping_patience is not None:
            if self.early_stopping_patience < 1:
                raise InvalidConfig(
                    "early_stopping_patience",
                    "early_stopping_patience must be null or >= 1, "
                    f"got {self.early_stopping_patience}",
                )
            if self.validation_fraction == 0:
                raise InvalidConfig(
                    "early_stopping_patience",
                    "early_stopping_patience needs a validation set: "
                    "validation_fraction must be > 0",
                )
        if self.weight_init_std is not None and not self.weight_init_std > 0:
            raise InvalidConfig(
                "weight_init_std",
                f"weight_init_std must be null or > 0, got {self.weight_init_std!r}",
            )
        if self.seed < 0:
            raise InvalidConfig("seed", f"seed must be >= 0, got {self.seed}")
        if self.batch_size < 1:
            raise InvalidConfig("batch_size", f"batch_size must be >= 1, got {self.batch_size}")
        if n_train is not None and self.batch_size > n_train:
            raise InvalidConfig(
                "batch_size",
                f"batch_size must be <= the training set's size ({n_train}), "
                f"got {self.batch_size}",
            )


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InvalidConfig(
            name, f"{name} must be one of {', '.join(allowed)}; got {value!r}"
        )
