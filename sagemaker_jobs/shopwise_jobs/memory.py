"""Resident memory by phase of a job: what each phase held when it started and the most it reached, so a stage's
memory can be told apart from what the stages before it left behind (``make scale`` extrapolates each by its own
growth). Linux's counters (``/proc/self/status``: VmRSS, VmHWM; writing 5 to ``/proc/self/clear_refs`` resets the
high-water mark); elsewhere the figures are absent, never guessed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def reset_peak() -> bool:
    """Start a new high-water mark at the resident memory of now; False where the system cannot."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


class Phases:
    """``begin(name)`` ends the phase before it; ``figures[name] = {"start_mb": held when it began, "peak_mb": the
    most held during it}``. Nothing is recorded where the system has no such counters (the job runs all the same)."""

    def __init__(self) -> None:
        self.figures: dict[str, dict[str, float]] = {}
        self._open: tuple[str, float | None, bool] | None = None

    def begin(self, name: str) -> None:
        self.end()
        self._open = (name, resident_mb(), reset_peak())

    def end(self) -> dict[str, dict[str, float]]:
        if self._open is not None:
            name, start, resettable = self._open
            peak = _status_mb("VmHWM")
            if start is not None and peak is not None and resettable:
                self.figures[name] = {"start_mb": round(start, 1), "peak_mb": round(max(peak, start), 1)}
            self._open = None
        return self.figures


def own_mb(figures: dict[str, Any]) -> float:
    """What a phase added above what it started with."""
    return max(float(figures["peak_mb"]) - float(figures["start_mb"]), 0.0)
