"""Erasure receipts in the config table (PynamoDB): one row per erasure, ``erasure#<id>``, holding what was removed
where and when each store finished — and never the identity (the aliases are kept only blinded, until the purge job
has finished with them). The pending erasures the jobs read are objects under ``privacy/erasures/`` (S3)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pynamodb.attributes import UnicodeAttribute
from pynamodb.models import Model

from shopwise.config import ERASURES_PREFIX
from shopwise.dal.objects import delete_key, get_bytes, list_keys, parse_s3_uri, put_bytes
from shopwise.dal.pynamo import bound
from shopwise.keys import ERASURE_PREFIX, erasure_key
from shopwise.privacy.tombstones import Targets, targets_of


class ErasureRow(Model):
    pk = UnicodeAttribute(hash_key=True)
    record = (
        UnicodeAttribute()
    )  # the receipt, JSON (shopwise.privacy.erasure.Erasure): its stores say when each finished


def put(config_table: str, erasure_id: str, record: dict[str, Any]) -> None:
    bound(ErasureRow, config_table)(erasure_key(erasure_id), record=json.dumps(record, sort_keys=True)).save()


def get(config_table: str, erasure_id: str) -> dict[str, Any] | None:
    model = bound(ErasureRow, config_table)
    try:
        return dict(json.loads(model.get(erasure_key(erasure_id), consistent_read=True).record))
    except model.DoesNotExist:
        return None


def scan(config_table: str) -> Iterator[dict[str, Any]]:
    model = bound(ErasureRow, config_table)
    for row in model.scan(model.pk.startswith(ERASURE_PREFIX)):
        yield dict(json.loads(row.record))


def put_pending(bucket: str, erasure_id: str, pending: dict[str, Any]) -> None:
    """What the jobs must skip and the purge job must remove: the erasure's blinded aliases and its time."""
    put_bytes(bucket, f"{ERASURES_PREFIX}{erasure_id}.json", json.dumps(pending).encode())


def pending(bucket: str) -> list[dict[str, Any]]:
    found = []
    for key in list_keys(bucket, ERASURES_PREFIX):
        if "/" in key[len(ERASURES_PREFIX) :] or not key.endswith(".json"):  # the purge runs' plans and tallies
            continue
        body = get_bytes(bucket, key)
        if body is not None:
            found.append(dict(json.loads(body)))
    return found


def pending_targets(uri: str) -> Targets:
    """The targets of the pending erasures under an s3:// prefix (what training, the transform and the load skip)."""
    bucket, _prefix = parse_s3_uri(uri)
    return targets_of(pending(bucket))


def done(bucket: str, erasure_id: str) -> None:
    delete_key(bucket, f"{ERASURES_PREFIX}{erasure_id}.json")
