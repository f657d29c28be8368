"""The model registry's rows in the config table (PynamoDB): one row per trained version, ``model#<version>``,
holding the version's record as a JSON document (``shopwise.lifecycle.registry.ModelRecord``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pynamodb.attributes import UnicodeAttribute
from pynamodb.exceptions import UpdateError
from pynamodb.models import Model

from shopwise.dal.pynamo import bound
from shopwise.keys import MODEL_PREFIX, model_key


class RegistryRow(Model):
    pk = UnicodeAttribute(hash_key=True)
    record = UnicodeAttribute()  # the version's record, JSON
    status = UnicodeAttribute(null=True)  # its status, also inside the record: what a conditional update checks


def put_record(config_table: str, version: str, record: dict[str, Any]) -> None:
    bound(RegistryRow, config_table)(
        model_key(version), record=json.dumps(record, sort_keys=True), status=str(record.get("status", ""))
    ).save()


def update_record(config_table: str, version: str, record: dict[str, Any]) -> None:
    """Replace a registered version's record (its status changed): an update conditional on the row existing, so a
    status change never creates a record by accident. Raises ``LookupError`` for an unknown version."""
    model = bound(RegistryRow, config_table)
    try:
        model(model_key(version)).update(
            actions=[model.record.set(json.dumps(record, sort_keys=True)), model.status.set(str(record["status"]))],
            condition=model.pk.exists(),
        )
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            raise LookupError(f"no version {version!r} in the registry") from None
        raise


def get_record(config_table: str, version: str) -> dict[str, Any] | None:
    model = bound(RegistryRow, config_table)
    try:
        return dict(json.loads(model.get(model_key(version), consistent_read=True).record))
    except model.DoesNotExist:
        return None


def scan_records(config_table: str) -> Iterator[dict[str, Any]]:
    model = bound(RegistryRow, config_table)
    for row in model.scan(model.pk.startswith(MODEL_PREFIX)):
        yield dict(json.loads(row.record))
