"""Backfill: imported history folded into the feature store, as if the stream had carried it.

``shopwise import events`` writes history to the archive only (training reads it there); the stream never carries
it, so without this the feature store — profiles' long-term figures, item aggregates — would not know it. The
backfill reads the importer's archive objects (``import-*`` under ``events/``: what the stream archived has been
applied already) and applies their events through the updater's own code (``shopwise.ingestion.updater``), each
object's events in time order, 500 a batch — the stream's batch.

Exactly once: within an object, by the event ledger (a re-run within ``config.DEDUP_HOURS`` finds each applied
event's row: a crash half-way is resumed by running it again); across runs, by a marker per object in the artifacts
bucket (``backfill/<archive key>``), written once the object is wholly applied — a marked object is skipped. Held
events (no consent covers them yet) wait in the ledger as the stream's do: a consent row later in the import that
covers them by time folds them in.

Memory: one archive object at a time (the importer writes 50,000 events an object). Speed: the updater's, about 170
events a second against the local endpoint (``tests/bench/bench_update.py``): the demo's 155,000 imported events
take a quarter of an hour, which is why ``make demo`` leaves them to the archive.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from shopwise import config
from shopwise.dal.objects import get_bytes, list_keys, put_bytes, read_archive
from shopwise.events import EventRejected
from shopwise.ingestion.update_features import Delivery
from shopwise.ingestion.updater import Updater, event_of
from shopwise.settings import Settings

BATCH = 500
MARKERS_PREFIX = "backfill/"
IMPORTED = "/import-"  # the importer's archive objects: events/dt=.../hour=.../import-<file>-<run>-<part>.parquet


@dataclass
class BackfillReport:
    objects: int = 0  # imported objects applied in this run
    skipped: int = 0  # already backfilled by an earlier run
    events: int = 0
    applied: int = 0
    duplicates: int = 0
    held: int = 0
    unrouted: int = 0
    rejected: int = 0
    write_units: int = 0
    failed: list[str] = field(default_factory=list)  # "<object>: <entity>: <reason>"

    def summary(self) -> str:
        lines = [
            f"backfill: {self.objects} archive objects applied, {self.skipped} done before; {self.events} events: "
            f"{self.applied} applied ({self.held} of them to item aggregates only: no consent covers them yet), "
            f"{self.duplicates} applied before, {self.unrouted} feeding no feature, {self.rejected} rejected; "
            f"{self.write_units} write units"
        ]
        return "\n".join(lines + [f"  failed {why} (run the backfill again)" for why in self.failed[:10]])


def imported_objects(bucket: str, days: Iterable[str] | None = None) -> list[str]:
    """The importer's archive objects, oldest partition first (``days``: only these dt= partitions)."""
    prefixes = [f"{config.ARCHIVE_EVENTS_PREFIX}dt={day}/" for day in days] if days else [config.ARCHIVE_EVENTS_PREFIX]
    return sorted(key for prefix in prefixes for key in list_keys(bucket, prefix) if IMPORTED in key)


def backfill(settings: Settings, keys: list[str] | None = None, progress: bool = True) -> BackfillReport:
    """Apply these archive objects (default: every imported one) to the feature store, those not done before."""
    keys = imported_objects(settings.archive_bucket) if keys is None else keys
    report = BackfillReport()
    updater = Updater(settings)
    # events, counted as each object is read (an object is 50,000 of them: minutes against the local endpoint)
    with tqdm(total=0, desc="backfill", unit="event", disable=not progress) as bar:
        for n, key in enumerate(keys):
            marker = f"{MARKERS_PREFIX}{key}"
            bar.set_postfix(object=f"{n + 1}/{len(keys)}")
            if get_bytes(settings.artifacts_bucket, marker) is not None:
                report.skipped += 1
            elif _apply_object(settings.archive_bucket, key, updater, report, bar):
                put_bytes(settings.artifacts_bucket, marker, b"")
                report.objects += 1
    report.write_units = updater.write_units
    return report


def _apply_object(bucket: str, key: str, updater: Updater, report: BackfillReport, bar: tqdm[Any]) -> bool:
    """One archive object's events, in time order; whether all of them settled (applied, held or found applied)."""
    events = []
    for record in read_archive(bucket, key):
        try:
            events.append(event_of(record))
        except EventRejected:
            report.rejected += 1
    events.sort(key=lambda e: (e.occurred_at, e.event_id))
    report.events += len(events)
    bar.total = (bar.total or 0) + len(events)
    bar.refresh()
    settled = True
    for start in range(0, len(events), BATCH):
        batch = events[start : start + BATCH]
        outcome = updater.apply([Delivery(e) for e in batch])
        bar.update(len(batch))
        report.applied += outcome.applied
        report.duplicates += outcome.duplicates
        report.held += outcome.held
        report.unrouted += outcome.unrouted
        if outcome.failed:
            settled = False
            report.failed += [f"{key}: {entity}: {reason}" for entity, reason in outcome.failed.items()]
    return settled
