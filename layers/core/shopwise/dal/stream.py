"""The Kinesis stream: publishing accepted events, and re-reading a range of one shard's records (a replay)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from shopwise.dal.aws import client
from shopwise.keys import shard_number
from shopwise.retry import backoff

MAX_PUT_RETRIES = 6


class KinesisPublisher:
    def __init__(self, stream_name: str) -> None:
        self.stream_name = stream_name

    def publish(self, records: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Put (partition key, JSON record) pairs, retrying the records Kinesis refused (throttled shards)."""
        pending = [
            {"PartitionKey": key, "Data": json.dumps(record, separators=(",", ":")).encode()} for key, record in records
        ]
        for attempt in range(MAX_PUT_RETRIES):
            if not pending:
                return
            response = client("kinesis").put_records(StreamName=self.stream_name, Records=pending)
            if not response.get("FailedRecordCount"):
                return
            pending = [
                entry for entry, result in zip(pending, response["Records"], strict=True) if "ErrorCode" in result
            ]
            backoff(attempt)
        raise RuntimeError(f"{len(pending)} records still refused by Kinesis after {MAX_PUT_RETRIES} tries")


def shard_ids(stream_name: str) -> list[str]:
    """Every shard number the stream has had, as far as anyone can tell: 0 to the highest it lists now (a split or
    a merge numbers its new shards above the old ones, and a closed shard leaves the listing after the retention),
    so the parts its updaters wrote (``shopwise.keys.item_part_key``) are all found."""
    pages = client("kinesis").get_paginator("list_shards").paginate(StreamName=stream_name)
    numbers = [int(shard_number(s["ShardId"])) for page in pages for s in page.get("Shards", [])]
    return [str(n) for n in range(max(numbers, default=-1) + 1)]


def read_range(stream_name: str, shard_id: str, first: str, last: str, limit: int = 1000) -> Iterator[dict[str, Any]]:
    """The records of one shard from sequence number ``first`` to ``last``, in order, as GetRecords hands them out.
    Yields nothing if the stream no longer holds ``first`` (past its retention, or the shard is gone): the caller
    compares what it got with what it asked for."""
    kinesis = client("kinesis")
    try:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream_name,
            ShardId=shard_id,
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            StartingSequenceNumber=first,
        )["ShardIterator"]
    except (kinesis.exceptions.ResourceNotFoundException, kinesis.exceptions.InvalidArgumentException):
        return
    started = False
    while iterator:
        response = kinesis.get_records(ShardIterator=iterator, Limit=limit)
        for record in response.get("Records", []):
            if not started and record["SequenceNumber"] != first:
                return  # the first record was trimmed: the stream starts later than asked
            started = True
            if int(record["SequenceNumber"]) > int(last):
                return
            yield record
        if not response.get("Records") and not response.get("MillisBehindLatest"):
            return  # at the shard's tip
        iterator = response.get("NextShardIterator")
