"""The parts of an erasure that need no stack: how a record is recognised as an erased shopper's, what the stream
updater drops, how the purge rewrites text and model folders, and which keys find a shopper."""

from __future__ import annotations

import base64
import gzip
import io
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from shopwise import config
from shopwise.archive import encode_parquet, read_records
from shopwise.dal.feature_store import Doc
from shopwise.events import parse_event
from shopwise.ingestion.update_features import Delivery, update_features
from shopwise.keys import tombstone_key
from shopwise.privacy.erasure import aliases_of
from shopwise.privacy.pseudonyms import Pseudonymiser, key_versions
from shopwise.privacy.purge import scrub_lines
from shopwise.privacy.tombstones import Targets, blind, targets_of
from shopwise_jobs.purge import Tally, scrub, scrub_model_dir
from tests.fakes import MemoryLedger, MemoryStore

T0 = datetime(2026, 11, 1, tzinfo=UTC)
CUSTOMER = "c" * 32  # a pseudonym
ERASED_AT = (T0 + timedelta(hours=1)).timestamp()


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def targets() -> Targets:
    return targets_of([{"erased_at": ERASED_AT, "targets": [blind(f"c:{CUSTOMER}"), blind("a:visitor-1")]}])


def event(n: int, kind: str, minutes: float, **fields: Any) -> Delivery:
    raw = {"event_id": f"e{n}", "event_type": kind, "occurred_at": at(minutes), "pseudonymised": True, **fields}
    return Delivery(parse_event(raw))


def test_an_event_is_the_erased_shoppers_only_if_it_came_before_the_erasure() -> None:
    erased = targets()
    assert erased.event({"customer_id": CUSTOMER, "occurred_at": at(59)})
    assert not erased.event({"customer_id": CUSTOMER, "occurred_at": at(61)})  # a new shopper's, after it
    assert erased.event({"anonymous_id": "visitor-1", "customer_id": "someone", "occurred_at": at(0)})
    assert not erased.event({"customer_id": "d" * 32, "occurred_at": at(0)})
    assert erased.event({"customer_id": CUSTOMER, "occurred_at": "not a time"})  # unreadable: assume the worst


def test_free_text_keys_and_failure_records_are_recognised() -> None:
    erased = targets()
    assert erased.text(f"entity update failed: profile#c:{CUSTOMER} ConditionalCheckFailed")
    assert erased.line(json.dumps({"key": f"user#c:{CUSTOMER}", "items": []}))  # a transform output row
    assert erased.line(f"e:{'e' * 32},c:{CUSTOMER},abandoned-cart")  # a CSV export row
    failure = {"rawData": base64.b64encode(json.dumps({"customer_id": CUSTOMER, "occurred_at": at(0)}).encode())}
    assert erased.line(json.dumps({**failure, "rawData": failure["rawData"].decode()}))  # Firehose's error record
    assert not erased.line(json.dumps({"key": "user#c:" + "f" * 32}))
    assert not Targets({}).text(f"c:{CUSTOMER}")


def test_the_updater_drops_what_an_erased_alias_sent_before_its_erasure() -> None:
    store = MemoryStore()
    store.write(Doc(tombstone_key(blind("a:visitor-1")), {"erased_at": ERASED_AT}))
    before = [
        event(1, "consent", 10, anonymous_id="visitor-1", granted=["personalisation"]),
        event(2, "product_view", 11, anonymous_id="visitor-1", item_id="i1", session_id="s1"),
        # a login from before the erasure would link the erased cookie to a customer again
        event(3, "identify", 12, anonymous_id="visitor-1", customer_id="k" * 32),
    ]
    ledger = MemoryLedger()
    outcome = update_features(before, store, ledger, lambda items: {})
    assert outcome.erased == 3 and outcome.applied == 0
    assert set(outcome.by_event.values()) == {"erased"}
    assert not [k for k in store.docs if not k.startswith("erased#")]  # nothing written: no profile, alias, item

    # after the erasure the cookie is a stranger: a view without fresh consent feeds the item, never a profile
    after = [event(4, "product_view", 90, anonymous_id="visitor-1", item_id="i1", session_id="s2")]
    outcome = update_features(after, store, ledger, lambda items: {})
    assert outcome.erased == 0 and outcome.applied == 1
    assert "item#i1" in store.docs and "profile#a:visitor-1" not in store.docs


def test_scrub_lines_keeps_everyone_else_and_the_compression() -> None:
    lines = [
        {"event_id": "1", "customer_id": CUSTOMER, "occurred_at": at(0)},
        {"event_id": "2", "customer_id": "d" * 32, "occurred_at": at(0)},
        {"event_id": "3", "customer_id": CUSTOMER, "occurred_at": at(120)},  # after the erasure: stays
    ]
    body = gzip.compress(("\n".join(json.dumps(x) for x in lines) + "\n").encode())
    new, removed = scrub_lines(body, targets())
    assert removed == 1 and new is not None
    assert [json.loads(x)["event_id"] for x in gzip.decompress(new).splitlines()] == ["2", "3"]
    assert scrub_lines(b'{"customer_id": "x"}\n', targets()) == (None, 0)


def test_an_archive_parquet_object_loses_the_shoppers_events_from_before_the_erasure_only() -> None:
    records: list[dict[str, Any]] = [
        {"event_id": "1", "event_type": "product_view", "item_id": "i", "customer_id": CUSTOMER, "occurred_at": at(0)},
        {"event_id": "2", "event_type": "product_view", "item_id": "i", "customer_id": "d" * 32, "occurred_at": at(0)},
        {
            "event_id": "3",
            "event_type": "product_view",
            "item_id": "i",
            "customer_id": CUSTOMER,
            "occurred_at": at(120),
        },
        {
            "event_id": "4",
            "event_type": "rekey",
            "anonymous_id": "v9",
            "previous": [f"c:{CUSTOMER}"],
            "occurred_at": at(0),
        },
    ]
    tally = Tally()
    new = scrub(
        f"{config.ARCHIVE_EVENTS_PREFIX}dt=2026-01-01/hour=00/x.parquet", encode_parquet(records), targets(), tally
    )
    assert new is not None and new[:4] == b"PAR1"
    kept = [r for r in read_records(".parquet", io.BytesIO(new)) if r is not None]
    assert [r["event_id"] for r in kept] == ["2", "3"]  # the rekey naming the shopper's alias went too
    assert kept[1] == records[2] and tally.rows_removed == 2
    assert scrub("events/dt=2026-01-01/hour=00/y.parquet", new, targets(), Tally()) is None  # nothing more


def test_a_kept_parse_of_an_archive_day_loses_the_shoppers_rows_by_the_archives_rule() -> None:
    """The data set build's kept parse (``datasets/_days/``): every row of the shopper's events from before the
    erasure goes — an item fold's record that names no user column too — by the aliases and time each row keeps;
    what the alias sent afterwards stays, as it stays in the archive; the schema is the one Spark reads back."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from shopwise_jobs.spark_dataset import PARSED, _arrow

    rows = [
        {
            "kind": "view",
            "user_id": f"c:{CUSTOMER}",
            "item_id": "i",
            "aliases": [f"c:{CUSTOMER}"],
            "at": T0.timestamp(),
        },
        {
            "kind": "item_event",
            "user_id": "",
            "item_id": "i",
            "record": f'{{"customer_id":"{CUSTOMER}"}}',
            "aliases": [f"c:{CUSTOMER}", "a:v7"],
            "at": T0.timestamp(),
        },
        {
            "kind": "view",
            "user_id": f"c:{CUSTOMER}",
            "item_id": "i",
            "aliases": [f"c:{CUSTOMER}"],
            "at": T0.timestamp() + 7200,
        },
        {"kind": "view", "user_id": "c:" + "d" * 32, "item_id": "i", "aliases": ["c:" + "d" * 32], "at": 0.0},
        {"kind": "skipped", "user_id": "", "aliases": None, "at": None},
    ]
    schema = _arrow(PARSED).remove(_arrow(PARSED).get_field_index("dt"))  # the day is the partition's folder
    out = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), out)
    tally = Tally()
    new = scrub(f"{config.PARSED_DAYS_PREFIX}dt=2026-11-01/part-00000.snappy.parquet", out.getvalue(), targets(), tally)
    assert new is not None and tally.rows_removed == 2
    table = pq.read_table(io.BytesIO(new))
    assert table.schema == schema
    assert [(r["user_id"], r["at"]) for r in table.to_pylist()] == [
        (f"c:{CUSTOMER}", T0.timestamp() + 7200),  # after the erasure: a new shopper's, as in the archive
        ("c:" + "d" * 32, 0.0),
        ("", None),
    ]
    assert scrub(f"{config.PARSED_DAYS_PREFIX}dt=2026-11-01/part-1.parquet", new, targets(), Tally()) is None
    # why the kept parses have their own rule: any other table's would take the later row (by its user column) and
    # leave the item fold's record, which names the shopper only inside its JSON and its aliases
    generic = scrub(f"{config.DATASETS_PREFIX}run-1/x.parquet", out.getvalue(), targets(), Tally())
    assert generic is not None
    assert [r["kind"] for r in pq.read_table(io.BytesIO(generic)).to_pylist()] == ["item_event", "view", "skipped"]


@pytest.mark.parametrize("layout", ["csr", "npz"])  # today's memory-mapped folder, and directories of before
def test_a_model_folder_loses_the_shoppers_rows_and_keeps_the_others_aligned(tmp_path: Path, layout: str) -> None:
    from shopwise_jobs.artifacts import load_matrix, save_csr

    users = ["c:" + "a" * 32, f"c:{CUSTOMER}", "a:visitor-2"]
    (tmp_path / "users.json").write_text(json.dumps(users))
    history = sparse.csr_matrix(np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]]))
    if layout == "csr":
        save_csr(tmp_path / "history.csr", history)
    else:
        sparse.save_npz(tmp_path / "history.npz", history)
    (tmp_path / "features").mkdir()
    pd.DataFrame({"profile_id": users, "orders": [1, 2, 3]}).to_parquet(tmp_path / "features/profiles.parquet")
    tally = Tally()

    assert scrub_model_dir(tmp_path, targets(), tally)

    assert json.loads((tmp_path / "users.json").read_text()) == [users[0], users[2]]
    kept = load_matrix(tmp_path / "history").toarray()
    assert kept.tolist() == [[1.0, 0.0], [3.0, 0.0]]  # row i is still user i's
    assert pd.read_parquet(tmp_path / "features/profiles.parquet")["orders"].tolist() == [1, 3]
    assert tally.rows_removed == 2
    assert not scrub_model_dir(tmp_path, targets(), Tally())  # nothing more to remove


def test_a_shopper_is_found_under_every_pseudonymisation_key_still_held() -> None:
    old, new = base64.b64encode(b"o" * 32).decode(), base64.b64encode(b"n" * 32).decode()
    current, keys = key_versions(json.dumps({"current": "k2", "keys": {"k1": old, "k2": new}}))
    assert current == "k2" and set(keys) == {"k1", "k2"}
    keyed = [Pseudonymiser(keys["k2"]), Pseudonymiser(keys["k1"])]
    found = aliases_of("email", " Ann@Example.com ", keyed)
    assert found == [f"e:{keyed[0].email('ann@example.com')}", f"e:{keyed[1].email('ann@example.com')}"]
    assert aliases_of("anonymous", "visitor-1", keyed) == ["a:visitor-1"]  # cookies are never keyed
    assert key_versions(old) == ("k1", {"k1": b"o" * 32})  # a stack from before versioned keys
    with pytest.raises(ValueError, match="unknown id type"):
        aliases_of("phone", "123", keyed)
    with pytest.raises(ValueError, match="not among its keys"):
        key_versions(json.dumps({"current": "k3", "keys": {"k1": old}}))


def test_the_erasure_bound_follows_the_schedule_and_the_retentions() -> None:
    env = config.environment("prod")
    assert env.erasure_bound_hours() == 48.0  # the replaced versions' expiry (a day, plus S3's daily sweep)
    slow = replace(env, purge_schedule="rate(1 day)")
    assert slow.erasure_bound_hours() == config.PURGE_MIN_AGE_HOURS + 24 + config.PURGE_RUN_HOURS
    assert replace(env, backup_days=7).erasure_bound_hours() == 7 * 24


# ------------------------------------------------------------------------------------------------ key rotation
def test_a_rotation_keeps_a_customers_profile_and_an_erasure_finds_both_pseudonyms() -> None:
    from shopwise.access.callers import Caller
    from shopwise.ingestion.collect import collect
    from shopwise.privacy.pseudonyms import Pseudonymiser, key_versions, rotated

    class Publisher:
        def __init__(self) -> None:
            self.published: list[tuple[str, dict[str, Any]]] = []

        def publish(self, records: list[tuple[str, dict[str, Any]]]) -> None:
            self.published.extend(records)

    server = Caller("server", principal="arn:aws:iam::123456789012:role/store-backend")
    old_secret = base64.b64encode(b"o" * 32).decode()
    secret, version = rotated(old_secret)
    current, keys = key_versions(secret)
    assert (current, version, sorted(keys)) == ("k2", "k2", ["k1", "k2"])
    old = Pseudonymiser(keys["k1"])
    new = Pseudonymiser(keys["k2"], (old,))
    now = T0 + timedelta(days=1)

    def send(key: Pseudonymiser, *raws: dict[str, Any]) -> list[dict[str, Any]]:
        publisher = Publisher()
        result = collect(list(raws), now, publisher, key, server)
        assert result.rejected == 0, result.results
        return [record for _key, record in publisher.published]

    def view(n: int, item: str, **ids: Any) -> dict[str, Any]:
        when = (now - timedelta(minutes=60 - n)).isoformat()
        return {"event_id": f"v{n}", "event_type": "product_view", "occurred_at": when, "item_id": item, **ids}

    consent = {"event_type": "consent", "granted": ["personalisation"], "customer_id": "ann"}
    before = send(
        old,
        {**consent, "event_id": "c0", "occurred_at": (now - timedelta(minutes=59)).isoformat()},
        view(2, "i1", customer_id="ann"),
    )
    assert not [r for r in before if r["event_type"] == "rekey"]  # no older key: nothing to move
    after = send(
        new, view(10, "i2", customer_id="ann"), view(11, "i3", customer_id="ann"), view(12, "i4", customer_id="bob")
    )
    rekeys = [r for r in after if r["event_type"] == "rekey"]
    # once per customer per batch, ahead of the customer's events, naming the older alias only
    assert [r["previous"] for r in rekeys] == [[f"c:{old.customer('ann')}"], [f"c:{old.customer('bob')}"]]
    assert after[0]["event_type"] == "rekey" and after[0]["customer_id"] == new.customer("ann")
    forged = {
        "event_id": "forged",
        "event_type": "rekey",
        "occurred_at": now.isoformat(),
        "customer_id": "eve",
        "previous": [f"c:{old.customer('ann')}"],
    }  # eve taking over ann's history
    refused = collect([forged], now, Publisher(), new, server).results[0]
    assert (refused["status"], refused["field"]) == ("rejected", "event_type")  # only the collector writes one

    store, ledger = MemoryStore(), MemoryLedger()
    for batch in (before, after):
        update_features([Delivery(parse_event(r)) for r in batch], store, ledger, lambda items: {})
    ann_new, ann_old = f"profile#c:{new.customer('ann')}", f"profile#c:{old.customer('ann')}"
    profile = store.docs[ann_new].data["features"]
    assert {i for i, _at in profile["recent"]["view"]} == {"i1", "i2", "i3"}  # the history came along
    assert profile["consent"]  # ... and the consent with it: the shopper stays personalised
    assert store.docs[ann_old].merged_into == f"c:{new.customer('ann')}"
    assert f"c:{old.customer('bob')}" not in str(store.docs[ann_new].data)  # two customers are still two

    # an erasure by the store's id finds the shopper under both keys
    assert aliases_of("customer", "ann", [new, *new.previous]) == [
        f"c:{new.customer('ann')}",
        f"c:{old.customer('ann')}",
    ]
