"""Load: batch-transform output (JSON Lines in S3) into the standby slot's table, by a DynamoDB import from S3.

The serving slot is never touched: shoppers keep getting the active version while a load runs, and the version it
replaces stays whole in its slot until the next load, for an instant rollback. Promotion (``activate``) is a
separate step, after the load, so a failed load never serves half a version.

The load is also the pipeline's last sanity check, on what will actually be served: a version whose output has no
global bestseller list (strangers would get nothing) or more than ``MAX_EMPTY_SHARE`` of shoppers with an empty list
is left in its slot marked ``loading``, never ``ready``, and never imported; the step fails with the reason.

The steps, so that no single function holds the whole output or runs for its whole length: ``begin`` finds the
output objects (the transform writes one per request object, each at most a few workers' shards of
``USERS_PER_REQUEST`` shoppers), marks the standby slot loading and drops its table; ``stage_object`` streams one
object into one gzip object of DynamoDB JSON under the load's staging prefix (the retrain's Distributed Map runs one
per object, in parallel); ``start`` checks what the objects staged and starts the import of the prefix into the
slot's new table; ``check`` answers how the import is doing (the retrain waits and asks again); ``finish`` checks
that every staged row was imported, deletes the lists of shoppers erased while it ran, and marks the slot ready.
``load`` runs them all in one process.

Why an import and not writes (issue 20's choice by measured cost): an import is priced by the gigabytes it reads,
$0.15 a GB of the staged JSON (about 1.6 KB a shopper's list: $0.24 a million lists), where writing the same lists
costs 1.75 write units each at $0.625 a million ($1.09 a million lists) and throttles on a cold table. What it
costs in time is DynamoDB's to say (AWS publishes no rate); the retrain waits for it.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any

from shopwise.config import LIST_IMPORTS_PREFIX
from shopwise.dal.objects import delete_prefix, list_keys, parse_s3_uri, put_bytes, read_json_lines
from shopwise.dal.recommendations import (
    IMPORT_MAX_OBJECTS,
    ImportFailed,
    ImportState,
    PointerMoved,
    RecommendationRow,
    drop_slot_table,
    erase_held,
    get_pointer,
    import_line,
    import_state,
    mark_slot,
    start_import,
)
from shopwise.keys import POPULAR_KEY, USER_PREFIX
from shopwise.picks import StoredPick
from shopwise.privacy.tombstones import Targets

MAX_EMPTY_SHARE = 0.05  # of the shoppers' lists


class Unservable(ValueError):
    """The output loaded, but serving it would answer shoppers with nothing."""


@dataclass
class Tally:
    """What a load wrote, summed over output objects: the rows, the shoppers' lists among them and how many were
    empty, whether the global bestseller list came, and the lists left out as erased."""

    rows: int = 0
    users: int = 0
    empty: int = 0
    popular: bool = False
    erased: int = 0
    objects: int = 0
    bytes: int = 0  # the staged DynamoDB JSON, uncompressed: what the import is billed on

    def count(self, rows: Iterable[RecommendationRow]) -> Iterator[RecommendationRow]:
        for row in rows:
            if row.key.startswith(USER_PREFIX):
                self.users += 1
                self.empty += not row.items
            elif row.key == POPULAR_KEY:
                self.popular = bool(row.items)
            yield row

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            rows=self.rows + other.rows,
            users=self.users + other.users,
            empty=self.empty + other.empty,
            popular=self.popular or other.popular,
            erased=self.erased + other.erased,
            objects=self.objects + other.objects,
            bytes=self.bytes + other.bytes,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Tally:
        return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})

    def problems(self) -> list[str]:
        found = [] if self.popular else ["no global bestseller list: strangers would get nothing"]
        if self.users and self.empty / self.users > MAX_EMPTY_SHARE:
            found.append(f"{self.empty} of {self.users} shoppers' lists are empty (more than {MAX_EMPTY_SHARE:.0%})")
        return found


@dataclass(frozen=True)
class LoadResult:
    model_version: str
    rows: int
    objects: int
    slot: str
    erased: int = 0  # shoppers' lists left out: erased since the model was trained (pending the purge)
    imported_bytes: int = 0
    erased_late: int = 0  # lists deleted after the import: their shoppers were erased while it ran


def output_keys(output_uri: str) -> tuple[str, list[str]]:
    """(bucket, the batch-transform output objects under ``output_uri``); none is an error."""
    bucket, prefix = parse_s3_uri(output_uri)
    keys = [k for k in list_keys(bucket, prefix) if k.endswith(".out")]
    if not keys:
        raise FileNotFoundError(f"no batch-transform output (*.out) under {output_uri}")
    return bucket, keys


def object_rows(bucket: str, key: str, model_version: str) -> Iterator[RecommendationRow]:
    for line in read_json_lines(bucket, key):
        yield RecommendationRow(line["key"], [StoredPick.decode(e) for e in line["items"]], model_version)


def without_erased(
    rows: Iterable[RecommendationRow], erased: Targets | None, left_out: list[int]
) -> Iterator[RecommendationRow]:
    """The rows but the lists of erased shoppers (counted in ``left_out[0]``)."""
    for row in rows:
        if erased and row.key.startswith(USER_PREFIX) and erased.alias(row.key[len(USER_PREFIX) :]):
            left_out[0] += 1
            continue
        yield row


def staging_prefix(model_version: str, slot: str) -> str:
    """Where a load stages its import's objects (in the output's bucket): one prefix per version and slot."""
    return f"{LIST_IMPORTS_PREFIX}{model_version}/{slot}/"


def begin(output_uri: str, model_version: str, config_table: str, stem: str) -> dict[str, Any]:
    """The load's first step: the output objects to stage, the standby slot they go to, marked loading (after the
    objects are found: the standby slot holds the version a rollback would restore until then), its table dropped
    (an import makes a new one), and the staging prefix emptied of an earlier attempt's objects."""
    bucket, keys = output_keys(output_uri)
    if len(keys) > IMPORT_MAX_OBJECTS:
        raise ValueError(f"{len(keys)} output objects: an import reads at most {IMPORT_MAX_OBJECTS} (fewer requests)")
    return {"bucket": bucket, "keys": keys, **_standby(config_table, stem, bucket, model_version)}


def _standby(config_table: str, stem: str, bucket: str, model_version: str) -> dict[str, Any]:
    """The standby slot marked loading, its table dropped, its staging prefix emptied: slot, staging, began_at."""
    slot = get_pointer(config_table).standby
    marked = mark_slot(config_table, slot, model_version, "loading")
    drop_slot_table(stem, slot)
    staging = staging_prefix(model_version, slot)
    delete_prefix(bucket, staging)
    return {"slot": slot, "staging": staging, "began_at": marked.slots[slot]["at"]}


def stage_object(
    bucket: str,
    key: str,
    model_version: str,
    slot: str,
    staging: str,
    config_table: str,
    ttl_days: int,
    erased: Targets | None = None,
) -> Tally:
    """One output object's rows, without the lists of shoppers erased meanwhile, as one gzip object of DynamoDB
    JSON under ``staging`` (compressed as it is read: the object's rows are never all in memory): the step the
    retrain's Distributed Map runs once per object. Refused when the slot began serving since ``begin`` (a rollback
    or promotion meanwhile): a load never touches the served slot. Run again, it writes the same object."""
    pointer = get_pointer(config_table)
    held = pointer.slots.get(slot, {})
    if pointer.slot == slot or held.get("version") != model_version:
        raise PointerMoved(f"slot {slot} no longer awaits version {model_version} (it holds {held or 'nothing'})")
    tally = Tally(objects=1)
    left_out = [0]
    body = _stage(
        tally.count(without_erased(object_rows(bucket, key, model_version), erased, left_out)), slot, ttl_days, tally
    )
    if tally.rows:
        put_bytes(bucket, f"{staging}{key.rsplit('/', 1)[-1]}.json.gz", body)
    tally.erased = left_out[0]
    return tally


def start(bucket: str, staging: str, stem: str, slot: str, model_version: str, tallies: Iterable[Tally]) -> str:
    """After every object is staged: refuse a version that cannot be served (nothing imported, the slot stays
    loading), else start the import of the staging prefix into the slot's table; the import's ARN."""
    total = sum(tallies, Tally())
    problems = total.problems()
    if problems:
        raise Unservable(f"version {model_version} staged for slot {slot} but not imported: {'; '.join(problems)}")
    return start_import(stem, slot, bucket, staging, model_version)


def check(import_arn: str) -> ImportState:
    """How the import is doing (the retrain waits while it is IN_PROGRESS)."""
    return import_state(import_arn)


def finish(
    config_table: str,
    stem: str,
    slot: str,
    model_version: str,
    tallies: Iterable[Tally],
    import_arn: str,
    began_at: float,
    bucket: str,
    staging: str,
) -> LoadResult:
    """The load's last step: the slot is marked ready only when the import put every staged row in its table; the
    lists of shoppers erased while the load ran (held by their erasures) are deleted from it first, and the staged
    objects, which still hold them, with it."""
    total = sum(tallies, Tally())
    state = import_state(import_arn)
    if state.status != "COMPLETED" or state.errors or state.imported != total.rows:
        raise ImportFailed(
            f"version {model_version}'s import into slot {slot} ended {state.status}: {state.imported} of "
            f"{total.rows} rows imported, {state.errors} errors {state.failure}".rstrip()
        )
    late = erase_held(config_table, stem, slot, began_at)
    delete_prefix(bucket, staging)
    mark_slot(config_table, slot, model_version, "ready")
    return LoadResult(model_version, total.rows, total.objects, slot, total.erased, total.bytes, late)


def wait_for_import(status: Callable[[], str], timeout_s: float, poll_s: float = 0.5) -> None:
    """Ask ``status`` (the import's, as ``check`` answers it) until it is no longer IN_PROGRESS: the deployed
    retrain's Wait and Check states, in one process (``load``; the local pipeline asks through the load function).
    What it ended as is for ``finish`` to judge."""
    deadline = time.monotonic() + timeout_s
    while status() == "IN_PROGRESS":
        if time.monotonic() > deadline:
            raise ImportFailed(f"the import still runs after {timeout_s:.0f} s")
        time.sleep(poll_s)


def load(
    output_uri: str,
    model_version: str,
    stem: str,
    config_table: str,
    ttl_days: int,
    erased: Targets | None = None,
    timeout_s: float = 3600.0,
) -> LoadResult:
    """Every step in one process (the CLI's reload, the tests): every object staged, imported into the standby
    slot's table, the slot recorded as holding the version (not serving it); the lists of shoppers erased meanwhile
    (``erased``: the pending erasures) are left out. The deployed retrain runs the same steps with a Distributed
    Map over the objects and a wait loop around the import."""
    begun = begin(output_uri, model_version, config_table, stem)
    tallies = [
        stage_object(
            begun["bucket"], key, model_version, begun["slot"], begun["staging"], config_table, ttl_days, erased
        )
        for key in begun["keys"]
    ]
    arn = start(begun["bucket"], begun["staging"], stem, begun["slot"], model_version, tallies)
    wait_for_import(lambda: check(arn).status, timeout_s)
    return finish(
        config_table,
        stem,
        begun["slot"],
        model_version,
        tallies,
        arn,
        begun["began_at"],
        begun["bucket"],
        begun["staging"],
    )


def load_rows(
    rows: Iterable[RecommendationRow],
    model_version: str,
    stem: str,
    config_table: str,
    ttl_days: int,
    bucket: str,
    timeout_s: float = 600.0,
) -> tuple[str, int]:
    """Rows of one version into the standby slot, the same way (staged in ``bucket``, imported, the slot marked
    ready only when what was imported can be served): (slot, rows)."""
    begun = _standby(config_table, stem, bucket, model_version)
    slot, staging = begun["slot"], begun["staging"]
    tally = Tally(objects=1)
    body = _stage(tally.count(rows), slot, ttl_days, tally)
    if tally.rows:
        put_bytes(bucket, f"{staging}rows.json.gz", body)
    arn = start(bucket, staging, stem, slot, model_version, [tally])
    wait_for_import(lambda: check(arn).status, timeout_s)
    return slot, finish(config_table, stem, slot, model_version, [tally], arn, begun["began_at"], bucket, staging).rows


def _stage(rows: Iterable[RecommendationRow], slot: str, ttl_days: int, tally: Tally) -> bytes:
    """``rows`` as gzip DynamoDB JSON, compressed as they come (counted in ``tally``'s rows and bytes)."""
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: a gzip member
    parts: list[bytes] = []
    now = time.time()
    for row in rows:
        line = import_line(row, slot, ttl_days, now)
        tally.rows += 1
        tally.bytes += len(line)
        parts.append(packer.compress(line))
    parts.append(packer.flush())
    return b"".join(parts)
