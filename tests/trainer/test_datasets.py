"""Tests of the catalogue, the built-in loaders and uploaded .npz files."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from trainer import datasets
from trainer.datasets import (
    BUILTIN_NAMES,
    Dataset,
    catalogue,
    dataset_info,
    load_dataset,
)
from trainer.errors import DatasetError, DatasetUnavailable, UnknownDataset
from trainer.splits import make_splits

IDX_NAMES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]


def write_idx(path: Path, array: np.ndarray) -> None:
    header = (0x0800 | array.ndim).to_bytes(4, "big")
    header += b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def write_fake_mnist(
    data_dir: Path, name: str = "mnist", n_train: int = 12, n_test: int = 6,
    n_train_labels: int | None = None,
) -> dict[str, np.ndarray]:
    """Small IDX files (4 x 5 images) under data_dir/name/; returns the arrays written."""
    rng = np.random.default_rng(7)
    arrays = {
        IDX_NAMES[0]: rng.integers(0, 256, size=(n_train, 4, 5)),
        IDX_NAMES[1]: rng.integers(0, 10, size=n_train_labels or n_train),
        IDX_NAMES[2]: rng.integers(0, 256, size=(n_test, 4, 5)),
        IDX_NAMES[3]: rng.integers(0, 10, size=n_test),
    }
    arrays[IDX_NAMES[0]][0, 0, 0] = 255  # the maximum pixel maps to exactly 1.0
    (data_dir / name).mkdir(parents=True, exist_ok=True)
    for file, array in arrays.items():
        write_idx(data_dir / name / file, array)
    return arrays


@pytest.fixture
def no_system_dirs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide /usr/share/datasets so that fashion-mnist's availability depends on the test."""
    monkeypatch.setattr(datasets, "SYSTEM_DIRS", {})


def test_builtin_names() -> None:
    assert BUILTIN_NAMES == ("fashion-mnist", "mnist", "digits", "spiral", "blobs")
    assert [info.name for info in catalogue()] == list(BUILTIN_NAMES)


def test_unknown_name_lists_the_known_ones() -> None:
    for call in (load_dataset, dataset_info):
        with pytest.raises(UnknownDataset, match="'cifar'.*fashion-mnist, mnist, digits"):
            call("cifar")


def test_idx_dataset_loads_scaled_flattened_with_own_test_split(tmp_path: Path) -> None:
    arrays = write_fake_mnist(tmp_path)
    dataset = load_dataset("mnist", tmp_path)
    assert dataset.x.shape == (12, 20) and dataset.x.dtype == np.float32
    assert dataset.x.flags.c_contiguous and dataset.x.max() == 1.0
    np.testing.assert_allclose(dataset.x, arrays[IDX_NAMES[0]].reshape(12, 20) / 255, rtol=1e-6)
    np.testing.assert_array_equal(dataset.t, arrays[IDX_NAMES[1]])
    assert dataset.t.dtype == np.int64 and dataset.n_classes == 10
    assert dataset.x_test is not None and dataset.x_test.shape == (6, 20)
    np.testing.assert_array_equal(dataset.t_test, arrays[IDX_NAMES[3]])
    info = dataset_info("mnist", tmp_path)
    assert (info.available, info.n_train, info.n_test, info.n_features) == (True, 12, 6, 20)


def test_the_environment_is_not_read_data_dir_is_handed_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_system_dirs: None
) -> None:
    """One source for the data directory: the caller's (the service passes its setting)."""
    write_fake_mnist(tmp_path)
    monkeypatch.setenv("DESCENT_DATA_DIR", str(tmp_path))
    assert not dataset_info("mnist").available
    with pytest.raises(DatasetUnavailable):
        load_dataset("mnist")
    assert load_dataset("mnist", tmp_path).x.shape == (12, 20)
    assert dataset_info("mnist", str(tmp_path)).available


def test_missing_files_raise_unavailable_with_a_hint(no_system_dirs: None) -> None:
    with pytest.raises(DatasetUnavailable) as info:
        load_dataset("mnist")
    message = str(info.value)
    assert all(file in message for file in IDX_NAMES)
    assert "mnist/ under the data directory (none is configured)" in message
    assert "DESCENT_" not in message  # the app owns the name of its setting
    entry = dataset_info("mnist")
    assert not entry.available and entry.hint is not None and "data directory" in entry.hint
    shape = (entry.n_train, entry.n_test, entry.n_features, entry.n_classes)
    assert shape == (60000, 10000, 784, 10)


def test_hint_names_the_missing_files_in_the_data_dir(tmp_path: Path, no_system_dirs: None) -> None:
    write_fake_mnist(tmp_path)
    (tmp_path / "mnist" / IDX_NAMES[3]).unlink()
    hint = dataset_info("mnist", tmp_path).hint
    assert hint is not None and f"missing there: {IDX_NAMES[3]}" in hint
    assert str(tmp_path / "mnist") in hint and f"the data directory is {tmp_path}" in hint
    assert "DESCENT_" not in hint


def test_fashion_mnist_hint_mentions_the_debian_package(no_system_dirs: None) -> None:
    hint = dataset_info("fashion-mnist").hint
    assert hint is not None and "apt-get install dataset-fashion-mnist" in hint
    with pytest.raises(DatasetUnavailable, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist")


def test_data_dir_is_searched_before_the_system_dir(tmp_path: Path) -> None:
    write_fake_mnist(tmp_path, "fashion-mnist", n_train=9)
    assert load_dataset("fashion-mnist", tmp_path).x.shape == (9, 20)
    assert dataset_info("fashion-mnist", tmp_path).n_train == 9


def test_label_and_image_count_mismatch(tmp_path: Path) -> None:
    write_fake_mnist(tmp_path, n_train=12, n_train_labels=11)
    message = f"{IDX_NAMES[1]} has 11 labels but {IDX_NAMES[0]} has 12 images"
    with pytest.raises(DatasetError, match=message):
        load_dataset("mnist", tmp_path)
    info = dataset_info("mnist", tmp_path)
    assert not info.available and info.hint is not None and "has 11 labels" in info.hint


def test_label_out_of_range(tmp_path: Path) -> None:
    write_fake_mnist(tmp_path)
    write_idx(tmp_path / "mnist" / IDX_NAMES[3], np.array([0, 1, 2, 3, 4, 12]))
    with pytest.raises(DatasetError, match=r"label 12 is not in 0..9"):
        load_dataset("mnist", tmp_path)


def test_corrupt_file_is_a_dataset_error_naming_it(tmp_path: Path) -> None:
    write_fake_mnist(tmp_path)
    (tmp_path / "mnist" / IDX_NAMES[2]).write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match=IDX_NAMES[2]):
        load_dataset("mnist", tmp_path)
    assert not dataset_info("mnist", tmp_path).available


def test_catalogue_notices_replaced_files(tmp_path: Path) -> None:
    write_fake_mnist(tmp_path, n_train=12)
    assert dataset_info("mnist", tmp_path).n_train == 12
    write_fake_mnist(tmp_path, n_train=20)
    for file in IDX_NAMES:  # a different mtime even on filesystems with coarse timestamps
        os.utime(tmp_path / "mnist" / file, ns=(1, 1_000_000_000))
    assert dataset_info("mnist", tmp_path).n_train == 20


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_catalogue_shapes_equal_loaded_and_split_shapes(name: str) -> None:
    info = dataset_info(name)
    if not info.available:
        pytest.skip(f"{name} is not available here: {info.hint}")
    dataset = load_dataset(name)
    splits = make_splits(dataset, 0.1, np.random.default_rng(0))
    assert len(splits.t_train) + len(splits.t_val) == info.n_train
    assert len(splits.t_test) == info.n_test
    assert dataset.x.shape[1] == info.n_features and dataset.n_classes == info.n_classes
    assert dataset.x.dtype == np.float32 and dataset.t.dtype == np.int64
    assert dataset.t.min() >= 0 and dataset.t.max() < dataset.n_classes
    assert info.to_dict()["n_train"] == info.n_train and info.to_dict()["hint"] is None


def test_digits_are_scaled_to_unit_range() -> None:
    pytest.importorskip("sklearn")
    dataset = load_dataset("digits")
    assert dataset.x.shape == (1797, 64) and dataset.x.min() == 0.0 and dataset.x.max() == 1.0
    assert dataset.x_test is None


@pytest.mark.parametrize("name", ["spiral", "blobs"])
def test_generated_datasets_are_always_the_same(name: str) -> None:
    first, second = load_dataset(name), load_dataset(name)
    np.testing.assert_array_equal(first.x, second.x)
    np.testing.assert_array_equal(first.t, second.t)
    counts = np.bincount(first.t)
    assert len(set(counts)) == 1  # balanced classes


def test_spiral_shape() -> None:
    dataset = load_dataset("spiral")
    assert dataset.x.shape == (900, 2) and dataset.n_classes == 3
    assert np.abs(dataset.x).max() <= 1.0


def test_blobs_overlap_but_are_learnable() -> None:
    dataset = load_dataset("blobs")
    means = np.stack([dataset.x[dataset.t == k].mean(axis=0) for k in range(dataset.n_classes)])
    nearest = np.argmin(((dataset.x[:, None, :] - means[None]) ** 2).sum(axis=2), axis=1)
    accuracy = (nearest == dataset.t).mean()
    assert 0.9 <= accuracy < 1.0


def test_dataset_rejects_inconsistent_arrays() -> None:
    with pytest.raises(DatasetError, match=r"t \(n,\)"):
        Dataset("bad", np.zeros((3, 2), np.float32), np.zeros(4, np.int64), 2)
    with pytest.raises(DatasetError, match="together"):
        Dataset("bad", np.zeros((3, 2)), np.zeros(3, np.int64), 2, x_test=np.zeros((1, 2)))
