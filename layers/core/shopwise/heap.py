"""What a function's imports leave for the cyclic garbage collector.

A handler's modules (botocore's service models, pydantic's schemas, Powertools) are about 110,000 objects that live
as long as the execution environment. Python's collector walks every tracked object on each full collection: 40-50 ms
for the updater's imports on this machine (``tests/bench/bench_heap.py``), paid again and again while a busy shard
allocates. ``gc.freeze`` moves them into the permanent generation, which no collection walks; garbage is still freed
by reference counting, and cycles made after the freeze are collected as before.
"""

from __future__ import annotations

import gc


def freeze_imports() -> None:
    """Freeze every object alive now (call it at the end of a handler module, once its imports are done)."""
    gc.freeze()
