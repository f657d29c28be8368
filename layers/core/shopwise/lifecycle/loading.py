"""Load: batch-transform output (JSON Lines in S3) into the recommendations table's standby slot.

The serving slot is never written: shoppers keep getting the active version while a load runs, and the version it
replaces stays whole in its slot until the next load, for an instant rollback. Promotion (``activate``) is a
separate step, after the load, so a failed load never serves half a version.

The load is also the pipeline's last sanity check, on what will actually be served: a version whose output has no
global bestseller list (strangers would get nothing) or more than ``MAX_EMPTY_SHARE`` of shoppers with an empty list
is left in its slot marked ``loading``, never ``ready``, so it cannot be promoted; the step fails with the reason."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from shopwise.dal.objects import list_keys, parse_s3_uri, read_json_lines
from shopwise.dal.recommendations import RecommendationRow, get_pointer, mark_slot, write_recommendations
from shopwise.keys import POPULAR_KEY, USER_PREFIX
from shopwise.picks import StoredPick
from shopwise.privacy.tombstones import Targets

MAX_EMPTY_SHARE = 0.05  # of the shoppers' lists


class Unservable(ValueError):
    """The output loaded, but serving it would answer shoppers with nothing."""


@dataclass
class _Tally:
    users: int = 0
    empty: int = 0
    popular: bool = False

    def count(self, rows: Iterable[RecommendationRow]) -> Iterator[RecommendationRow]:
        for row in rows:
            if row.key.startswith(USER_PREFIX):
                self.users += 1
                self.empty += not row.items
            elif row.key == POPULAR_KEY:
                self.popular = bool(row.items)
            yield row

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


def rows_from(output_uri: str, model_version: str) -> Iterator[RecommendationRow]:
    bucket, prefix = parse_s3_uri(output_uri)
    keys = [k for k in list_keys(bucket, prefix) if k.endswith(".out")]
    if not keys:
        raise FileNotFoundError(f"no batch-transform output (*.out) under {output_uri}")
    for key in keys:
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


def load(
    output_uri: str,
    model_version: str,
    recommendations_table: str,
    config_table: str,
    ttl_days: int,
    erased: Targets | None = None,
) -> LoadResult:
    """Write every row into the standby slot and record the slot as holding the version (not serving it); the
    lists of shoppers erased meanwhile (``erased``: the pending erasures) are left out."""
    bucket, prefix = parse_s3_uri(output_uri)
    objects = len([k for k in list_keys(bucket, prefix) if k.endswith(".out")])
    if not objects:  # before touching the standby slot: it holds the version a rollback would restore
        raise FileNotFoundError(f"no batch-transform output (*.out) under {output_uri}")
    left_out = [0]
    slot, written = load_rows(
        without_erased(rows_from(output_uri, model_version), erased, left_out),
        model_version,
        recommendations_table,
        config_table,
        ttl_days,
    )
    return LoadResult(model_version=model_version, rows=written, objects=objects, slot=slot, erased=left_out[0])


def load_rows(
    rows: Iterable[RecommendationRow], model_version: str, recommendations_table: str, config_table: str, ttl_days: int
) -> tuple[str, int]:
    """Rows of one version into the standby slot, the slot marked loading while they are written and ready only
    when what was written can be served: (slot, rows)."""
    slot = get_pointer(config_table).standby
    mark_slot(config_table, slot, model_version, "loading")
    tally = _Tally()
    written = write_recommendations(recommendations_table, tally.count(rows), slot, ttl_days)
    problems = tally.problems()
    if problems:
        raise Unservable(f"version {model_version} loaded into slot {slot} but not made ready: {'; '.join(problems)}")
    mark_slot(config_table, slot, model_version, "ready")
    return slot, written
