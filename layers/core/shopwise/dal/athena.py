"""Athena, as the operator's CLI uses it on a deployed stack's archive (``shopwise archive query --stack``): one
query in the stack's workgroup (its result location, encryption and scan limit are the workgroup's, enforced),
followed to the end, its rows read page by page."""

from __future__ import annotations

import time
from dataclasses import dataclass

from shopwise.dal.aws import client

POLL_S = 1.0


class QueryFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[list[str | None]]  # Athena answers text (None for SQL NULL)
    scanned_bytes: int
    execution_id: str


def run_query(sql: str, workgroup: str, database: str, timeout_s: float = 600.0, limit: int = 10_000) -> QueryResult:
    """Run ``sql`` in ``workgroup`` against ``database``; its first ``limit`` rows. QueryFailed with Athena's reason
    if it fails, is cancelled (the workgroup's scan limit) or outlasts ``timeout_s`` (then it is stopped)."""
    athena = client("athena")
    execution = athena.start_query_execution(
        QueryString=sql, WorkGroup=workgroup, QueryExecutionContext={"Database": database}
    )["QueryExecutionId"]
    deadline = time.monotonic() + timeout_s
    while True:
        described = athena.get_query_execution(QueryExecutionId=execution)["QueryExecution"]
        state = described["Status"]["State"]
        if state == "SUCCEEDED":
            break
        if state in ("FAILED", "CANCELLED"):
            raise QueryFailed(f"{state.lower()}: {described['Status'].get('StateChangeReason', '')}")
        if time.monotonic() > deadline:
            athena.stop_query_execution(QueryExecutionId=execution)
            raise QueryFailed(f"stopped after {timeout_s:g} s")
        time.sleep(POLL_S)
    columns: list[str] = []
    rows: list[list[str | None]] = []
    for page in athena.get_paginator("get_query_results").paginate(QueryExecutionId=execution):
        result = page["ResultSet"]
        if not columns:
            columns = [c["Name"] for c in result.get("ResultSetMetadata", {}).get("ColumnInfo", [])]
        for row in result.get("Rows", []):
            values = [cell.get("VarCharValue") for cell in row.get("Data", [])]
            if values == columns and not rows:
                continue  # the first row of a SELECT's first page repeats the header
            rows.append(values)
            if len(rows) >= limit:
                break
        if len(rows) >= limit:
            break
    scanned = int(described.get("Statistics", {}).get("DataScannedInBytes", 0))
    return QueryResult(columns, rows, scanned, execution)
