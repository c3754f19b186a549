"""Tests of uploaded .npz datasets: what is accepted, and each refusal saying what and where."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trainer.errors import DatasetError
from trainer.uploads import load_npz


def npz(**arrays: Any) -> io.BytesIO:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    return buffer


def good_arrays() -> dict[str, Any]:
    rng = np.random.default_rng(3)
    return {"x": rng.normal(size=(10, 4)), "t": np.arange(10) % 3}


def test_load_npz_from_a_stream_and_a_path(tmp_path: Path) -> None:
    dataset = load_npz(npz(**good_arrays()), name="mine")
    assert dataset.name == "mine" and dataset.x.dtype == np.float32 and dataset.x.shape == (10, 4)
    assert dataset.t.dtype == np.int64 and dataset.n_classes == 3 and dataset.x_test is None
    path = tmp_path / "data.npz"
    np.savez(path, **good_arrays())
    np.testing.assert_array_equal(load_npz(path).t, dataset.t)


def test_load_npz_accepts_integral_float_labels_and_counts_test_classes() -> None:
    arrays = good_arrays()
    arrays["t"] = arrays["t"].astype(np.float64)
    dataset = load_npz(npz(**arrays, x_test=np.ones((2, 4)), t_test=np.array([0, 5])))
    assert dataset.n_classes == 6 and dataset.t_test is not None
    assert dataset.t_test.dtype == np.int64


def with_changes(**changes: Any) -> dict[str, Any]:
    arrays: dict[str, Any] = good_arrays()
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    return arrays


def nan_at_row_3() -> np.ndarray:
    x = np.zeros((10, 4))
    x[3, 1] = np.nan
    return x


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (with_changes(t=np.arange(9) % 3), "t has 9 labels but x has 10 rows"),
        (with_changes(x=nan_at_row_3()), "x contains NaN or infinity at row 3"),
        (with_changes(x=np.full((10, 4), 1e39)), "x has a value beyond float32 at row 0"),
        (with_changes(x=np.zeros(10)), r"x must be 2-D \(samples x features\), got shape \(10,\)"),
        (with_changes(x=np.zeros((10, 0))), "x has no features"),
        (with_changes(x=np.full((10, 4), "a")), "x must be numeric .* got dtype <U1"),
        (with_changes(t=np.zeros((10, 1))), r"t must be 1-D .* got shape \(10, 1\)"),
        (with_changes(t=np.array([0, 1, 1.5] + [0] * 7)), "integer labels: 1.5 at index 2"),
        (with_changes(t=np.array([0, 1, -1] + [0] * 7)), "t has a negative label: -1 at index 2"),
        (with_changes(t=np.array([0, 1, 10**9] + [0] * 7)), "t has a label >= 1000: 1000000000"),
        (with_changes(t=np.array(["a"] * 10)), "t must hold integer labels, got dtype <U1"),
        (with_changes(t=np.zeros(10, dtype=np.int64)), "t has only one distinct label"),
        (with_changes(x=np.zeros((1, 4)), t=np.array([1])), "x has 1 rows; need at least 2"),
        (with_changes(x_test=np.zeros((2, 4))), "x_test is given without t_test"),
        (with_changes(t_test=np.zeros(2)), "t_test is given without x_test"),
        (with_changes(x_test=np.zeros((2, 3)), t_test=np.zeros(2)),
         "x_test has 3 features but x has 4"),
        (with_changes(x_test=np.zeros((2, 4)), t_test=np.zeros(3)),
         "t_test has 3 labels but x_test has 2 rows"),
        (with_changes(x_test=np.array([[0, 0, np.inf, 0]]), t_test=np.zeros(1)),
         "x_test contains NaN or infinity at row 0"),
        (with_changes(t=None), "must hold arrays x and t.*found x"),
        (with_changes(y=np.zeros(10)), "must hold arrays x and t.*found x, t, y"),
    ],
)
def test_load_npz_rejects(arrays: dict[str, Any], message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        load_npz(npz(**arrays))


def test_load_npz_rejects_files_that_are_not_npz(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not an .npz archive"):
        load_npz(io.BytesIO(b"garbage, definitely not a zip"))
    single = io.BytesIO()
    np.save(single, np.zeros(3))
    single.seek(0)
    with pytest.raises(DatasetError, match="not an .npz archive"):
        load_npz(single)
    whole = npz(**good_arrays()).getvalue()
    path = tmp_path / "cut.npz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DatasetError, match=f"{path}: cannot read the .npz archive"):
        load_npz(path)
    with pytest.raises(DatasetError, match="cannot read"):
        load_npz(npz(x=np.array([object()] * 10, dtype=object).reshape(10, 1), t=np.arange(10)))
