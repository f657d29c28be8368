"""Comparing feature documents built in different orders."""

from __future__ import annotations

from typing import Any


def normalised(value: Any) -> Any:
    """Floats to 9 significant digits: decayed sums re-based in another order differ in the last bits."""
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, dict):
        return {k: normalised(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalised(v) for v in value]
    return value
