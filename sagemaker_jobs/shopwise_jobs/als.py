"""iALS fitted by ``implicit``'s compiled conjugate-gradient step, its rows split over processes instead of threads.

Why: implicit's CPU fit solves its rows on OpenMP threads, and every row's solve calls BLAS's ``symv`` through
scipy's OpenBLAS, whose buffer allocator takes one lock for the whole process on every call (OpenBLAS issue 5589:
a program's gains stop near 8 threads however many cores it has). The users' half-step on the 300,000-shopper store
(283,459 rows, 3.6 M entries, 64 factors) took 1.41 s on one thread and 1.08 s on two, its CPU time 1.41 -> 1.91 s:
the second thread spent its time waiting on the lock (``perf``: the mutex and the futex waits, a fifth of the samples).
The whole fit: 16.1 s on implicit's threads, 12.2 s in two processes, the same factors
(``tests/bench/bench_fit.py --ials-split``). Each process has its OpenBLAS to itself: they share nothing but memory.

The same model: a row's solve reads the other side's factors and its own row alone, so a half-step cut into blocks of
rows is the same arithmetic in any cut. The factors start as implicit's do (its generator, in its order, at its
scale) and each block is solved by implicit's own step (``_least_squares_cg``, one thread), which computes the Gram
matrix by the same call on one BLAS thread: the item factors equal implicit's threaded fit's bit for bit
(``test_ials_fitted_in_processes_is_implicits_fit``).

Shared: the confidences, their transpose and both sides' factors are files in a scratch directory that every process
maps (``/dev/shm`` where it has the room, else a SageMaker job's ML storage volume, its place for scratch space, else
the temp directory; ``SHOPWISE_SCRATCH`` to choose): the pages are the same memory in every process (a file's pages
in the page cache), and a block's solved factors are in the others' view as soon as its task returns. At the
envelope (about 1.5 billion entries: 0.62 an event at 300,000 shoppers, of 2.4 billion events; 11 M rows of 64
factors) the files take about 27 GB; the job's copy of the transpose is released while the processes run.
A half-step is a task for each process, a block of rows of about equal cost (a row costs as much as
``ROW_COST_ENTRIES`` of its entries: measured from the two half-steps above).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
from scipy import sparse

# a row's fixed cost in its entries' (the Gram matrix's symv calls against each entry's dot and axpy): one thread took
# 1.28 s for the users' half-step above (283,459 rows, 3.6 M entries) and 0.78 s for the items' (50,000 rows, the same
# entries), so a row costs 2.2 us and an entry 0.19: 11.5 (``bench_fit.py --ials-split``, which times both: 1.31 and
# 0.82 s in another run, 10.7; blocks within a few percent of balanced either way)
ROW_COST_ENTRIES = 11.5
# implicit's default
CG_STEPS = 3
# fitted in processes from this many entries (below it the processes' start, about a second, is most of the fit)
# and with at least two to run; SHOPWISE_ALS_PROCESSES_FROM to move it (0: always)
PROCESSES_FROM_ENTRIES = int(os.environ.get("SHOPWISE_ALS_PROCESSES_FROM", "1000000"))

_SIDES = ("users", "items")


def in_processes(entries: int, processes: int) -> bool:
    """Whether a fit of ``entries`` confidences on ``processes`` processes is split over them."""
    return processes >= 2 and entries >= PROCESSES_FROM_ENTRIES


def fit_factors(
    confidence: sparse.csr_matrix,
    factors: int,
    regularization: float,
    iterations: int,
    seed: int,
    processes: int,
) -> np.ndarray:
    """The item factors of implicit's ALS (conjugate gradient, ``CG_STEPS``) on ``confidence`` (users x items,
    float32, the confidences themselves), its half-steps split over ``processes`` spawned processes."""
    from shopwise_jobs.apart import threads_for_children

    confidence = confidence.tocsr()
    confidence.sort_indices()
    transposed = confidence.T.tocsr()
    users, items = confidence.shape
    rng = np.random.default_rng(seed)  # implicit's check_random_state(seed): users' factors first, then items'
    start = {
        "users": rng.random((users, factors), dtype=np.float32) * 0.01,
        "items": rng.random((items, factors), dtype=np.float32) * 0.01,
    }
    rows = {"users": confidence, "items": transposed}
    needed = sum(m.indptr.nbytes + m.indices.nbytes + m.data.nbytes for m in rows.values())
    needed += sum(f.nbytes for f in start.values())
    with _scratch(needed) as directory:
        for side in _SIDES:
            np.save(directory / f"{side}.indptr.npy", rows[side].indptr)
            np.save(directory / f"{side}.indices.npy", rows[side].indices)
            np.save(directory / f"{side}.data.npy", rows[side].data.astype(np.float32, copy=False))
            np.save(directory / f"{side}.factors.npy", start[side])
        blocks = {side: row_blocks(rows[side].indptr, processes) for side in _SIDES}
        del start, rows, transposed  # in the files now (the caller holds the confidences it gave)
        pool = ProcessPoolExecutor(
            processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_opened,
            initargs=(str(directory),),
        )
        try:
            for iteration in range(iterations):
                for side in _SIDES:
                    # the processes start at the first tasks: one BLAS and OpenMP thread each (the env read at their
                    # imports), or each would hold a pool of threads for every core
                    with threads_for_children(1) if iteration == 0 else nullcontext():
                        tasks = [pool.submit(_half_step, side, a, b, regularization) for a, b in blocks[side]]
                    for task in tasks:
                        task.result()
        finally:
            pool.shutdown()
        item_factors = np.array(np.load(directory / "items.factors.npy", mmap_mode="r"))
    if not np.isfinite(item_factors).all():
        raise ValueError("iALS diverged: its item factors are not finite (try a larger regularization)")
    return item_factors


def row_blocks(indptr: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """``parts`` runs of rows of about equal cost (a row ``ROW_COST_ENTRIES`` entries' worth, plus its entries)."""
    n = len(indptr) - 1
    cost = np.arange(n + 1, dtype=np.float64) * ROW_COST_ENTRIES + indptr.astype(np.float64)
    cuts = np.searchsorted(cost, np.linspace(0.0, cost[-1], parts + 1)).astype(np.int64)
    cuts[0], cuts[-1] = 0, n
    return [(int(a), int(b)) for a, b in itertools.pairwise(cuts) if b > a]


# a SageMaker job's ML storage volume (VolumeSizeInGB): "training algorithms might also use it for scratch space"
ML_VOLUME = Path("/opt/ml/input")


@contextmanager
def _scratch(needed: int) -> Iterator[Path]:
    """A directory for the shared files, removed after: ``SHOPWISE_SCRATCH``, else ``/dev/shm`` (memory, never
    written back to a disk) when it has room for them with a quarter to spare (a container's is often 64 MB), else
    a SageMaker job's ML storage volume, else the temp directory."""
    base = os.environ.get("SHOPWISE_SCRATCH", "")
    shm = Path("/dev/shm")
    if not base and shm.is_dir() and shutil.disk_usage(shm).free > needed * 1.25:
        base = str(shm)
    elif not base:
        base = str(ML_VOLUME) if ML_VOLUME.is_dir() else tempfile.gettempdir()
    directory = Path(tempfile.mkdtemp(prefix="shopwise-als-", dir=base))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# the worker's mapped files: side -> (indptr, indices, data, factors), set once by its initializer
_MAPPED: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}


def _opened(directory: str) -> None:
    """In a worker: both sides' rows (copy-on-write: implicit's step takes writable views, and never writes them)
    and factors (shared: what a worker writes, every process sees) mapped from ``directory``."""
    base = Path(directory)
    for side in _SIDES:
        _MAPPED[side] = (
            np.load(base / f"{side}.indptr.npy", mmap_mode="c"),
            np.load(base / f"{side}.indices.npy", mmap_mode="c"),
            np.load(base / f"{side}.data.npy", mmap_mode="c"),
            np.load(base / f"{side}.factors.npy", mmap_mode="r+"),
        )


def _half_step(side: str, a: int, b: int, regularization: float) -> None:
    """In a worker: rows ``a:b`` of ``side`` solved with the other side's factors fixed, in place. The block's
    ``indptr`` keeps the whole arrays' offsets, so its entries are read where they are."""
    from implicit.cpu import _als

    indptr, indices, data, solved = _MAPPED[side]
    fixed = _MAPPED["items" if side == "users" else "users"][3]
    _als._least_squares_cg(indptr[a : b + 1], indices, data, solved[a:b], fixed, regularization, 1, CG_STEPS)
