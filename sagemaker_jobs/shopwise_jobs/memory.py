"""Resident memory by phase of a job: what each phase held when it started and the most it reached, so a stage's
memory can be told apart from what the stages before it left behind (``make scale`` extrapolates each by its own
growth). Linux's counters (``/proc/self/status``: VmRSS, VmHWM; writing 5 to ``/proc/self/clear_refs`` resets the
high-water mark); elsewhere the figures are absent, never guessed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

STATUS, CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def _status_mb(field: str) -> float | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        return None
    return None


def resident_mb() -> float | None:
    return _status_mb("VmRSS")


def peak_mb() -> float | None:
    """The high-water mark of resident memory since the last ``reset_peak``."""
    return _status_mb("VmHWM")


def reset_peak() -> bool:
    """Start a new high-water mark at the resident memory of now; False where the system cannot. Memory the
    allocator holds free is handed back first (glibc's ``malloc_trim``), or a part that reuses what the parts before
    it freed would seem to need nothing, and what is held would include what is free."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


class Phases:
    """``begin(name)`` ends the phase before it; ``figures[name] = {"start_mb": held when it began, "peak_mb": the
    most held during it}``, and for the parts ``within`` it, ``parts[name][part] = [held at the part's start above
    the phase's start, the part's own peak above that]``. Nothing is recorded where the system has no such counters
    (the job runs all the same). ``log`` is told each phase's start and peak as they happen: a job the kernel kills
    for memory writes no figures, and its log then says which phase it was in and what the ones before it held."""

    def __init__(self, log: Callable[[str], None] | None = None) -> None:
        self.figures: dict[str, dict[str, float]] = {}
        self.parts: dict[str, dict[str, list[float]]] = {}
        self._open: list[Any] | None = None  # [name, start, resettable, the peak so far]
        self._log = log

    def begin(self, name: str) -> None:
        self.end()
        start = resident_mb()
        self._open = [name, start, reset_peak(), start]
        if self._log is not None and start is not None:
            self._log(f"memory: {name} begins at {start:,.0f} MB resident")

    def beside(self, peak_mb: float | None) -> None:
        """The open phase's work ran in a process of its own (``shopwise_jobs.apart``) whose resident memory peaked
        at ``peak_mb``: the instance held that and what this process held at the phase's start at once."""
        if self._open is not None and peak_mb is not None and self._open[1] is not None:
            self._open[3] = max(self._open[3] or 0.0, self._open[1] + peak_mb)

    def _fold(self) -> float | None:
        """The high-water mark since the last reset, folded into the open phase's peak."""
        peak = peak_mb()
        if self._open is not None and peak is not None and self._open[3] is not None:
            self._open[3] = max(self._open[3], peak)
        return peak

    @contextmanager
    def within(self, part: str) -> Iterator[None]:
        """A part of the open phase: its own peak, apart from what the parts before it hold."""
        start = resident_mb()
        self._fold()
        resettable = reset_peak()
        try:
            yield
        finally:
            peak = self._fold()
            if self._open is not None and None not in (start, peak, self._open[1]) and resettable:
                assert start is not None and peak is not None
                self.parts.setdefault(self._open[0], {})[part] = [
                    round(start - self._open[1], 1),
                    round(max(peak - start, 0.0), 1),
                ]

    def end(self) -> dict[str, dict[str, float]]:
        if self._open is not None:
            name, start, resettable, _ = self._open
            self._fold()
            peak = self._open[3]
            if start is not None and peak is not None and resettable:
                self.figures[name] = {"start_mb": round(start, 1), "peak_mb": round(max(peak, start), 1)}
                if self._log is not None:
                    self._log(f"memory: {name} peaked at {max(peak, start):,.0f} MB resident")
            self._open = None
        return self.figures


def array_bytes(obj: Any, skip: tuple[str, ...] = ("interactions", "catalog")) -> int:
    """The bytes of the NumPy arrays and sparse matrices an object holds (through dataclasses, attributes, dicts,
    lists and tuples): what a fit keeps, apart from the allocators' slack that resident memory also counts. Each
    byte once: a view (the served rows' codes, a slice of every row's) is memory its base holds. Attributes named in
    ``skip`` (the rows, the catalog: counted on their own) are left out."""
    from scipy import sparse

    seen: set[int] = set()
    spans: list[tuple[int, int]] = []  # each array's bytes, [first, past the last)

    def walk(o: Any) -> None:
        if id(o) in seen:
            return
        seen.add(id(o))
        if isinstance(o, np.ndarray):
            if o.nbytes:
                spans.append(np.lib.array_utils.byte_bounds(o))
        elif sparse.issparse(o):
            for name in ("data", "indices", "indptr", "row", "col"):
                if hasattr(o, name):
                    walk(getattr(o, name))
        elif isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, list | tuple):
            for v in o:
                walk(v)
        elif hasattr(o, "__dict__"):
            for name, v in vars(o).items():
                if name not in skip:
                    walk(v)

    walk(obj)
    total, end = 0, 0  # the union of the spans
    for first, last in sorted(spans):
        total += max(0, last - max(first, end))
        end = max(end, last)
    return total
