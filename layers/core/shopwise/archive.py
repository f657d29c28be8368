"""The event archive's record formats, defined once: the columns of an archived event, and how an object of the
archive is written and read.

The archive is Parquet, partitioned by arrival day and hour (``events/dt=YYYY-MM-DD/hour=HH/*.parquet``): Firehose
converts the stream's JSON records with the Glue table the CDK app builds from ``COLUMNS``
(``shopwise_cdk.archive``), and the local archive writer, the bulk importer and ``shopwise archive convert`` write
the same files with pyarrow from the same columns. Athena reads it in AWS and DuckDB on a laptop
(``shopwise archive query``). Objects written before the conversion — gzip JSON Lines (``*.jsonl.gz``) — are read
as they are until ``shopwise archive convert`` has rewritten them.

One table holds every event type: each field of each event model is a column (null where a type lacks it), and a
test holds the columns to the models. Where two types give one field name two shapes, the rarer one is stored
under a column of its own (``RENAMED``): a purchase's ``items`` are line items, an impression's are item ids, so
an impression's go to ``impression_items``. Times are kept as the ISO 8601 text the JSON record carries: a reader
gets back exactly the record that was archived.

pyarrow is imported only to write or read Parquet (the jobs, the CLI and the import function have it; the
request-path functions never archive).
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

TABLE = "events"  # the Glue table (Athena) and the DuckDB view (``shopwise archive query``)
PARQUET = ".parquet"
JSON_LINES = (".jsonl.gz", ".jsonl")  # the archive's objects before the conversion
SUFFIXES = (PARQUET, *JSON_LINES)
ROW_GROUP = 50_000  # events per Parquet row group (and per batch a reader holds as Python objects)
# Parquet's page compression, here and in Firehose's conversion (which offers Snappy, gzip or none): gzip without
# dictionary pages holds an event in 12.5 bytes against Snappy's 22.9 and gzip JSON Lines' 16.1
# (tests/bench/bench_archive.py)
COMPRESSION = "gzip"


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # the Hive type Glue and Athena use: string, boolean, int, double, array<...>, struct<...>


LINE_ITEM = "struct<item_id:string,quantity:int,unit_price:double,currency:string>"
COLUMNS: tuple[Column, ...] = (
    Column("event_id", "string"),
    Column("event_type", "string"),
    Column("occurred_at", "string"),
    Column("received_at", "string"),
    Column("anonymous_id", "string"),
    Column("customer_id", "string"),
    Column("session_id", "string"),
    Column("market", "string"),
    Column("referrer", "string"),
    Column("user_agent_class", "string"),
    Column("pseudonymised", "boolean"),
    Column("origin", "string"),
    Column("item_id", "string"),
    Column("price", "double"),
    Column("quantity", "int"),
    Column("unit_price", "double"),
    Column("order_id", "string"),
    Column("items", f"array<{LINE_ITEM}>"),
    Column("revenue", "double"),
    Column("currency", "string"),
    Column("query", "string"),
    Column("results", "array<string>"),
    Column("recommendation_id", "string"),
    Column("impression_items", "array<string>"),
    Column("placement", "string"),
    Column("experiment", "string"),
    Column("variant", "string"),
    Column("model_version", "string"),
    Column("source", "string"),
    Column("scores", "array<double>"),
    Column("email_hash", "string"),
    Column("device_id", "string"),
    Column("previous", "array<string>"),
    Column("granted", "array<string>"),
    Column("revoked", "array<string>"),
)
NAMES = frozenset(c.name for c in COLUMNS)
# event type -> {field as the record names it: column}
RENAMED: dict[str, dict[str, str]] = {"impression": {"items": "impression_items"}}
# never archived: the collector replaces an identify event's email by its keyed hash before the stream
NEVER_ARCHIVED = frozenset({"email"})


class NotArchivable(ValueError):
    """A record with a field the archive has no column for (a new event field without its column)."""


def to_row(record: dict[str, Any]) -> dict[str, Any]:
    """An event's JSON record as a row of the archive table."""
    renames = RENAMED.get(str(record.get("event_type")), {})
    row = {renames.get(k, k): v for k, v in record.items()}
    unknown = set(row) - NAMES
    if unknown:
        raise NotArchivable(f"no archive column for {sorted(unknown)} (event_type {record.get('event_type')!r})")
    return row


def from_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row of the archive table back as the event's JSON record: nulls dropped (a struct's too: a line item
    written without its currency comes back without it, not with a null), renamed fields named back."""
    back = {column: field for field, column in RENAMED.get(str(row.get("event_type")), {}).items()}
    return {back.get(k, k): _present(v) for k, v in row.items() if v is not None}


def _present(value: Any) -> Any:
    if isinstance(value, list):
        return [_present(v) for v in value]
    if isinstance(value, dict):
        return {k: _present(v) for k, v in value.items() if v is not None}
    return value


def _arrow_type(hive: str) -> Any:
    import pyarrow as pa

    if hive.startswith("array<"):
        return pa.list_(_arrow_type(hive[len("array<") : -1]))
    if hive.startswith("struct<"):
        fields = [part.split(":", 1) for part in _split(hive[len("struct<") : -1])]
        return pa.struct([pa.field(name, _arrow_type(kind)) for name, kind in fields])
    return {"string": pa.string(), "boolean": pa.bool_(), "int": pa.int32(), "double": pa.float64()}[hive]


def _split(fields: str) -> list[str]:
    """A struct's field list split at its top-level commas."""
    parts, depth, start = [], 0, 0
    for n, char in enumerate(fields):
        depth += char == "<"
        depth -= char == ">"
        if char == "," and depth == 0:
            parts.append(fields[start:n])
            start = n + 1
    return [*parts, fields[start:]]


def arrow_schema() -> Any:
    import pyarrow as pa

    return pa.schema([pa.field(c.name, _arrow_type(c.type)) for c in COLUMNS])


def encode_parquet(records: Iterable[dict[str, Any]]) -> bytes:
    """Events' JSON records as one Parquet object of the archive table."""
    return encode_rows(to_row(record) for record in records)


def encode_rows(rows: Iterable[dict[str, Any]]) -> bytes:
    """Rows of the archive table (``to_row``'s) as one Parquet object, ``ROW_GROUP`` rows a group, compressed as
    Firehose's conversion is configured (``COMPRESSION``, no dictionary pages)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema()
    out = io.BytesIO()
    with pq.ParquetWriter(out, schema, compression=COMPRESSION, use_dictionary=False) as writer:
        batch: list[dict[str, Any]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= ROW_GROUP:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    return out.getvalue()


def split(lines: Iterable[bytes]) -> tuple[list[dict[str, Any]], list[bytes]]:
    """JSON records as Firehose's record-format conversion treats them: the rows of those that fit the table, and
    the lines that don't (not a JSON object, or a field without a column), which Firehose writes under its error
    prefix instead."""
    rows: list[dict[str, Any]] = []
    failed: list[bytes] = []
    for line in lines:
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise NotArchivable("not a JSON object")
            rows.append(to_row(record))
        except ValueError:  # JSONDecodeError, UnicodeDecodeError, NotArchivable
            failed.append(line)
    return rows, failed


def convert(lines: Iterable[bytes]) -> tuple[bytes | None, list[bytes]]:
    """``split``, then the fitting rows as one Parquet object (None if none fit) beside the lines that don't."""
    rows, failed = split(lines)
    return (encode_rows(rows) if rows else None), failed


def read_records(key: str, handle: IO[bytes]) -> Iterator[dict[str, Any] | None]:
    """The records of one archive object (``handle``: its body, seekable for Parquet), by its format: Parquet
    rows ``ROW_GROUP`` at a time, or JSON Lines (gzipped when the key says so or the body starts like gzip). A line
    that is not JSON yields None, for the caller to count."""
    if key.endswith(PARQUET):
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(handle).iter_batches(batch_size=ROW_GROUP):
            for row in batch.to_pylist():
                yield from_row(row)
        return
    stream: Any = gzip.GzipFile(fileobj=handle, mode="rb") if key.endswith(".gz") else handle
    for line in stream:
        if line.strip():
            try:
                yield json.loads(line)
            except ValueError:
                yield None
