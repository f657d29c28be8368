"""Replay history through the ingestion API, in request-sized batches, as a store's servers would send it (signed,
``POST /v1/server/events``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from tqdm import tqdm

from shopwise.events import Event, to_record
from shopwise.ingestion.imports import BadRow, read_events
from shopwise_local.store_backend import call


@dataclass
class ReplayReport:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    requests: int = 0
    reasons: list[str] = field(default_factory=list)


def post_events(api_url: str, events: list[dict[str, object]]) -> dict[str, object]:
    _status, answer = call(api_url, "POST", "/v1/server/events", {"events": events}, signed=True)
    return answer  # type: ignore[no-any-return]


def consent_event(event: Event) -> dict[str, Any]:
    """The personalisation grant a storefront's consent banner would have sent just before a shopper's first event
    (the demo's data set, MovieLens, has no consent of its own)."""
    return {
        "event_id": f"consent-{uuid.uuid5(uuid.NAMESPACE_URL, event.profile_id)}",  # no raw id in the event id
        "event_type": "consent",
        "occurred_at": (event.occurred_at - timedelta(seconds=1)).isoformat(),
        **({"customer_id": event.customer_id} if event.customer_id else {"anonymous_id": event.anonymous_id}),
        "granted": ["personalisation"],
    }


def replay(
    api_url: str, path: Path, batch_size: int = 100, progress: bool = True, grant_consent: bool = False
) -> ReplayReport:
    """POST the file's events in batches. ``grant_consent`` sends a personalisation consent before each shopper's
    first event."""
    report = ReplayReport()
    events: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _line, row in read_events(path):
        if isinstance(row, BadRow):
            report.rejected += 1
            report.reasons.append(f"line {row.line}: {row.reason}")
            continue
        if grant_consent and row.profile_id not in seen:
            seen.add(row.profile_id)
            events.append(consent_event(row))
        # as the storefront sends it: what the server stamps (origin, the pseudonymised flag) is the server's
        events.append({k: v for k, v in to_record(row).items() if k not in ("origin", "pseudonymised")})
    with tqdm(total=len(events), desc="POST /v1/server/events", unit="event", disable=not progress) as bar:
        for start in range(0, len(events), batch_size):
            batch = events[start : start + batch_size]
            answer = post_events(api_url, batch)
            report.requests += 1
            report.sent += len(batch)
            report.accepted += int(answer.get("accepted", 0))  # type: ignore[call-overload]
            for result in answer.get("results", []):  # type: ignore[attr-defined]
                if result["status"] == "rejected":
                    report.rejected += 1
                    report.reasons.append(f"{result.get('event_id')}: {result['field']}: {result['reason']}")
            if "message" in answer:
                report.reasons.append(str(answer["message"]))
            bar.update(len(batch))
    return report
