"""The console's gate: it answers only its own page on its loopback address (no other site's page, no rebound DNS
name, no action without its header), serves only its own files, and sends them with a policy that runs only its own
scripts. Everything behind the gate is exercised in a real browser by tests/e2e/test_operate.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shopwise_local.console import Console, ConsoleTarget, examples_from

HOST = {"Host": "127.0.0.1:8080"}


@pytest.fixture
def console() -> Console:
    return Console(ConsoleTarget("shopwise-local", "local", "http://127.0.0.1:9"))


def message(answer: tuple[int, dict[str, str], bytes]) -> str:
    return str(json.loads(answer[2])["message"])


def test_the_page_is_served_with_a_policy_that_runs_only_its_own_scripts(console: Console) -> None:
    status, headers, body = console.handle("GET", "/", "", HOST, None)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'<script src="/console/console.js"' in body
    policy = headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    assert headers["X-Frame-Options"] == "DENY"
    status, headers, body = console.handle("GET", "/console/console.js", "", HOST, None)
    assert status == 200 and headers["Content-Type"] == "text/javascript" and b"X-Shopwise-Console" in body


@pytest.mark.parametrize(
    "path", ["/console/../__init__.py", "/console/static/index.html", "/console/__init__.py", "/console/x.png"]
)
def test_only_its_own_static_files_are_served(console: Console, path: str) -> None:
    assert console.handle("GET", path, "", HOST, None)[0] == 404


@pytest.mark.parametrize(
    ("method", "headers", "why"),
    [
        ("GET", {"Host": "evil.example:8080"}, "loopback address only"),  # a DNS name rebound to 127.0.0.1
        ("GET", {**HOST, "Origin": "https://evil.example"}, "its own page only"),
        ("GET", {**HOST, "Sec-Fetch-Site": "cross-site"}, "its own page only"),
        ("POST", HOST, "X-Shopwise-Console"),  # a cross-site form can post without a preflight
        ("POST", {**HOST, "X-Shopwise-Console": "1", "Origin": "http://127.0.0.1:9999"}, "its own page only"),
    ],
)
def test_requests_not_from_its_own_page_are_refused_before_anything_is_read(
    console: Console, method: str, headers: dict[str, str], why: str
) -> None:
    # the target's API is a closed port and no AWS endpoint is set: a request that got past the gate would fail
    answer = console.handle(method, "/console/api/shoppers/u1/events", "", headers, b'{"event_type":"product_view"}')
    assert answer[0] == 403 and why in message(answer)


def test_an_action_on_a_deployed_stack_is_refused_unless_events_were_allowed() -> None:
    console = Console(ConsoleTarget("shopwise-prod", "prod", "https://x", deployed=True, allow_events=False))
    body = json.dumps({"event_type": "product_view", "item_id": "i1"}).encode()
    headers = {**HOST, "X-Shopwise-Console": "1", "Origin": "http://127.0.0.1:8080"}
    answer = console.handle("POST", "/console/api/shoppers/u1/events", "", headers, body)
    assert answer[0] == 403 and "--allow-events" in message(answer)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"[1]", "JSON object"),
        (b"{", "must be JSON"),
        (b'{"event_type":"purchase","item_id":"i1"}', "event_type must be one of"),
        (b'{"event_type":"product_view","item_id":7}', "item_id must be a string"),
        (b'{"event_type":"product_view","item_id":"i1","id_type":"email"}', "id_type must be"),
        (b"{" + b" " * 20_000 + b"}", "Request too long"),
    ],
)
def test_a_bad_action_says_what_is_wrong(console: Console, body: bytes, why: str) -> None:
    headers = {**HOST, "X-Shopwise-Console": "1"}
    answer = console.handle("POST", "/console/api/shoppers/u1/events", "", headers, body)
    assert answer[0] in (400, 413) and why in message(answer)


def test_the_picker_offers_the_customers_of_an_export_not_its_visitors(tmp_path: Path) -> None:
    export = tmp_path / "events.csv"
    export.write_text("user_id,id_type,item_id\nc1,customer,i1\nv9,anonymous,i2\nc2,customer,i3\nc1,customer,i4\n")
    assert examples_from(export) == ["c1", "c2"]
    lines = tmp_path / "events.jsonl"
    lines.write_text('{"customer_id": "a7"}\n{"anonymous_id": "v1"}\n{"customer_id": "b8"}\n')
    assert examples_from(lines) == ["a7", "b8"]
    console = Console(ConsoleTarget("s", "local", "http://127.0.0.1:9", examples=["c1", "c12", "x3"]))
    assert json.loads(console.handle("GET", "/console/api/shoppers", "q=c1", HOST, None)[2]) == {
        "shoppers": ["c1", "c12"]
    }


def test_a_figure_json_cannot_hold_is_sent_as_null() -> None:
    from shopwise_local.console import _json

    status, _headers, body = _json(200, {"psi": float("nan"), "mix": [float("inf"), 0.5], "n": 3})
    assert status == 200 and json.loads(body) == {"psi": None, "mix": [None, 0.5], "n": 3}


def test_a_failure_behind_the_page_is_a_json_500_that_says_what_failed(console: Console) -> None:
    # the target's API is a closed port: the page gets the reason, the connection is not dropped
    status, headers, body = console.handle("GET", "/console/api/shoppers/u1", "placement=home", HOST, None)
    assert status == 500 and headers["Content-Type"] == "application/json"
    assert "URLError" in json.loads(body)["message"]
