"""Load: batch-transform output (JSON Lines in S3) into the recommendations table, then activate the version."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from shopwise.dal.objects import list_keys, parse_s3_uri, read_json_lines
from shopwise.dal.recommendations import RecommendationRow, set_active_model, write_recommendations


@dataclass(frozen=True)
class LoadResult:
    model_version: str
    rows: int
    objects: int


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
    """Write every row, then mark the version active. Rows are overwritten in place, so while a load runs
    a response may come from the old or the new version; each response names the version it came from."""
    bucket, prefix = parse_s3_uri(output_uri)
    objects = len([k for k in list_keys(bucket, prefix) if k.endswith(".out")])
    written = write_recommendations(recommendations_table, rows_from(output_uri, model_version), ttl_days)
    set_active_model(config_table, model_version)
    return LoadResult(model_version=model_version, rows=written, objects=objects)
