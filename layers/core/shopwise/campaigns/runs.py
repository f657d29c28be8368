"""A campaign run: read the profiles active in its window (the activity index, no Scan), keep those in the segment
(``shopwise.campaigns.rules``), hold out the control share, apply the frequency cap, recommend for each recipient
with the API's own blend (placement ``email``), export the run.

Output (artifacts bucket): ``campaigns/<name>/<run id>/recipients.jsonl`` and ``recipients.csv`` (the send list),
``holdout.jsonl`` (the control group, for the readout), and ``campaigns/<name>/latest.json`` pointing at the newest
run; then an EventBridge event ``Campaign run completed``. The frequency cap is a row per campaign and recipient in
the feature store (``shopwise.dal.caps``, expiring after ``cap_days``), written after the files: a run that fails
before the end sends nobody twice, and one that fails between the files and the cap rows may list its recipients
again next time (at least once, never lost). Runs of one campaign must not overlap (the stack gives the function a
reserved concurrency of 1).
"""

from __future__ import annotations

import csv
import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shopwise.campaigns.rules import CampaignSpec, Trigger, held_out, trigger
from shopwise.config import CAMPAIGNS_PREFIX, REACH_INDEX
from shopwise.dal import bus, caps, erasures
from shopwise.dal.batch import chunks
from shopwise.dal.catalog import categories
from shopwise.dal.feature_store import Doc, active_docs
from shopwise.dal.objects import get_bytes, put_bytes, read_line_range, upload_file
from shopwise.dal.recommendations import read_rows
from shopwise.dal.serving_read import ListsRead, ServingReader, Tables
from shopwise.features.definitions import ProfileFeatures
from shopwise.keys import POPULAR_KEY, REACH, contact_id, key_id, user_key
from shopwise.privacy.tombstones import targets_of
from shopwise.serving.recommend import NotFound, Request, Shopper, answer

EVENT_SOURCE = "shopwise.campaigns"
EVENT_DETAIL_TYPE = "Campaign run completed"
MEMBER_CHUNK = 1_000  # members held, capped, recommended for and written at a time


class BadCursor(ValueError):
    pass


@dataclass
class RunReport:
    campaign: str
    run_id: str
    generated_at: str
    model_version: str = ""
    profiles: int = 0
    in_segment: int = 0
    held_out: int = 0
    capped: int = 0
    recipients: int = 0
    keys: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Member:
    """A shopper in the segment: who to address, their profile as read, and why they are in it."""

    recipient: str
    doc: Doc
    reason: Trigger

    @property
    def profile_id(self) -> str:
        return key_id(self.doc.key)


def run_campaign(
    spec: CampaignSpec,
    tables: Tables,
    bucket: str,
    now: float | None = None,
    repeat_categories: tuple[str, ...] = (),
    publish: bool = True,
) -> RunReport:
    """The run, its members streamed ``MEMBER_CHUNK`` at a time (held out, capped, recommended for, their lines
    written to local files) so its memory follows a chunk, not the segment; the files are uploaded at the end, the
    pointer to the run last, then the cap rows."""
    now = time.time() if now is None else now
    stamp = datetime.fromtimestamp(now, UTC)
    report = RunReport(spec.name, f"{stamp:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}", stamp.isoformat())
    shared = ServingReader(tables).lists([POPULAR_KEY], experiments=True)  # the lists every email shares
    sent: list[str] = []
    with _Export(report) as export:
        for members in chunks(segment(spec, tables, now, report), MEMBER_CHUNK):
            holdout = [m for m in members if held_out(spec, m.recipient)]
            sending = [m for m in members if not held_out(spec, m.recipient)]
            capped = caps.already_sent(tables.features, spec.name, [m.recipient for m in sending], now)
            report.held_out += len(holdout)
            report.capped += len(capped)
            rows = recommend(
                spec, tables, shared, [m for m in sending if m.recipient not in capped], report, now, repeat_categories
            )
            export.add(rows, [_member_row(m, report) for m in holdout])
            sent += [r["recipient_id"] for r in rows]
        report.recipients = len(sent)
        export.upload(bucket)
    caps.record_sent(tables.features, spec.name, sent, now + spec.cap_days * 86400)
    if publish:
        bus.publish(EVENT_SOURCE, EVENT_DETAIL_TYPE, report.to_json())
    return report


def segment(spec: CampaignSpec, tables: Tables, now: float, report: RunReport) -> Iterator[Member]:
    """The live profiles in the campaign's segment now, streamed: those the reach index has active within the
    campaign's lookback (up to today, for a run as of an earlier time) — only profiles with a contact and both
    grants are in it — read 100 a call; item categories looked up as needed (and kept for the run)."""
    known_categories: dict[str, str] = {}
    since = now - spec.lookback_days() * 86400
    for doc in active_docs(tables.features, REACH, since, max(now, time.time()), index=REACH_INDEX):
        if doc.merged_into or not doc.data.get("features"):
            continue
        report.profiles += 1
        profile = ProfileFeatures.from_json(doc.data["features"])
        recipient = contact_id([str(a) for a in doc.data.get("aliases", [])] + [key_id(doc.key)])
        if not recipient:
            continue
        if spec.kind == "browse_abandonment":
            seen = [i for k in ("view", "cart", "purchase") for i in profile.recent_items(k)]
            missing = [i for i in seen if i not in known_categories]
            if missing:
                found = categories(tables.items, missing)
                known_categories.update({i: found.get(i, "") for i in missing})
        reason = trigger(spec, profile, now, known_categories)
        if reason is not None:
            report.in_segment += 1
            yield Member(recipient, doc, reason)


def recommend(
    spec: CampaignSpec,
    tables: Tables,
    shared: ListsRead,
    sending: list[Member],
    report: RunReport,
    now: float,
    repeat_categories: tuple[str, ...],
) -> list[dict[str, Any]]:
    """The API's blend over what the segment's read already holds and the lists every email shares: one read per
    100 recipients for their own lists."""
    personal = read_rows(tables.lists, [user_key(m.profile_id) for m in sending], shared.pointer)
    rows = []
    for member in sending:
        own = {k: personal[k] for k in (user_key(member.profile_id),) if k in personal}
        shopper = Shopper.of(member.profile_id, member.doc, replace(shared, rows={**shared.rows, **own}, trips=0), now)
        request = Request(
            member.recipient, member.profile_id, "email", spec.items, exclude=frozenset(member.reason.exclude)
        )
        try:
            found = answer(request, shopper, repeat_categories, now).response
        except NotFound:  # no model loaded yet: the email still has what it is about
            found = {"items": [], "model_version": "", "recommendation_id": ""}
        report.model_version = report.model_version or found["model_version"]
        rows.append(
            {
                **_member_row(member, report),
                "category": member.reason.category,
                "items": [{"item_id": i["item_id"], "reason": i["reason"]["text"]} for i in found["items"]],
                "recommendation_id": found["recommendation_id"],
                "model_version": found["model_version"],
            }
        )
    return rows


def _member_row(member: Member, report: RunReport) -> dict[str, Any]:
    return {
        "recipient_id": member.recipient,
        "profile_id": member.profile_id,
        "campaign": report.campaign,
        "about": member.reason.about,
        "generated_at": report.generated_at,
    }


class _Export:
    """A run's three files, written line by line to local scratch files (Lambda's ``/tmp``: about 1 KB a recipient
    for the three, ``bench_campaigns.py``) and uploaded whole at the end, the pointer to the run (``latest.json``)
    last."""

    def __init__(self, report: RunReport) -> None:
        self.report = report
        self._scratch = tempfile.TemporaryDirectory(prefix="shopwise-campaign-")
        folder = Path(self._scratch.name)
        self.paths = {name: folder / name for name in ("recipients.jsonl", "recipients.csv", "holdout.jsonl")}
        self._files = {name: path.open("w", encoding="utf-8", newline="") for name, path in self.paths.items()}
        self._csv = csv.writer(self._files["recipients.csv"])
        self._csv.writerow(["recipient_id", "campaign", "about", "items", "reasons", "generated_at", "model_version"])

    def __enter__(self) -> _Export:
        return self

    def __exit__(self, *_exc: object) -> None:
        for handle in self._files.values():
            handle.close()
        self._scratch.cleanup()

    def add(self, rows: list[dict[str, Any]], holdout: list[dict[str, Any]]) -> None:
        self._files["recipients.jsonl"].writelines(json.dumps(r, separators=(",", ":")) + "\n" for r in rows)
        self._files["holdout.jsonl"].writelines(json.dumps(h) + "\n" for h in holdout)
        self._csv.writerows(
            [
                r["recipient_id"],
                r["campaign"],
                " ".join(r["about"]),
                " ".join(i["item_id"] for i in r["items"]),
                " | ".join(i["reason"] for i in r["items"]),
                r["generated_at"],
                r["model_version"],
            ]
            for r in rows
        )

    def upload(self, bucket: str) -> None:
        base = f"{CAMPAIGNS_PREFIX}{self.report.campaign}/{self.report.run_id}/"
        self.report.keys = {
            "jsonl": base + "recipients.jsonl",
            "csv": base + "recipients.csv",
            "holdout": base + "holdout.jsonl",
        }
        for handle in self._files.values():
            handle.close()
        for name, path in self.paths.items():
            upload_file(path, bucket, base + name)
        put_bytes(
            bucket, f"{CAMPAIGNS_PREFIX}{self.report.campaign}/latest.json", json.dumps(self.report.to_json()).encode()
        )


def latest_run(bucket: str, campaign: str) -> dict[str, Any] | None:
    body = get_bytes(bucket, f"{CAMPAIGNS_PREFIX}{campaign}/latest.json")
    return dict(json.loads(body)) if body is not None else None


def run_lines(bucket: str, campaign: str, run_id: str, name: str) -> list[str]:
    """The lines of one of a run's JSON Lines files (recipients.jsonl, holdout.jsonl); LookupError if none."""
    body = get_bytes(bucket, f"{CAMPAIGNS_PREFIX}{campaign}/{run_id}/{name}")
    if body is None:
        raise LookupError(f"run {run_id!r} of campaign {campaign!r} does not exist")
    return [line for line in body.decode().splitlines() if line.strip()]


def recipients_page(bucket: str, campaign: str, cursor: str = "", limit: int = 100) -> dict[str, Any]:
    """One page of the latest run's recipients; ``cursor`` is the ``next`` of the page before ("" for the first).
    A cursor names its run and the byte its page starts at in the run's send list, so paging stays on one run even
    when a newer one lands meanwhile, and a page reads its own lines (ranged reads), not the whole list."""
    run_id, _, offset_text = cursor.partition(":")
    if not run_id:
        latest = latest_run(bucket, campaign)
        if latest is None:
            raise LookupError(f"campaign {campaign!r} has no run yet")
        run_id = latest["run_id"]
    try:
        offset = int(offset_text or 0)
        if offset < 0:
            raise ValueError(offset)
        raw, end, more = read_line_range(
            bucket, f"{CAMPAIGNS_PREFIX}{campaign}/{run_id}/recipients.jsonl", offset, limit
        )
    except LookupError:
        raise LookupError(f"run {run_id!r} of campaign {campaign!r} does not exist") from None
    except ValueError:
        raise BadCursor(f"cursor {cursor!r} is not one this API gave out") from None
    lines = [line.decode() for line in raw if line.strip()]
    erased = targets_of(erasures.pending(bucket))  # erased since the run: out of the list at once, before the purge
    return {
        "campaign": campaign,
        "run_id": run_id,
        "recipients": [json.loads(line) for line in lines if not erased.line(line)],
        "next": f"{run_id}:{end}" if more else "",
    }
