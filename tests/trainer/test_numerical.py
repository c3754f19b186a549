"""Tests of the vectorised numerical gradient against backprop and the straightforward oracle."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tests.trainer.oracle import naive_numerical_gradient
from trainer import last_hidden, numerical
from trainer.network import Network, init_params
from trainer.numerical import H, gradient_check, numerical_gradient

ACTIVATIONS = ["sigmoid", "relu"]
LOSSES = ["cross_entropy", "sum_squares"]
HIDDEN = [(5,), (5, 4), (4, 3, 5)]  # 1, 2 and 3 hidden layers: every path of numerical.py
N_FEATURES, N_CLASSES, BATCH = 6, 4, 8


def small_problem(
    activation: str, loss: str, hidden: tuple[int, ...], seed: int = 0
) -> tuple[Network, np.ndarray, np.ndarray]:
    """A float64 net with non-zero biases (so relu pre-activations are not exactly 0)."""
    rng = np.random.default_rng(seed)
    sizes = (N_FEATURES, *hidden, N_CLASSES)
    params = init_params(sizes, activation, rng, dtype="float64")
    for b in params[1::2]:
        b[...] = rng.normal(scale=0.5, size=b.shape)
    x = rng.normal(size=(BATCH, N_FEATURES))
    t = rng.integers(0, N_CLASSES, size=BATCH)
    return Network(params, activation, loss), x, t


def large_problem(
    activation: str, loss: str, hidden: tuple[int, ...], seed: int = 1
) -> tuple[Network, np.ndarray, np.ndarray]:
    """Large inputs into the last hidden layer and large output weights.

    h * |input| * |output weight differences| is then far above what the exponential series
    of last_hidden.py can sum to float64 accuracy, so it must take the direct-exp fallback.
    The layers in between are scaled so that the softmax is not saturated (a saturated one
    has a vanishing gradient, which would make the comparison meaningless).
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH, N_FEATURES)) * (100.0 if activation == "relu" else 300.0)
    t = rng.integers(0, N_CLASSES, size=BATCH)
    sizes = (N_FEATURES, *hidden, N_CLASSES)
    params = init_params(sizes, activation, rng, weight_init_std=1.0, dtype="float64")
    n = len(hidden)
    for layer in range(n + 1):
        w, b = params[2 * layer], params[2 * layer + 1]
        b[...] = rng.normal(scale=0.5, size=b.shape)
        if layer == n:  # output weights: std 6 (relu) or 12 (sigmoid)
            w *= 6.0 if activation == "relu" else 12.0
        elif layer == n - 1:  # the last hidden layer: small weights, moderate logits
            w *= 0.003 if n > 1 else 0.01
        elif layer > 0:
            w *= 0.5
    return Network(params, activation, loss), x, t


def max_relative_error(actual: list[np.ndarray], expected: list[np.ndarray]) -> float:
    """max |actual - expected| / max |expected|, over every parameter array."""
    errors = []
    for a, e in zip(actual, expected, strict=True):
        assert a.shape == e.shape
        errors.append(float(np.abs(a - e).max() / max(float(np.abs(e).max()), 1e-30)))
    return max(errors)


def relu_pre_activations_are_away_from_the_kink(net: Network, x: np.ndarray) -> bool:
    z = x
    for layer in range(net.n_layers - 1):
        w, b = net.weights(layer)
        pre = z @ w + b
        if np.abs(pre).min() < 100 * H:
            return False
        z = np.maximum(pre, 0.0)
    return True


@pytest.mark.parametrize("hidden", HIDDEN, ids=lambda h: f"{len(h)}hidden")
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_backprop_agrees_with_the_numerical_gradient_for_every_parameter(
    activation: str, loss: str, hidden: tuple[int, ...]
) -> None:
    net, x, t = small_problem(activation, loss, hidden)
    if activation == "relu":
        assert relu_pre_activations_are_away_from_the_kink(net, x)
    errors = gradient_check(net, x, t)
    assert len(errors) == len(net.params)
    assert max(errors) < 1e-7, errors


@pytest.mark.parametrize("hidden", HIDDEN, ids=lambda h: f"{len(h)}hidden")
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_numerical_gradient_agrees_with_the_straightforward_oracle(
    activation: str, loss: str, hidden: tuple[int, ...]
) -> None:
    net, x, t = small_problem(activation, loss, hidden)
    before = [p.copy() for p in net.params]
    fast = numerical_gradient(net, x, t)
    for p, b in zip(net.params, before, strict=True):
        np.testing.assert_array_equal(p, b)  # the parameters are left untouched
    slow = naive_numerical_gradient(net, x, t)
    assert [g.shape for g in fast] == [p.shape for p in net.params]
    assert all(g.dtype == np.float64 for g in fast)
    assert max_relative_error(fast, slow) < 1e-8


@pytest.mark.parametrize(
    ("activation", "hidden"),
    [("relu", (5,)), ("relu", (5, 4)), ("relu", (4, 3, 5)), ("sigmoid", (5,))],
)
@pytest.mark.parametrize("loss", LOSSES)
def test_large_inputs_and_weights_take_the_direct_exp_path_and_agree_with_the_oracle(
    activation: str, loss: str, hidden: tuple[int, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    net, x, t = large_problem(activation, loss, hidden)
    calls: list[int] = []
    direct = last_hidden._direct_last_hidden

    def counting(*args: object) -> np.ndarray:
        calls.append(1)
        return direct(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(last_hidden, "_direct_last_hidden", counting)
    fast = numerical_gradient(net, x, t)
    assert calls, "the series path was taken: this case does not test the fallback"
    slow = naive_numerical_gradient(net, x, t)
    last_weights = 2 * (len(hidden) - 1)  # the weights whose gradient the fallback computed
    assert float(np.abs(slow[last_weights]).max()) > 1e-2  # a gradient worth comparing
    assert max_relative_error(fast, slow) < 1e-6


@pytest.mark.parametrize("h", [1e-3, 1e-2])
@pytest.mark.parametrize("loss", LOSSES)
def test_numerical_gradient_with_another_step_agrees_with_the_oracle_with_that_step(
    loss: str, h: float
) -> None:
    net, x, t = small_problem("sigmoid", loss, (5, 4))
    assert max_relative_error(
        numerical_gradient(net, x, t, h=h), naive_numerical_gradient(net, x, t, h=h)
    ) < 1e-8


@pytest.mark.parametrize("hidden", HIDDEN, ids=lambda h: f"{len(h)}hidden")
@pytest.mark.parametrize("loss", LOSSES)
def test_tiny_chunks_give_the_same_numerical_gradient(
    loss: str, hidden: tuple[int, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    net, x, t = small_problem("relu", loss, hidden)
    whole = numerical_gradient(net, x, t)
    monkeypatch.setattr(numerical, "CHUNK_ELEMENTS", 7)  # one perturbation row per chunk
    chunked = numerical_gradient(net, x, t)
    assert max_relative_error(chunked, whole) < 1e-12


def test_numerical_gradient_refuses_float32() -> None:
    net, x, t = small_problem("sigmoid", "cross_entropy", (3,))
    net32 = Network([p.astype(np.float32) for p in net.params], "sigmoid", "cross_entropy")
    with pytest.raises(TypeError, match="float64"):
        numerical_gradient(net32, x.astype(np.float32), t)
    with pytest.raises(TypeError, match="float64"):
        numerical_gradient(net, x.astype(np.float32), t)


def test_gradient_check_reports_a_wrong_gradient() -> None:
    """The check can fail: a network whose backprop is off by a factor is caught."""
    net, x, t = small_problem("sigmoid", "cross_entropy", (5,))

    class Wrong(Network):
        def gradient(self, x: np.ndarray, t: np.ndarray) -> tuple[float, list[np.ndarray]]:
            loss, grads = super().gradient(x, t)
            grads[2] *= 1.01
            return loss, grads

    wrong = Wrong([p.copy() for p in net.params], net.activation, net.loss)
    errors = gradient_check(wrong, x, t)
    assert errors[2] > 1e-3
    assert max(errors[:2] + errors[3:]) < 1e-7


@pytest.mark.parametrize("hidden", HIDDEN, ids=lambda h: f"{len(h)}hidden")
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_float32_backprop_agrees_with_float64_backprop(
    activation: str, loss: str, hidden: tuple[int, ...]
) -> None:
    net64, x, t = small_problem(activation, loss, hidden)
    net32 = Network([p.astype(np.float32) for p in net64.params], activation, loss)
    loss64, grads64 = net64.gradient(x, t)
    loss32, grads32 = net32.gradient(x.astype(np.float32), t)
    assert all(g.dtype == np.float32 for g in grads32)
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    assert max_relative_error(grads32, grads64) < 1e-4


def saturated_sigmoid_problem() -> tuple[Network, np.ndarray, np.ndarray]:
    """A sigmoid unit whose pre-activation is -800 for one sample: exp(800) overflows."""
    rng = np.random.default_rng(0)
    params = init_params((2, 3, 2), "sigmoid", rng, dtype="float64")
    params[0][:, 0] = [800.0, 0.0]
    x = np.array([[-1.0, 0.5], [2.0, -0.3]])
    return Network(params, "sigmoid", "cross_entropy"), x, np.array([0, 1])


def test_a_saturated_sigmoid_unit_gets_the_oracles_gradient() -> None:
    net, x, t = saturated_sigmoid_problem()
    with np.errstate(over="ignore"):
        fast = numerical_gradient(net, x, t)
    assert max_relative_error(fast, naive_numerical_gradient(net, x, t)) < 1e-8


def test_a_saturated_sigmoid_unit_raises_no_overflow_warning() -> None:
    net, x, t = saturated_sigmoid_problem()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        numerical_gradient(net, x, t)
        # Backprop leaves silencing to its caller (the training loop does it once per run).
        with np.errstate(over="ignore"):
            net.gradient(x, t)
