"""Load: batch-transform output (JSON Lines in S3) into the recommendations table's standby slot.

The serving slot is never written: shoppers keep getting the active version while a load runs, and the version it
replaces stays whole in its slot until the next load, for an instant rollback. Promotion (``activate``) is a
separate step, after the load, so a failed load never serves half a version.

The load is also the pipeline's last sanity check, on what will actually be served: a version whose output has no
global bestseller list (strangers would get nothing) or more than ``MAX_EMPTY_SHARE`` of shoppers with an empty list
is left in its slot marked ``loading``, never ``ready``, so it cannot be promoted; the step fails with the reason.

Three steps, so that no single function holds the whole output or runs for its whole length: ``begin`` finds the
output objects (the transform writes one per request object, each at most a few workers' shards of
``USERS_PER_REQUEST`` shoppers) and marks the standby slot loading; ``load_object`` streams one object into the slot
(the retrain's Distributed Map runs one per object, in parallel); ``finish`` sums what they wrote and marks the
slot ready. ``load`` runs the three in one process."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any

from shopwise.dal.objects import list_keys, parse_s3_uri, read_json_lines
from shopwise.dal.recommendations import (
    PointerMoved,
    RecommendationRow,
    get_pointer,
    mark_slot,
    write_recommendations,
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


def begin(output_uri: str, model_version: str, config_table: str) -> dict[str, Any]:
    """The load's first step: the output objects to write and the standby slot they go to, marked loading (after
    the objects are found: the standby slot holds the version a rollback would restore until then)."""
    bucket, keys = output_keys(output_uri)
    slot = get_pointer(config_table).standby
    mark_slot(config_table, slot, model_version, "loading")
    return {"bucket": bucket, "keys": keys, "slot": slot}


def load_object(
    bucket: str,
    key: str,
    model_version: str,
    slot: str,
    recommendations_table: str,
    config_table: str,
    ttl_days: int,
    erased: Targets | None = None,
) -> Tally:
    """One output object's rows into ``slot``, streamed (a chunk of the object in memory at a time), without the
    lists of shoppers erased meanwhile: the step the retrain's Distributed Map runs once per object. Refused when
    the slot began serving since ``begin`` (a rollback or promotion meanwhile): a load never writes the served slot."""
    pointer = get_pointer(config_table)
    held = pointer.slots.get(slot, {})
    if pointer.slot == slot or held.get("version") != model_version:
        raise PointerMoved(f"slot {slot} no longer awaits version {model_version} (it holds {held or 'nothing'})")
    tally = Tally(objects=1)
    left_out = [0]
    tally.rows = write_recommendations(
        recommendations_table,
        tally.count(without_erased(object_rows(bucket, key, model_version), erased, left_out)),
        slot,
        ttl_days,
    )
    tally.erased = left_out[0]
    return tally


def finish(config_table: str, slot: str, model_version: str, tallies: Iterable[Tally]) -> LoadResult:
    """The load's last step: the slot is marked ready only when what every object wrote can be served."""
    total = sum(tallies, Tally())
    problems = total.problems()
    if problems:
        raise Unservable(f"version {model_version} loaded into slot {slot} but not made ready: {'; '.join(problems)}")
    mark_slot(config_table, slot, model_version, "ready")
    return LoadResult(model_version, total.rows, total.objects, slot, total.erased)


def load(
    output_uri: str,
    model_version: str,
    recommendations_table: str,
    config_table: str,
    ttl_days: int,
    erased: Targets | None = None,
) -> LoadResult:
    """The three steps in one process (the CLI's reload, the tests): every object into the standby slot, the slot
    recorded as holding the version (not serving it); the lists of shoppers erased meanwhile (``erased``: the
    pending erasures) are left out. The deployed retrain runs the same steps with a Distributed Map over the
    objects."""
    started = begin(output_uri, model_version, config_table)
    tallies = [
        load_object(
            started["bucket"],
            key,
            model_version,
            started["slot"],
            recommendations_table,
            config_table,
            ttl_days,
            erased,
        )
        for key in started["keys"]
    ]
    return finish(config_table, started["slot"], model_version, tallies)


def load_rows(
    rows: Iterable[RecommendationRow], model_version: str, recommendations_table: str, config_table: str, ttl_days: int
) -> tuple[str, int]:
    """Rows of one version into the standby slot, the slot marked loading while they are written and ready only
    when what was written can be served: (slot, rows)."""
    slot = get_pointer(config_table).standby
    mark_slot(config_table, slot, model_version, "loading")
    tally = Tally()
    tally.rows = write_recommendations(recommendations_table, tally.count(rows), slot, ttl_days)
    return slot, finish(config_table, slot, model_version, [tally]).rows
