"""Erasure end to end, on a full demo: one shopper with four aliases (the demo's customer, plus a visitor cookie, an
email and a device linked by an identify event), in every store — features, lists, a campaign export, a model
folder, the event archive, impressions, the failure queue, the logs — is erased through the API and purged; then
every table, every object version (decompressed), the failure queue and the local log files hold none of the
shopper's ids or pseudonyms, and every other shopper's records are all still there."""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import tarfile
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from shopwise import archive, config
from shopwise.campaigns.rules import campaign
from shopwise.campaigns.runs import recipients_page, run_campaign
from shopwise.dal.aws import client
from shopwise.dal.objects import parse_s3_uri, read_tar_member
from shopwise.dal.recommendations import slot_table, table_status
from shopwise.dal.serving_read import Tables
from shopwise.keys import SLOTS, slot_key, user_key
from shopwise.privacy.pseudonyms import load_pseudonymiser
from shopwise_local import cli
from shopwise_local.demo import DemoOptions, run_demo
from shopwise_local.endpoint import free_port
from shopwise_local.stack import LocalStack

from .conftest import Api

pytestmark = pytest.mark.e2e

NOW = datetime.now(UTC)
# records of everybody else, counted before and after: what the scan compares
OTHERS = ("table rows", "archived events", "list rows", "campaign rows", "model users", "snapshot profiles")


def _cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(list(argv))
    return code, out.getvalue()


def _expand(name: str, body: bytes) -> Iterator[tuple[str, bytes]]:
    """An object as text a person could search: gzip undone, tar members one by one, the archive's Parquet as one
    JSON line per event (every column, as a reader gets it), any other Parquet as CSV."""
    if body[:2] == b"\x1f\x8b" and not name.endswith((".tar.gz", ".tgz")):
        body = gzip.decompress(body)
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
            for member in tar.getmembers():
                handle = tar.extractfile(member) if member.isfile() else None
                if handle is not None:
                    yield from _expand(f"{name}!{member.name}", handle.read())
    elif body[:4] == b"PAR1" and name.startswith(config.ARCHIVE_EVENTS_PREFIX):
        records = archive.read_records(archive.PARQUET, io.BytesIO(body))
        yield name, b"".join(json.dumps(r).encode() + b"\n" for r in records)
    elif body[:4] == b"PAR1":
        yield name, pd.read_parquet(io.BytesIO(body)).to_csv(index=False).encode()
    else:
        yield name, body


def _readable(value: Any) -> str:
    """A binary attribute as text the census can search: a stored list is zlib-compressed JSON (decompressed, so an
    id inside it is seen), anything else as Latin-1."""
    if isinstance(value, bytes):
        try:
            return zlib.decompress(value).decode()
        except zlib.error:
            return value.decode("latin-1")
    raise TypeError(f"{type(value).__name__} in a table row")


def _everything(stack: LocalStack, state: Path) -> Iterator[tuple[str, bytes]]:
    """(where, text) for every row, object version, queue message and local log file of the stack."""
    assert stack.resources
    ddb = client("dynamodb")
    for table in stack.resources.tables.values():
        for page in ddb.get_paginator("scan").paginate(TableName=table):
            for item in page.get("Items", []):
                yield f"{table}:{item.get('pk', item.get('item_id'))}", json.dumps(item, default=_readable).encode()
    s3 = client("s3")
    for bucket in (stack.resources.archive_bucket, stack.resources.artifacts_bucket):
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for v in page.get("Versions", []):
                body = s3.get_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])["Body"].read()
                for name, text in _expand(v["Key"], body):
                    yield f"s3://{bucket}/{name}@{v['VersionId']}", text
    sqs = client("sqs")
    seen: list[dict[str, Any]] = []
    while got := sqs.receive_message(
        QueueUrl=stack.resources.failure_queue_url, MaxNumberOfMessages=10, VisibilityTimeout=30
    ).get("Messages", []):
        seen += got
    for message in seen:
        yield f"queue:{message['MessageId']}", message["Body"].encode()
    for n in range(0, len(seen), 10):
        sqs.change_message_visibility_batch(
            QueueUrl=stack.resources.failure_queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(seen[n : n + 10])
            ],
        )
    for path in sorted(state.rglob("*.log")):
        yield str(path), path.read_bytes()


def _census(stack: LocalStack, state: Path, needles: list[str]) -> tuple[list[str], dict[str, int]]:
    """Where any needle occurs, and how many records of everybody else each kind of store holds."""
    hits: list[str] = []
    others = dict.fromkeys(OTHERS, 0)
    for where, body in _everything(stack, state):
        text = body.decode(errors="replace")
        hits += [f"{where}: {n}" for n in needles if n in text]
        lines = [line for line in text.splitlines() if line.strip() and not any(n in line for n in needles)]
        if where.startswith(("shopwise-local-features:", "shopwise-local-recommendations:", "shopwise-local-items:")):
            key = where.split(":", 1)[1]
            others["table rows"] += bool(lines) and "erased#" not in key
        elif "/events/" in where:
            others["archived events"] += len(lines)
        elif "/recommendations/" in where and where.rsplit("@", 1)[0].endswith(".out"):
            others["list rows"] += len(lines)
        elif "/campaigns/" in where and ".jsonl" in where:
            others["campaign rows"] += len(lines)
        elif where.rsplit("@", 1)[0].endswith("!users.json"):
            others["model users"] += sum(not any(n in u for n in needles) for u in json.loads(text))
        elif where.rsplit("@", 1)[0].endswith("!features/profiles.parquet"):
            others["snapshot profiles"] += len(lines) - 1
    return hits, others


def _never_consented(data: Path) -> list[str]:
    """Customers of the simulated store's history who refused personalisation at the consent banner (and are not
    in the replay, whose shoppers the demo grants consent for)."""
    granted: set[str] = set()
    seen: set[str] = set()
    replayed: set[str] = set()
    with (data / "replay.csv").open(newline="") as handle:
        replayed = {row["user_id"] for row in csv.DictReader(handle)}
    with (data / "history.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["id_type"] != "customer":
                continue
            seen.add(row["user_id"])
            if row["event_type"] == "consent" and "personalisation" in row["granted"].split():
                granted.add(row["user_id"])
    return sorted(seen - granted - replayed)


def _refused(stack: LocalStack, state: Path, pseudonym: Any) -> dict[str, int]:
    """Where the shoppers who never consented are: in the serving model's user index, in precomputed lists."""
    assert stack.resources
    refused = [f"c:{pseudonym(c)}" for c in _never_consented(state / "demo" / "data")]
    champion = stack.invoke("registry", {"action": "champion"})
    bucket, key = parse_s3_uri(champion["model_uri"])
    users = set(json.loads(read_tar_member(bucket, key, "users.json")))
    lists = 0
    for profile in refused:
        for slot in SLOTS:
            if not table_status(table := slot_table(stack.resources.lists_stem, slot)):
                continue  # a slot never loaded
            row = client("dynamodb").get_item(TableName=table, Key={"pk": {"S": slot_key(slot, user_key(profile))}})
            lists += "Item" in row
    return {
        "shoppers": len(refused),
        "in_model": len(users & set(refused)),
        "consenting_in_model": len(users - set(refused)),
        "lists": lists,
    }


def _event(kind: str, minutes: float, **fields: Any) -> dict[str, Any]:
    at = (NOW + timedelta(minutes=minutes)).isoformat()
    return {"event_id": f"erase-{kind}-{uuid.uuid4().hex[:8]}", "event_type": kind, "occurred_at": at, **fields}


def _story(stack: LocalStack, summary: dict[str, Any], state: Path) -> dict[str, Any]:
    """Everything the tests look at, gathered against the demo's live stack."""
    assert stack.resources and stack.api and stack.poller and stack.impressions
    res = stack.resources
    api = Api(stack.api.url)
    tables = Tables(
        res.lists_stem,
        res.tables["features"],
        res.tables["config"],
        res.tables["items"],
        res.tables["ledger"],
    )
    customer = str(summary["known_user"])
    tag = uuid.uuid4().hex[:10]
    visitor, email, device = f"visitor-{tag}", f"shopper-{tag}@example.com", f"device-{tag}"
    keyed = load_pseudonymiser(res.pseudonym_key_secret)
    pseudonyms = {
        "customer": keyed.customer(customer),
        "email": keyed.email(email),
        "device": keyed.device(device),
    }
    needles = [customer, visitor, email, device, *pseudonyms.values()]
    item = str(summary["known_item"])

    # the shopper's other aliases: a visit before logging in, then the login linking all four
    sent = [
        _event("consent", -30, anonymous_id=visitor, granted=["personalisation", "marketing"]),
        _event("product_view", -29, anonymous_id=visitor, item_id=item, session_id=f"s-{tag}"),
        _event("identify", -28, anonymous_id=visitor, customer_id=customer, email=email, device_id=device),
        _event("consent", -27, customer_id=customer, granted=["personalisation", "marketing"]),
        _event("add_to_cart", -26, customer_id=customer, anonymous_id=visitor, item_id=item, session_id=f"s-{tag}"),
    ]
    status, body = api.post("/v1/events", {"events": sent})
    assert status == 200 and body["rejected"] == 0, body
    # a record the updater can never apply names the shopper in the failure queue; another names someone else
    for who in (pseudonyms["customer"], "0" * 32):
        poison = {**_event("product_view", -25, customer_id=who, item_id=item), "pseudonymised": False}
        client("kinesis").put_record(StreamName=res.stream, Data=json.dumps(poison).encode(), PartitionKey=who)
    assert stack.poller.wait_idle(60)
    # the abandoned cart makes the shopper (by email) a campaign recipient, exported to S3
    spec = replace(campaign("abandoned-cart"), holdout=0.0)
    report = run_campaign(spec, tables, res.artifacts_bucket, (NOW + timedelta(hours=5)).timestamp())
    recipient = f"e:{pseudonyms['email']}"
    in_campaign = any(
        r["recipient_id"] == recipient for r in recipients_page(res.artifacts_bucket, spec.name)["recipients"]
    )
    stack.impressions.flush()
    before_hits, before = _census(stack, state, needles)

    # erase by the customer id: stitching finds the visitor, email and device
    code, out = _cli("erase", customer)
    assert code == 0, out
    receipt = json.loads(out)
    erased_at = time.time()
    profile_rows = client("dynamodb").get_item(
        TableName=res.tables["features"], Key={"pk": {"S": f"profile#c:{pseudonyms['customer']}"}}, ConsistentRead=True
    )
    recipients_after = recipients_page(res.artifacts_bucket, spec.name)["recipients"]
    # an event the shopper sent before the erasure, still in flight: dropped by the updater, purged from the archive
    status, body = api.post("/v1/events", {"events": [_event("product_view", -1, anonymous_id=visitor, item_id=item)]})
    assert status == 200, body
    assert stack.poller.wait_idle(60)
    visitor_rows = client("dynamodb").get_item(
        TableName=res.tables["features"], Key={"pk": {"S": f"profile#a:{visitor}"}}, ConsistentRead=True
    )
    stack.impressions.flush()

    started = time.perf_counter()
    code, out = _cli("erasures", "purge", "--min-age-hours", "0")
    purge_seconds = time.perf_counter() - started
    assert code == 0, out
    purged = json.loads(out[out.index("{") :])
    after_hits, after = _census(stack, state, needles)
    code, out = _cli("erasures", "show", receipt["erasure_id"])
    assert code == 0, out
    final = json.loads(out)
    code, listed = _cli("erasures", "list")
    assert code == 0, listed

    # only now, after the scan: the shopper comes back (what they do from here on is a new shopper's)
    status, answer = api.get(f"/v1/users/{customer}/recommendations?n=5")
    status_new, _ = api.post("/v1/events", {"events": [_event("product_view", 1, anonymous_id=visitor, item_id=item)]})
    assert stack.poller.wait_idle(60)
    comeback = client("dynamodb").get_item(
        TableName=res.tables["features"], Key={"pk": {"S": f"profile#a:{visitor}"}}, ConsistentRead=True
    )
    return {
        "refused": _refused(stack, state, keyed.customer),
        "campaign_recipients": report.recipients,
        "in_campaign": in_campaign,
        "before_hits": before_hits,
        "before": before,
        "receipt": receipt,
        "erased_at": erased_at,
        "profile_after_erase": profile_rows.get("Item"),
        "recipient_after_erase": any(r["recipient_id"] == recipient for r in recipients_after),
        "visitor_profile_after_inflight": visitor_rows.get("Item"),
        "purged": purged,
        "purge_seconds": purge_seconds,
        "after_hits": after_hits,
        "after": after,
        "final": final,
        "final_text": json.dumps(final),
        "listed": [e["erasure_id"] for e in json.loads(listed)["erasures"]],
        "needles": needles,
        "answer": (status, answer),
        "comeback": (status_new, comeback.get("Item")),
        "state": state,
    }


@pytest.fixture(scope="module")
def story(state_dir: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def after(stack: LocalStack, summary: dict[str, Any]) -> None:
        found.update(_story(stack, summary, state_dir))

    run_demo(DemoOptions(aws_port=free_port(), api_port=free_port(), serve=False, progress=False, after=after))
    assert found, "the demo stopped before the erasure story ran"
    return found


def test_before_the_erasure_the_shopper_is_in_every_kind_of_store(story: dict[str, Any]) -> None:
    places = " ".join(story["before_hits"])
    for where in ("features", "recommendations", "/events/", "/models/", "/campaigns/", "queue:", "serve.log"):
        assert where in places, f"the shopper was never in {where}: the scan after the purge would prove nothing"
    assert story["in_campaign"]


def test_the_online_stores_forget_the_shopper_at_once(story: dict[str, Any]) -> None:
    receipt = story["receipt"]
    assert receipt["aliases"] >= 4  # customer, visitor, email, device: found through stitching
    assert receipt["rows_deleted"]["feature_store"] >= 3  # profile, aliases, session
    assert receipt["rows_deleted"]["recommendations"] >= 1
    assert story["profile_after_erase"] is None
    assert not story["recipient_after_erase"]  # out of the campaign's send list before any purge
    # the in-flight event from before the erasure was dropped: no profile came back for the visitor
    assert story["visitor_profile_after_inflight"] is None


def test_after_the_purge_nothing_anywhere_names_the_shopper(story: dict[str, Any]) -> None:
    assert story["after_hits"] == [], story["after_hits"][:5]
    assert story["purged"]["objects_rewritten"] >= 3
    assert story["purged"]["messages_removed"] == 1


def test_every_other_shopper_is_untouched(story: dict[str, Any]) -> None:
    before, after = story["before"], story["after"]
    assert all(before[k] > 0 for k in OTHERS), (before, after)
    assert after == before


def test_the_receipt_says_where_and_when_without_the_identity(story: dict[str, Any]) -> None:
    final = story["final"]
    assert final["erasure_id"] == story["receipt"]["erasure_id"]
    assert all(final["stores"].values()), final["stores"]  # every store finished, with its time
    assert final["targets"] == []  # the blinded aliases went with the purge
    assert final["purge"]["lines_removed"] > 0
    assert not any(n in story["final_text"] for n in story["needles"])
    assert story["receipt"]["erasure_id"] in story["listed"]


def test_a_shopper_who_comes_back_is_a_stranger_until_they_consent_again(story: dict[str, Any]) -> None:
    status, answer = story["answer"]
    assert status == 200 and answer["source"] != "personalised"
    status, profile = story["comeback"]
    assert status == 200 and profile is None  # a view without fresh consent builds no profile


def test_a_shopper_who_never_consented_has_no_list_and_is_not_trained_on(story: dict[str, Any]) -> None:
    refused = story["refused"]
    assert refused["shoppers"] >= 5, "the simulated store has shoppers who refused the consent banner"
    assert refused["consenting_in_model"] > 100  # the model (the training job's own output) knows the others
    assert refused["in_model"] == 0
    assert refused["lists"] == 0
