"""Tests of uploaded .npz datasets: what is accepted, and each refusal saying what and where."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trainer.errors import DatasetError
from trainer.uploads import (
    Upload,
    UploadTooLarge,
    check_upload,
    from_bytes,
    read_meta,
    read_npz,
    to_bytes,
)


def npz(**arrays: Any) -> io.BytesIO:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    return buffer


def good_arrays() -> dict[str, Any]:
    rng = np.random.default_rng(3)
    return {"x": rng.normal(size=(10, 4)), "t": np.arange(10) % 3}


def test_read_npz_from_a_stream_and_a_path(tmp_path: Path) -> None:
    upload = read_npz(npz(**good_arrays()))
    assert upload.x.dtype == np.float32 and upload.x.shape == (10, 4)
    assert upload.t.dtype == np.int64 and upload.classes == [0, 1, 2] and upload.x_test is None
    path = tmp_path / "data.npz"
    np.savez(path, **good_arrays())
    np.testing.assert_array_equal(read_npz(path).t, upload.t)


def test_read_npz_keeps_labels_and_maps_them_to_outputs() -> None:
    arrays = good_arrays()
    arrays["t"] = (arrays["t"] * 2).astype(np.float64)  # labels 0, 2, 4: three outputs
    upload = read_npz(npz(**arrays, x_test=np.ones((2, 4)), t_test=np.array([4, 0])))
    assert upload.classes == [0, 2, 4] and upload.t_test is not None
    np.testing.assert_array_equal(upload.t_test, [2, 0])
    words = read_npz(npz(x=np.ones((4, 2)), t=np.array(["cat", "dog", "cat", "emu"])))
    assert words.classes == ["cat", "dog", "emu"] and words.t.tolist() == [0, 1, 0, 2]


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
        (with_changes(x=nan_at_row_3()), "x holds NaN or infinity: nan at row 3, column 1"),
        (with_changes(x=np.full((10, 4), 1e39)),
         "x has a value beyond float32: 1e[+]?39 at row 0, column 0"),
        (with_changes(x=np.zeros(10)), r"x must be 2-D \(samples x features\), got shape \(10,\)"),
        (with_changes(x=np.zeros((10, 0))), "x has no features"),
        (with_changes(x=np.full((10, 4), "a")), "x must be numeric .* got dtype <U1"),
        (with_changes(t=np.zeros((10, 1))), r"t must be 1-D .* got shape \(10, 1\)"),
        (with_changes(t=np.array([0, 1, 1.5] + [0] * 7)),
         r"integer labels \(or strings\): 1.5 at index 2"),
        (with_changes(t=np.array([0, 1, -1] + [0] * 7)),
         r"t has a label out of range 0..999: -1 at index 2"),
        (with_changes(t=np.array([0, 1, 10**9] + [0] * 7)),
         "t has a label out of range 0..999: 1000000000 at index 2"),
        (with_changes(t=np.zeros(10, dtype=complex)), "integer or string labels, got dtype"),
        (with_changes(x_test=np.zeros((2, 4)), t_test=np.array([0, 7])),
         "t_test has the label 7 at index 1, which t never has"),
        (with_changes(x_test=np.zeros((2, 4)), t_test=np.array(["a", "b"])),
         "t holds integer labels but t_test string ones"),
        (with_changes(x=np.zeros((1, 4)), t=np.array([1])), "x has 1 rows; need at least 2"),
        (with_changes(x_test=np.zeros((2, 4))), "x_test is given without t_test"),
        (with_changes(t_test=np.zeros(2)), "t_test is given without x_test"),
        (with_changes(x_test=np.zeros((2, 3)), t_test=np.zeros(2)),
         "x_test has 3 features but x has 4"),
        (with_changes(x_test=np.zeros((2, 4)), t_test=np.zeros(3)),
         "t_test has 3 labels but x_test has 2 rows"),
        (with_changes(x_test=np.array([[0, 0, np.inf, 0]]), t_test=np.zeros(1)),
         "x_test holds NaN or infinity: inf at row 0, column 2"),
        (with_changes(t=None), "must hold arrays x and t.*found x"),
        (with_changes(y=np.zeros(10)), "must hold arrays x and t.*found x, t, y"),
    ],
)
def test_read_npz_rejects(arrays: dict[str, Any], message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        read_npz(npz(**arrays))


def test_read_npz_rejects_files_that_are_not_npz(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a readable .npz archive"):
        read_npz(io.BytesIO(b"garbage, definitely not a zip"))
    single = io.BytesIO()
    np.save(single, np.zeros(3))
    single.seek(0)
    with pytest.raises(DatasetError, match="not a readable .npz archive"):
        read_npz(single)
    whole = npz(**good_arrays()).getvalue()
    path = tmp_path / "cut.npz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DatasetError, match=f"{path}: not a readable .npz archive"):
        read_npz(path)
    pickled = npz(x=np.array([object()] * 10, dtype=object).reshape(10, 1), t=np.arange(10))
    with pytest.raises(DatasetError, match="array x holds Python objects .* by unpickling"):
        read_npz(pickled)


def test_an_npz_that_expands_past_the_limit_is_refused_before_it_is_loaded() -> None:
    big = io.BytesIO()
    np.savez_compressed(big, x=np.zeros((1000, 1000)), t=np.arange(1000) % 2)  # 8 MB, ~10 kB
    big.seek(0)
    with pytest.raises(UploadTooLarge, match="take 8,008,000 bytes once loaded, over the "
                       "limit of 1,000,000") as refused:
        read_npz(big, max_bytes=1_000_000)
    assert refused.value.size == 8_008_000


@pytest.mark.parametrize(("t", "fraction", "message"), [
    (np.zeros(10, dtype=np.int64), None, "only one class"),
    (np.array([0] * 9 + [1]), None, "class 1 has 1 row; each class needs at least 2"),
    (np.array([0, 1] * 5), 1.0, "test_fraction must be > 0 and < 1, got 1.0"),
])
def test_check_upload_refuses_what_a_job_could_not_train_on(
    t: np.ndarray, fraction: float | None, message: str
) -> None:
    with pytest.raises(DatasetError, match=message):
        check_upload(Upload(np.zeros((10, 2), np.float32), t, sorted(set(t.tolist()))), fraction)


def test_the_stored_form_is_deterministic_and_read_back_without_a_copy() -> None:
    rng = np.random.default_rng(0)
    upload = Upload(rng.normal(size=(50, 3)).astype(np.float32), np.arange(50) % 2,
                    ["no", "yes"], columns=["a", "b", "c"], label_column="answer")
    blob = to_bytes(upload, preprocess="standardize", test_fraction=0.3)
    assert blob == to_bytes(upload, preprocess="standardize", test_fraction=0.3)
    assert blob != to_bytes(upload, preprocess="none", test_fraction=0.3)
    dataset = from_bytes(blob, "answers")
    np.testing.assert_array_equal(dataset.x, upload.x)
    np.testing.assert_array_equal(dataset.t, upload.t)
    assert dataset.x.base is not None and not dataset.x.flags.writeable  # a view of the blob
    assert (dataset.name, dataset.classes, dataset.preprocess, dataset.test_fraction,
            dataset.n_classes) == ("answers", ("no", "yes"), "standardize", 0.3, 2)
    assert read_meta(blob)[0]["columns"] == ["a", "b", "c"]
    with pytest.raises(DatasetError, match="preprocess must be one of none, standardize"):
        to_bytes(upload, preprocess="scale", test_fraction=0.3)
