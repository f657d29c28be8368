"""The Kinesis -> Lambda event source mapping, played locally, plus the Firehose archive copy.

As Lambda does for a Kinesis event source with ``report_batch_item_failures`` and ``bisect_batch_on_error``:
- reads up to ``batch_size`` records per shard and invokes the handler with the Lambda Kinesis event shape;
- on reported item failures, retries from the lowest failed sequence number;
- on a handler error, splits the batch in two and retries each half;
- after ``retry_attempts`` retries (or for records older than ``max_record_age_s``), sends a failure record with
  the shard and sequence range to the on-failure queue and moves on.
Independently, like Firehose reading the same stream with record-format conversion, every record is written to the
S3 archive as Parquet (``shopwise.archive``'s table) under ``events/dt=YYYY-MM-DD/hour=HH/``.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shopwise import archive, config
from shopwise.dal.aws import client
from shopwise_local.lambda_runtime import LocalFunction, kinesis_event


@dataclass
class PollerStats:
    records_read: int = 0
    invocations: int = 0
    records_failed_to_destination: int = 0
    archived_objects: int = 0
    last_error: str = ""
    failures: list[dict[str, Any]] = field(default_factory=list)


class KinesisPoller:
    def __init__(
        self,
        stream: str,
        function: LocalFunction,
        archive_bucket: str,
        failure_queue_url: str,
        env: config.EnvironmentConfig,
        poll_interval: float = 0.1,
    ) -> None:
        self.stream = stream
        self.function = function
        self.archive_bucket = archive_bucket
        self.failure_queue_url = failure_queue_url
        self.batch_size = env.stream_batch_size
        self.retry_attempts = env.stream_retry_attempts
        self.max_record_age_s = env.stream_max_record_age_s
        self.poll_interval = poll_interval
        self.stats = PollerStats()
        self._stop = threading.Event()
        self._passes = 0  # passes begun
        self._last_empty_pass = -1  # the number of the latest pass that found nothing
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        description = client("kinesis").describe_stream(StreamName=stream)["StreamDescription"]
        self.stream_arn = description["StreamARN"]
        self._iterators = {
            shard["ShardId"]: client("kinesis").get_shard_iterator(
                StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            for shard in description["Shards"]
        }

    # -- the loop -------------------------------------------------------------------------------------------
    def start(self) -> KinesisPoller:
        self._thread = threading.Thread(target=self._run, name="kinesis-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def wait_idle(self, timeout: float = 120.0) -> bool:
        """Block until a pass that began after this call found nothing new: everything put before the call has
        been delivered (or sent to the on-failure destination)."""
        with self._changed:
            after = self._passes
            return self._changed.wait_for(lambda: self._last_empty_pass > after, timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._changed:
                self._passes += 1
                number = self._passes
            try:
                got = self.poll_once()
            except Exception as exc:  # keep polling: a transient endpoint error must not kill the mapping
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                got = -1
            if got == 0:
                with self._changed:
                    self._last_empty_pass = number
                    self._changed.notify_all()
            if got <= 0:
                self._stop.wait(self.poll_interval)

    def poll_once(self) -> int:
        """One pass over every shard; returns how many records were read."""
        total = 0
        for shard_id, iterator in list(self._iterators.items()):
            response = client("kinesis").get_records(ShardIterator=iterator, Limit=self.batch_size)
            records = response.get("Records", [])
            if records:
                total += len(records)
                self.stats.records_read += len(records)
                # archived and delivered before the iterator moves on: an S3 or queue error re-reads the records
                self._archive(shard_id, records)
                self._deliver(shard_id, records)
            self._iterators[shard_id] = response["NextShardIterator"]
        return total

    # -- Lambda's side ----------------------------------------------------------------------------------------
    def _deliver(self, shard_id: str, records: list[dict[str, Any]]) -> None:
        now = time.time()
        fresh = [r for r in records if now - r["ApproximateArrivalTimestamp"].timestamp() <= self.max_record_age_s]
        if len(fresh) < len(records):
            stale = [r for r in records if r not in fresh]
            self._to_destination(shard_id, stale, "RecordAgeExceeded")
        if fresh:
            self._invoke_with_retries(shard_id, fresh, attempt=0)

    def _invoke_with_retries(self, shard_id: str, batch: list[dict[str, Any]], attempt: int) -> None:
        while batch:
            self.stats.invocations += 1
            try:
                response = self.function.invoke(kinesis_event(batch, self.stream_arn, shard_id)) or {}
                failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
                crashed = False
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # anything that ends the invocation, as a crashed runtime would
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                failed, crashed = {r["SequenceNumber"] for r in batch}, True
            if not failed:
                return
            if attempt >= self.retry_attempts:
                first = min(i for i, r in enumerate(batch) if r["SequenceNumber"] in failed)
                self._to_destination(shard_id, batch[first:], "RetryAttemptsExhausted")
                return
            attempt += 1
            if crashed and len(batch) > 1:
                # bisect_batch_on_error: each half is retried on its own
                half = len(batch) // 2
                self._invoke_with_retries(shard_id, batch[:half], attempt)
                self._invoke_with_retries(shard_id, batch[half:], attempt)
                return
            # report_batch_item_failures: resume from the lowest failed sequence number
            first = min(i for i, r in enumerate(batch) if r["SequenceNumber"] in failed)
            batch = batch[first:]

    def _to_destination(self, shard_id: str, records: list[dict[str, Any]], condition: str) -> None:
        """What Lambda sends to an on-failure destination for a stream: the batch's coordinates, not its data."""
        info = {
            "requestContext": {"condition": condition, "functionArn": self.function.name},
            "KinesisBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": records[0]["SequenceNumber"],
                "endSequenceNumber": records[-1]["SequenceNumber"],
                "approximateArrivalOfFirstRecord": _iso(records[0]["ApproximateArrivalTimestamp"]),
                "approximateArrivalOfLastRecord": _iso(records[-1]["ApproximateArrivalTimestamp"]),
                "batchSize": len(records),
                "streamArn": self.stream_arn,
            },
            "timestamp": datetime.now(UTC).isoformat(),
        }
        client("sqs").send_message(QueueUrl=self.failure_queue_url, MessageBody=json.dumps(info))
        self.stats.records_failed_to_destination += len(records)
        self.stats.failures.append(info)

    # -- Firehose's side --------------------------------------------------------------------------------------
    def _archive(self, shard_id: str, records: list[dict[str, Any]]) -> None:
        """The records as Firehose's record-format conversion writes them: one Parquet object of the archive table
        (``shopwise.archive``) in the hour they arrived; records that don't fit it under the error prefix. Named by
        the shard and the first record's sequence number: sequence numbers are per shard (two shards' batches
        starting at the same number in the same hour overwrote each other, losing events, before the shard was in
        the name); a batch read again after an error writes the same object again."""
        arrived = records[0]["ApproximateArrivalTimestamp"].astimezone(UTC)
        parquet, failed = archive.convert(r["Data"].rstrip(b"\n") for r in records)
        name = f"local-{shard_id}-{records[0]['SequenceNumber']}"
        if parquet is not None:
            key = f"{config.ARCHIVE_EVENTS_PREFIX}dt={arrived:%Y-%m-%d}/hour={arrived:%H}/{name}{archive.PARQUET}"
            client("s3").put_object(Bucket=self.archive_bucket, Key=key, Body=parquet)
            self.stats.archived_objects += 1
        if failed:
            key = f"{config.ARCHIVE_ERRORS_PREFIX}format-conversion-failed/dt={arrived:%Y-%m-%d}/{name}.jsonl.gz"
            client("s3").put_object(Bucket=self.archive_bucket, Key=key, Body=gzip.compress(b"\n".join(failed) + b"\n"))


def _iso(at: datetime) -> str:
    """A time as Lambda writes it in an on-failure message: ISO 8601, UTC, milliseconds, Z."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
