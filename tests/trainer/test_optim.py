"""Tests of SGD: steps worked out by hand, momentum, and its state round trip."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from trainer.optim import SGD


def test_update_sees_only_arrays() -> None:
    assert list(inspect.signature(SGD.update).parameters) == ["self", "params", "grads"]


def test_one_plain_step_worked_out_by_hand() -> None:
    params = [np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([0.5, -0.5])]
    grads = [np.array([[0.5, -1.0], [0.0, 2.0]]), np.array([1.0, -3.0])]
    SGD(learning_rate=0.1).update(params, grads)
    # w - 0.1 * g
    np.testing.assert_allclose(params[0], [[0.95, 2.1], [3.0, 3.8]], rtol=0, atol=1e-15)
    np.testing.assert_allclose(params[1], [0.4, -0.2], rtol=0, atol=1e-15)


def test_two_momentum_steps_worked_out_by_hand() -> None:
    params = [np.array([1.0, -2.0])]
    opt = SGD(learning_rate=0.1, momentum=0.9)
    opt.update(params, [np.array([2.0, 1.0])])
    # v1 = -0.1 * g1 = [-0.2, -0.1]; w1 = w0 + v1
    np.testing.assert_allclose(params[0], [0.8, -2.1], atol=1e-15)
    opt.update(params, [np.array([-1.0, 4.0])])
    # v2 = 0.9 * v1 - 0.1 * g2 = [-0.18 + 0.1, -0.09 - 0.4] = [-0.08, -0.49]; w2 = w1 + v2
    np.testing.assert_allclose(params[0], [0.72, -2.59], atol=1e-15)
    np.testing.assert_allclose(opt.state()[0], [-0.08, -0.49], atol=1e-15)


def test_zero_momentum_keeps_no_velocity() -> None:
    opt = SGD(0.5)
    opt.update([np.ones(3)], [np.ones(3)])
    assert opt.state() == []


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_float32_parameters_stay_float32(momentum: float) -> None:
    params = [np.ones((2, 2), dtype=np.float32)]
    opt = SGD(0.1, momentum)
    opt.update(params, [np.full((2, 2), 0.5, dtype=np.float32)])
    assert params[0].dtype == np.float32
    np.testing.assert_allclose(params[0], 0.95, rtol=1e-7)
    if momentum:
        assert opt.state()[0].dtype == np.float32


def test_update_is_in_place_on_the_given_arrays() -> None:
    w = np.array([1.0, 1.0])
    params = [w]
    SGD(1.0).update(params, [np.array([0.25, -0.25])])
    assert params[0] is w
    np.testing.assert_array_equal(w, [0.75, 1.25])


def test_state_round_trip_continues_identically() -> None:
    rng = np.random.default_rng(0)
    grads = [[rng.normal(size=(3, 2)), rng.normal(size=2)] for _ in range(4)]
    params = [np.zeros((3, 2)), np.zeros(2)]
    opt = SGD(0.05, 0.8)
    for g in grads[:2]:
        opt.update(params, [a.copy() for a in g])
    saved_params = [p.copy() for p in params]
    saved_state = opt.state()

    for g in grads[2:]:
        opt.update(params, [a.copy() for a in g])

    resumed = SGD(0.05, 0.8)
    resumed.load_state(saved_state)
    for g in grads[2:]:
        resumed.update(saved_params, [a.copy() for a in g])
    for p, q in zip(params, saved_params, strict=True):
        np.testing.assert_array_equal(p, q)


def test_state_and_load_state_copy_the_velocity() -> None:
    opt = SGD(0.1, 0.5)
    opt.update([np.zeros(2)], [np.ones(2)])
    state = opt.state()
    state[0][...] = 99.0
    np.testing.assert_allclose(opt.state()[0], [-0.1, -0.1])

    given = [np.array([1.0, 2.0])]
    other = SGD(0.1, 0.5)
    other.load_state(given)
    given[0][...] = 0.0
    np.testing.assert_array_equal(other.state()[0], [1.0, 2.0])


def test_loading_an_empty_state_starts_from_zero_velocity() -> None:
    opt = SGD(0.1, 0.9)
    opt.update([np.zeros(1)], [np.ones(1)])
    opt.load_state([])
    assert opt.state() == []
    params = [np.zeros(1)]
    opt.update(params, [np.ones(1)])
    np.testing.assert_allclose(params[0], [-0.1])  # no leftover velocity
