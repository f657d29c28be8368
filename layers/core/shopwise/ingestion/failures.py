"""The failure queue, listed and replayed: what ``shopwise failures list|replay`` runs, against the local stack or a
deployed one (the operator's credentials), through the updater's own code (``shopwise.ingestion.updater``).

The queue holds two kinds of message:
- a **poison** record (sent by the updater): the record's data, and why it could not be applied (not JSON, not a
  valid event, not through the collector). A replay parses it again — after the fix of whatever rejected it — and
  applies it; a record that is still poison stays in the queue with its reason.
- a **batch** the stream gave up on (sent by Lambda's on-failure destination when a batch's retries or its records'
  age ran out): only coordinates — shard, first and last sequence number, arrival times. A replay re-reads the
  records from the stream while it holds them (24 hours), as the same records (same shard and sequence numbers);
  past that, the archive's copies of the hours they arrived in, of which only the events whose ledger rows say they
  failed act.
Either way the ledger rows decide what each entity still needs (``update_features``, REPLAYS): a replay applies
nothing twice, and running it again applies nothing. A message is deleted once everything it names is applied, and
kept otherwise, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tqdm import tqdm

from shopwise import config
from shopwise.dal.failures import FailureQueue, Message
from shopwise.dal.objects import list_keys, read_archive
from shopwise.dal.stream import read_range
from shopwise.events import EventRejected
from shopwise.ingestion.update_features import Delivery
from shopwise.ingestion.updater import Updater, event_of
from shopwise.settings import Settings

CHUNK = 500  # deliveries per update, as the stream's batches
ARCHIVE_SLACK = timedelta(hours=1)  # Firehose buffers up to 15 minutes: its hour partition can follow the arrival


@dataclass(frozen=True)
class Failure:
    """One message of the failure queue, read."""

    message: Message
    kind: str  # "poison", "batch" or "unknown" (a body neither sender writes)
    reason: str  # the poison's reason, or Lambda's condition (RetryAttemptsExhausted, RecordAgeExceeded)
    shard: str = ""
    first: str = ""  # sequence numbers: a batch's first and last, a poison record's own
    last: str = ""
    records: int = 0
    arrived: tuple[datetime, datetime] | None = None  # a batch's first and last record's arrival
    data: str = ""  # a poison record's data

    @classmethod
    def of(cls, message: Message) -> Failure:
        body = message.body
        if body.get("condition") == "PoisonRecord":
            seq = str(body.get("sequenceNumber") or "")
            reason, shard = str(body.get("reason", "")), str(body.get("shardId") or "")
            return cls(message, "poison", reason, shard, seq, seq, 1, data=str(body.get("data", "")))
        info = body.get("KinesisBatchInfo")
        if isinstance(info, dict):
            condition = str(body.get("requestContext", {}).get("condition", ""))
            return cls(
                message,
                "batch",
                condition,
                str(info.get("shardId", "")),
                str(info.get("startSequenceNumber", "")),
                str(info.get("endSequenceNumber", "")),
                int(info.get("batchSize", 0)),
                _arrivals(info),
            )
        return cls(message, "unknown", "not a message the updater or Lambda sends")

    def row(self) -> dict[str, Any]:
        """What ``failures list`` shows: coordinates and reasons, never a record's data (it names a shopper)."""
        return {
            "id": self.message.id,
            "kind": self.kind,
            "reason": self.reason,
            "shard": self.shard,
            "first": self.first,
            "last": self.last,
            "records": self.records,
            "sent_at": datetime.fromtimestamp(self.message.sent_at, UTC).isoformat(timespec="seconds"),
        }


@dataclass
class ReplayReport:
    messages: int = 0
    deleted: int = 0  # everything they named is applied
    kept: list[str] = field(default_factory=list)  # "<message id>: why"
    from_stream: int = 0  # records re-read from the stream
    from_archive: int = 0  # archive copies looked at
    applied: int = 0
    duplicates: int = 0  # nothing left to apply (or, from the archive, events that had not failed)
    write_units: int = 0

    def summary(self) -> str:
        lines = [
            f"{self.messages} messages: {self.deleted} replayed and deleted, {len(self.kept)} kept",
            f"  {self.from_stream} records re-read from the stream, {self.from_archive} archive copies looked at",
            f"  {self.applied} events applied, {self.duplicates} had nothing left to apply, {self.write_units} write units",
        ]
        return "\n".join(lines + [f"  kept {why}" for why in self.kept])


def list_failures(queue_url: str) -> list[Failure]:
    """Every message, read and shown to other readers again."""
    queue = FailureQueue(queue_url)
    messages = queue.peek(visibility=60)
    queue.release(messages)
    return [Failure.of(m) for m in messages]


def replay_failures(settings: Settings, progress: bool = True) -> ReplayReport:
    """Replay every message of the failure queue into the feature store; delete the ones fully applied."""
    queue = FailureQueue(settings.failed_events_queue_url)
    messages = queue.peek(visibility=900)
    failures = sorted((Failure.of(m) for m in messages), key=lambda f: (f.shard, int(f.first or 0)))
    report = ReplayReport(messages=len(messages))
    updater = Updater(settings)
    done: list[Message] = []
    try:
        for failure in tqdm(failures, desc="replay failures", unit="message", disable=not progress):
            why = _replay(failure, settings, updater, report)
            if why:
                report.kept.append(f"{failure.message.id}: {why}")
            else:
                done.append(failure.message)
    finally:
        queue.delete(done)
        queue.release([m for m in messages if m not in done])
        report.deleted = len(done)
        report.write_units = updater.write_units
    return report


def _replay(failure: Failure, settings: Settings, updater: Updater, report: ReplayReport) -> str:
    """Apply what one message names; the reason it must stay in the queue, or "" if everything is applied."""
    if failure.kind == "poison":
        try:
            event = event_of(failure.data)
        except EventRejected as exc:
            return f"still poison: {exc}"
        return _apply([Delivery(event, failure.first, failure.shard, via="failed")], updater, report)
    if failure.kind != "batch":
        return failure.reason
    records = list(read_range(settings.events_stream, failure.shard, failure.first, failure.last))
    if records:
        report.from_stream += len(records)
        deliveries = []
        for record in records:
            try:
                event = event_of(record["Data"])
            except EventRejected:  # poison: the updater sent it to the queue on its own when it first met it
                continue
            deliveries.append(Delivery(event, record["SequenceNumber"], failure.shard, via="failed"))
        return _apply(deliveries, updater, report)
    if failure.arrived is None:
        return "the stream no longer holds its records, and the message has no arrival times to find them by"
    return _apply(_archive_copies(settings.archive_bucket, *failure.arrived, report), updater, report)


def _apply(deliveries: Iterable[Delivery], updater: Updater, report: ReplayReport) -> str:
    failed: dict[str, str] = {}
    chunk: list[Delivery] = []
    for d in [*deliveries, None]:
        if d is not None:
            chunk.append(d)
        if chunk and (d is None or len(chunk) >= CHUNK):
            outcome = updater.apply(chunk)
            report.applied += outcome.applied
            report.duplicates += outcome.duplicates
            failed.update(outcome.failed)
            chunk = []
    return "; ".join(f"{key}: {reason}" for key, reason in sorted(failed.items())[:3])


def _archive_copies(bucket: str, first: datetime, last: datetime, report: ReplayReport) -> Iterator[Delivery]:
    """The archived events of the hours a batch arrived in (and the hour after, Firehose's buffer), as archive
    copies: only those whose ledger rows say they failed will act."""
    hour = first.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    while hour <= last + ARCHIVE_SLACK:
        for key in list_keys(bucket, f"{config.ARCHIVE_EVENTS_PREFIX}dt={hour:%Y-%m-%d}/hour={hour:%H}/"):
            for record in read_archive(bucket, key):
                report.from_archive += 1
                try:
                    yield Delivery(event_of(record), via="archive")
                except EventRejected:
                    continue  # not an event the updater applies (Firehose keeps what the stream carried)
        hour += timedelta(hours=1)


def _arrivals(info: dict[str, Any]) -> tuple[datetime, datetime] | None:
    """A batch's arrival window from Lambda's message (approximateArrivalOf{First,Last}Record, ISO 8601)."""
    try:
        first, last = (info[f"approximateArrivalOf{which}Record"] for which in ("First", "Last"))
        return datetime.fromisoformat(str(first)), datetime.fromisoformat(str(last))
    except (KeyError, ValueError):
        return None
