"""Replay history through the public ingestion API, in request-sized batches, as a storefront would send it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from tqdm import tqdm

from shopwise.events import Event, to_record
from shopwise.ingestion.imports import BadRow, read_events


@dataclass
class ReplayReport:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    requests: int = 0
    reasons: list[str] = field(default_factory=list)


def post_events(api_url: str, events: list[dict[str, object]]) -> dict[str, object]:
    request = urllib.request.Request(
        f"{api_url}/v1/events",
        data=json.dumps({"events": events}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())  # type: ignore[no-any-return]


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
        events.append(to_record(row))
    with tqdm(total=len(events), desc="POST /v1/events", unit="event", disable=not progress) as bar:
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
