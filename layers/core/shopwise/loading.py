"""Load: batch-transform output (JSON Lines in S3) into the recommendations table's standby slot.

The serving slot is never written: shoppers keep getting the active version while a load runs, and the version it
replaces stays whole in its slot until the next load, for an instant rollback. Promotion (``activate``) is a
separate step, after the load, so a failed load never serves half a version."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from shopwise.dal.objects import list_keys, parse_s3_uri, read_json_lines
from shopwise.dal.recommendations import RecommendationRow, get_pointer, mark_slot, write_recommendations


@dataclass(frozen=True)
class LoadResult:
    model_version: str
    rows: int
    objects: int
    slot: str


def rows_from(output_uri: str, model_version: str) -> Iterator[RecommendationRow]:
    bucket, prefix = parse_s3_uri(output_uri)
    keys = [k for k in list_keys(bucket, prefix) if k.endswith(".out")]
    if not keys:
        raise FileNotFoundError(f"no batch-transform output (*.out) under {output_uri}")
    for key in keys:
        for line in read_json_lines(bucket, key):
            yield RecommendationRow(key=line["key"], items=line["items"], model_version=model_version)


def load(
    output_uri: str, model_version: str, recommendations_table: str, config_table: str, ttl_days: int
) -> LoadResult:
    """Write every row into the standby slot and record the slot as holding the version (not serving it)."""
    bucket, prefix = parse_s3_uri(output_uri)
    objects = len([k for k in list_keys(bucket, prefix) if k.endswith(".out")])
    if not objects:  # before touching the standby slot: it holds the version a rollback would restore
        raise FileNotFoundError(f"no batch-transform output (*.out) under {output_uri}")
    slot, written = load_rows(
        rows_from(output_uri, model_version), model_version, recommendations_table, config_table, ttl_days
    )
    return LoadResult(model_version=model_version, rows=written, objects=objects, slot=slot)


def load_rows(
    rows: Iterable[RecommendationRow], model_version: str, recommendations_table: str, config_table: str, ttl_days: int
) -> tuple[str, int]:
    """Rows of one version into the standby slot, the slot marked loading while they are written: (slot, rows)."""
    slot = get_pointer(config_table).standby
    mark_slot(config_table, slot, model_version, "loading")
    written = write_recommendations(recommendations_table, rows, slot, ttl_days)
    mark_slot(config_table, slot, model_version, "ready")
    return slot, written
