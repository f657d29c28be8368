"""A part of the served fit in a process of its own, beside the others.

Why: the served fit's largest part at the envelope, the content index, reads nothing but the catalog and the item
order, and a third of its work is serial (its ANN candidates' exact re-scoring: scipy under the GIL). In the job's
process that serial third added to every other part's serial work; in a process of its own it runs while the others
run, on an instance (96 vCPUs) whose cores neither side fills. ``make scale`` extrapolates the fit on the instance
as the longer of the two sides (``tests/bench/bench_scale.py``, ``final_fit``).

The process is spawned, not forked: the parent has run OpenMP (faiss, implicit) by then, and GNU OpenMP is not
fork-safe. What it is given and returns travels pickled (the catalog and the item ids in; at the envelope's million
items, a neighbour matrix of about 400 MB back). It reports its own wall and CPU time and its own peak above what
it held when the part began, as ``Phases.within`` does for a part in the job's process.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from shopwise_jobs.memory import peak_mb, reset_peak, resident_mb

T = TypeVar("T")


@dataclass(frozen=True)
class Done(Generic[T]):
    value: T
    seconds: float  # its wall time
    cpu: float  # its process's CPU seconds (every thread's)
    own_mb: float | None  # its peak resident memory above what the process held when the part began
    peak_mb: float | None = None  # its process's peak resident memory, all of it


class Apart(Generic[T]):
    """``Apart(fit, *args, imports=...)`` starts ``fit(*args)`` in a spawned process; ``result()`` waits for it
    (re-raising what it raised). ``fit`` must pickle by name: a module-level function or a class's classmethod. ``imports``: the
    modules the fit loads on its way (faiss), imported before its memory is taken, as in the job's process, where
    tuning has loaded them by the time the served fit runs: a library's pages are not the part's memory."""

    def __init__(self, fit: Callable[..., T], *args: Any, imports: tuple[str, ...] = ()) -> None:
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        with SPAWNING:  # spawned at the submit, with the process's own environment
            self._future = self._pool.submit(_run, fit, imports, *args)

    def result(self) -> Done[T]:
        try:
            return self._future.result()
        finally:
            self._pool.shutdown()


def _run(fit: Callable[..., T], imports: tuple[str, ...], *args: Any) -> Done[T]:
    for name in imports:
        importlib.import_module(name)
    start, resettable = resident_mb(), reset_peak()
    clock, used = time.perf_counter(), cpu_seconds()
    value = fit(*args)
    seconds, cpu = time.perf_counter() - clock, cpu_seconds() - used
    peak = peak_mb()
    own = round(max(peak - start, 0.0), 1) if resettable and peak is not None and start is not None else None
    return Done(
        value=value,
        seconds=round(seconds, 3),
        cpu=round(cpu, 3),
        own_mb=own,
        peak_mb=round(peak, 1) if resettable and peak is not None else None,
    )


def cpu_seconds() -> float:
    """This process's CPU seconds (every thread's) and its ended children's: a part whose work ran in processes of
    its own (iALS's half-steps, ``shopwise_jobs.als``) counts their CPU once it has waited for them, so its parallel
    share reads the same as a part's on threads."""
    times = os.times()
    return time.process_time() + times.children_user + times.children_system


# held while the environment a child inherits is set for it (``threads_for_children``) and while ``Apart`` spawns:
# os.environ is the process's, so a part spawning in a sibling thread (the served fit's parts run side by side on
# the instance) would otherwise start with the other's thread counts, or restore them under it
SPAWNING = threading.RLock()


@contextmanager
def threads_for_children(threads: int) -> Iterator[None]:
    """The thread counts a spawned child reads at its imports (OpenMP's: implicit and faiss; BLAS's; item-kNN's
    FIT_THREADS), set while it is spawned: workers side by side share the cores instead of each taking all. One
    thread at a time (``SPAWNING``): another waits until the environment is the process's own again."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "SHOPWISE_FIT_THREADS")
    with SPAWNING:
        before = {name: os.environ.get(name) for name in names}
        os.environ.update({name: str(threads) for name in names})
        try:
            yield
        finally:
            for name, value in before.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
