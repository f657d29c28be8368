"""``shopwise archive query SQL``: SQL over the event archive, the same table in both places — DuckDB here, over the
local stack's Parquet objects, and Athena on a deployed stack (``--stack``: the stack's Glue table and workgroup,
``shopwise.dal.athena``). The table is ``events`` (``shopwise.archive.TABLE``): the archive's columns
(``shopwise.archive.COLUMNS``) and the partitions ``dt`` (YYYY-MM-DD) and ``hour`` (HH); filter on ``dt`` to read
only those days — Athena bills the bytes it scans.

Locally the objects of the days asked (every day by default) are copied to a scratch folder first, so the limit is
that folder's disk, not memory: DuckDB streams Parquet. Objects still in gzip JSON Lines (from before the archive
was Parquet) are not in the table: the answer says how many, and ``shopwise archive convert`` rewrites them.
DuckDB never downloads an extension here: Parquet and JSON are built into its wheel, and autoloading is off.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from shopwise import archive, config
from shopwise.dal.objects import download_keys, list_keys


@dataclass(frozen=True)
class Answer:
    columns: list[str]
    rows: list[list[Any]]
    engine: str  # "duckdb" or "athena"
    objects: int = 0  # Parquet objects read (DuckDB)
    unconverted: int = 0  # JSON Lines objects left out (DuckDB)
    scanned_bytes: int = 0  # Athena's bill


def day_prefixes(days: int | None, today: date | None = None) -> list[str]:
    """The archive prefixes of the last ``days`` days (every day: the events prefix)."""
    if not days:
        return [config.ARCHIVE_EVENTS_PREFIX]
    today = today or datetime.now(UTC).date()
    return [f"{config.ARCHIVE_EVENTS_PREFIX}dt={today - timedelta(days=n):%Y-%m-%d}/" for n in range(days)]


def local_copy(bucket: str, root: Path, days: int | None = None) -> tuple[int, int]:
    """The archive's Parquet objects (of the last ``days`` days) into ``root`` in their dt=/hour= folders: (Parquet
    objects copied, gzip JSON objects left out)."""
    objects = unconverted = 0
    for prefix in day_prefixes(days):
        keys = list_keys(bucket, prefix)
        unconverted += sum(1 for k in keys if k.endswith(archive.JSON_LINES))  # not in the table: not copied
        parquet = [k for k in keys if k.endswith(archive.PARQUET)]
        objects += download_keys(bucket, parquet, prefix, root / prefix.removeprefix(config.ARCHIVE_EVENTS_PREFIX))
    return objects, unconverted


def query_local(bucket: str, sql: str, days: int | None = None, limit: int = 10_000) -> Answer:
    """``sql`` over the archive's Parquet objects (of the last ``days`` days) with DuckDB."""
    import duckdb

    with tempfile.TemporaryDirectory(prefix="shopwise-archive-") as scratch:
        root = Path(scratch)
        objects, unconverted = local_copy(bucket, root, days)
        connection = duckdb.connect(
            config={"autoinstall_known_extensions": False, "autoload_known_extensions": False, "threads": 2}
        )
        try:
            if objects:
                pattern = str(root / "**" / f"*{archive.PARQUET}").replace("'", "''")  # a DDL takes no parameters
                connection.execute(
                    f"CREATE VIEW {archive.TABLE} AS SELECT * FROM read_parquet('{pattern}', hive_partitioning = true, "
                    "union_by_name = true, hive_types = {'dt': VARCHAR, 'hour': VARCHAR})"
                )
            else:  # nothing archived yet: the same columns, no rows
                import pyarrow as pa

                schema = (
                    archive.arrow_schema().append(pa.field("dt", pa.string())).append(pa.field("hour", pa.string()))
                )
                empty = pa.Table.from_pylist([], schema=schema)
                connection.register("archive_empty", empty)
                connection.execute(f"CREATE VIEW {archive.TABLE} AS SELECT * FROM archive_empty")
            try:
                result = connection.execute(sql)
                columns = [d[0] for d in result.description or []]
                rows = [list(r) for r in result.fetchmany(limit)]
            except duckdb.Error as exc:  # the SQL's fault: a clear error, not a traceback
                raise ValueError(f"the query failed: {exc}") from None
        finally:
            connection.close()
    return Answer(columns, rows, "duckdb", objects, unconverted)


def query_athena(workgroup: str, database: str, sql: str, limit: int = 10_000) -> Answer:
    from shopwise.dal.athena import run_query

    result = run_query(sql, workgroup, database, limit=limit)
    return Answer(result.columns, [list(r) for r in result.rows], "athena", scanned_bytes=result.scanned_bytes)


def format_answer(answer: Answer) -> str:
    """The rows as an aligned table, and where they came from."""
    cells = [[str(c) for c in answer.columns]] + [["" if v is None else str(v) for v in row] for row in answer.rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(answer.columns))]
    lines = ["  ".join(value.ljust(widths[i]) for i, value in enumerate(row)).rstrip() for row in cells]
    if len(lines) > 1:
        lines.insert(1, "  ".join("-" * w for w in widths))
    if answer.engine == "duckdb":
        note = f"({len(answer.rows)} rows; DuckDB over {answer.objects} Parquet objects"
        if answer.unconverted:
            note += f"; {answer.unconverted} gzip JSON objects left out: `shopwise archive convert`"
        lines.append(note + ")")
    else:
        lines.append(f"({len(answer.rows)} rows; Athena scanned {answer.scanned_bytes / 1e6:.1f} MB)")
    return "\n".join(lines)
