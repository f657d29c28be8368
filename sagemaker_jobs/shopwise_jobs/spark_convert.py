"""``shopwise archive convert`` as a job: the archive's gzip JSON objects spread over Spark's executors, each partition
of keys converted by ``shopwise.ingestion.convert.convert_archive`` — the code the CLI runs in one process — so an
archive of any size converts in the time its object count divided by the workers takes. Each executor reads,
writes and deletes through the data-access layer (boto3 with the job's role); a run that stops is finished by the
next, as the CLI's is.

Runs as the stack's Glue job (``sagemaker_jobs/glue_convert.py``), or locally under PySpark's local mode.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, fields
from typing import Any

from shopwise.ingestion.convert import ConvertReport, convert_archive, json_objects

KEYS_PER_TASK = 20  # objects a Spark task converts (Firehose's are up to 128 MB each)


def convert_on_spark(spark: Any, bucket: str) -> ConvertReport:
    """Every JSON object of the archive converted, ``KEYS_PER_TASK`` a task; the tasks' reports summed."""
    keys = json_objects(bucket)
    if not keys:
        return ConvertReport()
    slices = max(1, len(keys) // KEYS_PER_TASK)

    def convert(part: Any) -> Any:
        report = convert_archive(bucket, list(part), progress=False)
        yield asdict(report)

    reports = spark.sparkContext.parallelize(keys, slices).mapPartitions(convert).collect()
    total = ConvertReport()
    for report in reports:
        for f in fields(ConvertReport):
            value = report[f.name]
            setattr(total, f.name, getattr(total, f.name) + value)
    return total


def main(argv: list[str] | None = None, glue: bool = False) -> int:
    parser = argparse.ArgumentParser(description="the archive's gzip JSON objects rewritten as Parquet, on Spark")
    parser.add_argument("--bucket", required=True, help="the archive bucket")
    parser.add_argument("--local", action="store_true", help="PySpark in local mode (else the cluster's session)")
    args, _glue_args = parser.parse_known_args(argv) if glue else (parser.parse_args(argv), [])
    from shopwise_jobs.spark_dataset import job_session

    spark = job_session("shopwise-convert", args.local)
    report = convert_on_spark(spark, args.bucket)
    print(json.dumps(asdict(report)), flush=True)
    return 0 if not report.remaining else 1


if __name__ == "__main__":
    sys.exit(main())
