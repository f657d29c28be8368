"""A campaign run: scan the live profiles, keep those in the segment, hold out the control share, apply the
frequency cap, recommend for each recipient with the API's own blend (placement ``email``), export the run.

Output (artifacts bucket): ``campaigns/<name>/<run id>/recipients.jsonl`` and ``recipients.csv`` (the send list),
``holdout.jsonl`` (the control group, for the readout), and ``campaigns/<name>/latest.json`` pointing at the newest
run; then an EventBridge event ``Campaign run completed``. The frequency cap is a row per campaign and recipient in
the feature store (``sent#<campaign>#<recipient>``, expiring after ``cap_days``), written after the files: a run
that fails before the end sends nobody twice, and one that fails between the files and the cap rows may list its
recipients again next time (at least once, never lost). Runs of one campaign must not overlap (the stack gives the
function a reserved concurrency of 1).
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from shopwise.campaigns.rules import CampaignSpec, contact_id, held_out, trigger
from shopwise.dal.aws import client
from shopwise.dal.catalog import categories
from shopwise.dal.feature_store import Doc, scan_docs
from shopwise.dal.recommendations import batch_get, batch_write, read_rows
from shopwise.features.definitions import ProfileFeatures
from shopwise.keys import POPULAR_KEY, key_id, user_key
from shopwise.serving.recommend import NotFound, Request, Shopper, Tables, personalisable, shared_rows
from shopwise.serving.recommend import answer as blend_answer

CAMPAIGNS_PREFIX = "campaigns/"
EVENT_SOURCE = "shopwise.campaigns.rules"
EVENT_DETAIL_TYPE = "Campaign run completed"


class BadCursor(ValueError):
    pass


def sent_key(campaign: str, recipient: str) -> str:
    return f"sent#{campaign}#{recipient}"


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


def _already_sent(features_table: str, campaign: str, recipients: list[str], now: float) -> set[str]:
    sent: set[str] = set()
    for start in range(0, len(recipients), 100):
        keys = [{"pk": {"S": sent_key(campaign, r)}} for r in recipients[start : start + 100]]
        rows, _trips = batch_get({features_table: keys})
        for row in rows[features_table]:
            if int(row.get("expires_at", {}).get("N", "0")) > now:  # TTL deletion is lazy
                sent.add(row["pk"]["S"].split("#", 2)[2])
    return sent


def run_campaign(
    spec: CampaignSpec,
    tables: Tables,
    bucket: str,
    now: float | None = None,
    repeat_categories: tuple[str, ...] = (),
    publish: bool = True,
) -> RunReport:
    now = time.time() if now is None else now
    stamp = datetime.fromtimestamp(now, UTC)
    report = RunReport(spec.name, f"{stamp:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}", stamp.isoformat())
    known_categories: dict[str, str] = {}
    candidates: list[tuple[str, Doc, Any]] = []  # (recipient, the profile as scanned, trigger)
    holdout: list[dict[str, Any]] = []
    for doc in scan_docs(tables.features, "profile#"):
        if doc.merged_into or not doc.data.get("features"):
            continue
        report.profiles += 1
        profile = ProfileFeatures.from_json(doc.data["features"])
        profile_id = key_id(doc.key)
        recipient = contact_id([str(a) for a in doc.data.get("aliases", [])] + [profile_id])
        if not recipient:
            continue
        if spec.kind == "browse_abandonment":
            missing = [i for i in profile.recent_items("view") if i not in known_categories]
            missing += [i for k in ("cart", "purchase") for i in profile.recent_items(k) if i not in known_categories]
            if missing:
                found = categories(tables.items, missing)
                known_categories.update({i: found.get(i, "") for i in missing})
        found_trigger = trigger(spec, profile, now, known_categories)
        if found_trigger is None:
            continue
        report.in_segment += 1
        if held_out(spec, recipient):
            holdout.append(
                {
                    "recipient_id": recipient,
                    "profile_id": key_id(doc.key),
                    "campaign": spec.name,
                    "about": found_trigger.about,
                    "generated_at": report.generated_at,
                }
            )
            continue
        candidates.append((recipient, doc, found_trigger))
    report.held_out = len(holdout)

    capped = _already_sent(tables.features, spec.name, [c[0] for c in candidates], now)
    report.capped = len(capped)
    rows: list[dict[str, Any]] = []
    sending = [(r, doc, t) for r, doc, t in candidates if r not in capped]
    # the API's blend over what the scan already read: one read for the lists every email shares, one per 100
    # recipients for their own lists
    shared, unavailable, experiments, pointer = shared_rows(tables, [POPULAR_KEY])
    personal = read_rows(tables.recommendations, [user_key(key_id(doc.key)) for _r, doc, _t in sending], pointer)
    for recipient, doc, found_trigger in sending:
        profile_id = key_id(doc.key)
        consented, view = personalisable(doc, now)
        own = {user_key(profile_id): personal[user_key(profile_id)]} if user_key(profile_id) in personal else {}
        shopper = Shopper(profile_id, consented, view, {**shared, **own}, unavailable, experiments, 0)
        request = Request(
            recipient, profile_id, "email", spec.items, category="", exclude=frozenset(found_trigger.exclude)
        )
        try:
            answer = blend_answer(request, shopper, repeat_categories, now)
        except NotFound:  # no model loaded yet: the email still has what it is about
            answer = {"items": [], "model_version": "", "recommendation_id": ""}
        report.model_version = report.model_version or answer["model_version"]
        rows.append(
            {
                "recipient_id": recipient,
                "profile_id": profile_id,
                "campaign": spec.name,
                "about": found_trigger.about,
                "category": found_trigger.category,
                "items": [{"item_id": i["item_id"], "reason": i["reason"]["text"]} for i in answer["items"]],
                "recommendation_id": answer["recommendation_id"],
                "generated_at": report.generated_at,
                "model_version": answer["model_version"],
            }
        )
    report.recipients = len(rows)
    _export(report, rows, holdout, bucket)
    expires = str(int(now + spec.cap_days * 86400))
    batch_write(
        tables.features,
        ({"pk": {"S": sent_key(spec.name, r["recipient_id"])}, "expires_at": {"N": expires}} for r in rows),
    )
    if publish:
        client("events").put_events(
            Entries=[{"Source": EVENT_SOURCE, "DetailType": EVENT_DETAIL_TYPE, "Detail": json.dumps(report.to_json())}]
        )
    return report


def _export(report: RunReport, rows: list[dict[str, Any]], holdout: list[dict[str, Any]], bucket: str) -> None:
    s3 = client("s3")
    base = f"{CAMPAIGNS_PREFIX}{report.campaign}/{report.run_id}/"
    lines = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows)
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["recipient_id", "campaign", "about", "items", "reasons", "generated_at", "model_version"])
    for r in rows:
        writer.writerow(
            [
                r["recipient_id"],
                r["campaign"],
                " ".join(r["about"]),
                " ".join(i["item_id"] for i in r["items"]),
                " | ".join(i["reason"] for i in r["items"]),
                r["generated_at"],
                r["model_version"],
            ]
        )
    report.keys = {
        "jsonl": base + "recipients.jsonl",
        "csv": base + "recipients.csv",
        "holdout": base + "holdout.jsonl",
    }
    s3.put_object(Bucket=bucket, Key=report.keys["jsonl"], Body=lines.encode())
    s3.put_object(Bucket=bucket, Key=report.keys["csv"], Body=table.getvalue().encode())
    s3.put_object(
        Bucket=bucket, Key=report.keys["holdout"], Body="".join(json.dumps(h) + "\n" for h in holdout).encode()
    )
    s3.put_object(
        Bucket=bucket,
        Key=f"{CAMPAIGNS_PREFIX}{report.campaign}/latest.json",
        Body=json.dumps(report.to_json()).encode(),
    )


def latest_run(bucket: str, campaign: str) -> dict[str, Any] | None:
    try:
        body = client("s3").get_object(Bucket=bucket, Key=f"{CAMPAIGNS_PREFIX}{campaign}/latest.json")["Body"]
    except client("s3").exceptions.NoSuchKey:
        return None
    return dict(json.loads(body.read()))


def recipients_page(bucket: str, campaign: str, cursor: str = "", limit: int = 100) -> dict[str, Any]:
    """One page of the latest run's recipients; ``cursor`` is the ``next`` of the page before ("" for the first).
    A cursor names its run, so paging stays on one run even when a newer one lands meanwhile."""
    run_id, _, offset_text = cursor.partition(":")
    if not run_id:
        latest = latest_run(bucket, campaign)
        if latest is None:
            raise LookupError(f"campaign {campaign!r} has no run yet")
        run_id = latest["run_id"]
    try:
        offset = int(offset_text or 0)
    except ValueError:
        raise BadCursor(f"cursor {cursor!r} is not one this API gave out") from None
    key = f"{CAMPAIGNS_PREFIX}{campaign}/{run_id}/recipients.jsonl"
    try:
        body = client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    except client("s3").exceptions.NoSuchKey:
        raise LookupError(f"run {run_id!r} of campaign {campaign!r} does not exist") from None
    lines = body.splitlines()
    page = [json.loads(line) for line in lines[offset : offset + limit]]
    more = offset + limit < len(lines)
    return {
        "campaign": campaign,
        "run_id": run_id,
        "recipients": page,
        "next": f"{run_id}:{offset + limit}" if more else "",
    }
