"""The failure queue: records that can never be applied (poison: their data and reason, sent by the updater) and
batches the stream gave up on (their coordinates, sent by Lambda's on-failure destination), kept for a person to look
at and replay (``shopwise.ingestion.failures``)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shopwise.dal.aws import client
from shopwise.retry import backoff

MAX_SEND_RETRIES = 5


@dataclass(frozen=True)
class Message:
    id: str
    receipt: str
    raw: str  # the body as sent
    sent_at: float  # seconds since the epoch

    @classmethod
    def of(cls, message: dict[str, Any]) -> Message:
        sent = message.get("Attributes", {}).get("SentTimestamp", "0")
        return cls(message["MessageId"], message["ReceiptHandle"], message.get("Body", ""), int(sent) / 1000)

    @property
    def body(self) -> dict[str, Any]:
        """The body as JSON ({} if it is not a JSON object)."""
        try:
            parsed = json.loads(self.raw)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}


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
                "shardId": str(record.get("eventID", "")).split(":", 1)[0],
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

    def peek(self, visibility: int = 300) -> list[Message]:
        """Every message in the queue, each hidden from other readers for ``visibility`` seconds (``release`` shows
        them again, ``delete`` removes them). SQS has no listing: messages are received until it hands out nothing
        new; one seen twice (the pass outlasted its visibility) ends the pass too, as all were looked at."""
        sqs = client("sqs")
        found: dict[str, Message] = {}
        while True:
            got = sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=visibility,
                WaitTimeSeconds=1,
                MessageSystemAttributeNames=["SentTimestamp"],
            ).get("Messages", [])
            fresh = [Message.of(m) for m in got if m["MessageId"] not in found]
            if not fresh:
                return list(found.values())
            found.update((m.id, m) for m in fresh)

    def release(self, messages: list[Message]) -> None:
        """Show these messages to readers again at once."""
        for start in range(0, len(messages), 10):
            client("sqs").change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m.receipt, "VisibilityTimeout": 0}
                    for n, m in enumerate(messages[start : start + 10])
                ],
            )

    def delete(self, messages: list[Message]) -> None:
        for start in range(0, len(messages), 10):
            client("sqs").delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m.receipt} for n, m in enumerate(messages[start : start + 10])
                ],
            )

    def remove_matching(self, matches: Callable[[str], bool], visibility: int = 120) -> dict[str, int]:
        """Delete the messages whose body ``matches`` (SQS cannot edit a message); the others are shown again."""
        messages = self.peek(visibility)
        hits = [m for m in messages if matches(m.raw)]
        self.delete(hits)
        self.release([m for m in messages if m not in hits])
        return {"messages_seen": len(messages), "messages_removed": len(hits)}
