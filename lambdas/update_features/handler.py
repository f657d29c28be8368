"""Kinesis -> feature store.

Records are parsed one by one (Powertools BatchProcessor); a record that can never be applied (not JSON, not a
valid event, not pseudonymised) goes to the failure queue with its reason and data, and is not retried. The parsed
events are applied coalesced per entity (shopwise.ingestion.update_features); the records that touch an entity
whose write failed are reported back as batch item failures, so Lambda retries from there — re-applying what
already landed is a no-op. Each event's row in the event ledger makes a client's repeat of it a duplicate.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shopwise.dal.failures import FailureQueue
from shopwise.events import Event
from shopwise.heap import freeze_imports
from shopwise.ingestion.update_features import Delivery
from shopwise.ingestion.updater import Updater, event_of
from shopwise.observability import logger, metrics, tracer
from shopwise.settings import get_settings

# a batch of nothing but poison is not an error: its records go to the failure queue like any other poison
processor = BatchProcessor(event_type=EventType.KinesisDataStreams, raise_on_entire_batch_failure=False)


def parse_record(record: KinesisStreamRecord) -> Event:
    return event_of(record.kinesis.data_as_bytes())


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = get_settings()
    with processor(event.get("Records", []), parse_record, lambda_context=context):
        processed = processor.process()
    # processed: (status, parsed event or "ExceptionType: message", the raw Lambda record) per record
    poison = [(str(result), record) for status, result, record in processed if status != "success"]
    if poison:
        FailureQueue(settings.failed_events_queue_url).send_poison(poison)
    deliveries = [
        Delivery(result, record["kinesis"]["sequenceNumber"], str(record.get("eventID", "")).split(":", 1)[0])
        for status, result, record in processed
        if status == "success"
    ]
    updater = Updater(settings)
    outcome = updater.apply(deliveries)
    if outcome.failed:
        logger.warning("entity updates failed; their records will be retried", extra={"failed": outcome.failed})
    if outcome.views_skipped:
        logger.warning("serving views not refreshed in this batch", extra={"reason": outcome.views_skipped})
    metrics.add_metric(name="RecordsPoison", unit=MetricUnit.Count, value=len(poison))
    metrics.add_metric(name="RecordsRetried", unit=MetricUnit.Count, value=len(outcome.failed_records))
    metrics.add_metric(name="EventsApplied", unit=MetricUnit.Count, value=outcome.applied)
    metrics.add_metric(name="EventsDuplicate", unit=MetricUnit.Count, value=outcome.duplicates)
    metrics.add_metric(name="EventsHeld", unit=MetricUnit.Count, value=outcome.held)
    metrics.add_metric(name="EventsReleased", unit=MetricUnit.Count, value=outcome.released)
    metrics.add_metric(name="FeatureWrites", unit=MetricUnit.Count, value=updater.store.write_requests)
    metrics.add_metric(name="WriteUnits", unit=MetricUnit.Count, value=updater.write_units)
    metrics.add_metric(name="WriteConflicts", unit=MetricUnit.Count, value=outcome.conflicts)
    return {"batchItemFailures": [{"itemIdentifier": seq} for seq in sorted(outcome.failed_records, key=int)]}


freeze_imports()  # last: what the imports above made is never walked by a collection (shopwise.heap)
