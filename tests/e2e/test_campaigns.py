"""Email campaigns end to end: synthetic shoppers act through the HTTP API and the stream; campaign runs on the
local stack put each in exactly the segments it should be in, drop it when the condition ends, never recommend what
it just bought, cap the sends and export the run."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shopwise.campaigns import runs
from shopwise.campaigns.rules import CAMPAIGNS, campaign
from shopwise.campaigns.runs import BadCursor, RunReport, latest_run, recipients_page, run_campaign
from shopwise.catalog.items import CatalogItem
from shopwise.dal import objects
from shopwise.dal.aws import client
from shopwise.dal.catalog import put_items
from shopwise.dal.recommendations import RecommendationRow, activate
from shopwise.dal.serving_read import Tables
from shopwise.keys import POPULAR_KEY
from shopwise.lifecycle.loading import load_rows
from shopwise.picks import StoredPick
from shopwise.privacy.pseudonyms import load_pseudonymiser
from shopwise_local import cli
from shopwise_local.stack import LocalStack

from .conftest import Api, dynamodb_calls

pytestmark = pytest.mark.e2e

SHOES = ["run-1", "run-2", "run-3"]
HOME = ["pan-1", "pan-2", "pan-3", "pan-4"]
NOW = datetime.now(UTC)


def at(hours: float = 0.0) -> float:
    return (NOW + timedelta(hours=hours)).timestamp()


@pytest.fixture(scope="module")
def shop(stack: LocalStack, api: Api) -> Tables:
    """A catalog, a popular list (the model's stand-in: written as the load step writes rows) and five shoppers."""
    assert stack.resources and stack.poller
    tables = stack.resources.tables
    put_items(
        tables["items"],
        [CatalogItem(item_id=i, title=f"Shoe {i}", category="Shoes>Running") for i in SHOES]
        + [CatalogItem(item_id=i, title=f"Pan {i}", category="Home>Kitchen") for i in HOME],
    )
    # the item shopper "buyer" will buy tops the popular list: the post-purchase email must still leave it out
    popular = [
        StoredPick(i, 10.0 - n, category="Home>Kitchen" if i in HOME else "Shoes>Running")
        for n, i in enumerate(HOME + SHOES)
    ]
    load_rows(
        [RecommendationRow(POPULAR_KEY, popular, "test-model")],
        "test-model",
        stack.resources.lists_stem,
        tables["config"],
        7,
        stack.resources.artifacts_bucket,
    )
    activate(tables["config"], "test-model")

    def events(who: str, *steps: dict[str, Any], marketing: bool = True, customer: bool = True) -> list[dict[str, Any]]:
        ids = {"customer_id": who} if customer else {"anonymous_id": who}
        base = {"occurred_at": (NOW - timedelta(minutes=10)).isoformat(), **ids}
        scopes = ["personalisation", "marketing"] if marketing else ["personalisation"]
        out = [{"event_id": f"{who}-consent", "event_type": "consent", "granted": scopes, **base}]
        for n, step in enumerate(steps):
            moment = (NOW - timedelta(minutes=9 - n)).isoformat()
            out.append({"event_id": f"{who}-{n}", **base, "occurred_at": moment, **step})
        return out

    def cart(item: str) -> dict[str, Any]:
        return {"event_type": "add_to_cart", "item_id": item}

    def view(item: str) -> dict[str, Any]:
        return {"event_type": "product_view", "item_id": item}

    def buy(item: str) -> dict[str, Any]:
        return {"event_type": "purchase", "order_id": f"o-{item}", "items": [{"item_id": item, "unit_price": 20.0}]}

    batch = [
        *events("leaver", view("pan-1"), cart("pan-1")),  # carts and leaves
        *events("buyer", cart("pan-1"), buy("pan-1")),  # carts and buys
        *events("part-buyer", cart("pan-2"), cart("pan-3"), buy("pan-3")),  # buys part of the cart: not abandoned
        *events("browser", view("run-1"), view("run-2"), view("run-3")),  # browses shoes and leaves
        *events("no-marketing", cart("pan-2"), marketing=False),  # never asked for emails
        *events("visitor", cart("pan-3"), customer=False),  # no contact id
    ]
    status, body = api.post("/v1/events", {"events": batch})
    assert status == 200 and body["rejected"] == 0, body
    assert stack.poller.wait_idle(60)
    return Tables(stack.resources.lists_stem, tables["features"], tables["config"], tables["items"])


def customer(stack: LocalStack, who: str) -> str:
    assert stack.resources
    return load_pseudonymiser(stack.resources.pseudonym_key_secret).customer_profile(who)


def run(
    stack: LocalStack, tables: Tables, name: str, hours: float, cap: bool = True
) -> tuple[RunReport, dict[str, dict[str, Any]]]:
    assert stack.resources
    spec = replace(campaign(name), holdout=0.0)  # every member is sent to: membership is what is tested here
    spec = spec if cap else replace(spec, cap_days=0.0)
    report = run_campaign(spec, tables, stack.resources.artifacts_bucket, at(hours))
    body = client("s3").get_object(Bucket=stack.resources.artifacts_bucket, Key=report.keys["jsonl"])["Body"].read()
    rows = [json.loads(line) for line in body.decode().splitlines()]
    return report, {r["recipient_id"]: r for r in rows}


def test_each_shopper_lands_in_exactly_the_segments_it_should(stack: LocalStack, shop: Tables) -> None:
    leaver, buyer, browser = (customer(stack, w) for w in ("leaver", "buyer", "browser"))
    # before the waiting time nobody has abandoned anything
    assert run(stack, shop, "abandoned-cart", 1)[1] == {}
    # 5 h later: only the shopper who carted and left (not the buyers, not the one without marketing consent, not
    # the anonymous visitor)
    report, cart = run(stack, shop, "abandoned-cart", 5)
    assert set(cart) == {leaver} and cart[leaver]["about"] == ["pan-1"]
    # the run read the four reachable shoppers only: the reach index leaves out the one without marketing consent
    # and the anonymous visitor, who were read (and dropped) before it
    assert report.profiles == 4 and report.in_segment == 1
    _, browse = run(stack, shop, "browse-abandonment", 7)
    assert set(browse) == {browser}
    assert browse[browser]["category"] == "Shoes>Running" and sorted(browse[browser]["about"]) == SHOES
    # the leaver viewed one pan and carted it: carting is not browse abandonment
    _, after_purchase = run(stack, shop, "post-purchase", 7 * 24 + 1, cap=False)
    assert set(after_purchase) == {buyer, customer(stack, "part-buyer")} and after_purchase[buyer]["about"] == ["pan-1"]
    items = [i["item_id"] for i in after_purchase[buyer]["items"]]
    assert items and "pan-1" not in items  # the top seller, and just bought: never in the email
    assert all(i["reason"] for i in after_purchase[buyer]["items"])
    assert run(stack, shop, "post-purchase", 3 * 24)[1] == {}  # too early


def test_a_run_reads_the_shoppers_active_in_its_window_from_the_index_not_the_table(
    stack: LocalStack, api: Api, shop: Tables
) -> None:
    with dynamodb_calls() as calls:
        report, _ = run(stack, shop, "abandoned-cart", 5, cap=False)
    assert report.in_segment == 1 and report.profiles == 4  # the leaver (capped by now: the test above sent)
    assert "Scan" not in calls and "Query" in calls  # the reach index, then the profiles it names
    # a shopper joins the index with their grants and leaves it with the revoke: runs read them only in between
    assert stack.poller
    who = {"customer_id": "quitter"}
    joins: list[dict[str, Any]] = [
        {"event_id": "q-consent", "event_type": "consent", "granted": ["personalisation", "marketing"], **who},
        {"event_id": "q-view", "event_type": "product_view", "item_id": "pan-2", **who},
    ]
    revokes: list[dict[str, Any]] = [{"event_id": "q-revoke", "event_type": "consent", "revoked": ["marketing"], **who}]
    for step, events, minutes, read in (("joins", joins, 3, 5), ("revokes", revokes, 1, 4)):
        moment = (NOW - timedelta(minutes=minutes)).isoformat()
        assert api.post("/v1/events", {"events": [{**e, "occurred_at": moment} for e in events]})[0] == 200
        assert stack.poller.wait_idle(60)
        assert run(stack, shop, "abandoned-cart", 5, cap=False)[0].profiles == read, step
    # three weeks on, nobody here was active within the abandoned cart's week: no profile is even read
    later, nobody = run(stack, shop, "abandoned-cart", 21 * 24)
    assert later.profiles == 0 and nobody == {}
    # ... and one day past the post-purchase band's start the buyers are still found (lookback: 7 + 1 days)
    assert customer(stack, "buyer") in run(stack, shop, "post-purchase", 7 * 24 + 1, cap=False)[1]


def test_a_send_is_capped_and_a_shopper_leaves_the_segment_when_they_buy(
    stack: LocalStack, api: Api, shop: Tables
) -> None:
    assert stack.resources and stack.poller
    leaver = customer(stack, "leaver")
    report, first = run(stack, shop, "abandoned-cart", 6)
    # the run before (at 5 h, in the test above) sent the leaver this campaign: capped for 7 days
    assert leaver not in first and report.capped == 1
    assert run(stack, shop, "abandoned-cart", 8 * 24)[0].in_segment == 0  # the cart is older than the window
    purchase = {
        "event_id": "leaver-buys",
        "event_type": "purchase",
        "occurred_at": NOW.isoformat(),
        "customer_id": "leaver",
        "order_id": "o-leaver",
        "items": [{"item_id": "pan-1", "unit_price": 20.0}],
    }
    assert api.post("/v1/events", {"events": [purchase]})[0] == 200
    assert stack.poller.wait_idle(60)
    spec = replace(campaign("abandoned-cart"), holdout=0.0, cap_days=0.0)
    report = run_campaign(spec, shop, stack.resources.artifacts_bucket, at(10))
    assert report.in_segment == 0  # bought: out of the segment at once


def test_the_run_is_exported_as_csv_and_pages_and_the_cli_runs_it(
    stack: LocalStack, shop: Tables, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stack.resources
    bucket = stack.resources.artifacts_bucket
    # the latest browse-abandonment run is the one of the first test (at 7 h): the browser, and only them
    latest = json.loads(
        client("s3").get_object(Bucket=bucket, Key="campaigns/browse-abandonment/latest.json")["Body"].read()
    )
    assert latest["recipients"] == 1
    page = recipients_page(bucket, "browse-abandonment", limit=1)
    assert page["run_id"] == latest["run_id"] and page["next"] == ""
    assert [r["recipient_id"] for r in page["recipients"]] == [customer(stack, "browser")]
    table = client("s3").get_object(Bucket=bucket, Key=latest["keys"]["csv"])["Body"]
    rows = list(csv.DictReader(io.StringIO(table.read().decode())))
    assert [r["recipient_id"] for r in rows] == [customer(stack, "browser")]
    assert rows[0]["about"].split() == page["recipients"][0]["about"] and rows[0]["model_version"] == "test-model"
    with pytest.raises(ValueError, match="cursor"):
        recipients_page(bucket, "browse-abandonment", f"{latest['run_id']}:x")
    with pytest.raises(LookupError, match="no run"):
        recipients_page(bucket, "post-purchase-never-run")

    # the CLI runs the configured campaign (holdout and cap included): the browser was emailed an hour ago
    when = (NOW + timedelta(hours=8)).isoformat()
    assert cli.main(["campaigns", "run", "browse-abandonment", "--at", when]) == 0
    out = capsys.readouterr().out
    assert "1 in the segment" in out and "0 recipients" in out
    assert ("1 capped" in out) != ("1 held out" in out)  # capped, unless the configured holdout took them first
    assert cli.main(["campaigns", "run", "no-such-campaign"]) == 1
    assert [c.name for c in CAMPAIGNS] == ["abandoned-cart", "browse-abandonment", "post-purchase"]


def test_marketing_tools_page_through_the_latest_run_over_signed_http(
    api: Api, stack: LocalStack, shop: Tables
) -> None:
    assert stack.resources
    # the buyers, and the leaver who bought in the test before: three in the post-purchase segment a week on
    report, _ = run(stack, shop, "post-purchase", 7 * 24 + 2, cap=False)
    assert report.recipients == 3
    status, body = api.call("GET", "/v1/campaigns/post-purchase/recipients?limit=2")
    assert status == 403 and "not signed" in body["message"]
    status, first = api.admin("GET", "/v1/campaigns/post-purchase/recipients?limit=2", None)
    assert status == 200 and first["run_id"] == report.run_id and len(first["recipients"]) == 2 and first["next"]
    status, second = api.admin("GET", f"/v1/campaigns/post-purchase/recipients?limit=2&cursor={first['next']}", None)
    assert status == 200 and len(second["recipients"]) == 1 and second["next"] == ""
    seen = {r["recipient_id"] for r in first["recipients"] + second["recipients"]}
    assert seen == {customer(stack, w) for w in ("buyer", "part-buyer", "leaver")}
    assert api.admin("GET", "/v1/campaigns/newsletter/recipients", None)[0] == 404
    assert api.admin("GET", "/v1/campaigns/post-purchase/recipients?cursor=zz:q", None)[0] == 400
    assert api.admin("GET", "/v1/campaigns/post-purchase/recipients?limit=0", None)[0] == 400


def test_a_run_streams_its_members_a_chunk_at_a_time_and_a_page_reads_only_its_own_lines(
    stack: LocalStack, shop: Tables, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run one member a chunk sends what a run of the whole segment at once sends; the recipients API pages
    through the run's send list by byte cursors over ranged reads smaller than a line, each recipient once, in
    order; a cursor that does not start a line is refused, one past the end is an empty page."""
    assert stack.resources
    bucket = stack.resources.artifacts_bucket
    whole, by_whole = run(stack, shop, "post-purchase", 7 * 24 + 2, cap=False)
    monkeypatch.setattr(runs, "MEMBER_CHUNK", 1)
    chunked, by_chunk = run(stack, shop, "post-purchase", 7 * 24 + 2, cap=False)
    assert whole.recipients == chunked.recipients == 3 and chunked.in_segment == whole.in_segment
    assert {k: v["items"] for k, v in by_chunk.items()} == {k: v["items"] for k, v in by_whole.items()}
    table = client("s3").get_object(Bucket=bucket, Key=chunked.keys["csv"])["Body"].read().decode()
    assert [r["recipient_id"] for r in csv.DictReader(io.StringIO(table))] == list(by_chunk)  # one header

    monkeypatch.setattr(objects, "PAGE_READ", 16)  # every line takes several ranged reads
    body = client("s3").get_object(Bucket=bucket, Key=chunked.keys["jsonl"])["Body"].read()
    paged, cursor = [], ""
    for _page in range(5):
        page = recipients_page(bucket, "post-purchase", cursor, limit=1)
        assert page["run_id"] == chunked.run_id
        paged += page["recipients"]
        cursor = page["next"]
        if not cursor:
            break
    assert paged == [json.loads(line) for line in body.splitlines()]
    with pytest.raises(BadCursor):
        recipients_page(bucket, "post-purchase", f"{chunked.run_id}:5")  # inside the first line
    with pytest.raises(BadCursor):
        recipients_page(bucket, "post-purchase", f"{chunked.run_id}:-1")
    assert recipients_page(bucket, "post-purchase", f"{chunked.run_id}:{len(body) + 10}")["recipients"] == []
    # an object's last line need not end in a newline; an empty object has no lines
    objects.put_bytes(bucket, "scratch/lines.txt", b"one\ntwo\nthree")
    assert objects.read_line_range(bucket, "scratch/lines.txt", 4, 5) == ([b"two", b"three"], 14, False)
    assert objects.read_line_range(bucket, "scratch/lines.txt", 0, 1) == ([b"one"], 4, True)
    objects.put_bytes(bucket, "scratch/empty.txt", b"")
    assert objects.read_line_range(bucket, "scratch/empty.txt", 0, 3) == ([], 0, False)
    with pytest.raises(LookupError):
        objects.read_line_range(bucket, "scratch/none.txt", 0, 3)


def test_the_campaign_lift_compares_what_recipients_and_the_holdout_bought_after_the_run(
    stack: LocalStack, api: Api, shop: Tables, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """80 shoppers carted and left 5 h ago; the run (the campaign's 10% holdout, by its own hash) emails the rest;
    then every recipient buys and no held-out shopper does: the readout must say exactly that."""
    assert stack.resources and stack.poller
    earlier = (NOW - timedelta(hours=5)).isoformat()
    batch: list[dict[str, Any]] = []
    for n in range(80):
        base = {"customer_id": f"lift-{n}", "occurred_at": earlier}
        batch.append(
            {"event_id": f"lift-{n}-c", "event_type": "consent", "granted": ["personalisation", "marketing"], **base}
        )
        batch.append({"event_id": f"lift-{n}-a", "event_type": "add_to_cart", "item_id": "pan-4", **base})
    status, body = api.post("/v1/events", {"events": batch})
    assert status == 200 and body["rejected"] == 0, body
    assert stack.poller.wait_idle(60)
    assert cli.main(["campaigns", "run", "abandoned-cart"]) == 0
    latest = latest_run(stack.resources.artifacts_bucket, "abandoned-cart")
    assert latest is not None
    held = {customer(stack, f"lift-{n}") for n in range(80)} & {
        json.loads(line)["profile_id"]
        for line in client("s3")
        .get_object(Bucket=stack.resources.artifacts_bucket, Key=latest["keys"]["holdout"])["Body"]
        .read()
        .decode()
        .splitlines()
    }
    assert 0 < len(held) < 20  # about 10% of 80 (the pseudonym key is random per stack, so the count varies)
    buyers = [n for n in range(80) if customer(stack, f"lift-{n}") not in held]
    purchases = [
        {
            "event_id": f"lift-{n}-p",
            "event_type": "purchase",
            "customer_id": f"lift-{n}",
            "occurred_at": datetime.now(UTC).isoformat(),
            "order_id": f"lift-{n}",
            "items": [{"item_id": "pan-4", "unit_price": 25.0}],
        }
        for n in buyers
    ]
    status, body = api.post("/v1/events", {"events": purchases})
    assert status == 200 and body["rejected"] == 0, body
    assert stack.poller.wait_idle(60)
    capsys.readouterr()
    assert cli.main(["report", "campaign", "abandoned-cart", "--json", "--out", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    holdout, sent = report["arms"]
    assert holdout["name"] == "holdout" and holdout["shoppers"] == len(held)
    assert holdout["metrics"]["purchase_rate"]["value"] == 0.0
    assert sent["shoppers"] == 80 - len(held) and sent["metrics"]["purchase_rate"]["value"] == 1.0
    assert sent["metrics"]["revenue_per_member"]["value"] == pytest.approx(25.0)
    lift = sent["versus_control"]["purchase_rate"]
    if len(held) >= 2:
        assert lift["low"] > 0
    else:  # one held-out shopper has no spread: the interval is undefined, and the JSON says so
        assert lift["low"] is None
    assert (tmp_path / f"campaign-abandoned-cart-{latest['run_id']}.png").exists()


def test_repeated_views_of_one_item_are_browse_abandonment_unless_it_was_carted(
    stack: LocalStack, api: Api, shop: Tables
) -> None:
    assert stack.poller
    minutes = lambda m: (NOW - timedelta(minutes=m)).isoformat()  # noqa: E731
    batch: list[dict[str, Any]] = []
    for who, views, carts in (("looker", 3, False), ("glancer", 1, False), ("looker-carter", 3, True)):
        base = {"customer_id": who}
        batch.append(
            {
                "event_id": f"{who}-c",
                "event_type": "consent",
                "occurred_at": minutes(30),
                "granted": ["personalisation", "marketing"],
                **base,
            }
        )
        batch += [
            {
                "event_id": f"{who}-v{n}",
                "event_type": "product_view",
                "item_id": "pan-2",
                "occurred_at": minutes(20 - n),
                **base,
            }
            for n in range(views)
        ]
        if carts:
            batch.append(
                {
                    "event_id": f"{who}-a",
                    "event_type": "add_to_cart",
                    "item_id": "pan-2",
                    "occurred_at": minutes(5),
                    **base,
                }
            )
    status, body = api.post("/v1/events", {"events": batch})
    assert status == 200 and body["rejected"] == 0, body
    assert stack.poller.wait_idle(60)
    _, browse = run(stack, shop, "browse-abandonment", 7, cap=False)
    looker = customer(stack, "looker")
    assert looker in browse and browse[looker]["about"] == ["pan-2"] and browse[looker]["category"] == "Home>Kitchen"
    assert "pan-2" not in [i["item_id"] for i in browse[looker]["items"]]
    assert customer(stack, "glancer") not in browse  # one view is not a repeat
    assert customer(stack, "looker-carter") not in browse  # carted it: abandoned cart's business, not browsing
    assert run(stack, shop, "browse-abandonment", 3, cap=False)[1].get(looker) is None  # too soon after the views


def test_a_shopper_who_revokes_personalisation_gets_no_email_about_what_they_then_bought(
    stack: LocalStack, api: Api, shop: Tables
) -> None:
    """Given a shopper who carts an item, revokes personalisation, then buys it (a purchase the frozen profile never
    records), when the abandoned-cart campaign runs six hours later, then they get no email; and neither does one who
    revoked marketing."""
    assert stack.poller
    base = {"customer_id": "revoker"}
    step = lambda minutes, **e: {"occurred_at": (NOW - timedelta(minutes=minutes)).isoformat(), **base, **e}  # noqa: E731
    story = [
        step(10, event_id="rv-c", event_type="consent", granted=["personalisation", "marketing"]),
        step(9, event_id="rv-a", event_type="add_to_cart", item_id="pan-4"),
        step(8, event_id="rv-r", event_type="consent", revoked=["personalisation"]),
        step(
            7, event_id="rv-b", event_type="purchase", order_id="o-rv", items=[{"item_id": "pan-4", "unit_price": 9.0}]
        ),
        {
            **step(10, event_id="qm-c", event_type="consent", granted=["personalisation", "marketing"]),
            "customer_id": "quitter",
        },
        {**step(9, event_id="qm-a", event_type="add_to_cart", item_id="pan-4"), "customer_id": "quitter"},
        {**step(8, event_id="qm-r", event_type="consent", revoked=["marketing"]), "customer_id": "quitter"},
    ]
    status, body = api.post("/v1/events", {"events": story})
    assert status == 200 and body["rejected"] == 0, body
    assert stack.poller.wait_idle(60)
    _, emails = run(stack, shop, "abandoned-cart", 6, cap=False)
    assert customer(stack, "revoker") not in emails and customer(stack, "quitter") not in emails
