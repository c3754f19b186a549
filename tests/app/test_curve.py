"""Pure curve helpers: float32 bytes, downsampling, JSON-safe values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.store.curve import (
    bytes_to_losses,
    curve_slice,
    downsample_indices,
    finite_or_none,
    json_safe,
    losses_to_bytes,
)


def test_losses_become_four_little_endian_float32_bytes_each() -> None:
    data = losses_to_bytes(np.array([1.0, -2.5], dtype=np.float64))
    assert data == np.array([1.0, -2.5], dtype="<f4").tobytes()
    assert len(data) == 8
    assert data[:4] == b"\x00\x00\x80\x3f"  # 1.0f, little-endian


def test_losses_to_bytes_rejects_a_matrix() -> None:
    with pytest.raises(ValueError, match=r"1-D.*\(2, 2\)"):
        losses_to_bytes(np.zeros((2, 2)))


def test_bytes_round_trip_and_a_trailing_partial_value_is_dropped() -> None:
    values = np.array([0.5, 0.25, 3.0], dtype=np.float32)
    data = values.tobytes()
    assert bytes_to_losses(data).tolist() == [0.5, 0.25, 3.0]
    assert bytes_to_losses(data + b"\x01\x02").tolist() == [0.5, 0.25, 3.0]
    assert bytes_to_losses(b"").size == 0


@pytest.mark.parametrize("n", [0, 1, 5, 10])
def test_downsample_keeps_everything_when_it_fits(n: int) -> None:
    assert downsample_indices(n, 10).tolist() == list(range(n))


@pytest.mark.parametrize(("n", "max_points"), [(11, 10), (1000, 7), (100_000, 1000), (3, 2)])
def test_downsample_is_even_and_keeps_first_and_last(n: int, max_points: int) -> None:
    picked = downsample_indices(n, max_points)
    assert len(picked) == max_points
    assert picked[0] == 0
    assert picked[-1] == n - 1
    gaps = np.diff(picked)
    assert gaps.min() >= 1
    assert gaps.max() - gaps.min() <= 1
    assert np.array_equal(picked, downsample_indices(n, max_points))


def test_downsample_to_one_point_keeps_the_last() -> None:
    assert downsample_indices(50, 1).tolist() == [49]


@pytest.mark.parametrize(("n", "max_points", "name"), [(-1, 5, "n"), (5, 0, "max_points")])
def test_downsample_rejects_bad_arguments(n: int, max_points: int, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        downsample_indices(n, max_points)


def test_finite_or_none_widens_float32_and_nulls_non_finite_values() -> None:
    values = np.array([0.1, np.nan, np.inf, -np.inf, 2.0], dtype=np.float32)
    out = finite_or_none(values)
    assert out == [float(np.float32(0.1)), None, None, None, 2.0]
    assert isinstance(out[0], float)


def test_curve_slice_numbers_iterations_after_since() -> None:
    data = np.arange(1, 11, dtype="<f4").tobytes()  # losses of iterations 21..30
    iterations, losses, following = curve_slice(data, since=20, max_points=4)
    assert iterations == [21, 24, 27, 30]
    assert losses == [1.0, 4.0, 7.0, 10.0]
    assert following == 30


def test_curve_slice_with_nothing_new_returns_since_as_next() -> None:
    assert curve_slice(b"", since=7, max_points=10) == ([], [], 7)


def test_json_safe_replaces_non_finite_numbers_deep_inside() -> None:
    value = {"a": [1.0, math.nan, {"b": np.float32(np.inf)}], "c": np.int64(3), 4: "x"}
    assert json_safe(value) == {"a": [1.0, None, {"b": None}], "c": 3, "4": "x"}
    assert json_safe(np.array([1.5, np.nan])) == [1.5, None]
