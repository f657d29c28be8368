"""Kinesis -> feature store. Records are parsed one by one (BatchProcessor), then applied coalesced per entity;
records of an entity whose write failed are reported back as batch item failures."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shopwise.dal.feature_store import FeatureStore
from shopwise.events import Event, parse_event
from shopwise.ingestion.update_features import update_features
from shopwise.observability import logger, metrics, tracer
from shopwise.settings import get_settings

processor = BatchProcessor(event_type=EventType.KinesisDataStreams)


def parse_record(record: KinesisStreamRecord) -> Event:
    return parse_event(record.kinesis.data_as_json())


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = get_settings()
    records = event.get("Records", [])
    with processor(records, parse_record, lambda_context=context):
        processed = processor.process()
    failures = [{"itemIdentifier": f["itemIdentifier"]} for f in processor.response()["batchItemFailures"]]
    # processed: (status, parsed event or error, the raw Lambda record) per record
    parsed = [(result, record) for status, result, record in processed if status == "success"]
    outcome = update_features(
        [event for event, _ in parsed], FeatureStore(settings.profiles_table, settings.items_table)
    )
    for event_, record in parsed:
        if event_.profile_id in outcome.failed_profiles:
            failures.append({"itemIdentifier": record["kinesis"]["sequenceNumber"]})
    if outcome.failed_profiles:
        logger.warning("profile updates failed", extra={"failed": outcome.failed_profiles})
    metrics.add_metric(name="FeatureWrites", unit=MetricUnit.Count, value=outcome.writes)
    metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=len(failures))
    return {"batchItemFailures": failures}
