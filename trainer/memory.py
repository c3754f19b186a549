"""An upper bound of a run's peak memory beyond the dataset's own arrays, for admission."""

from __future__ import annotations

from trainer.config import TrainConfig
from trainer.last_hidden import MAX_SERIES_TERMS
from trainer.metrics import EVAL_BATCH
from trainer.numerical import CHUNK_ELEMENTS
from trainer.rundata import GATHER_ROWS

DATASET_ITEMSIZE = 4  # built-in and uploaded features are float32
INDEX_BYTES_PER_SAMPLE = 160  # labels and the int64 index arrays of the split and shuffles
SERIALISER_BUFFER = 16 * 2**20  # np.save copies an array out in pieces of at most 16 MiB
PYTHON_SLACK = 2**20  # the Python objects of a run: rows, reports, RNG states


def peak_bytes(
    config: TrainConfig, sizes: tuple[int, ...], n_train: int, n_val: int, n_test: int,
    checkpoint_bytes: int | None,
) -> int:
    """Bytes a run of `config` may hold at once, besides the dataset's own arrays.

    `sizes` are the layer widths (features first, classes last); n_* are the rows of the
    three sets; `checkpoint_bytes` is the size of one serialised checkpoint, or None when
    the run takes no checkpoints. Every phase's transient arrays are counted as if they
    were alive together, so this is an upper bound, loose by the smaller phases only.
    """
    s = 8 if config.resolved_dtype == "float64" else 4
    layers = list(zip(sizes[:-1], sizes[1:], strict=False))
    n_params = sum((n_in + 1) * n_out for n_in, n_out in layers)
    largest_layer = max((n_in + 1) * n_out for n_in, n_out in layers)
    widest = max(sizes[1:])
    hidden = sum(sizes[1:-1])
    f, k, batch = sizes[0], sizes[-1], config.batch_size
    momentum = 1 if config.momentum else 0

    # The data: the splits' validation and test rows, the training rows copied into the
    # job's dtype when it is not the dataset's (in pieces), labels and index arrays.
    data = (n_val + n_test) * f * DATASET_ITEMSIZE
    if s != DATASET_ITEMSIZE:
        data += n_train * f * s + GATHER_ROWS * f * DATASET_ITEMSIZE
    data += INDEX_BYTES_PER_SAMPLE * (n_train + n_val + n_test)

    # The model: flat weights and gradients, the best epoch's copy, the momentum velocity
    # (the returned weights are the best copy itself); the finite check's mask of a layer.
    model = (3 + momentum) * n_params * s + largest_layer

    # A training step, kept for a full and for the short last batch: the batch, every
    # layer's output and backprop scratch, the activation gradient's temporary.
    step = 2 * batch * (f + 2 * hidden + 2 * k + widest + 4) * s + 4 * batch * 8

    # An evaluation pass: one piece gathered, cast and pushed through two layers at a time,
    # its float64 loss temporaries, and the predictions of the largest set.
    rows = min(EVAL_BATCH, max(n_train, n_val, n_test))
    evaluation = rows * (f * (s + DATASET_ITEMSIZE) + 2 * widest * s + 8 * k * 8)
    evaluation += 9 * max(n_train, n_val, n_test)

    numerical = _numerical_bytes(sizes, batch, n_params) if config.gradient == "numerical" else 0

    # A checkpoint: copies of the weights, the best weights and the velocity, then its
    # bytes (BytesIO grows by an eighth at a time) and the serialiser's piece.
    checkpoint = 0
    if checkpoint_bytes is not None:
        checkpoint = (2 + momentum) * n_params * s + checkpoint_bytes * 9 // 8
        checkpoint += min(SERIALISER_BUFFER, largest_layer * s)
    return data + model + step + evaluation + numerical + checkpoint + PYTHON_SLACK


def _numerical_bytes(sizes: tuple[int, ...], batch: int, n_params: int) -> int:
    """float64 working arrays of one numerical gradient (numerical.py, last_hidden.py)."""
    layers = list(zip(sizes[:-1], sizes[1:], strict=False))
    k, widest, rows = sizes[-1], max(sizes[1:]), max(sizes[:-1]) + 1
    # forward passes (the gradient's, keeping every input, and the loop's mean loss)
    forward = 2 * batch * sum(sizes)
    # per layer: its inputs with a ones column, the shifts, the +h and -h changes and g
    per_layer = max((n_in + 1) * (2 * batch + 3 * n_out) for n_in, n_out in layers)
    # chunks of at most CHUNK_ELEMENTS (or one row) of (perturbations, batch, width)
    chunks = 12 * min(max(CHUNK_ELEMENTS, batch * widest), rows * batch * widest)
    series = 0
    if len(sizes) > 2:  # the last hidden layer: u and two powers (B, J, K), the moments
        j, rows_j = sizes[-2], sizes[-3] + 1
        series = 3 * batch * j * k + (2 * MAX_SERIES_TERMS + 6) * batch * j
        # the direct-exp fallback's (Pc, B, J, K) arrays
        chunks += 4 * min(max(CHUNK_ELEMENTS, batch * j), rows_j * batch * j) * k
    return 8 * (forward + per_layer + n_params + series + chunks)
