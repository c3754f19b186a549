"""Tests of the activations, the stable softmax and the book's two losses."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from trainer.errors import InvalidConfig
from trainer.functions import (
    ACTIVATION_GRADS_INPLACE,
    ACTIVATIONS,
    ACTIVATIONS_INPLACE,
    BOOK_DELTA,
    LOSSES_FROM_LOGITS,
    LOSSES_ON_PROBABILITIES,
    cross_entropy_error,
    cross_entropy_from_logits,
    log_softmax,
    lookup,
    one_hot,
    relu,
    sigmoid,
    softmax,
    sum_squares_error,
    sum_squares_from_logits,
)

# The book's worked example (chapter 4): the target is class 2.
Y_RIGHT = np.array([0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0])
Y_WRONG = np.array([0.1, 0.05, 0.1, 0.0, 0.05, 0.1, 0.0, 0.6, 0.0, 0.0])  # 0.6 moved to 7
T_LABEL = 2
T_ONE_HOT = np.array([0, 0, 1, 0, 0, 0, 0, 0, 0, 0])


# --- the book's worked examples ------------------------------------------------------------


@pytest.mark.parametrize("t", [T_ONE_HOT, T_LABEL, np.array(T_LABEL), np.array([T_LABEL])])
def test_sum_squares_matches_the_books_worked_example(t: object) -> None:
    assert round(sum_squares_error(Y_RIGHT, t), 4) == 0.0975
    assert round(sum_squares_error(Y_WRONG, t), 4) == 0.5975
    assert sum_squares_error(Y_RIGHT, t) == pytest.approx(0.0975, abs=1e-12)
    assert sum_squares_error(Y_WRONG, t) == pytest.approx(0.5975, abs=1e-12)


@pytest.mark.parametrize("t", [T_ONE_HOT, T_LABEL, np.array(T_LABEL), np.array([T_LABEL])])
def test_cross_entropy_matches_the_books_worked_example(t: object) -> None:
    assert round(cross_entropy_error(Y_RIGHT, t), 4) == 0.5108
    assert round(cross_entropy_error(Y_WRONG, t), 4) == 2.3026
    assert cross_entropy_error(Y_RIGHT, t) == pytest.approx(-math.log(0.6 + 1e-7), abs=1e-12)
    assert cross_entropy_error(Y_WRONG, t) == pytest.approx(-math.log(0.1 + 1e-7), abs=1e-12)


@pytest.mark.parametrize("t", [np.array([T_LABEL, T_LABEL]), np.stack([T_ONE_HOT, T_ONE_HOT])])
def test_losses_of_a_batch_are_the_mean_of_the_samples(t: np.ndarray) -> None:
    y = np.stack([Y_RIGHT, Y_WRONG])
    assert sum_squares_error(y, t) == pytest.approx((0.0975 + 0.5975) / 2, abs=1e-12)
    assert cross_entropy_error(y, t) == pytest.approx(
        (-math.log(0.6 + 1e-7) - math.log(0.1 + 1e-7)) / 2, abs=1e-12
    )
    # a mean, not a sum: the batch of the same sample twice scores like the sample
    same = np.stack([Y_RIGHT, Y_RIGHT])
    assert cross_entropy_error(same, t) == pytest.approx(cross_entropy_error(Y_RIGHT, T_LABEL))
    assert sum_squares_error(same, t) == pytest.approx(sum_squares_error(Y_RIGHT, T_LABEL))


def test_cross_entropy_of_a_zero_probability_is_finite_thanks_to_the_delta() -> None:
    y = np.zeros(10)
    y[0] = 1.0
    loss = cross_entropy_error(y, T_LABEL)
    assert loss == pytest.approx(-math.log(BOOK_DELTA))
    assert math.isfinite(loss)


def test_the_probability_tables_hold_the_books_functions() -> None:
    assert LOSSES_ON_PROBABILITIES["cross_entropy"] is cross_entropy_error
    assert LOSSES_ON_PROBABILITIES["sum_squares"] is sum_squares_error
    assert set(LOSSES_FROM_LOGITS) == {"cross_entropy", "sum_squares"}


def test_losses_do_not_modify_their_inputs() -> None:
    y = Y_RIGHT.copy()
    t = T_ONE_HOT.copy()
    sum_squares_error(y, t)
    cross_entropy_error(y, t)
    np.testing.assert_array_equal(y, Y_RIGHT)
    np.testing.assert_array_equal(t, T_ONE_HOT)


# --- stable softmax and the losses of logits -----------------------------------------------


def test_softmax_of_huge_logits_does_not_overflow() -> None:
    a = np.array([[1000.0, 1001.0, 1002.0], [-1000.0, 0.0, 1000.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow warning would fail the test
        y = softmax(a)
        log_y = log_softmax(a)
    assert np.isfinite(y).all() and np.isfinite(log_y).all()
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(y[0], softmax(np.array([[0.0, 1.0, 2.0]]))[0], rtol=1e-15)
    np.testing.assert_allclose(log_y[1], [-2000.0, -1000.0, 0.0], rtol=1e-15)
    np.testing.assert_allclose(np.exp(log_y), y, rtol=1e-12, atol=0)


def test_softmax_is_the_books_formula_for_moderate_logits() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(5, 4))
    e = np.exp(a)
    np.testing.assert_allclose(softmax(a), e / e.sum(axis=1, keepdims=True), rtol=1e-14)
    np.testing.assert_allclose(log_softmax(a), np.log(e / e.sum(axis=1, keepdims=True)),
                               rtol=1e-13, atol=1e-15)


def test_softmax_of_float32_stays_float32() -> None:
    a = np.array([[1000.0, 0.0]], dtype=np.float32)
    assert softmax(a).dtype == np.float32
    assert np.isfinite(softmax(a)).all()


def test_losses_of_huge_logits_are_finite_and_exact() -> None:
    a = np.array([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 0.0]])
    t = np.array([0, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ce = cross_entropy_from_logits(a, t)
        ss = sum_squares_from_logits(a, t)
    np.testing.assert_allclose(ce, [0.0, 1000.0], atol=1e-12)
    np.testing.assert_allclose(ss, [0.0, 1.0], atol=1e-12)


@pytest.mark.parametrize("scale", [0.1, 1.0, 5.0])
def test_cross_entropy_of_logits_is_the_books_formula_on_softmax_up_to_the_delta(
    scale: float,
) -> None:
    rng = np.random.default_rng(2)
    a = scale * rng.normal(size=(20, 10))
    t = rng.integers(0, 10, size=20)
    per_sample = cross_entropy_from_logits(a, t)
    y = softmax(a)
    y_t = y[np.arange(20), t]
    # exactly -log softmax(a)[t] ...
    np.testing.assert_allclose(per_sample, -np.log(y_t), rtol=1e-12, atol=1e-14)
    # ... and the book's -log(y_t + 1e-7) differs only by the delta: log(1 + 1e-7 / y_t)
    book = np.array([cross_entropy_error(y[i], t[i]) for i in range(20)])
    np.testing.assert_allclose(per_sample - book, np.log1p(BOOK_DELTA / y_t), rtol=1e-6, atol=1e-15)
    assert np.all(per_sample - book <= 1.01 * BOOK_DELTA / y_t)
    assert cross_entropy_error(y, t) == pytest.approx(per_sample.mean(), abs=1e-7 / y_t.min())


@pytest.mark.parametrize("scale", [0.1, 1.0, 5.0, 300.0])
def test_sum_squares_of_logits_is_the_books_formula_on_softmax(scale: float) -> None:
    rng = np.random.default_rng(3)
    a = scale * rng.normal(size=(20, 10))
    t = rng.integers(0, 10, size=20)
    per_sample = sum_squares_from_logits(a, t)
    y = softmax(a)
    book = np.array([sum_squares_error(y[i], t[i]) for i in range(20)])
    np.testing.assert_allclose(per_sample, book, rtol=1e-12, atol=1e-15)
    assert sum_squares_error(y, one_hot(t, 10)) == pytest.approx(per_sample.mean(), rel=1e-12)


@pytest.mark.parametrize("loss", sorted(LOSSES_FROM_LOGITS))
def test_losses_of_logits_accept_a_leading_batch_of_perturbations(loss: str) -> None:
    rng = np.random.default_rng(4)
    a = rng.normal(size=(3, 6, 4))  # (P, B, K)
    t = rng.integers(0, 4, size=6)
    fn = LOSSES_FROM_LOGITS[loss]
    stacked = fn(a, t)
    assert stacked.shape == (3, 6)
    for p in range(3):
        np.testing.assert_allclose(stacked[p], fn(a[p], t), rtol=1e-15)


@pytest.mark.parametrize("loss", sorted(LOSSES_FROM_LOGITS))
def test_losses_of_logits_are_invariant_to_a_shift_of_the_logits(loss: str) -> None:
    rng = np.random.default_rng(5)
    a = rng.normal(size=(8, 5))
    t = rng.integers(0, 5, size=8)
    fn = LOSSES_FROM_LOGITS[loss]
    np.testing.assert_allclose(fn(a + 700.0, t), fn(a, t), rtol=1e-9, atol=1e-12)


# --- activations -------------------------------------------------------------------------


def test_sigmoid_values_and_extremes_without_warnings() -> None:
    a = np.array([-1000.0, -1.0, 0.0, 1.0, 1000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = sigmoid(a)
    np.testing.assert_allclose(y, [0.0, 1 / (1 + math.e), 0.5, 1 / (1 + math.exp(-1)), 1.0],
                               rtol=1e-15)


def test_relu_values() -> None:
    np.testing.assert_array_equal(relu(np.array([-2.0, 0.0, 3.5])), [0.0, 0.0, 3.5])


@pytest.mark.parametrize("name", ["sigmoid", "relu"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_in_place_activations_equal_the_allocating_ones(name: str, dtype: type) -> None:
    a = np.random.default_rng(6).normal(scale=5, size=(7, 3)).astype(dtype)
    expected = ACTIVATIONS[name](a.copy())
    work = a.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = ACTIVATIONS_INPLACE[name](work)
    assert out is work
    assert out.dtype == dtype
    np.testing.assert_allclose(out, expected, rtol=1e-6 if dtype == np.float32 else 1e-15)


def test_in_place_sigmoid_of_very_negative_float32_is_zero() -> None:
    a = np.array([-200.0, 200.0], dtype=np.float32)
    # exp overflows to inf on purpose (1 / (1 + inf) = 0); callers silence it per loop.
    with np.errstate(over="ignore"), warnings.catch_warnings():
        warnings.simplefilter("error")
        out = ACTIVATIONS_INPLACE["sigmoid"](a)
    np.testing.assert_array_equal(out, [0.0, 1.0])


def test_training_on_saturating_inputs_emits_no_overflow_warning() -> None:
    from trainer import TrainConfig, train
    from trainer.datasets import Dataset

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((60, 3)) * 500).astype(np.float32)  # sigmoid saturates hard
    t = (x[:, 0] > 0).astype(np.int64)
    dataset = Dataset("saturating", x, t, 2)
    config = TrainConfig(hidden_sizes=(4,), batch_size=10, epochs=2, weight_init_std=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = train(config, dataset)
    assert result.metrics["epochs_run"] == 2


@pytest.mark.parametrize("name", ["sigmoid", "relu"])
def test_activation_gradients_from_outputs_match_central_differences(name: str) -> None:
    rng = np.random.default_rng(7)
    a = rng.normal(size=(6, 4))
    a[np.abs(a) < 1e-3] = 0.5  # keep away from relu's kink
    upstream = rng.normal(size=a.shape)
    h = 1e-6
    fn = ACTIVATIONS[name]
    numeric = upstream * (fn(a + h) - fn(a - h)) / (2 * h)
    dz = upstream.copy()
    out = ACTIVATION_GRADS_INPLACE[name](dz, fn(a))
    assert out is dz
    np.testing.assert_allclose(out, numeric, rtol=1e-7, atol=1e-9)


# --- tables and helpers ------------------------------------------------------------------


def test_lookup_of_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(InvalidConfig) as info:
        lookup(ACTIVATIONS, "activation", "tanh")
    assert info.value.field == "activation"
    message = str(info.value)
    assert "'tanh'" in message and "relu" in message and "sigmoid" in message


def test_lookup_of_a_known_name_returns_the_function() -> None:
    assert lookup(ACTIVATIONS, "activation", "relu") is relu
    assert lookup(LOSSES_FROM_LOGITS, "loss", "cross_entropy") is cross_entropy_from_logits


def test_one_hot_puts_a_single_one_per_row() -> None:
    out = one_hot(np.array([2, 0, 1]), 4, dtype=np.float32)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(
        out, [[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0]]
    )
