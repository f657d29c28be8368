"""The failure queue: records that can never be applied, with their reason, kept for a person to look at."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
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

    def remove_matching(self, matches: Callable[[str], bool], visibility: int = 120) -> dict[str, int]:
        """Delete the messages whose body ``matches``. SQS cannot edit a message: each is received (hidden for
        ``visibility`` seconds), the matching ones deleted, and once the queue shows nothing new the others are made
        visible again. A message seen twice (the pass outlasted its visibility) ends the pass: all were looked at."""
        sqs = client("sqs")
        seen: set[str] = set()
        keep: list[dict[str, Any]] = []
        removed = 0
        while True:
            got = sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=visibility, WaitTimeSeconds=1
            ).get("Messages", [])
            fresh = [m for m in got if m["MessageId"] not in seen]
            seen.update(m["MessageId"] for m in got)
            hits = [m for m in fresh if matches(m.get("Body", ""))]
            keep += [m for m in got if m not in hits]
            if hits:
                removed += len(hits)
                sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(hits)],
                )
            if not fresh:
                break
        for start in range(0, len(keep), 10):
            sqs.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for n, m in enumerate(keep[start : start + 10])
                ],
            )
        return {"messages_seen": len(seen), "messages_removed": removed}
