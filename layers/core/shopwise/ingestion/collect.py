"""Collect: validate a batch of storefront events, each against what its caller may send (``shopwise.access``),
stamp received_at and origin, pseudonymise, publish the valid ones to the stream."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from shopwise.access.callers import SERVER, Caller
from shopwise.events import EventRejected, check_clock, parse_event, to_record
from shopwise.privacy.pseudonyms import Pseudonymiser

MAX_EVENTS_PER_BATCH = 500
MAX_BATCH_BYTES = 1_000_000


class Publisher(Protocol):
    def publish(self, records: list[tuple[str, dict[str, Any]]]) -> None: ...


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
        answer: dict[str, Any] = {"accepted": self.accepted, "rejected": self.rejected, "results": self.results}
        if not self.accepted:  # every error answer says what was wrong; the results say it per event
            first = next((r for r in self.results if r["status"] == "rejected"), {})
            answer["message"] = f"no event accepted: the first rejected at {first.get('field')}: {first.get('reason')}"
        return answer


SERVER_FIELDS = ("email_hash", "origin")


def collect(
    raw_events: list[Any],
    received_at: datetime,
    publisher: Publisher,
    pseudonymiser: Pseudonymiser,
    caller: Caller,
) -> CollectResult:
    """Validate each event on its own: valid events are pseudonymised and published even when others in the batch
    are not. The server stamps received_at (a client's value is replaced) and the event's origin: who vouched."""
    result = CollectResult()
    to_publish: list[tuple[str, dict[str, Any]]] = []
    rekeyed: set[tuple[str, ...]] = set()
    for index, raw in enumerate(raw_events):
        event_id = raw.get("event_id") if isinstance(raw, dict) else None
        try:
            if not isinstance(raw, dict):
                raise EventRejected("event", "expected a JSON object")
            for name in SERVER_FIELDS:
                if name in raw:
                    raise EventRejected(name, "is set by the server, not by the client")
            if raw.get("pseudonymised"):  # false, the default, may be echoed back; the claim itself may not
                raise EventRejected("pseudonymised", "is set by the server, not by the client")
            raw = admit(caller, raw)
            event = parse_event({**raw, "received_at": received_at, "pseudonymised": False, "origin": caller.origin})
            check_clock(event, received_at)
            rekey = pseudonymiser.rekey(event)  # a key rotation is running: the ids' older aliases, once a batch
            if rekey is not None and tuple(rekey.previous) not in rekeyed:
                rekeyed.add(tuple(rekey.previous))
                to_publish.append((rekey.profile_id, to_record(rekey)))
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


def admit(caller: Caller, raw: dict[str, Any]) -> dict[str, Any]:
    """The event as this caller may send it, or EventRejected naming the field at fault. Impressions are the serve
    API's own records and come from no client. A browser sends events for its own visitor (filled in when the event
    names nobody) and the customer its token names; links to emails and devices, and purchases of a guest, come from
    the store's servers."""
    kind = raw.get("event_type")
    if kind == "impression":
        raise EventRejected("event_type", "impressions are recorded by the serve API itself, not sent by clients")
    if kind == "rekey":
        raise EventRejected("event_type", "rekey events are written by the collector during a key rotation")
    if caller.kind == SERVER:
        return raw
    if not raw.get("anonymous_id") and not raw.get("customer_id"):
        if not caller.visitor:
            raise EventRejected("anonymous_id", "the token names no visitor: name the shopper in the event")
        raw = {**raw, "anonymous_id": caller.visitor}
    if raw.get("anonymous_id") and raw["anonymous_id"] != caller.visitor:
        raise EventRejected("anonymous_id", "a browser sends events only for the visitor its token names")
    if raw.get("customer_id") and raw["customer_id"] != caller.customer:
        raise EventRejected("customer_id", "a browser sends events only for the customer its token names")
    if kind == "identify" and (raw.get("email") or raw.get("device_id")):
        raise EventRejected("email", "emails and devices are linked by the store's servers (/v1/server/events)")
    if kind == "purchase" and not raw.get("customer_id"):
        raise EventRejected(
            "customer_id", "a purchase from a browser needs its shopper token; a guest's comes from the store's servers"
        )
    return raw
