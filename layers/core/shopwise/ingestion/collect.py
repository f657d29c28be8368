"""Collect: validate a batch of storefront events, stamp received_at, publish the valid ones to the stream."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from shopwise.events import EventRejected, check_clock, parse_event, to_record
from shopwise.privacy.pseudonyms import Pseudonymiser

MAX_EVENTS_PER_BATCH = 500
MAX_BATCH_BYTES = 1_000_000


class Publisher(Protocol):
    def publish(self, records: list[tuple[str, dict[str, Any]]]) -> None: ...


class BadBatch(ValueError):
    """The request as a whole is unusable (not a batch, too many events, too large)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class CollectResult:
    results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(1 for r in self.results if r["status"] == "accepted")

    @property
    def rejected(self) -> int:
        return len(self.results) - self.accepted

    def to_json(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "rejected": self.rejected, "results": self.results}


def parse_batch(body: str | bytes | None) -> list[Any]:
    if body is None or not body:
        raise BadBatch('empty body: expected {"events": [...]}')
    if len(body) > MAX_BATCH_BYTES:
        raise BadBatch(f"body is {len(body)} bytes; the limit is {MAX_BATCH_BYTES}", status=413)
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as exc:
        raise BadBatch(f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    events = payload.get("events") if isinstance(payload, dict) else None
    if not isinstance(events, list):
        raise BadBatch('expected a JSON object {"events": [...]}')
    if not events:
        raise BadBatch("events: the batch is empty")
    if len(events) > MAX_EVENTS_PER_BATCH:
        raise BadBatch(f"events: {len(events)} events; the limit is {MAX_EVENTS_PER_BATCH} per request", 413)
    return events


SERVER_FIELDS = ("email_hash",)


def collect(
    raw_events: list[Any], received_at: datetime, publisher: Publisher, pseudonymiser: Pseudonymiser
) -> CollectResult:
    """Validate each event on its own: valid events are pseudonymised and published even when others in the batch
    are not. The server stamps received_at (a client's value is replaced)."""
    result = CollectResult()
    to_publish: list[tuple[str, dict[str, Any]]] = []
    for index, raw in enumerate(raw_events):
        event_id = raw.get("event_id") if isinstance(raw, dict) else None
        try:
            if not isinstance(raw, dict):
                raise EventRejected("event", "expected a JSON object")
            for name in SERVER_FIELDS:
                if name in raw:
                    raise EventRejected(name, "is set by the server, not by the client")
            event = parse_event({**raw, "received_at": received_at, "pseudonymised": False})
            check_clock(event, received_at)
            event = pseudonymiser.apply(event)
        except EventRejected as exc:
            result.results.append(
                {
                    "index": index,
                    "event_id": event_id,
                    "status": "rejected",
                    "field": exc.field,
                    "reason": exc.reason,
                }
            )
            continue
        to_publish.append((event.profile_id, to_record(event)))
        result.results.append({"index": index, "event_id": event.event_id, "status": "accepted"})
    if to_publish:
        publisher.publish(to_publish)
    return result
