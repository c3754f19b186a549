"""Tests of TrainConfig: defaults, dict round trip, and validation naming field and value."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from trainer import Dataset, InvalidConfig, TrainConfig, train, training_size
from trainer.errors import TrainerError


def test_defaults_are_the_job_specs_defaults() -> None:
    config = TrainConfig()
    assert config.hidden_sizes == (50,)
    assert config.activation == "sigmoid"
    assert config.loss == "cross_entropy"
    assert config.gradient == "backprop"
    assert config.dtype is None
    assert config.learning_rate == 0.1
    assert config.momentum == 0.0
    assert config.batch_size == 100
    assert config.epochs == 10
    assert config.validation_fraction == 0.1
    assert config.early_stopping_patience is None
    assert config.weight_init_std is None
    assert config.seed == 0
    config.validate()


def test_config_is_frozen() -> None:
    config = TrainConfig()
    with pytest.raises(AttributeError):
        config.epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("gradient", "dtype", "resolved"),
    [
        ("backprop", None, "float32"),
        ("numerical", None, "float64"),
        ("backprop", "float64", "float64"),
        ("backprop", "float32", "float32"),
        ("numerical", "float64", "float64"),
    ],
)
def test_resolved_dtype(gradient: str, dtype: str | None, resolved: str) -> None:
    assert TrainConfig(gradient=gradient, dtype=dtype).resolved_dtype == resolved


def test_dict_round_trip_and_unknown_keys_ignored() -> None:
    config = TrainConfig(hidden_sizes=(7, 3), activation="relu", momentum=0.5,
                         early_stopping_patience=2, weight_init_std=0.01, seed=9)
    data = config.to_dict()
    assert data["hidden_sizes"] == [7, 3]
    assert TrainConfig.from_dict(data) == config
    assert TrainConfig.from_dict({**data, "dataset": "blobs", "name": "x"}) == config


@pytest.mark.parametrize(
    "changes",
    [
        {"hidden_sizes": (1,) * 8},
        {"hidden_sizes": (4096,)},
        {"learning_rate": 10.0},
        {"learning_rate": 1e-9},
        {"momentum": 0.0},
        {"momentum": 0.999},
        {"batch_size": 1},
        {"epochs": 1},
        {"epochs": 1000},
        {"validation_fraction": 0.0},
        {"validation_fraction": 0.5},
        {"early_stopping_patience": 1},
        {"weight_init_std": 0.01},
        {"gradient": "numerical", "dtype": "float64"},
        {"activation": "relu", "loss": "sum_squares"},
        {"seed": 2**40},
    ],
)
def test_values_at_the_bounds_are_accepted(changes: dict[str, Any]) -> None:
    TrainConfig(**changes).validate(n_train=100)


BAD_VALUES: list[tuple[str, dict[str, Any], str]] = [
    ("hidden_sizes", {"hidden_sizes": ()}, "0"),
    ("hidden_sizes", {"hidden_sizes": (5,) * 9}, "9"),
    ("hidden_sizes", {"hidden_sizes": (5, 0)}, "0"),
    ("hidden_sizes", {"hidden_sizes": (4097,)}, "4097"),
    ("activation", {"activation": "tanh"}, "'tanh'"),
    ("loss", {"loss": "hinge"}, "'hinge'"),
    ("gradient", {"gradient": "adjoint"}, "'adjoint'"),
    ("dtype", {"dtype": "float16"}, "'float16'"),
    ("dtype", {"gradient": "numerical", "dtype": "float32"}, "float32"),
    ("learning_rate", {"learning_rate": 0.0}, "0.0"),
    ("learning_rate", {"learning_rate": -0.1}, "-0.1"),
    ("learning_rate", {"learning_rate": 10.5}, "10.5"),
    ("learning_rate", {"learning_rate": math.nan}, "nan"),
    ("learning_rate", {"learning_rate": math.inf}, "inf"),
    ("momentum", {"momentum": -0.1}, "-0.1"),
    ("momentum", {"momentum": 1.0}, "1.0"),
    ("batch_size", {"batch_size": 0}, "0"),
    ("batch_size", {"batch_size": -5}, "-5"),
    ("epochs", {"epochs": 0}, "0"),
    ("epochs", {"epochs": 1001}, "1001"),
    ("validation_fraction", {"validation_fraction": -0.1}, "-0.1"),
    ("validation_fraction", {"validation_fraction": 0.51}, "0.51"),
    ("early_stopping_patience", {"early_stopping_patience": 0}, "0"),
    ("early_stopping_patience",
     {"early_stopping_patience": 2, "validation_fraction": 0.0}, "validation_fraction"),
    ("weight_init_std", {"weight_init_std": 0.0}, "0.0"),
    ("weight_init_std", {"weight_init_std": -1.0}, "-1.0"),
    ("weight_init_std", {"weight_init_std": math.nan}, "nan"),
    ("seed", {"seed": -1}, "-1"),
]


@pytest.mark.parametrize(("field", "changes", "shown"), BAD_VALUES,
                         ids=[f"{f}={c[f]!r}" for f, c, _ in BAD_VALUES])
def test_each_bad_value_is_refused_naming_the_field_and_value(
    field: str, changes: dict[str, Any], shown: str
) -> None:
    with pytest.raises(InvalidConfig) as info:
        TrainConfig(**changes).validate()
    error = info.value
    assert error.field == field
    assert field in str(error)
    assert shown in str(error)
    assert isinstance(error, ValueError) and isinstance(error, TrainerError)
    assert error.code == "invalid_config"


def test_numerical_with_float32_explains_why() -> None:
    with pytest.raises(InvalidConfig, match="h = 1e-4") as info:
        TrainConfig(gradient="numerical", dtype="float32").validate()
    assert "numerical" in str(info.value)


def test_batch_size_is_checked_against_the_training_size_when_given() -> None:
    TrainConfig(batch_size=50).validate(n_train=50)
    with pytest.raises(InvalidConfig) as info:
        TrainConfig(batch_size=51).validate(n_train=50)
    assert info.value.field == "batch_size"
    assert "50" in str(info.value) and "51" in str(info.value)


def tiny_dataset(n: int = 40) -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    return Dataset("tiny", x, np.arange(n, dtype=np.int64) % 2, 2)


def test_train_refuses_a_batch_larger_than_the_training_set() -> None:
    dataset = tiny_dataset(40)  # 8 held out for test, 32 left, 3 of them for validation
    n_train = training_size(32, TrainConfig())
    assert n_train == 29
    with pytest.raises(InvalidConfig) as info:
        train(TrainConfig(batch_size=n_train + 1, hidden_sizes=(3,)), dataset)
    assert info.value.field == "batch_size"
    assert str(n_train) in str(info.value) and str(n_train + 1) in str(info.value)
    result = train(TrainConfig(batch_size=n_train, hidden_sizes=(3,), epochs=1), dataset)
    assert result.metrics["iterations"] == 1


def test_train_refuses_an_invalid_config_before_training() -> None:
    calls: list[int] = []
    from trainer import Callbacks

    callbacks = Callbacks(on_iterations=lambda first, losses: calls.append(first))
    with pytest.raises(InvalidConfig) as info:
        train(TrainConfig(learning_rate=0.0, hidden_sizes=(3,), batch_size=4),
              tiny_dataset(), callbacks)
    assert info.value.field == "learning_rate"
    assert calls == []


def test_train_states_the_documented_bound_of_validation_fraction() -> None:
    with pytest.raises(InvalidConfig, match=r"<= 0\.5"):
        train(TrainConfig(validation_fraction=1.0, hidden_sizes=(3,), batch_size=4),
              tiny_dataset())
