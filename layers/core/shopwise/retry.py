"""Backoff between retries (throttled writes, write conflicts, unprocessed batch keys), with jitter."""

from __future__ import annotations

import random
import time


def backoff(attempt: int, base: float = 0.05, cap: float = 2.0) -> None:
    time.sleep(min(cap, base * (2**attempt)) * (0.5 + random.random() / 2))
