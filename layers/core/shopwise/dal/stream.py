"""Publishing accepted events to the Kinesis stream."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from shopwise.dal.aws import client
from shopwise.retry import backoff

MAX_PUT_RETRIES = 6


class KinesisPublisher:
    def __init__(self, stream_name: str) -> None:
        self.stream_name = stream_name

    def publish(self, records: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Put (partition key, JSON record) pairs, retrying the records Kinesis refused (throttled shards)."""
        pending = [
            {"PartitionKey": key, "Data": json.dumps(record, separators=(",", ":")).encode()} for key, record in records
        ]
        for attempt in range(MAX_PUT_RETRIES):
            if not pending:
                return
            response = client("kinesis").put_records(StreamName=self.stream_name, Records=pending)
            if not response.get("FailedRecordCount"):
                return
            pending = [
                entry for entry, result in zip(pending, response["Records"], strict=True) if "ErrorCode" in result
            ]
            backoff(attempt)
        raise RuntimeError(f"{len(pending)} records still refused by Kinesis after {MAX_PUT_RETRIES} tries")
