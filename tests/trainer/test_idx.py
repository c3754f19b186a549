"""Tests of the IDX reader: round trips, the header-only reader, and every malformed file."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from trainer.errors import DatasetError
from trainer.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx, read_idx_header


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """The IDX encoding of a uint8 array (magic 0x0000 08 ndim unless overridden)."""
    magic = (0x0800 | array.ndim) if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_gz(path: Path, payload: bytes) -> Path:
    path.write_bytes(gzip.compress(payload))
    return path


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(7, 4, 5), dtype=np.uint8)


def test_images_round_trip_through_gzip(tmp_path: Path, images: np.ndarray) -> None:
    path = write_gz(tmp_path / "train-images-idx3-ubyte.gz", idx_bytes(images))
    loaded = read_idx(path, 3)
    assert loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, images)


def test_labels_round_trip_and_magic_constants(tmp_path: Path) -> None:
    labels = np.array([3, 1, 4, 1, 5, 9], dtype=np.uint8)
    payload = idx_bytes(labels)
    assert int.from_bytes(payload[:4], "big") == LABELS_MAGIC
    path = write_gz(tmp_path / "labels.gz", payload)
    np.testing.assert_array_equal(read_idx(path, 1), labels)


def test_uncompressed_file_is_read_without_gzip(tmp_path: Path, images: np.ndarray) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_bytes(images))
    np.testing.assert_array_equal(read_idx(path, 3), images)


def test_header_reader_returns_the_shape_without_reading_the_payload(
    tmp_path: Path, images: np.ndarray
) -> None:
    payload = idx_bytes(images)
    assert int.from_bytes(payload[:4], "big") == IMAGES_MAGIC
    # A payload cut short is only noticed by read_idx: the header reader stops at the header.
    path = write_gz(tmp_path / "images.gz", payload[:-10])
    assert read_idx_header(path) == (7, 4, 5)
    assert read_idx_header(path, 3) == (7, 4, 5)
    with pytest.raises(DatasetError, match="truncated payload"):
        read_idx(path, 3)


def test_real_fashion_mnist_header_when_installed() -> None:
    path = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
    if not path.exists():
        pytest.skip("dataset-fashion-mnist is not installed")
    assert read_idx_header(path, 3) == (60000, 28, 28)


@pytest.mark.parametrize(
    ("magic", "message"),
    [
        (0x12340803, r"bad magic number 0x12340803 \(expected 0x00000803\): not an IDX file"),
        (0x00000D03, r"data type byte 0x0d \(float\) is not supported"),
        (0x00000801, r"1 dimensions, expected 3"),
    ],
)
def test_bad_magic_number_names_file_and_problem(
    tmp_path: Path, images: np.ndarray, magic: int, message: str
) -> None:
    payload = idx_bytes(images)
    payload = magic.to_bytes(4, "big") + payload[4:]
    path = write_gz(tmp_path / "bad-images.gz", payload)
    for read in (lambda: read_idx(path, 3), lambda: read_idx_header(path, 3)):
        with pytest.raises(DatasetError, match=message) as info:
            read()
        assert "bad-images.gz" in str(info.value)


def test_truncated_payload(tmp_path: Path, images: np.ndarray) -> None:
    path = write_gz(tmp_path / "short.gz", idx_bytes(images)[:-1])
    with pytest.raises(DatasetError, match=r"short.gz: truncated payload: 139 bytes .* 140"):
        read_idx(path, 3)


def test_trailing_bytes_are_a_wrong_length(tmp_path: Path, images: np.ndarray) -> None:
    path = write_gz(tmp_path / "long.gz", idx_bytes(images) + b"\x00\x00")
    with pytest.raises(DatasetError, match=r"long.gz: wrong payload length.*2 trailing bytes"):
        read_idx(path, 3)


def test_truncated_header(tmp_path: Path, images: np.ndarray) -> None:
    path = write_gz(tmp_path / "head.gz", idx_bytes(images)[:9])
    with pytest.raises(DatasetError, match=r"head.gz: truncated header: 9 bytes"):
        read_idx_header(path, 3)
    empty = write_gz(tmp_path / "empty.gz", b"")
    with pytest.raises(DatasetError, match=r"empty.gz: truncated header: 0 bytes"):
        read_idx(empty, 1)


def test_zero_dimension_is_rejected(tmp_path: Path) -> None:
    path = write_gz(tmp_path / "zero.gz", idx_bytes(np.zeros((3, 0, 5), dtype=np.uint8)))
    with pytest.raises(DatasetError, match="dimension 1 has size 0"):
        read_idx(path, 3)


def test_not_gzip(tmp_path: Path, images: np.ndarray) -> None:
    path = tmp_path / "plain.gz"
    path.write_bytes(idx_bytes(images))
    for read in (lambda: read_idx(path, 3), lambda: read_idx_header(path, 3)):
        with pytest.raises(DatasetError, match=r"plain.gz: .*not a valid gzip file"):
            read()


def test_truncated_gzip_stream(tmp_path: Path, images: np.ndarray) -> None:
    compressed = gzip.compress(idx_bytes(images))
    path = tmp_path / "cut.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DatasetError, match=r"cut.gz: .*truncated compressed data"):
        read_idx(path, 3)


def test_missing_file_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="nothere.gz"):
        read_idx(tmp_path / "nothere.gz", 1)
