"""The dataset catalogue (built-in names, cheap shapes) and the built-in loaders."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer.errors import DatasetError, DatasetUnavailable, UnknownDataset
from trainer.idx import read_idx, read_idx_header
from trainer.splits import DEFAULT_TEST_FRACTION, held_out_test_size

# (file name, number of dimensions) of the four IDX files, in the order they are read.
IDX_FILES = (
    ("train-images-idx3-ubyte.gz", 3),
    ("train-labels-idx1-ubyte.gz", 1),
    ("t10k-images-idx3-ubyte.gz", 3),
    ("t10k-labels-idx1-ubyte.gz", 1),
)
# Where distribution packages install a dataset, searched after <data_dir>/<name>/.
SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),),
}
SYSTEM_HINTS = {
    "fashion-mnist": "or run `apt-get install dataset-fashion-mnist` "
    "(it installs them in /usr/share/datasets/fashion-mnist/)",
}
DataDir = str | os.PathLike[str] | None
InfoFn = Callable[[str, DataDir], "DatasetInfo"]
LoadFn = Callable[[str, DataDir], "Dataset"]


@dataclass(frozen=True)
class Dataset:
    """Samples x (n, n_features) float32 with labels t (n,) int64 in 0..n_classes-1."""

    name: str
    x: np.ndarray
    t: np.ndarray
    n_classes: int
    x_test: np.ndarray | None = None  # the dataset's own fixed test split, if any
    t_test: np.ndarray | None = None
    # An upload's: its labels in the order of the outputs (None: 0, 1, ...), how its raw
    # features are preprocessed per job ("none" or "standardize"), and the fraction held
    # out as the test set when it has no test split of its own.
    classes: tuple[Any, ...] | None = None
    preprocess: str = "none"
    test_fraction: float = DEFAULT_TEST_FRACTION

    def __post_init__(self) -> None:
        if self.x.ndim != 2 or self.t.shape != (len(self.x),):
            raise DatasetError(
                f"{self.name}: x must be (n, n_features) and t (n,), "
                f"got {self.x.shape} and {self.t.shape}"
            )
        if (self.x_test is None) != (self.t_test is None):
            raise DatasetError(f"{self.name}: x_test and t_test must be given together")
        if self.x_test is not None and self.t_test is not None and (
            self.x_test.shape[1:] != self.x.shape[1:] or self.t_test.shape != (len(self.x_test),)
        ):
            raise DatasetError(
                f"{self.name}: x_test must be (n_test, {self.x.shape[1]}) and t_test (n_test,), "
                f"got {self.x_test.shape} and {self.t_test.shape}"
            )


@dataclass(frozen=True)
class DatasetInfo:
    """One catalogue entry; n_train / n_test are the sizes after the test split."""

    name: str
    description: str
    available: bool
    n_train: int
    n_test: int
    n_features: int
    n_classes: int
    hint: str | None = None  # when unavailable: how to make it available

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def catalogue(data_dir: DataDir = None) -> list[DatasetInfo]:
    """Every built-in dataset with its shapes; reads only IDX headers, never whole files."""
    return [dataset_info(name, data_dir) for name in BUILTIN_NAMES]


def dataset_info(name: str, data_dir: DataDir = None) -> DatasetInfo:
    """The catalogue entry of `name`; UnknownDataset lists the known names."""
    return _builtin(name)[0](name, data_dir)


def load_dataset(name: str, data_dir: DataDir = None) -> Dataset:
    """Load a built-in dataset; DatasetUnavailable says how to get one whose files are absent."""
    return _builtin(name)[1](name, data_dir)


def _builtin(name: str) -> tuple[InfoFn, LoadFn]:
    try:
        return _BUILTINS[name]
    except KeyError:
        raise UnknownDataset(
            f"unknown dataset {name!r}; known datasets: {', '.join(BUILTIN_NAMES)}"
        ) from None


def _info(
    name: str, n: int, n_own_test: int | None, n_features: int, n_classes: int,
    hint: str | None = None,
) -> DatasetInfo:
    """An entry whose sizes are those make_splits will produce (held-out test when no own)."""
    n_test = held_out_test_size(n) if n_own_test is None else n_own_test
    n_train = n - n_test if n_own_test is None else n
    return DatasetInfo(
        name, _DESCRIPTIONS[name], hint is None, n_train, n_test, n_features, n_classes, hint
    )


# --- IDX datasets: fashion-mnist, mnist ---------------------------------------------------

_idx_header_cache: dict[tuple[object, ...], tuple[int, int, int]] = {}


def _idx_info(name: str, data_dir: DataDir) -> DatasetInfo:
    directory, hint = _locate(name, data_dir)
    if directory is None:
        return _info(name, 60000, 10000, 784, 10, hint)
    try:
        stats = [(directory / file).stat() for file, _ in IDX_FILES]
        key = (name, str(directory), tuple((s.st_mtime_ns, s.st_size) for s in stats))
        if key not in _idx_header_cache:
            shapes = [read_idx_header(directory / file, ndim) for file, ndim in IDX_FILES]
            _idx_header_cache[key] = _idx_sizes(directory, *shapes)
    except (DatasetError, OSError) as exc:
        return _info(name, 60000, 10000, 784, 10, f"{exc}; replace the files in {directory}/")
    n_train, n_test, n_features = _idx_header_cache[key]
    return _info(name, n_train, n_test, n_features, 10)


def _load_idx(name: str, data_dir: DataDir) -> Dataset:
    directory, hint = _locate(name, data_dir)
    if directory is None:
        raise DatasetUnavailable(f"dataset {name!r} is not available: {hint}")
    images, labels, test_images, test_labels = (
        read_idx(directory / file, ndim) for file, ndim in IDX_FILES
    )
    n_train, n_test, n_features = _idx_sizes(
        directory, images.shape, labels.shape, test_images.shape, test_labels.shape
    )
    for (file, _), array in zip(IDX_FILES[1::2], (labels, test_labels), strict=True):
        if array.max() >= 10:
            raise DatasetError(f"{directory / file}: label {array.max()} is not in 0..9")
    # A 256-entry table of pixel / 255: exact x / 255 in float32, one pass, no float64 copy.
    scale = np.arange(256, dtype=np.float32) / np.float32(255)
    x, x_test = scale[images.reshape(n_train, -1)], scale[test_images.reshape(n_test, -1)]
    return Dataset(name, x, labels.astype(np.int64), 10, x_test, test_labels.astype(np.int64))


def _idx_sizes(directory: Path, *shapes: tuple[int, ...]) -> tuple[int, int, int]:
    """(n_train, n_test, n_features) of the four IDX shapes, checking that they agree."""
    images, labels, test_images, test_labels = shapes
    for (image_file, _), (label_file, _), image_shape, label_shape in (
        (IDX_FILES[0], IDX_FILES[1], images, labels),
        (IDX_FILES[2], IDX_FILES[3], test_images, test_labels),
    ):
        if label_shape[0] != image_shape[0]:
            raise DatasetError(
                f"{directory}: {label_file} has {label_shape[0]} labels "
                f"but {image_file} has {image_shape[0]} images"
            )
    if test_images[1:] != images[1:]:
        raise DatasetError(
            f"{directory}: test images are {test_images[1]} x {test_images[2]} "
            f"but training images are {images[1]} x {images[2]}"
        )
    return images[0], test_images[0], images[1] * images[2]


def _locate(name: str, data_dir: DataDir) -> tuple[Path | None, str]:
    """The first directory holding all four IDX files of `name`, else (None, a hint).

    `data_dir` is the caller's data directory (the service passes its setting); the trainer
    never looks it up by itself.
    """
    base = Path(data_dir) / name if data_dir is not None else None
    for candidate in ((base,) if base else ()) + SYSTEM_DIRS.get(name, ()):
        if all((candidate / file).is_file() for file, _ in IDX_FILES):
            return candidate, ""
    files = ", ".join(file for file, _ in IDX_FILES)
    if base is None:
        hint = f"put the files {files} in {name}/ under the data directory (none is configured)"
    else:
        missing = [file for file, _ in IDX_FILES if not (base / file).is_file()]
        hint = (
            f"put the files {files} in {base}/ (the data directory is {data_dir}); "
            f"missing there: {', '.join(missing)}"
        )
    if name in SYSTEM_HINTS:
        hint += f"; {SYSTEM_HINTS[name]}"
    return None, hint


# --- digits (scikit-learn) and the generated sets -------------------------------------------

_DIGITS_HINT = "install scikit-learn: pip install 'descent[digits]' (or pip install scikit-learn)"


def _digits_info(name: str, data_dir: DataDir) -> DatasetInfo:
    available = importlib.util.find_spec("sklearn") is not None
    return _info(name, 1797, None, 64, 10, None if available else _DIGITS_HINT)


def _load_digits(name: str, data_dir: DataDir) -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DatasetUnavailable(f"dataset {name!r} is not available: {_DIGITS_HINT}") from exc
    digits = load_digits()
    x = np.divide(digits.data, 16, dtype=np.float32)  # 16 gray levels -> [0, 1]
    return Dataset(name, np.ascontiguousarray(x), digits.target.astype(np.int64), 10)


def _spiral(name: str, data_dir: DataDir = None) -> Dataset:
    """Three interleaved arms (CS231n): radius 0..1, angle 4 radians per arm plus noise."""
    rng = np.random.default_rng(20_231_231)
    per_class, n_classes = 300, 3
    t = np.repeat(np.arange(n_classes, dtype=np.int64), per_class)
    radius = np.tile(np.linspace(0.0, 1.0, per_class), n_classes)
    angle = np.tile(np.linspace(0.0, 4.0, per_class), n_classes) + 4.0 * t
    angle += rng.normal(0.0, 0.2, size=len(t))
    x = np.column_stack([radius * np.sin(angle), radius * np.cos(angle)]).astype(np.float32)
    return Dataset(name, x, t, n_classes)


def _blobs(name: str, data_dir: DataDir = None) -> Dataset:
    """Four unit-variance Gaussians 3 apart from the origin: they overlap at the edges."""
    rng = np.random.default_rng(19_700_101)
    centers = 3.0 * np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    t = rng.permutation(np.repeat(np.arange(len(centers), dtype=np.int64), 250))
    x = (centers[t] + rng.normal(size=(len(t), 2))).astype(np.float32)
    return Dataset(name, x, t, len(centers))


def _generated_info(name: str, data_dir: DataDir) -> DatasetInfo:
    dataset = _BUILTINS[name][1](name, data_dir)  # a few hundred points: cheap to make
    return _info(name, len(dataset.x), None, dataset.x.shape[1], dataset.n_classes)


_DESCRIPTIONS = {
    "fashion-mnist": "Fashion-MNIST: 28x28 grayscale images of 10 kinds of clothing",
    "mnist": "MNIST: 28x28 grayscale images of handwritten digits 0-9",
    "digits": "scikit-learn's 8x8 handwritten digits 0-9 (16 gray levels)",
    "spiral": "three interleaved 2-D spirals, 300 points each: not linearly separable",
    "blobs": "four overlapping 2-D Gaussian blobs, 250 points each",
}
_BUILTINS: dict[str, tuple[InfoFn, LoadFn]] = {
    "fashion-mnist": (_idx_info, _load_idx),
    "mnist": (_idx_info, _load_idx),
    "digits": (_digits_info, _load_digits),
    "spiral": (_generated_info, _spiral),
    "blobs": (_generated_info, _blobs),
}
BUILTIN_NAMES: tuple[str, ...] = tuple(_BUILTINS)
