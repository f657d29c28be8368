"""The failure queue: records that can never be applied, with their reason, kept for a person to look at."""

from __future__ import annotations

import base64
import json
from typing import Any

from shopwise.dal.aws import client
from shopwise.retry import backoff

MAX_SEND_RETRIES = 5


class FailureQueue:
    def __init__(self, queue_url: str) -> None:
        if not queue_url:
            raise ValueError("no failure queue configured (FAILED_EVENTS_QUEUE_URL)")
        self.queue_url = queue_url

    def send_poison(self, records: list[tuple[str, dict[str, Any]]]) -> None:
        """(reason, raw Lambda Kinesis record) pairs. Raises if SQS keeps refusing: the batch is then retried, so
        nothing is lost."""
        entries = []
        for n, (reason, record) in enumerate(records):
            kinesis = record.get("kinesis", {})
            body = {
                "condition": "PoisonRecord",
                "reason": reason,
                "sequenceNumber": kinesis.get("sequenceNumber"),
                "partitionKey": kinesis.get("partitionKey"),
                "eventSourceARN": record.get("eventSourceARN"),
                "data": base64.b64decode(kinesis.get("data", "")).decode("utf-8", "replace")[:200_000],
            }
            entries.append({"Id": str(n), "MessageBody": json.dumps(body)})
        for start in range(0, len(entries), 10):
            pending = entries[start : start + 10]
            for attempt in range(MAX_SEND_RETRIES):
                failed = client("sqs").send_message_batch(QueueUrl=self.queue_url, Entries=pending).get("Failed", [])
                if not failed:
                    break
                ids = {f["Id"] for f in failed}
                pending = [e for e in pending if e["Id"] in ids]
                backoff(attempt)
            else:
                raise RuntimeError(f"failure queue refused {len(pending)} messages after {MAX_SEND_RETRIES} tries")
