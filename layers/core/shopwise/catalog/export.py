"""Export the catalog: the items table (bulk imports and PUT /v1/items alike) -> one gzip JSON Lines snapshot in
S3, the training job's catalog channel. The retraining pipeline runs it before every training job, so a price,
stock or category changed through the API reaches the next model."""

from __future__ import annotations

from shopwise.dal.catalog import scan_items
from shopwise.dal.objects import write_json_lines


def export_catalog(items_table: str, bucket: str, key: str) -> int:
    return write_json_lines(bucket, key, scan_items(items_table))
