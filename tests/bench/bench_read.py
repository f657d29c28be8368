"""Memory of reading one large S3 object line by line: ``shopwise.dal.objects.read_lines`` (a chunk at a time)
beside reading the whole body and splitting it (what it did before), in the same run.

    .venv/bin/python tests/bench/bench_read.py [--mb 100]

The object is batch-transform output shaped (a shopper's key and 50 picks a line). The local endpoint runs in its
own process, so the peak counts only this process's Python allocations (tracemalloc) while the lines are read.
Ends with one JSON line: {"object_mb", "lines", "whole_peak_mb", "streamed_peak_mb", "ratio"}.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path


def whole(bucket: str, key: str) -> Iterator[bytes]:
    """The previous read_lines (commit 3e220a9): the whole body in memory, then split."""
    from shopwise.dal.aws import client

    body = client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    for line in body.splitlines():
        if line.strip():
            yield line


def peak_mb(read: Callable[[str, str], Iterator[bytes]], bucket: str, key: str) -> tuple[int, float]:
    tracemalloc.start()
    lines = sum(1 for _ in read(bucket, key))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return lines, round(peak / 1e6, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=100.0, help="size of the object")
    args = parser.parse_args()

    from shopwise.dal.aws import client
    from shopwise.dal.objects import read_lines
    from shopwise_local.endpoint import free_port
    from shopwise_local.stack import LocalStack

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SHOPWISE_HOME"] = tmp
        stack = LocalStack(Path(tmp), free_port(), free_port())
        try:
            stack.start_endpoint()
            bucket = stack.create_resources().artifacts_bucket
            picks = [[f"i{n:05d}", 0.5, "because", "Cat>Sub", "A title"] for n in range(50)]
            line = json.dumps({"key": "user#" + "x" * 40, "items": picks}).encode()
            count = int(args.mb * 1e6 // len(line))
            client("s3").put_object(Bucket=bucket, Key="bench/out.jsonl", Body=b"\n".join([line] * count))
            lines, before = peak_mb(whole, bucket, "bench/out.jsonl")
            streamed_lines, after = peak_mb(read_lines, bucket, "bench/out.jsonl")
            assert lines == streamed_lines == count
        finally:
            stack.close()
    result = {
        "object_mb": round(count * len(line) / 1e6, 1),
        "lines": count,
        "whole_peak_mb": before,
        "streamed_peak_mb": after,
        "ratio": round(before / after, 1),
    }
    print(f"whole body: peak {before} MB; streamed: peak {after} MB ({count} lines)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
