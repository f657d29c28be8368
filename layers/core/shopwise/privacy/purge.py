"""The purge: erased shoppers out of everything S3 and the failure queue hold, once nothing of them is in flight.

A run is three steps (the purge state machine in AWS, ``shopwise erasures purge`` locally, the same code):

1. ``plan``: the pending erasures at least ``min_age_hours`` old (the stream keeps records 24 hours: by then every
   event an erased shopper sent before the erasure is archived) become one plan object — their blinded aliases,
   when each was erased, and the earliest day the archive can hold them.
2. the purge job (``shopwise_jobs.purge``, a SageMaker job: one or more instances, each taking its share of the
   objects) rewrites every object that names a target: archived events (and Firehose's failure records),
   batch-transform outputs, campaign exports, model folders (user index, history rows, feature snapshot); an
   object's older versions that name a target are deleted. Each instance writes a tally.
3. ``finish``: the failure queue is scrubbed, the tallies summed into each erasure's receipt, and the erasures
   marked complete: their pending objects (and with them the blinded aliases) are deleted.

Compaction, not crypto-shredding: the archive is what Firehose, Athena, Spark and the training job read as plain
gzip JSON Lines, and per-shopper data keys would have to be applied by every one of them (and by Firehose, which
cannot); rewriting the few objects an erasure touches keeps every reader as it is.
"""

from __future__ import annotations

import gzip
import json
import time
import uuid
from collections.abc import Iterable
from typing import Any

from shopwise.config import ERASURES_PREFIX, PURGE_MIN_AGE_HOURS
from shopwise.dal import erasures as records
from shopwise.dal.failures import FailureQueue
from shopwise.dal.objects import delete_key, get_bytes, list_keys, put_bytes
from shopwise.dal.recommendations import forget_held
from shopwise.privacy.tombstones import Targets, targets_of

PURGES_PREFIX = f"{ERASURES_PREFIX}purges/"
MIN_AGE_HOURS = PURGE_MIN_AGE_HOURS


def plan_key(run: str) -> str:
    return f"{PURGES_PREFIX}{run}.json"


def tally_key(run: str, host: str) -> str:
    return f"{PURGES_PREFIX}{run}/tally-{host}.json"


def plan(bucket: str, now: float | None = None, min_age_hours: float = MIN_AGE_HOURS) -> dict[str, Any]:
    """The plan of a purge run: the due erasures' ids, targets (blinded alias -> erased at) and the first archive
    day to read. ``erasures`` is 0 when nothing is due (the run stops there)."""
    now = time.time() if now is None else now
    due = [p for p in records.pending(bucket) if float(p["erased_at"]) <= now - min_age_hours * 3600]
    run = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))}-{uuid.uuid4().hex[:6]}"
    targets = targets_of(due)
    since = min((float(p.get("since") or 0.0) for p in due), default=0.0)
    doc = {
        "run": run,
        "planned_at": now,
        "erasures": len(due),
        "erasure_ids": sorted(str(p["erasure_id"]) for p in due),
        "targets": targets.erased_at,
        "since_day": time.strftime("%Y-%m-%d", time.gmtime(since - 86400)) if since else "",
    }
    if due:
        put_bytes(bucket, plan_key(run), json.dumps(doc).encode())
    return {"run": run, "erasures": len(due), "targets": len(targets), "plan_key": plan_key(run) if due else ""}


def load_plan(bucket: str, key: str) -> dict[str, Any]:
    body = get_bytes(bucket, key)
    if body is None:
        raise FileNotFoundError(f"no purge plan s3://{bucket}/{key}")
    return dict(json.loads(body))


def plan_targets(doc: dict[str, Any]) -> Targets:
    return Targets({str(k): float(v) for k, v in doc["targets"].items()})


def scrub_lines(body: bytes, targets: Targets) -> tuple[bytes | None, int]:
    """A text object (JSON Lines or CSV, gzipped or not) without the lines that name a target: (the new body, or
    None when nothing matched; how many lines went)."""
    zipped = body[:2] == b"\x1f\x8b"
    text = gzip.decompress(body) if zipped else body
    lines = text.splitlines(keepends=True)
    kept = [line for line in lines if not (line.strip() and targets.line(line))]
    removed = len(lines) - len(kept)
    if not removed:
        return None, 0
    out = b"".join(kept)
    return (gzip.compress(out, compresslevel=6, mtime=0) if zipped else out), removed


def scrub_queue(queue_url: str, targets: Targets) -> dict[str, int]:
    """Delete the failure queue's messages that name a target (the record they carry, or any id in them)."""
    return FailureQueue(queue_url).remove_matching(targets.line)


def sum_tallies(tallies: Iterable[dict[str, Any]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for tally in tallies:
        for name, value in tally.items():
            if isinstance(value, int):
                total[name] = total.get(name, 0) + value
    return total


def finish(
    bucket: str, plan_object: str, config_table: str, queue_url: str = "", now: float | None = None
) -> dict[str, Any]:
    """Scrub the failure queue, put the purge job's tallies on each erasure's receipt, mark them complete and drop
    their pending objects (the only place their blinded aliases were kept)."""
    doc = load_plan(bucket, plan_object)
    targets = plan_targets(doc)
    run = str(doc["run"])
    leftovers = list_keys(bucket, f"{PURGES_PREFIX}{run}/")  # the tallies, and the job's own (empty) outputs
    tally_keys = [k for k in leftovers if k.rsplit("/", 1)[-1].startswith("tally-")]
    tallies = [json.loads(body) for body in (get_bytes(bucket, k) for k in tally_keys) if body is not None]
    if not tallies:
        raise RuntimeError(f"purge run {run}: the purge job left no tally; the erasures stay pending")
    total = sum_tallies(tallies)
    if queue_url:
        total.update(scrub_queue(queue_url, targets))
    done = time.time() if now is None else now
    for erasure_id in doc["erasure_ids"]:
        receipt = records.get(config_table, erasure_id)
        if receipt is None:
            continue
        receipt["stores"] = {**receipt.get("stores", {}), "archive": done, "artifacts": done, "failure_queue": done}
        receipt["purge"] = {**total, "run": run}
        receipt["targets"] = []
        records.put(config_table, erasure_id, receipt)
        records.done(bucket, erasure_id)
    # the list keys the erasures held for a load in flight: every load that could need them has ended (the purge
    # takes erasures at least PURGE_MIN_AGE_HOURS old, a load runs within the retrain's hours)
    if targets.erased_at:
        total["held_lists_forgotten"] = forget_held(config_table, max(targets.erased_at.values()))
    for key in [*leftovers, plan_object]:
        delete_key(bucket, key)
    return {"run": run, "erasures": len(doc["erasure_ids"]), **total}
