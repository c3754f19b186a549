"""Trainer benchmark: Descent's step vs the book-style reference, PyTorch and the matmul ceiling.

    python bench/trainer_bench.py [--quick]

Everything is measured in one run with the contenders interleaved (A, B, C, A, B, C, ...)
and medians reported, so a slow moment of the machine hits them all alike. BLAS runs on
one thread: on small matrices a second OpenBLAS thread costs far more than it gains here.
"""

from __future__ import annotations

import os

# Before NumPy (or torch) is imported: the BLAS thread pools read these once, at load.
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
for _name in THREAD_VARIABLES:
    os.environ[_name] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: find trainer

from bench import reference  # noqa: E402
from trainer import TrainConfig, dataset_info, load_dataset, numerical_gradient, train  # noqa: E402
from trainer.datasets import Dataset  # noqa: E402
from trainer.network import Network, init_params  # noqa: E402
from trainer.optim import SGD  # noqa: E402

Array = np.ndarray
Runner = Callable[[int], float]  # runs n iterations, returns the seconds they took

SIZES = (784, 50, 10)
BATCH = 100
LR = 0.1
INIT_STD = 0.01
TARGETS = {  # (minimum, aim)
    "torch": (2.0, 2.5),
    "reference": (3.5, 4.0),
    "ceiling": (50.0, 75.0),
    "numerical": (200.0, 500.0),
}
MAX_GRADIENT_DIFFERENCE = 1e-6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds; extrapolate the "
                        "straightforward numerical gradient from a subset (< 30 s)")
    args = parser.parse_args()
    quick: bool = args.quick
    iterations, rounds = (100, 3) if quick else (300, 7)
    started = time.perf_counter()

    dataset, source = mnist_shaped_data()
    print(f"Descent trainer benchmark ({'--quick' if quick else 'normal'} mode)")
    print("threads: " + " ".join(f"{v}={os.environ[v]}" for v in THREAD_VARIABLES)
          + " (set by this script before importing NumPy)")
    print(f"data: {source}; net 784-50-10 sigmoid, softmax cross-entropy, batch {BATCH}, "
          f"lr {LR}, init N(0, {INIT_STD}^2)")
    torch = import_torch()
    print(f"numpy {np.__version__}; torch "
          + (f"{torch.__version__}" if torch else "not installed (PyTorch rows skipped)"))
    print(load_note())
    print()

    step_table(dataset, torch, iterations, rounds)
    epoch_table(dataset, 1 if quick else 3)
    numerical_table(dataset, quick)
    print(f"\ntotal {time.perf_counter() - started:.0f} s; at the end, {load_note()}")
    return 0


def load_note() -> str:
    """The 1-minute load average; this run adds up to 1, more means the cores were shared."""
    load = os.getloadavg()[0]
    note = f"load average {load:.2f} on {os.cpu_count()} cores"
    if load > 1.5:
        note += " (other processes were busy: absolute times inflated, interleaved ratios less)"
    return note


def mnist_shaped_data() -> tuple[Dataset, str]:
    """Fashion-MNIST when installed, else seeded uniform noise of its shapes."""
    if dataset_info("fashion-mnist").available:
        return load_dataset("fashion-mnist"), "Fashion-MNIST 60000x784 float32 (+10000 test)"
    rng = np.random.default_rng(0)
    x = rng.random((60000, 784), dtype=np.float32)
    x_test = rng.random((10000, 784), dtype=np.float32)
    t, t_test = rng.integers(0, 10, 60000), rng.integers(0, 10, 10000)
    source = "seeded random 60000x784 float32 in [0, 1) (Fashion-MNIST not installed)"
    return Dataset("random", x, t, 10, x_test, t_test), source


def import_torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


def interleaved(runners: dict[str, Runner], iterations: int, rounds: int) -> dict[str, float]:
    """Median seconds per iteration of each runner, the runners taking turns each round."""
    for run in runners.values():  # warm-up: buffers, caches, lazy initialisation
        run(min(iterations, 20))
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            times[name].append(run(iterations))
    return {name: statistics.median(t) / iterations for name, t in times.items()}


def verdict(value: float, target: str) -> str:
    minimum, aim = TARGETS[target]
    unit = "%" if target == "ceiling" else "x"
    mark = "aim met" if value >= aim else ("ok" if value >= minimum else "BELOW TARGET")
    return f"target >= {minimum:g}{unit} (aim {aim:g}{unit}): {mark}"


# --- a. and b.: one training step ----------------------------------------------------------


def step_table(dataset: Dataset, torch: Any, iterations: int, rounds: int) -> None:
    x32, t = dataset.x, dataset.t
    x64 = x32.astype(np.float64)  # the reference is float64 throughout: convert once, untimed
    order = np.random.default_rng(1).permutation(len(x32))
    batches = [order[i * BATCH:(i + 1) * BATCH] for i in range(iterations)]
    runners: dict[str, Runner] = {
        "descent": descent_runner(x32, t, batches),
        "reference": reference_runner(x64, t, batches, record_loss=False),
        "book_loop": reference_runner(x64, t, batches, record_loss=True),
        "ceiling": ceiling_runner(x32[batches[0]]),
    }
    if torch is not None:
        for threads in (1, 2):
            runners[f"torch{threads}"] = torch_runner(torch, threads, x32, t, batches)
    per_step = interleaved(runners, iterations, rounds)

    descent = per_step["descent"]
    print(f"a. training step: {iterations} mini-batch steps x {rounds} interleaved rounds, "
          "median; each step gathers its batch, backprops, updates")
    print(f"   {'implementation':<52}{'ms/step':>9}{'steps/s':>9}   Descent vs it")
    rows = [
        ("descent", "Descent float32 (np.take + Network.gradient + SGD)"),
        ("reference", "book-style reference float64 (gradient + SGD)"),
        ("book_loop", "  the same as the book's loop (+ loss for the curve)"),
        ("torch1", "PyTorch CPU float32, torch.set_num_threads(1)"),
        ("torch2", "PyTorch CPU float32, torch.set_num_threads(2)"),
    ]
    for key, label in rows:
        if key in per_step:
            ratio = "" if key == "descent" else f"{per_step[key] / descent:6.2f}x faster"
            print(f"   {label:<52}{1e3 * per_step[key]:9.3f}{1 / per_step[key]:9.0f}   {ratio}")
    ref_ratio = per_step["reference"] / descent
    loop_ratio = per_step["book_loop"] / descent
    print(f"   vs book-style reference, gradient + SGD only: {ref_ratio:.2f}x   "
          f"{verdict(ref_ratio, 'reference')}")
    print(f"   vs book-style reference as the book's train_neuralnet.py loop, which takes a "
          f"second forward pass for the loss curve\n   (Descent's curve comes free from its "
          f"step): {loop_ratio:.2f}x   {verdict(loop_ratio, 'reference')}")
    print(f"   (bound: the reference step takes {per_step['reference'] / per_step['ceiling']:.2f}x "
          "the time of the float32 matmuls alone (b.), so no step making them beats it by more)")
    if torch is not None:
        best = min(("torch1", "torch2"), key=per_step.__getitem__)
        torch_ratio = per_step[best] / descent
        print(f"   vs PyTorch (its faster setting, {best[-1]} thread(s)): {torch_ratio:.2f}x   "
              f"{verdict(torch_ratio, 'torch')}")
    else:
        print("   vs PyTorch: skipped (torch is not installed)")
    share = 100 * per_step["ceiling"] / descent
    print(f"\nb. matmul ceiling: the 5 float32 np.matmul calls of a step alone, with out= "
          f"buffers: {1e3 * per_step['ceiling']:.3f} ms/step")
    print(f"   Descent runs at {share:.0f}% of it   {verdict(share, 'ceiling')}")
    step_rate = STEP_FLOPS / per_step["ceiling"] / 1e9
    peak_rate = large_sgemm_rate(rounds)
    print(f"   those matmuls run at {step_rate:.1f} GFLOP/s, {100 * step_rate / peak_rate:.0f}% "
          f"of a {PEAK_N}x{PEAK_N}x{PEAK_N} sgemm on this core ({peak_rate:.1f} GFLOP/s, "
          "median of the rounds):\n   the ceiling is the core's arithmetic at these shapes "
          "(OpenBLAS's own kernels), not NumPy's call overhead")


# Multiply-adds of the 5 products of a 784-50-10 step at batch 100, 2 flops each.
STEP_FLOPS = 2 * (2 * BATCH * SIZES[0] * SIZES[1] + 3 * BATCH * SIZES[1] * SIZES[2])
PEAK_N = 1000


def large_sgemm_rate(rounds: int) -> float:
    """GFLOP/s of a large square float32 product: what one core does at best through BLAS."""
    rng = np.random.default_rng(6)
    a, b = (rng.standard_normal((PEAK_N, PEAK_N), dtype=np.float32) for _ in range(2))
    out = np.empty_like(a)
    np.matmul(a, b, out=out)
    times = []
    for _ in range(rounds):
        begin = time.perf_counter()
        np.matmul(a, b, out=out)
        times.append(time.perf_counter() - begin)
    return 2 * PEAK_N**3 / statistics.median(times) / 1e9  # a median, like the step's


def descent_runner(x: Array, t: Array, batches: list[Array]) -> Runner:
    """trainer.loop's inner loop: gather into a buffer, backprop, check the loss, update."""
    net = Network(init_params(SIZES, "sigmoid", np.random.default_rng(2), INIT_STD),
                  "sigmoid", "cross_entropy")
    update = SGD(LR).update
    params, grads = [net.flat_params], [net.flat_grads]  # bound once, as trainer/loop.py
    x_batch = np.empty((BATCH, x.shape[1]), dtype=np.float32)
    losses: list[float] = []

    def run(n: int) -> float:
        losses.clear()
        begin = time.perf_counter()
        for idx in batches[:n]:
            xb = np.take(x, idx, axis=0, out=x_batch, mode="clip")  # as trainer/loop.py
            loss, _ = net.gradient(xb, t[idx])  # the gradient lands in net.flat_grads
            losses.append(loss)
            if not math.isfinite(loss):
                raise RuntimeError(f"Descent diverged: loss {loss}")
            update(params, grads)
        return time.perf_counter() - begin

    return run


def reference_runner(x: Array, t: Array, batches: list[Array], record_loss: bool) -> Runner:
    """The book-style step; with record_loss, also `loss = network.loss(x_batch, t_batch)`
    after the update, as the book's train_neuralnet.py does to plot its loss curve."""
    net = reference.TwoLayerNet(*SIZES, np.random.default_rng(2), weight_init_std=INIT_STD)
    losses: list[float] = []

    def run(n: int) -> float:
        losses.clear()
        begin = time.perf_counter()
        for idx in batches[:n]:
            x_batch, t_batch = x[idx], t[idx]
            reference.sgd_step(net, x_batch, t_batch, LR)
            if record_loss:
                losses.append(net.loss(x_batch, t_batch))
        return time.perf_counter() - begin

    return run


def ceiling_runner(x: Array) -> Runner:
    """Only the products Network.gradient makes, on its shapes, into preallocated outputs."""
    rng = np.random.default_rng(3)
    w1 = rng.standard_normal((SIZES[0], SIZES[1]), dtype=np.float32)
    w2 = rng.standard_normal((SIZES[1], SIZES[2]), dtype=np.float32)
    h = np.empty((BATCH, SIZES[1]), dtype=np.float32)
    out = np.empty((BATCH, SIZES[2]), dtype=np.float32)
    dh = np.empty_like(h)
    g1, g2 = np.empty_like(w1), np.empty_like(w2)

    def run(n: int) -> float:
        begin = time.perf_counter()
        for _ in range(n):
            np.matmul(x, w1, out=h)
            np.matmul(h, w2, out=out)
            np.matmul(h.T, out, out=g2)
            np.matmul(out, w2.T, out=dh)
            np.matmul(x.T, dh, out=g1)
        return time.perf_counter() - begin

    return run


def torch_runner(torch: Any, threads: int, x: Array, t: Array, batches: list[Array]) -> Runner:
    """nn.Sequential(Linear, Sigmoid, Linear) + CrossEntropyLoss + optim.SGD on the same batches."""
    torch.manual_seed(2)
    model = torch.nn.Sequential(
        torch.nn.Linear(SIZES[0], SIZES[1]), torch.nn.Sigmoid(), torch.nn.Linear(SIZES[1], SIZES[2])
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    x_all, t_all = torch.from_numpy(x), torch.from_numpy(t)
    index = [torch.from_numpy(idx) for idx in batches]
    losses: list[float] = []

    def run(n: int) -> float:
        torch.set_num_threads(threads)
        losses.clear()
        begin = time.perf_counter()
        for idx in index[:n]:
            xb, tb = x_all.index_select(0, idx), t_all.index_select(0, idx)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), tb)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        elapsed = time.perf_counter() - begin
        torch.set_num_threads(1)  # no second torch thread left spinning beside NumPy's turn
        return elapsed

    return run


# --- the full training loop ----------------------------------------------------------------


def epoch_table(dataset: Dataset, rounds: int) -> None:
    assert dataset.x_test is not None and dataset.t_test is not None
    x64, x64_test = dataset.x.astype(np.float64), dataset.x_test.astype(np.float64)
    t_test = dataset.t_test
    config = TrainConfig(hidden_sizes=SIZES[1:2], activation="sigmoid", learning_rate=LR,
                         batch_size=BATCH, epochs=1, weight_init_std=INIT_STD,
                         validation_fraction=0.0)

    def descent() -> float:
        begin = time.perf_counter()
        train(config, dataset)
        return time.perf_counter() - begin

    def book() -> float:
        begin = time.perf_counter()
        reference.train_reference(x64, dataset.t, x64_test, t_test, hidden=SIZES[1],
                                  lr=LR, batch=BATCH, epochs=1, weight_init_std=INIT_STD)
        return time.perf_counter() - begin

    cold = descent()  # the first train() of the process: its big copies touch fresh pages
    book()
    times: dict[str, list[float]] = {"descent": [], "reference": []}
    for _ in range(rounds):
        times["descent"].append(descent())
        times["reference"].append(book())
    d, r = (statistics.median(times[k]) for k in ("descent", "reference"))
    n = len(dataset.x)
    print(f"\n   full epoch ({n} samples, {math.ceil(n / BATCH)} steps; after a warm-up, "
          f"{rounds} interleaved round(s), median):")
    print(f"   Descent train(), 1 epoch, validation_fraction 0: {d:7.2f} s  (incl. split copy, "
          "epoch evaluation, final train/test evaluation)")
    print(f"   reference train_reference(), 1 epoch:            {r:7.2f} s  (incl. the book's "
          "per-step loss pass, final train/test accuracy)")
    print(f"   Descent is {r / d:.2f}x faster per epoch (no target); Descent's first train() "
          f"in this process took {cold:.2f} s")


# --- c. numerical gradient -----------------------------------------------------------------


def numerical_table(dataset: Dataset, quick: bool) -> None:
    rng = np.random.default_rng(4)
    idx = rng.permutation(len(dataset.x))[:BATCH]
    x, t = dataset.x[idx].astype(np.float64), dataset.t[idx]
    params = init_params(SIZES, "sigmoid", np.random.default_rng(5), INIT_STD, "float64")
    net = Network(params, "sigmoid", "cross_entropy")
    # delta 0: the exact softmax cross-entropy, the function Descent differentiates. The
    # book's 1e-7 would by itself move the gradient by ~1e-6 relative (reported below).
    book = reference.TwoLayerNet(*SIZES, rng, delta=0.0)
    book.params = dict(zip(("W1", "b1", "W2", "b2"), (p.copy() for p in params), strict=True))
    n_params = sum(p.size for p in params)

    repeats = 3 if quick else 5
    descent_times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        fast = numerical_gradient(net, x, t)
        descent_times.append(time.perf_counter() - begin)
    descent = statistics.median(descent_times)
    fast_by_key = dict(zip(("W1", "b1", "W2", "b2"), fast, strict=True))

    # quick: W1 on 9 rows spread over the image (a strided view, perturbed in place) plus
    # all of b1, W2, b2; the time per parameter is the same for every parameter.
    w1_rows = slice(60, None, 90) if quick else slice(None)
    begin = time.perf_counter()
    slow = {
        key: reference.numerical_gradient(lambda _: book.loss(x, t),
                                          p[w1_rows] if key == "W1" else p)
        for key, p in book.params.items()
    }
    elapsed = time.perf_counter() - begin
    done = sum(g.size for g in slow.values())
    straightforward = elapsed * n_params / done
    fast_by_key["W1"] = fast_by_key["W1"][w1_rows]
    difference = max(
        float(np.abs(fast_by_key[k] - slow[k]).max() / np.abs(slow[k]).max()) for k in slow
    )

    # The book's delta on its own, measured where it is cheap (b1, W2, b2).
    book.delta = reference.BOOK_DELTA
    delta_shift = max(
        float(np.abs(reference.numerical_gradient(lambda _: book.loss(x, t), book.params[k])
                     - slow[k]).max() / np.abs(slow[k]).max())
        for k in ("b1", "W2", "b2")
    )

    ratio = straightforward / descent
    how = (f"extrapolated from {done} of {n_params} parameters ({elapsed:.1f} s)" if quick
           else "one full call")
    print(f"\nc. numerical gradient: float64 784-50-10, batch {BATCH}, all {n_params} "
          "parameters, central differences h = 1e-4")
    print(f"   Descent numerical_gradient (median of {repeats}):   {1e3 * descent:10.1f} ms")
    print(f"   reference straightforward (2 forward passes/param): {straightforward:10.1f} s"
          f"   ({how})")
    print(f"   Descent is {ratio:.0f}x faster   {verdict(ratio, 'numerical')}")
    scope = "on the parameters computed" if quick else "over all parameters"
    ok = "ok" if difference <= MAX_GRADIENT_DIFFERENCE else "ABOVE LIMIT"
    print(f"   max relative difference, max|descent - reference| / max|reference| per array, "
          f"{scope}: {difference:.1e}   limit {MAX_GRADIENT_DIFFERENCE:g}: {ok}")
    print(f"   (reference with delta 0, the exact loss; the book's 1e-7 delta alone moves its "
          f"gradient by {delta_shift:.1e} relative here, on b1/W2/b2)")


if __name__ == "__main__":
    sys.exit(main())
