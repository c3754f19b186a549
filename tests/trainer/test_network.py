"""Tests of the network: initialisation, forward pass, losses and the backprop gradient."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.errors import InvalidConfig
from trainer.functions import (
    LOSSES_FROM_LOGITS,
    cross_entropy_error,
    softmax,
    sum_squares_error,
)
from trainer.network import Network, init_params


def make_net(
    sizes: tuple[int, ...] = (4, 6, 3), activation: str = "sigmoid",
    loss: str = "cross_entropy", dtype: str = "float64", seed: int = 0,
) -> Network:
    rng = np.random.default_rng(seed)
    params = init_params(sizes, activation, rng, dtype=dtype)
    for b in params[1::2]:
        b[...] = rng.normal(scale=0.3, size=b.shape)
    return Network(params, activation, loss)


def data(n: int = 10, n_features: int = 4, n_classes: int = 3, seed: int = 1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, n_features)), rng.integers(0, n_classes, size=n)


# --- initialisation ----------------------------------------------------------------------


def test_init_params_shapes_dtype_and_zero_biases() -> None:
    params = init_params((5, 7, 3, 2), "relu", np.random.default_rng(0), dtype="float32")
    assert [p.shape for p in params] == [(5, 7), (7,), (7, 3), (3,), (3, 2), (2,)]
    assert all(p.dtype == np.float32 for p in params)
    assert all(p.flags.c_contiguous for p in params)
    for b in params[1::2]:
        np.testing.assert_array_equal(b, 0.0)


@pytest.mark.parametrize(("activation", "gain"), [("relu", 2.0), ("sigmoid", 1.0)])
def test_default_init_is_he_for_relu_and_xavier_for_sigmoid(activation: str, gain: float) -> None:
    n_in = 400
    params = init_params((n_in, 500, 2), activation, np.random.default_rng(0), dtype="float64")
    expected = np.sqrt(gain / n_in)
    assert params[0].std() == pytest.approx(expected, rel=0.02)
    assert params[0].mean() == pytest.approx(0.0, abs=0.05 * expected)
    assert params[2].std() == pytest.approx(np.sqrt(gain / 500), rel=0.1)


def test_explicit_weight_init_std_is_used_for_every_layer() -> None:
    params = init_params((300, 400, 300), "relu", np.random.default_rng(0), 0.01, "float64")
    assert params[0].std() == pytest.approx(0.01, rel=0.02)
    assert params[2].std() == pytest.approx(0.01, rel=0.02)


def test_init_params_depends_only_on_the_generator() -> None:
    a = init_params((4, 5, 3), "sigmoid", np.random.default_rng(42))
    b = init_params((4, 5, 3), "sigmoid", np.random.default_rng(42))
    c = init_params((4, 5, 3), "sigmoid", np.random.default_rng(43))
    for pa, pb in zip(a, b, strict=True):
        np.testing.assert_array_equal(pa, pb)
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize(("field", "kwargs"), [
    ("activation", {"activation": "tanh", "loss": "cross_entropy"}),
    ("loss", {"activation": "relu", "loss": "hinge"}),
])
def test_unknown_activation_or_loss_is_refused_naming_the_known_ones(
    field: str, kwargs: dict[str, str]
) -> None:
    params = init_params((2, 3, 2), "relu", np.random.default_rng(0))
    with pytest.raises(InvalidConfig) as info:
        Network(params, kwargs["activation"], kwargs["loss"])
    assert info.value.field == field
    assert repr(kwargs[field]) in str(info.value)
    known = ("relu", "sigmoid") if field == "activation" else ("cross_entropy", "sum_squares")
    assert all(name in str(info.value) for name in known)


# --- forward pass and losses ---------------------------------------------------------------


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_forward_is_the_plain_layer_by_layer_computation(activation: str) -> None:
    net = make_net((4, 6, 5, 3), activation)
    x, _ = data()
    act = {"sigmoid": lambda a: 1 / (1 + np.exp(-a)),
           "relu": lambda a: np.maximum(a, 0)}[activation]
    w0, b0, w1, b1, w2, b2 = net.params
    h1 = act(x @ w0 + b0)
    h2 = act(h1 @ w1 + b1)
    expected = h2 @ w2 + b2
    inputs, logits = net.forward(x)
    assert len(inputs) == 3
    np.testing.assert_array_equal(inputs[0], x)
    np.testing.assert_allclose(inputs[1], h1, rtol=1e-13)
    np.testing.assert_allclose(inputs[2], h2, rtol=1e-13)
    np.testing.assert_allclose(logits, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(net.predict(x), expected.argmax(axis=1))
    assert net.n_layers == 3
    assert net.dtype == np.float64


@pytest.mark.parametrize("loss", ["cross_entropy", "sum_squares"])
def test_mean_loss_is_the_books_loss_on_the_softmax_output(loss: str) -> None:
    net = make_net(loss=loss)
    x, t = data()
    y = softmax(net.logits(x))
    per_sample = net.sample_losses(x, t)
    assert per_sample.shape == (10,)
    if loss == "sum_squares":
        assert net.mean_loss(x, t) == pytest.approx(sum_squares_error(y, t), rel=1e-12)
    else:
        # the book's delta is the only difference
        assert net.mean_loss(x, t) == pytest.approx(cross_entropy_error(y, t), abs=1e-6)
        np.testing.assert_allclose(per_sample, -np.log(y[np.arange(10), t]), rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", ["cross_entropy", "sum_squares"])
@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_gradient_returns_the_mean_loss_of_the_batch(
    activation: str, loss: str, dtype: str
) -> None:
    net = make_net((4, 6, 5, 3), activation, loss, dtype)
    x, t = data()
    x = x.astype(dtype)
    value, grads = net.gradient(x, t)
    assert isinstance(value, float)
    assert value == pytest.approx(net.mean_loss(x, t), rel=1e-5 if dtype == "float32" else 1e-12)
    assert [g.shape for g in grads] == [p.shape for p in net.params]
    assert all(g.dtype == np.dtype(dtype) for g in grads)


@pytest.mark.parametrize("loss", ["cross_entropy", "sum_squares"])
def test_gradient_is_finite_and_loss_exact_for_saturated_logits(loss: str) -> None:
    net = make_net((2, 3, 3), "relu", loss)
    net.params[2][...] = 500.0 * np.array([[1.0, -1.0, 0.0]] * 3)  # logits of hundreds
    x = np.abs(np.random.default_rng(0).normal(size=(6, 2))) + 1.0
    t = np.array([1, 1, 1, 2, 2, 2])
    value, grads = net.gradient(x, t)
    assert np.isfinite(value)
    assert all(np.isfinite(g).all() for g in grads)
    assert value == pytest.approx(net.mean_loss(x, t), rel=1e-12)
    assert value == pytest.approx(LOSSES_FROM_LOGITS[loss](net.logits(x), t).mean(), rel=1e-12)


def test_gradient_does_not_touch_the_parameters_or_inputs() -> None:
    net = make_net((4, 6, 5, 3), "relu")
    x, t = data()
    params = [p.copy() for p in net.params]
    x_copy, t_copy = x.copy(), t.copy()
    net.gradient(x, t)
    for p, q in zip(net.params, params, strict=True):
        np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(t, t_copy)


def test_gradient_is_the_same_across_calls_and_batch_sizes() -> None:
    """Scratch buffers are reused per batch size: no stale state leaks between calls."""
    net = make_net((4, 6, 5, 3), "sigmoid", "sum_squares")
    x, t = data(n=10)
    loss_a, grads_a = net.gradient(x, t)
    first = [g.copy() for g in grads_a]
    net.gradient(x[:3], t[:3])  # another batch size in between
    net.gradient(x[::-1].copy(), t[::-1].copy())
    loss_b, grads_b = net.gradient(x, t)
    assert loss_a == loss_b
    for g, h in zip(first, grads_b, strict=True):
        np.testing.assert_array_equal(g, h)


def test_gradient_of_a_batch_is_the_mean_of_the_per_sample_gradients() -> None:
    net = make_net((4, 5, 3), "relu", "cross_entropy")
    x, t = data(n=6)
    _, grads = net.gradient(x, t)
    batch_grads = [g.copy() for g in grads]
    per_sample = []
    for i in range(6):
        _, single = net.gradient(x[i : i + 1], t[i : i + 1])
        per_sample.append([a.copy() for a in single])
    for k, g in enumerate(batch_grads):
        np.testing.assert_allclose(g, np.mean([s[k] for s in per_sample], axis=0),
                                   rtol=1e-12, atol=1e-15)


def test_cross_entropy_output_gradient_is_softmax_minus_one_hot_over_n() -> None:
    """The last layer's bias gradient is the familiar (y - t) / n, summed over the batch."""
    net = make_net((4, 5, 3), "sigmoid", "cross_entropy")
    x, t = data(n=7)
    _, grads = net.gradient(x, t)
    y = softmax(net.logits(x))
    y[np.arange(7), t] -= 1.0
    np.testing.assert_allclose(grads[-1], y.sum(axis=0) / 7, rtol=1e-12, atol=1e-15)


def test_predict_and_logits_work_on_float32() -> None:
    net = make_net(dtype="float32")
    x, _ = data()
    logits = net.logits(x.astype(np.float32))
    assert logits.dtype == np.float32
    assert net.predict(x.astype(np.float32)).shape == (10,)
