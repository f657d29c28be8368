"""A CloudWatch Logs subscription filter -> Firehose -> S3, played locally.

In the stack, the serve function's log group has a subscription filter ``{ $.event_type = "impression" }`` to a
Firehose delivery stream that decompresses the CloudWatch Logs records, extracts each message (a line that is
exactly an event) and writes them to the event archive as Parquet (record-format conversion with the archive's
table, ``shopwise.archive``). Here, the lines a function prints are
fed to a ``LogSubscription``, which keeps those that match and writes them the same way when its buffer fills, every
``BUFFER_SECONDS`` (Firehose's buffering interval, once ``start``ed) and when flushed (the stack flushes on close).
"""

from __future__ import annotations

import gzip
import json
import threading
import uuid
from datetime import UTC, datetime

from shopwise import archive, config
from shopwise.dal.aws import client

BUFFER_RECORDS = 200
BUFFER_SECONDS = 60.0


class LogSubscription:
    def __init__(self, bucket: str, field: str = "event_type", value: str = "impression") -> None:
        self.bucket = bucket
        self.field = field
        self.value = value
        self._partial = ""
        self._records: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        self.delivered = 0

    def start(self, interval: float = BUFFER_SECONDS) -> LogSubscription:
        """Flush every ``interval`` seconds in a daemon thread, as Firehose's buffering interval does."""

        def loop() -> None:
            while not self._stop.wait(interval):
                self.flush()

        self._timer = threading.Thread(target=loop, name="impressions-flush", daemon=True)
        self._timer.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._timer:
            self._timer.join(timeout=5)
        self.flush()

    def feed(self, text: str) -> None:
        """Text as a function printed it (any chunking): complete lines are matched, the rest waits."""
        with self._lock:
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
            for line in lines:
                if f'"{self.field}"' not in line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and record.get(self.field) == self.value:
                    self._records.append(line.encode() + b"\n")
            full = len(self._records) >= BUFFER_RECORDS
        if full:
            self.flush()

    def flush(self) -> int:
        """Write what is buffered as one archive object; returns the number of records written."""
        with self._lock:
            records, self._records = self._records, []
        if not records:
            return 0
        now = datetime.now(UTC)
        name = f"{self.value}s-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        parquet, failed = archive.convert(r.rstrip(b"\n") for r in records)  # as the impressions' Firehose does
        if parquet is not None:
            key = f"{config.ARCHIVE_EVENTS_PREFIX}dt={now:%Y-%m-%d}/hour={now:%H}/{name}{archive.PARQUET}"
            client("s3").put_object(Bucket=self.bucket, Key=key, Body=parquet)
        if failed:
            key = (
                f"{config.ARCHIVE_ERRORS_PREFIX}impressions/format-conversion-failed/dt={now:%Y-%m-%d}/{name}.jsonl.gz"
            )
            client("s3").put_object(Bucket=self.bucket, Key=key, Body=gzip.compress(b"\n".join(failed) + b"\n"))
        with self._lock:
            self.delivered += len(records)
        return len(records)
