"""Training data set: events (the archive or a bulk-import file) -> weighted user-item interactions, split in time.

Interactions come from ``shopwise.events.interaction_items``, the same rule the feature updater applies, so
training sees exactly the signals serving sees. One row per (event, item, kind): event_id, user_id (the profile id,
"c:<pseudonym>" or "a:<visitor>"), item_id, kind (view | cart | purchase), ts (epoch seconds), price, session_id,
market.

Protocols (``Split``): ``temporal_split`` trains before a cutoff time and tests on the window after it;
``leave_last_out`` holds out each user's last n distinct items. Both apply again inside the training part to give
the validation split on which models are selected and tuned; the test part is only reported.
"""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError
from scipy import sparse

from shopwise import archive
from shopwise.events import EVENT_ADAPTER, AddToCart, Consent, Event, ProductView, Purchase, interaction_items, trusted
from shopwise.features.definitions import KIND_WEIGHTS, PERSONALISATION, consented_at
from shopwise.ingestion.imports import BadRow, read_events, read_items
from shopwise.keys import referrer_source
from shopwise.privacy.tombstones import Targets
from shopwise_jobs.feature_snapshot import FeatureSnapshot
from shopwise_jobs.ids import codes_in, unique_ids, weights_of
from shopwise_jobs.models import FIT_THREADS, Sessions, chunk_bounds, summed_spans

INTERACTION_COLUMNS = ["event_id", "user_id", "item_id", "kind", "ts", "price", "session_id", "market", "referrer"]
SESSION_GAP_SECONDS = 30 * 60


def _json_lines(path: Path) -> Iterator[Any]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    yield None  # counted as skipped by the reader


def archive_files(directory: Path) -> list[Path]:
    """The archive objects under a directory (archive layout events/dt=YYYY-MM-DD/...): Parquet, and gzip JSON
    Lines from before the conversion (``shopwise.archive.SUFFIXES``)."""
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name.endswith(archive.SUFFIXES))


def _records(path: Path) -> Iterator[Any]:
    """One archive file's records (None for a line that is not JSON, counted as skipped by the reader)."""
    with path.open("rb") as handle:
        yield from archive.read_records(path.name, handle)


@dataclass(frozen=True)
class EventData:
    interactions: pd.DataFrame
    records: int
    skipped: int  # records that are not valid (or not trusted) events; import: bad rows
    erased: int = 0  # events of erased shoppers from before their erasure (pending the purge): never read


def consent_entries(event: Consent) -> list[list[Any]]:
    """A consent event's entries of its profile's consent log: [time, event id, scope, granted]."""
    at = event.occurred_at.timestamp()
    return [[at, event.event_id, s, True] for s in event.granted] + [
        [at, event.event_id, s, False] for s in event.revoked
    ]


def event_rows(event: Event) -> Iterator[tuple[Any, ...]]:
    """An event's interaction rows (``INTERACTION_COLUMNS``): one per (item, kind) it contributes."""
    at = event.occurred_at.timestamp()
    prices: dict[str, float] = {}
    if isinstance(event, Purchase):
        prices = {line.item_id: line.unit_price for line in event.items if line.unit_price}
    elif isinstance(event, ProductView) and event.price:
        prices = {event.item_id: event.price}
    elif isinstance(event, AddToCart) and event.unit_price:
        prices = {event.item_id: event.unit_price}
    for item, kind in interaction_items(event):
        yield (
            event.event_id,
            event.profile_id,
            item,
            kind,
            at,
            prices.get(item, np.nan),
            event.session_id or "",
            event.market or "",
            referrer_source(event.referrer or ""),
        )


def interactions_from_events(events: Iterable[Event]) -> pd.DataFrame:
    """One row per (event, item, kind); ``consented``: whether the shopper had granted personalisation when the event
    happened and still has at the newest event read (the feature store's own rule, ``consented_at``)."""
    rows: list[tuple[Any, ...]] = []
    consents: dict[str, list[list[Any]]] = defaultdict(list)  # profile -> consent log entries
    for event in events:
        if isinstance(event, Consent):
            consents[event.profile_id] += consent_entries(event)
        else:
            rows.extend(event_rows(event))
    frame = pd.DataFrame(rows, columns=INTERACTION_COLUMNS)
    frame["ts"] = frame["ts"].astype(np.float64)
    frame["price"] = frame["price"].astype(np.float64)
    # the archive is at-least-once and imports may overlap it: the same event may arrive twice. An event is its
    # source and its id (user_id is still the sending alias here): two shoppers' "e1" are two events
    frame = frame.drop_duplicates(subset=["user_id", "event_id", "item_id", "kind"]).reset_index(drop=True)
    frame["consented"] = _consented(frame, consents)
    return frame


def _consented(frame: pd.DataFrame, consents: dict[str, list[list[Any]]]) -> np.ndarray:
    """Per row: personalisation granted at the row's time and at the newest time read (a shopper who revoked it is
    not modelled at all). ``consented_at`` per row, vectorised: the log sorted as it sorts it, the newest entry at or
    before each time decides."""
    out = np.zeros(len(frame), dtype=bool)
    if frame.empty or not consents:
        return out
    end = float(frame["ts"].max())
    times = frame["ts"].to_numpy()
    for user, positions in frame.groupby("user_id").indices.items():
        out[positions] = consent_mask(times[positions], consents.get(str(user), []), end)
    return out


def consent_mask(times: np.ndarray, log: list[list[Any]], end: float) -> np.ndarray:
    """One profile's rows (their times): personalisation granted at each row's time and still at ``end``, the
    newest time read (``consented_at``'s rule; ``log``: [time, event id, scope, granted] entries). The Python build
    and the Spark build (``shopwise_jobs.spark_dataset``) both call it, per profile."""
    log = [e for e in log if e[2] == PERSONALISATION]
    if not log or not consented_at(log, max(end, max(float(e[0]) for e in log))):
        return np.zeros(len(times), dtype=bool)
    log.sort(key=lambda e: (e[0], e[1]))
    at = np.array([float(e[0]) for e in log])
    granted = np.array([bool(e[3]) for e in log])
    index = np.searchsorted(at, times, side="right") - 1
    return np.asarray(np.where(index >= 0, granted[np.maximum(index, 0)], False), dtype=bool)


def _archive_events(files: list[Path], counts: list[int], erased: Targets | None = None) -> Iterator[Event]:
    """The valid events the jobs may count (``shopwise.events.trusted``: impressions the serve API recorded,
    purchases the store vouched for); the rest are counted as skipped. ``erased``: the pending erasures, whose
    shoppers' events are left out (counts[2]) until the purge removes them from the archive."""
    for path in files:
        for raw in _records(path):
            counts[0] += 1
            if erased and isinstance(raw, dict) and erased.event(raw):
                counts[2] += 1
                continue
            try:
                event = EVENT_ADAPTER.validate_python(raw)
            except ValidationError:
                counts[1] += 1
                continue
            if trusted(event):
                yield event
            else:
                counts[1] += 1


def archive_events(directory: Path) -> Iterator[Event]:
    """Every valid event of the archive files under a directory (archive layout), file by file."""
    return _archive_events(archive_files(directory), [0, 0, 0])


def read_event_files(
    directory: Path, snapshot: FeatureSnapshot | None = None, erased: Targets | None = None
) -> EventData:
    """Every archive file under a directory (archive layout events/dt=YYYY-MM-DD/..., ``archive_files``) as
    interactions; ``snapshot`` folds the same events into the feature store's features on the way; ``erased``
    leaves out what erased shoppers sent."""
    files = archive_files(directory)
    counts = [0, 0, 0]
    events = _archive_events(files, counts, erased)
    frame = interactions_from_events(snapshot.folding(events) if snapshot else events)
    return EventData(interactions=frame, records=counts[0], skipped=counts[1], erased=counts[2])


def read_event_import(path: Path, snapshot: FeatureSnapshot | None = None) -> EventData:
    """A bulk-import events file (CSV or JSON Lines, ``shopwise.ingestion.imports``) as interactions; bad rows are skipped."""
    counts = [0, 0]

    def good() -> Iterator[Event]:
        for _line, row in read_events(path):
            counts[0] += 1
            if isinstance(row, BadRow):
                counts[1] += 1
            else:
                yield row

    frame = interactions_from_events(snapshot.folding(good()) if snapshot else good())
    return EventData(interactions=frame, records=counts[0], skipped=counts[1])


def read_events_any(path: Path, snapshot: FeatureSnapshot | None = None, erased: Targets | None = None) -> EventData:
    """A directory is an archive (or a training channel); a file is a bulk-import file (a store's history from
    before shopwise: nobody in it has been erased through shopwise yet)."""
    return read_event_files(path, snapshot, erased) if path.is_dir() else read_event_import(path, snapshot)


def read_catalog(path: Path) -> pd.DataFrame:
    """Catalog rows (item_id, title, category, price, brand, ...): a folder of JSON Lines or a bulk-import file."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz")))
        rows = [row for file in files for row in _json_lines(file) if isinstance(row, dict)]
    else:
        rows = [item.model_dump(mode="json") for _line, item in read_items(path) if not isinstance(item, BadRow)]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=["item_id", "title", "category", "price"])
    frame["item_id"] = frame["item_id"].astype(str)
    if "price" in frame:
        frame["price"] = pd.to_numeric(frame["price"], errors="coerce")
    return frame.drop_duplicates(subset=["item_id"], keep="last").reset_index(drop=True)


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    test: pd.DataFrame
    protocol: str
    cutoff: float | None = None  # temporal: the test window starts here

    def describe(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "cutoff": self.cutoff,
            "train_interactions": len(self.train),
            "test_interactions": len(self.test),
            "test_users": int(self.test["user_id"].nunique()),
        }


def temporal_split(interactions: pd.DataFrame, test_fraction: float = 0.1) -> Split:
    """Train on everything before the cutoff, test on everything after it (the last ``test_fraction`` of time-ordered
    interactions). Test users and items unseen before the cutoff stay in the test: they are the cold slices."""
    if interactions.empty:
        raise ValueError("no interactions to split")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    cutoff = float(interactions["ts"].quantile(1.0 - test_fraction))
    train = interactions[interactions["ts"] < cutoff]
    test = interactions[interactions["ts"] >= cutoff]
    if train.empty:
        raise ValueError("temporal split left no training interactions: the events all share one timestamp")
    return Split(train=train, test=test, protocol="temporal", cutoff=cutoff)


def leave_last_out(interactions: pd.DataFrame, n: int = 1) -> Split:
    """Per user, the last ``n`` distinct items (by their first interaction time) are the test; users with no more
    than ``n`` distinct items stay wholly in training."""
    if interactions.empty:
        raise ValueError("no interactions to split")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    first = (
        interactions.groupby(["user_id", "item_id"], sort=False)["ts"]
        .min()
        .reset_index()
        .sort_values(["user_id", "ts"])
    )
    from_end = first.groupby("user_id").cumcount(ascending=False)
    size = first.groupby("user_id")["item_id"].transform("size")
    held = first[(from_end < n) & (size > n)][["user_id", "item_id"]]
    marked = interactions.merge(held.assign(_test=True), on=["user_id", "item_id"], how="left")
    is_test = marked["_test"].fillna(False).to_numpy(dtype=bool)
    return Split(train=interactions[~is_test], test=interactions[is_test], protocol=f"leave_last_{n}_out")


def split(interactions: pd.DataFrame, protocol: str, test_fraction: float = 0.1, holdout: int = 1) -> Split:
    if protocol == "temporal":
        return temporal_split(interactions, test_fraction)
    if protocol in ("leave_last_out", "loo"):
        return leave_last_out(interactions, holdout)
    raise ValueError(f"unknown protocol {protocol!r}: expected temporal or leave_last_out")


@dataclass
class Matrix:
    """A users x items matrix of interaction strength, with the id <-> index maps."""

    matrix: sparse.csr_matrix
    users: np.ndarray
    items: np.ndarray

    def user_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.users)}

    def item_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.items)}


def interaction_matrix(
    interactions: pd.DataFrame,
    weights: dict[str, float] | None = None,
    half_life_days: float = 0.0,
    now: float | None = None,
    users: np.ndarray | None = None,
    items: np.ndarray | None = None,
    codes: tuple[np.ndarray, np.ndarray] | None = None,
    strengths: np.ndarray | None = None,
    ts: np.ndarray | None = None,
) -> Matrix:
    """Strength = sum over interactions of kind weight x time decay (purchase > cart > view by default), the
    decay counted back from each user's newest interaction unless ``now`` is given.

    ``users`` / ``items`` fix the index (e.g. to include cold test users or catalog items nobody touched yet);
    interactions outside them are dropped. By default they are the sorted ids present. ``codes``: each row's user
    and item index in them, when the caller has them (``TrainSet.codes``); ``strengths`` and ``ts``: each row's kind weight
    and time as floats, likewise (``TrainSet.coded``).
    """
    weights = weights or KIND_WEIGHTS
    w = weights_of(interactions["kind"], weights) if strengths is None else strengths
    user_ids = unique_ids(interactions["user_id"]) if users is None else np.asarray(users, dtype=str)
    item_ids = unique_ids(interactions["item_id"]) if items is None else np.asarray(items, dtype=str)
    u, i = (
        codes
        if codes is not None
        else (codes_in(interactions["user_id"], user_ids), codes_in(interactions["item_id"], item_ids))
    )
    decay = half_life_days > 0 and len(interactions) > 0
    newest = times = np.zeros(0)
    if decay:
        # decay from the user's own newest interaction (or from ``now``): what a shopper did last weighs most
        times = interactions["ts"].to_numpy(dtype=np.float64) if ts is None else ts
        if now is None:
            newest = np.full(len(user_ids) + 1, -np.inf)  # the last slot: rows of users outside the index (dropped)
            np.maximum.at(newest, u, times)

    def triples(a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows [a, b)'s kept triples, on the thread that sums them: made over every event before the sum, the decay
        and the mask held a decayed matrix to 44% in parallel on 2 cores (79% now: bench_training.py --parts served,
        300,000 shoppers)."""
        uu, ii, ww = u[a:b], i[a:b], w[a:b]
        if decay:
            ref = newest[uu] if now is None else now
            ww = ww * np.power(0.5, (ref - times[a:b]) / (half_life_days * 86400.0))
        keep = (uu >= 0) & (ii >= 0) & (ww > 0)
        return uu[keep], ii[keep], ww[keep].astype(np.float32)

    matrix = summed_spans(len(u), triples, (len(user_ids), len(item_ids)), np.float32)
    return Matrix(matrix=matrix, users=user_ids, items=item_ids)


def sessions(
    interactions: pd.DataFrame,
    items: np.ndarray,
    gap_seconds: float = SESSION_GAP_SECONDS,
    codes: tuple[np.ndarray, np.ndarray] | None = None,
    chunk_rows: int | None = None,
) -> Sessions:
    """Time-ordered item-index sequences per session, flat: the event's session_id, else a new session after a gap
    of inactivity per user. Consecutive repeats of one item collapse; sessions of one item are left out. Sessions
    come in the order they start in (by user, then time). Column operations only: a Python loop per session was
    the next-item model's fit's largest part at 100,000 shoppers. ``codes``: each row's user index (in sorted
    users) and item index in ``items``, when the caller has them (``TrainSet.codes``). A session is one user's, so
    the work runs in chunks of whole users of about ``chunk_rows`` rows (``models.FIT_CHUNK_ROWS``), a chunk a
    thread: beyond the output and one sort of the rows by user, the memory is the chunks in flight."""
    if codes is None:
        codes = (
            codes_in(interactions["user_id"], unique_ids(interactions["user_id"])),
            codes_in(interactions["item_id"], items),
        )
    user_code, code = codes  # users coded in sorted order: their order is the ids'
    rows = np.flatnonzero(code >= 0)
    rows = rows[np.argsort(user_code[rows], kind="stable")]  # by user; a user's rows in their order
    users = user_code[rows]
    ts = interactions["ts"].to_numpy(dtype=np.float64)
    named = interactions.get("session_id")
    # chunk boundaries moved back to the start of the user they fall in: no user is split
    cuts = sorted({int(np.searchsorted(users, users[a], "left")) for a, _ in chunk_bounds(len(rows), chunk_rows)})
    spans = [(a, b) for a, b in zip(cuts, [*cuts[1:], len(rows)], strict=True) if b > a]

    def chunk(span: tuple[int, int]) -> Sessions:
        at = rows[span[0] : span[1]]
        session = np.full(len(at), -1, dtype=np.int64)  # the row's named session (-1: none)
        if named is not None:
            session, names = pd.factorize(named.iloc[at])  # a missing id is -1
            if (blank := np.flatnonzero(np.asarray(names) == "")).size:
                session = np.where(session == blank[0], -1, session)
        return _sessions_of(users[span[0] : span[1]], code[at], ts[at], session, gap_seconds)

    with ThreadPoolExecutor(FIT_THREADS) as pool:
        parts = list(pool.map(chunk, spans))
    if not parts:
        return Sessions(codes=np.zeros(0, dtype=np.int64), starts=np.zeros(1, dtype=np.int64))
    offsets = np.cumsum([0, *(len(part.codes) for part in parts)])
    return Sessions(
        codes=np.concatenate([part.codes for part in parts]),
        starts=np.concatenate([[0], *(part.starts[1:] + offset for part, offset in zip(parts, offsets, strict=False))]),
    )


def _sessions_of(
    user: np.ndarray, code: np.ndarray, ts: np.ndarray, session: np.ndarray, gap_seconds: float
) -> Sessions:
    """``sessions`` of whole users' rows (``session``: each row's named session, -1 for none)."""
    order = np.lexsort((ts, user))  # by user, then time; ties keep their order
    user, code, ts, session = user[order], code[order], ts[order], session[order]
    new_user = np.ones(len(order), dtype=bool)
    new_user[1:] = user[1:] != user[:-1]
    new_gap = new_user.copy()
    new_gap[1:] |= np.diff(ts) > gap_seconds
    key = np.cumsum(new_gap)  # the inactivity sessions: numbered on, never shared between users
    key = np.where(session >= 0, -1 - session, key)  # a named session: its id, within its user
    frame = pd.DataFrame({"user": user, "_key": key})
    group = frame.groupby(["user", "_key"], sort=False).ngroup().to_numpy()
    starting = np.argsort(group, kind="stable")  # sessions in the order they start, each in time order
    codes_, group = code[starting], group[starting]
    first = np.ones(len(codes_), dtype=bool)
    first[1:] = (group[1:] != group[:-1]) | (codes_[1:] != codes_[:-1])  # a repeat of the item before collapses
    codes_, group = codes_[first], group[first]
    lengths = np.bincount(group, minlength=int(group.max(initial=-1)) + 1)
    kept = lengths[group] > 1
    return Sessions(codes=codes_[kept], starts=np.concatenate([[0], np.cumsum(lengths[lengths > 1])]))
