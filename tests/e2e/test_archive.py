"""The archive as a table: the stream's copy lands as Parquet, `shopwise archive query` answers SQL over it (DuckDB
here, Athena's wire protocol against the local endpoint for a deployed stack), and `shopwise archive convert`
rewrites the gzip JSON objects of before — nothing lost if it stops half-way, nothing converted twice."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shopwise import archive, config
from shopwise.dal.aws import client
from shopwise.dal.objects import get_bytes, list_keys, put_bytes, read_archive
from shopwise.ingestion.convert import parquet_key
from shopwise_jobs.dataset import archive_events
from shopwise_local import cli
from shopwise_local.archive_query import query_athena
from shopwise_local.stack import LocalStack
from tests.e2e.conftest import Api

pytestmark = pytest.mark.e2e


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(list(argv))
    return code, out.getvalue()


def query(sql: str) -> dict[str, Any]:
    code, out = run_cli("archive", "query", sql, "--json")
    assert code == 0, out
    return dict(json.loads(out))


def test_every_shards_records_reach_the_archive(stack: LocalStack, api: Api) -> None:
    """Sequence numbers are per shard: the first batches of the stack's two shards start at the same number in the
    same hour, and their archive objects must not overwrite each other (they did: events were lost)."""
    now = datetime.now(UTC).isoformat()
    sent = [
        {
            "event_id": f"spread-{n}",
            "event_type": "product_view",
            "occurred_at": now,
            "anonymous_id": f"spread-v{n}",
            "item_id": "i1",
        }
        for n in range(40)  # forty visitors: partition keys on both shards
    ]
    status, body = api.post("/v1/events", {"events": sent})
    assert status == 200 and not body.get("rejected"), body
    assert stack.poller and stack.poller.wait_idle(60) and stack.resources
    shards = client("kinesis").list_shards(StreamName=stack.resources.stream)["Shards"]
    assert len(shards) == 2
    bucket = stack.resources.archive_bucket
    archived = {r["event_id"] for key in list_keys(bucket, "events/") for r in read_archive(bucket, key) if r}
    assert {e["event_id"] for e in sent} <= archived


def test_what_the_storefront_sends_is_queryable_with_sql_as_the_archive_table(stack: LocalStack, api: Api) -> None:
    now = datetime.now(UTC)
    events: list[dict[str, Any]] = [
        {"event_type": "consent", "granted": ["personalisation"]},
        *({"event_type": "product_view", "item_id": f"arch-{n % 3}"} for n in range(6)),
        {"event_type": "add_to_cart", "item_id": "arch-1", "quantity": 2},
        {
            "event_type": "purchase",
            "order_id": "arch-o1",
            "items": [{"item_id": "arch-1", "quantity": 2, "unit_price": 7.5}],
            "revenue": 15.0,
        },
    ]
    batch = [
        {
            **e,
            "event_id": f"arch-{n}",
            "occurred_at": (now - timedelta(seconds=60 - n)).isoformat(),
            "customer_id": "ac1",
        }
        for n, e in enumerate(events)
    ]
    status, body = api.post("/v1/events", {"events": batch})
    assert status == 200 and not body.get("rejected"), body
    assert stack.poller and stack.poller.wait_idle(60) and stack.resources

    answer = query("select event_type, count(*) as n from events where event_id like 'arch-%' group by 1 order by 1")
    assert answer["engine"] == "duckdb" and answer["objects"] >= 1 and answer["unconverted"] == 0
    assert answer["columns"] == ["event_type", "n"]
    assert answer["rows"] == [["add_to_cart", 1], ["consent", 1], ["product_view", 6], ["purchase", 1]]
    # nested columns and the partitions: a purchase's line items, the day it arrived
    (row,) = query(
        "select i.item_id, i.quantity, dt, customer_id from events, unnest(items) as t(i) where order_id = 'arch-o1'"
    )["rows"]
    assert row[:3] == ["arch-1", 2, now.strftime("%Y-%m-%d")]
    assert row[3] != "ac1" and len(row[3]) == 32  # pseudonymised before the stream: the archive never holds the id
    # a day the archive has nothing of answers no rows; bad SQL is a clear error
    assert query("select count(*) from events where dt = '2001-01-01'")["rows"] == [[0]]
    code, _out = run_cli("archive", "query", "select no_such_column from events")
    assert code == 1  # the CLI's error line (stderr) quotes DuckDB's message


def legacy_object(bucket: str, day: str, name: str, records: list[dict[str, Any]], bad: list[bytes]) -> str:
    """An archive object as Firehose wrote it before the conversion: gzip JSON Lines."""
    key = f"{config.ARCHIVE_EVENTS_PREFIX}dt={day}/hour=07/{name}.jsonl.gz"
    lines = [json.dumps(r).encode() for r in records] + bad
    put_bytes(bucket, key, gzip.compress(b"\n".join(lines) + b"\n"))
    return key


def test_convert_rewrites_the_json_archive_as_parquet_and_resumes_where_it_stopped(
    stack: LocalStack, tmp_path: Path
) -> None:
    assert stack.resources
    bucket = stack.resources.archive_bucket
    day = (datetime.now(UTC) - timedelta(days=40)).strftime("%Y-%m-%d")
    records: list[dict[str, Any]] = [
        {
            "event_id": f"legacy-{n}",
            "event_type": "product_view",
            "occurred_at": f"{day}T07:00:{n:02d}Z",
            "anonymous_id": f"v{n % 4}",
            "item_id": f"legacy-item-{n % 5}",
            "pseudonymised": True,
            "origin": "visitor",
        }
        for n in range(40)
    ]
    bad = [b"{not json", json.dumps({**records[0], "event_id": "legacy-x", "colour": "red"}).encode()]
    first = legacy_object(bucket, day, "legacy-a", records[:30], bad)
    second = legacy_object(bucket, day, "legacy-b", records[30:], [])
    # a run that stopped after writing the second object's Parquet, before deleting its JSON
    put_bytes(bucket, parquet_key(second), archive.encode_parquet(records[30:]))
    before = query(f"select count(*) from events where dt = '{day}'")
    assert before["rows"] == [[10]] and before["unconverted"] == 2  # only the Parquet is in the table yet

    code, out = run_cli("archive", "convert", "--json", "--no-progress")
    report = json.loads(out)
    assert code == 0 and report["objects"] == 2 and report["resumed"] == 1 and report["remaining"] == []
    assert report["events"] == 40 and report["failed_lines"] == 2
    keys = list_keys(bucket, f"{config.ARCHIVE_EVENTS_PREFIX}dt={day}/")
    assert sorted(keys) == sorted([parquet_key(first), parquet_key(second)])  # the JSON objects are gone
    assert [r for k in sorted(keys) for r in read_archive(bucket, k)] == records  # every event, exactly
    (errors,) = list_keys(bucket, f"{config.ARCHIVE_ERRORS_PREFIX}format-conversion-failed/dt={day}/")
    assert gzip.decompress(get_bytes(bucket, errors) or b"").splitlines() == bad  # where Firehose puts them
    assert query(f"select count(distinct event_id) from events where dt = '{day}'")["rows"] == [[40]]

    code, out = run_cli("archive", "convert", "--json", "--no-progress")
    assert code == 0 and json.loads(out)["objects"] == 0  # nothing converted twice
    # and the training job reads the converted archive (its events channel): the same events
    for key in keys:
        path = tmp_path / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(get_bytes(bucket, key) or b"")
    assert sorted(e.event_id for e in archive_events(tmp_path)) == sorted(r["event_id"] for r in records)


def test_a_deployed_stacks_query_goes_to_athena_in_its_workgroup(stack: LocalStack) -> None:
    """Athena's wire protocol against the local endpoint: the query started in the stack's workgroup and database,
    followed to the end, the header row of the first page dropped, every page read (results seeded through the
    endpoint's own API for canned Athena results)."""
    athena = client("athena")
    athena.create_work_group(Name="shopwise-test-archive")
    rows = [{"Data": [{"VarCharValue": "event_type"}, {"VarCharValue": "n"}]}]
    rows += [{"Data": [{"VarCharValue": f"type-{n}"}, {"VarCharValue": str(n)}]} for n in range(1500)]
    columns = [{"Name": "event_type", "Type": "varchar"}, {"Name": "n", "Type": "bigint"}]
    seed = {"region": athena.meta.region_name, "results": [{"rows": rows, "column_info": columns}]}
    endpoint = athena.meta.endpoint_url
    request = urllib.request.Request(
        f"{endpoint}/moto-api/static/athena/query-results", data=json.dumps(seed).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201

    answer = query_athena("shopwise-test-archive", "shopwise_test_archive", "select event_type, count(*) n ...")
    assert answer.engine == "athena" and answer.columns == ["event_type", "n"]
    assert len(answer.rows) == 1500 and answer.rows[0] == ["type-0", "0"] and answer.rows[-1] == ["type-1499", "1499"]
    (execution,) = athena.list_query_executions(WorkGroup="shopwise-test-archive")["QueryExecutionIds"]
    described = athena.get_query_execution(QueryExecutionId=execution)["QueryExecution"]
    assert described["QueryExecutionContext"]["Database"] == "shopwise_test_archive"


def test_the_data_set_builds_on_spark_from_the_stacks_archive(stack: LocalStack, tmp_path: Path) -> None:
    """`shopwise dataset build`: the local stack's archive copied to scratch, the Spark job (PySpark, local mode)
    over it — the same rows as the Python build of the same objects."""
    from shopwise_jobs.dataset import read_event_files
    from shopwise_jobs.spark_dataset import read_dataset
    from shopwise_local.archive_query import local_copy

    assert stack.resources
    code, out = run_cli("dataset", "build", "--out", str(tmp_path / "dataset"), "--json")
    assert code == 0, out
    report = json.loads(out)
    interactions, users, items = read_dataset(tmp_path / "dataset")
    objects, _unconverted = local_copy(stack.resources.archive_bucket, tmp_path / "copy")
    python = read_event_files(tmp_path / "copy")
    assert report["objects"] == objects and report["records"] == python.records
    assert report["interactions"] == len(interactions) == len(python.interactions) > 0
    assert report["consented"] == int(python.interactions["consented"].sum()) > 0  # the arch-* customer consented
    assert sorted(users) == sorted(python.interactions["user_id"].unique()) and len(items) == report["items"]
    # each day's parse kept in the artifacts bucket (where the purge reads every object), manifest and rows
    days = report["days_parsed"]
    assert days and report["days_reused"] == 0
    kept = list_keys(stack.resources.artifacts_bucket, config.PARSED_DAYS_PREFIX)
    assert {k.split("/")[2] for k in kept} == {f"dt={d}" for d in days}
    assert all(any(k.endswith(f"dt={d}/_manifest.json") for k in kept) for d in days)
    assert not any(k.endswith(".crc") for k in kept)
    # the next build parses nothing again: every day read back, the same data set
    code, out = run_cli("dataset", "build", "--out", str(tmp_path / "again"), "--json")
    assert code == 0, out
    again = json.loads(out)
    assert again["days_parsed"] == [] and again["days_reused"] == len(days)
    assert {k: again[k] for k in ("records", "interactions", "consented", "users", "items", "snapshot")} == {
        k: report[k] for k in ("records", "interactions", "consented", "users", "items", "snapshot")
    }
    # --reparse parses every day again and replaces what was kept of them
    code, out = run_cli("dataset", "build", "--out", str(tmp_path / "third"), "--reparse", "--json")
    assert code == 0 and json.loads(out)["days_parsed"] == days
    replaced = list_keys(stack.resources.artifacts_bucket, config.PARSED_DAYS_PREFIX)
    assert {k.split("/")[2] for k in replaced} == {f"dt={d}" for d in days} and not set(kept) & set(replaced) - {
        f"{config.PARSED_DAYS_PREFIX}dt={d}/_manifest.json" for d in days
    }  # Spark's part files are new names: the old ones were deleted, not left beside them


def test_the_glue_jobs_view_of_the_days_comes_from_the_s3_listing(stack: LocalStack, tmp_path: Path) -> None:
    """What the data set job reads in AWS to tell which days to parse again, over S3's wire protocol: one
    fingerprint per archive day (the local copy has the same days), changed by a rewrite of one object under the
    same key (a purge) and by a new object (a late delivery), the others unchanged; a window's first day honoured."""
    from shopwise_jobs.spark_dataset import _parts, day_fingerprints
    from shopwise_local.archive_query import local_copy

    assert stack.resources
    bucket = stack.resources.archive_bucket
    uri = f"s3://{bucket}/{config.ARCHIVE_EVENTS_PREFIX}"
    before = day_fingerprints(uri)
    local_copy(bucket, tmp_path / "copy")
    assert before and set(before) == set(day_fingerprints(str(tmp_path / "copy")))
    day = max(before)
    keys = sorted(k for k in list_keys(bucket, f"{config.ARCHIVE_EVENTS_PREFIX}dt={day}/") if k.endswith(".parquet"))
    put_bytes(bucket, keys[0], archive.encode_parquet([r for r in read_archive(bucket, keys[0]) if r][:-1] or []))
    rewritten = day_fingerprints(uri)
    assert rewritten[day] != before[day] and {d: v for d, v in rewritten.items() if d != day} == {
        d: v for d, v in before.items() if d != day
    }
    late = f"{config.ARCHIVE_EVENTS_PREFIX}dt={day}/hour=23/late{archive.PARQUET}"
    put_bytes(bucket, late, archive.encode_parquet([{"event_id": "late", "event_type": "product_view"}]))
    assert day_fingerprints(uri)[day] not in (before[day], rewritten[day])
    assert set(day_fingerprints(uri, since=day)) == {day}
    # a kept day's part files as the job lists them in the artifacts bucket: Parquet directly in the day's folder
    kept = f"s3://{stack.resources.artifacts_bucket}/{config.PARSED_DAYS_PREFIX}dt=2020-01-01"
    for name in ("part-1.parquet", "part-0.parquet", "_manifest.json", "deeper/part-2.parquet"):
        put_bytes(stack.resources.artifacts_bucket, f"{config.PARSED_DAYS_PREFIX}dt=2020-01-01/{name}", b"x")
    assert _parts(kept) == ["part-0.parquet", "part-1.parquet"]


def test_the_conversion_job_spreads_the_same_conversion_over_spark(stack: LocalStack) -> None:
    """What the stack's Glue job runs (``spark_convert``), here on PySpark's local mode against the local archive:
    the JSON objects split into tasks, each converted by the CLI's own code, the reports summed."""
    from shopwise_jobs.spark_convert import KEYS_PER_TASK, convert_on_spark
    from shopwise_jobs.spark_dataset import spark_session

    assert stack.resources
    bucket = stack.resources.archive_bucket
    day = (datetime.now(UTC) - timedelta(days=50)).strftime("%Y-%m-%d")
    record = {"event_type": "product_view", "item_id": "i9", "pseudonymised": True, "origin": "visitor"}
    objects = KEYS_PER_TASK + 5  # two tasks
    for n in range(objects):
        records = [
            {**record, "event_id": f"job-{n}-{k}", "occurred_at": f"{day}T08:00:{k:02d}Z", "anonymous_id": f"j{k}"}
            for k in range(3)
        ]
        legacy_object(bucket, day, f"job-{n:03d}", records, [])
    spark = spark_session("shopwise-test-convert", cores=2)
    try:
        report = convert_on_spark(spark, bucket)
    finally:
        spark.stop()
    assert report.objects == objects and report.events == 3 * objects and report.remaining == []
    keys = list_keys(bucket, f"{config.ARCHIVE_EVENTS_PREFIX}dt={day}/")
    assert len(keys) == objects and all(k.endswith(".parquet") for k in keys)
    assert sum(1 for k in keys for _r in read_archive(bucket, k)) == 3 * objects
