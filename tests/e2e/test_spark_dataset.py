"""The training data set on Spark (PySpark in local mode, the job code that runs under spark-submit in AWS) makes
exactly the rows the Python build makes from the same archive: the same events kept and refused, the same
duplicates dropped, the same consent rule per profile; codes that index the id maps; a window of days that reads
only those days."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from shopwise import archive
from shopwise.privacy.tombstones import Targets, blind
from shopwise_jobs.dataset import read_event_files
from shopwise_jobs.spark_dataset import build, read_dataset, spark_session

pytestmark = pytest.mark.e2e

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
KEY = ["user_id", "event_id", "item_id", "kind"]
COLUMNS = [*KEY, "ts", "price", "session_id", "market", "referrer", "consented"]


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    session = spark_session("shopwise-test", cores=2)
    yield session
    session.stop()


def event(n: int, kind: str, day: int, who: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"e{n}",
        "event_type": kind,
        "occurred_at": f"2026-11-{day:02d}T10:{n % 60:02d}:00Z",
        "anonymous_id": who,
        "pseudonymised": True,
        "origin": "visitor",
        **fields,
    }


def the_archive(root: Path) -> Path:
    """Two days of events: consenting shoppers, one who revokes, one who never consents; a duplicate in another
    object, another shopper's event of the same id, a purchase a browser can't vouch for, an invalid record, and a
    shopper erased since."""
    day1 = [
        event(0, "consent", 28, "v1", granted=["personalisation"]),
        event(1, "product_view", 28, "v1", item_id="i1", price=9.5, session_id="s1", market="NZ"),
        event(2, "add_to_cart", 28, "v1", item_id="i2", quantity=2, referrer="https://www.instagram.com/x"),
        event(3, "consent", 28, "v2", granted=["personalisation"]),
        event(4, "product_view", 28, "v2", item_id="i1"),
        event(5, "product_view", 28, "v3", item_id="i3"),  # never consents: a row, not consented
        event(6, "consent", 28, "v4", granted=["personalisation"]),
        event(7, "product_view", 28, "v4", item_id="i2"),  # v4 is erased: never a row
        {"event_id": "bad", "event_type": "product_view", "occurred_at": "2026-11-28T10:00:00Z", "anonymous_id": "v1"},
    ]
    day2 = [
        event(1, "product_view", 28, "v1", item_id="i1", price=9.5, session_id="s1", market="NZ"),  # delivered again
        event(1, "product_view", 29, "v2", item_id="i3"),  # another shopper's "e1": its own event
        event(8, "purchase", 29, "v1", order_id="o1", items=[{"item_id": "i2", "quantity": 1, "unit_price": 3.0}]),
        {**event(9, "purchase", 29, "v2", order_id="o2", items=[{"item_id": "i1"}]), "origin": "server"},
        event(10, "consent", 29, "v2", revoked=["personalisation"]),  # v2 is not modelled at all
        event(11, "search", 29, "v1", query="boots", results=["i1"]),
    ]
    for day, records in (("2026-11-28", day1), ("2026-11-29", day2)):
        folder = root / "events" / f"dt={day}" / "hour=10"
        folder.mkdir(parents=True)
        for part, chunk in enumerate((records[: len(records) // 2], records[len(records) // 2 :])):
            (folder / f"part-{part}.parquet").write_bytes(archive.encode_parquet(chunk))
    return root / "events"


def sorted_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[COLUMNS].sort_values(KEY).reset_index(drop=True)


def test_spark_builds_the_python_builds_rows_with_codes_and_id_maps(spark: Any, tmp_path: Path) -> None:
    events = the_archive(tmp_path)
    erased = Targets({blind("a:v4"): NOW.timestamp()})
    report = build(spark, str(events), str(tmp_path / "out"), erased=erased)
    python = read_event_files(events, erased=erased)
    interactions, users, items = read_dataset(tmp_path / "out")

    pd.testing.assert_frame_equal(sorted_rows(interactions), sorted_rows(python.interactions), check_dtype=False)
    assert report.records == python.records == 15
    assert report.skipped == python.skipped == 2  # the invalid record; the purchase a browser can't vouch for
    assert report.erased == python.erased == 2  # v4's consent and view
    rows = sorted_rows(interactions)
    assert report.interactions == len(rows) == 6  # v1's e1 once; v2's e1 its own; a search is no interaction
    consented = dict(zip(rows["user_id"] + "/" + rows["event_id"] + "/" + rows["kind"], rows["consented"], strict=True))
    assert consented == {
        "a:v1/e1/view": True,
        "a:v1/e2/cart": True,
        "a:v2/e1/view": False,  # v2 revoked at the end: not modelled at all
        "a:v2/e4/view": False,
        "a:v2/e9/purchase": False,  # the server's purchase is trusted (a row), but v2 revoked
        "a:v3/e5/view": False,  # never granted
    }
    # codes index the id maps, which are the sorted ids
    assert list(users) == sorted(interactions["user_id"].unique()) and list(items) == sorted(
        interactions["item_id"].unique()
    )
    assert (users[interactions["user_idx"]].to_numpy() == interactions["user_id"].to_numpy()).all()
    assert (items[interactions["item_idx"]].to_numpy() == interactions["item_id"].to_numpy()).all()


def test_a_window_of_days_reads_only_those_days(spark: Any, tmp_path: Path) -> None:
    events = the_archive(tmp_path)
    report = build(spark, str(events), str(tmp_path / "out"), days=2, now=NOW)  # since 2026-11-28: both
    assert report.since == "2026-11-28" and report.records == 15
    report = build(spark, str(events), str(tmp_path / "out"), days=1, now=NOW)  # since 2026-11-29: day 2 only
    python = read_event_files(events / "dt=2026-11-29")
    interactions, _users, _items = read_dataset(tmp_path / "out")
    assert report.since == "2026-11-29" and report.records == python.records == 6
    pd.testing.assert_frame_equal(sorted_rows(interactions), sorted_rows(python.interactions), check_dtype=False)


def test_the_feature_snapshot_folds_per_profile_and_item_as_the_training_job_does(spark: Any, tmp_path: Path) -> None:
    """With the catalog's categories the build also folds every profile's and item's features on the executors
    (the feature store's own functions), and writes what ``FeatureSnapshot`` writes for the same events; the
    training job reads the built folder in place of the events."""
    from shopwise.features.definitions import Context
    from shopwise_jobs.feature_snapshot import FeatureSnapshot
    from shopwise_jobs.spark_dataset import copy_snapshot, read_built

    events = the_archive(tmp_path)
    categories = {"i1": "Shoes>Boots", "i2": "Home>Kitchen", "i3": "Shoes>Running"}
    erased = Targets({blind("a:v4"): NOW.timestamp()})
    report = build(spark, str(events), str(tmp_path / "out"), erased=erased, categories=categories)
    python = FeatureSnapshot(Context(categories=categories))
    data = read_event_files(events, python, erased)
    expected = python.write(tmp_path / "python")

    assert report.snapshot == expected and expected["profiles"] == 2  # v1, v2 (who revoked); v3 never consented
    for name in ("profiles", "items"):
        built = pd.read_parquet(tmp_path / "out" / "features" / f"{name}.parquet")
        want = pd.read_parquet(tmp_path / "python" / f"{name}.parquet")
        pd.testing.assert_frame_equal(built, want, check_dtype=False)
    v1, v2 = pd.read_parquet(tmp_path / "out" / "features" / "profiles.parquet").to_dict("records")
    assert v1["profile_id"] == "a:v1" and v1["top_category"] == "Home>Kitchen"  # the cart line weighs most
    assert v2["profile_id"] == "a:v2" and not v2["personalisation"]
    # what the training job reads from the folder: the same rows and counts as from the events
    loaded = read_built(tmp_path / "out")
    pd.testing.assert_frame_equal(sorted_rows(loaded.interactions), sorted_rows(data.interactions), check_dtype=False)
    assert (loaded.records, loaded.skipped, loaded.erased) == (data.records, data.skipped, data.erased)
    assert copy_snapshot(tmp_path / "out", tmp_path / "model" / "features") == expected


def built(spark: Any, events: Path, out: Path, erased: Targets, parsed: Path | None = None) -> Any:
    categories = {"i1": "Shoes>Boots", "i2": "Home>Kitchen", "i3": "Shoes>Running"}
    report = build(
        spark, str(events), str(out), erased=erased, categories=categories, parsed_days=str(parsed) if parsed else None
    )
    frames = {name: pd.read_parquet(out / "features" / f"{name}.parquet") for name in ("profiles", "items")}
    return report, sorted_rows(read_dataset(out)[0]), frames


def assert_same_build(cached: Any, fresh: Any) -> None:
    """A build through the kept parses equals a build that parses everything: rows, counts, snapshot."""
    (c_report, c_rows, c_frames), (f_report, f_rows, f_frames) = cached, fresh
    pd.testing.assert_frame_equal(c_rows, f_rows, check_dtype=False)
    for name in ("profiles", "items"):
        pd.testing.assert_frame_equal(c_frames[name], f_frames[name], check_dtype=False)
    counts = ("records", "interactions", "consented", "users", "items", "skipped", "erased", "snapshot")
    assert {k: getattr(c_report, k) for k in counts} == {k: getattr(f_report, k) for k in counts}


def test_each_day_is_parsed_once_and_held_to_every_later_erasure(spark: Any, tmp_path: Path) -> None:
    """The incremental build: a day whose objects are unchanged is read back, not parsed; a late delivery or a
    purge's rewrite makes its day parsed again; a shopper erased after their days were parsed is left out of the
    build as a full parse would leave them out (their events counted erased, their profile and item folds gone);
    and the purge's rule for the kept parses leaves no row of theirs there, the snapshot's item records included."""
    from shopwise_jobs.purge import scrub_archive, scrub_parsed

    events, parsed = the_archive(tmp_path), tmp_path / "days"
    v4 = Targets({blind("a:v4"): NOW.timestamp()})
    first = built(spark, events, tmp_path / "a", v4, parsed)
    assert first[0].days_parsed == ["2026-11-28", "2026-11-29"] and first[0].days_reused == 0
    assert_same_build(first, built(spark, events, tmp_path / "full", v4))

    again = built(spark, events, tmp_path / "b", v4, parsed)
    assert again[0].days_parsed == [] and again[0].days_reused == 2
    assert_same_build(again, first)

    # a late delivery to the second day: that day alone is parsed again
    late = [event(12, "add_to_cart", 29, "v2", item_id="i1"), event(13, "product_view", 29, "v5", item_id="i2")]
    (events / "dt=2026-11-29" / "hour=23").mkdir()
    (events / "dt=2026-11-29" / "hour=23" / "late.parquet").write_bytes(archive.encode_parquet(late))
    grown = built(spark, events, tmp_path / "c", v4, parsed)
    assert grown[0].days_parsed == ["2026-11-29"] and grown[0].days_reused == 1
    assert_same_build(grown, built(spark, events, tmp_path / "full2", v4))
    assert grown[0].records == first[0].records + 2

    # v1 erased after every event of theirs: no day changed, but no row, profile or item count of v1's survives
    both = Targets({**v4.erased_at, blind("a:v1"): NOW.timestamp()})
    erased = built(spark, events, tmp_path / "d", both, parsed)
    assert erased[0].days_parsed == [] and erased[0].days_reused == 2
    assert_same_build(erased, built(spark, events, tmp_path / "full3", both))
    assert "a:v1" not in set(erased[1]["user_id"]) and "a:v1" in set(grown[1]["user_id"])
    # every record of v1's counted erased, as a full parse counts them: the consent, the view (delivered twice),
    # the cart, the search, and the two it had skipped (the invalid record, the browser's purchase)
    assert erased[0].erased == grown[0].erased + 7 and erased[0].skipped == grown[0].skipped - 2 == 0
    assert "a:v1" not in set(erased[2]["profiles"]["profile_id"])

    # the purge: the archive's objects of v1 rewritten (a day's objects changed: parsed again) and the kept parses
    # scrubbed by the same rule — nothing of v1 stays in them, the item folds' records (no user id) included
    only_v1 = Targets({blind("a:v1"): NOW.timestamp()})
    parts = sorted(parsed.rglob("*.parquet"))
    removed = 0
    for part in parts:
        body, rows = scrub_parsed(part.read_bytes(), only_v1)
        if body is not None:
            part.write_bytes(body)
            (part.parent / f".{part.name}.crc").unlink(missing_ok=True)  # Spark's local checksum (S3 has none)
            removed += rows
    left = pd.concat([pd.read_parquet(p) for p in parts])
    assert removed > 0 and not left["aliases"].map(lambda a: a is not None and "a:v1" in list(a)).any()
    assert not left["record"].fillna("").str.contains('"anonymous_id":"v1"').any()
    assert left["record"].fillna("").str.contains('"anonymous_id":"v2"').any()  # others' stay
    rewritten = 0
    for part in sorted(events.rglob("*.parquet")):
        scrubbed, _n = scrub_archive(part.read_bytes(), only_v1)
        if scrubbed is not None:
            part.write_bytes(scrubbed)
            rewritten += 1
    assert rewritten == 4  # every object but the late delivery, which holds nothing of v1
    purged = built(spark, events, tmp_path / "e", both, parsed)
    assert purged[0].days_parsed == ["2026-11-28", "2026-11-29"] and purged[0].records == grown[0].records - 7
    assert_same_build(purged, built(spark, events, tmp_path / "full4", both))
