"""The operator's console: a page to look at a stack, and the small JSON API behind it.

Where it runs, and why there: the console is **local-only**. The local stack's HTTP API serves it at ``/``
(``shopwise local up``, ``make demo``); ``shopwise console --stack NAME`` serves the same page on a loopback port
against a deployed stack, with the operator's own AWS credentials (the CLI's). Nothing of it is deployed: a
deployed stack gains no public route, no bucket and no distribution that could show one shopper's list to another
person. Every figure the page shows comes through the code the CLI runs:

- a shopper's list: the IAM-signed server route ``GET /v1/server/users/{id}/recommendations`` (the operator signs
  as the store's servers do), with the catalog's titles beside the ids; the profile's features through stitching,
  as ``shopwise features profile`` shows them — never a profile id or pseudonym;
- a product view or cart add: the signed ``POST /v1/server/events`` (on a deployed stack only when the console was
  started with ``--allow-events``: those events train the next model);
- similar items: the public ``GET /v1/items/{id}/similar``;
- the model registry with the gate's verdicts, each version's ``evaluation.png`` and test metrics (its training
  output), the newest drift report (the drift job's output), the experiments and their readouts (``shopwise report``).

A page served on loopback is still reachable by any web page the operator has open (a cross-site request) and by a
DNS name rebound to 127.0.0.1, so the console answers only requests whose ``Host`` is the loopback address it
listens on and that come from its own page (no foreign ``Origin``, ``Sec-Fetch-Site`` same-origin or none); a
request that changes anything must carry ``X-Shopwise-Console`` (a header no cross-site form can send without a
preflight, which is never allowed). Pages are sent with a content security policy that allows only the console's
own scripts and images, and may not be framed.
"""

from __future__ import annotations

import json
import logging
import math
import re
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from shopwise import config
from shopwise.keys import ID_TYPES
from shopwise.serving.experiments import PLACEMENTS

MAX_BODY = 16 * 1024
MAX_EXAMPLES = 20
EVENT_TYPES = ("product_view", "add_to_cart")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css"}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
Answer = tuple[int, dict[str, str], bytes]
log = logging.getLogger(__name__)


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ConsoleTarget:
    """What the console looks at: the stack's name and environment, its API, whether it is deployed."""

    name: str
    environment: str
    api_url: str
    deployed: bool = False
    allow_events: bool = True  # send events from the page (always on the local stack; a flag on a deployed one)
    examples: list[str] = field(default_factory=list)  # customer ids to offer (the demo's, or --examples FILE)


def examples_from(path: Path, limit: int = 500) -> list[str]:
    """Customer ids to offer in the shopper picker, from a CSV or JSON Lines export (``customer_id`` or
    ``user_id``; rows whose ``id_type`` is not customer are skipped): the store's own ids, since the stack holds
    only pseudonyms."""
    import csv
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    seen: dict[str, None] = {}
    with opener(path, "rt", newline="") as handle:  # type: ignore[operator]
        first = handle.readline()
        handle.seek(0)
        rows: Iterable[dict[str, Any]] = (
            (json.loads(line) for line in handle if line.strip())
            if first.lstrip().startswith("{")
            else csv.DictReader(handle)
        )
        for row in rows:
            if str(row.get("id_type") or "customer") != "customer":
                continue
            value = str(row.get("customer_id") or row.get("user_id") or "").strip()
            if value:
                seen.setdefault(value, None)
            if len(seen) >= limit:
                break
    return list(seen)


def _finite(value: Any) -> Any:
    """JSON has no NaN or Infinity (a drift figure with nothing to compare is NaN): null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json(status: int, doc: Any) -> Answer:
    body = json.dumps(_finite(doc), default=str, allow_nan=False)
    return status, {"Content-Type": "application/json"}, body.encode()


def _one(query: dict[str, list[str]], name: str, default: str = "") -> str:
    return (query.get(name) or [default])[0]


def _int(query: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    text = _one(query, name, str(default))
    if not text.isdigit() or not low <= int(text) <= high:
        raise Refused(400, f"{name} must be a whole number from {low} to {high}")
    return int(text)


def _id(value: str, what: str) -> str:
    if not value or len(value) > 256 or any(ord(c) < 32 for c in value):
        raise Refused(400, f"{what} must be 1 to 256 printable characters")
    return value


class Console:
    """Answers the console's requests: its static files at ``/`` and ``/console/…``, its JSON at
    ``/console/api/…``. ``handle`` is called by the local HTTP API and by ``serve_console``'s server alike."""

    def __init__(self, target: ConsoleTarget) -> None:
        self.target = target
        self.static = resources.files(__package__) / "static"

    # -- the gate every request passes ------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes | None) -> Answer:
        lower = {k.lower(): v for k, v in headers.items()}
        try:
            self._check_caller(method, lower)
            if path == "/" or path == "/console" or path == "/console/":
                return self._file("index.html")
            if path.startswith("/console/api/"):
                answer = self._api(method, path.removeprefix("/console/api/"), parse_qs(query), body)
                return answer[0], {**answer[1], "Cache-Control": "no-store"}, answer[2]
            if path.startswith("/console/") and method == "GET":
                return self._file(path.removeprefix("/console/"))
            raise Refused(404, "Not Found")
        except Refused as exc:
            return _json(exc.status, {"message": str(exc)})
        except (LookupError, FileNotFoundError) as exc:
            return _json(404, {"message": str(exc).strip("'\"")})
        except Exception as exc:  # the operator's own tool on their machine: say what failed (AWS refused, ...)
            log.exception("console: %s %s failed", method, path)
            return _json(500, {"message": f"{type(exc).__name__}: {exc}"})

    def _check_caller(self, method: str, headers: dict[str, str]) -> None:
        host = headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name not in LOOPBACK_HOSTS:
            raise Refused(403, "the console answers on its loopback address only")
        origin = headers.get("origin", "")
        if origin and urlsplit(origin).netloc != host:
            raise Refused(403, "the console answers its own page only")
        if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            raise Refused(403, "the console answers its own page only")
        if method not in ("GET", "HEAD") and headers.get("x-shopwise-console") != "1":
            raise Refused(403, "a console action must come from the console's page (X-Shopwise-Console)")

    def _file(self, name: str) -> Answer:
        if not re.fullmatch(r"[a-z][a-z0-9_-]*\.(html|js|css)", name):
            raise Refused(404, "Not Found")
        resource = self.static / name
        if not resource.is_file():
            raise Refused(404, "Not Found")
        suffix = "." + name.rsplit(".", 1)[1]
        return 200, {"Content-Type": STATIC_TYPES[suffix], **SECURITY_HEADERS}, resource.read_bytes()

    # -- the JSON API -----------------------------------------------------------------------------------------

    def _api(self, method: str, route: str, query: dict[str, list[str]], body: bytes | None) -> Answer:
        parts = [p for p in route.split("/") if p]
        if method == "GET" and parts == ["overview"]:
            return _json(200, self.overview())
        if method == "GET" and parts == ["shoppers"]:
            return _json(200, {"shoppers": self.shoppers(_one(query, "q"))})
        if method == "GET" and len(parts) == 2 and parts[0] == "shoppers":
            id_type = _one(query, "id_type", "customer")
            placement = _one(query, "placement", "home")
            return _json(200, self.shopper(parts[1], id_type, placement, _int(query, "n", 10, 1, 50)))
        if method == "POST" and len(parts) == 3 and parts[0] == "shoppers" and parts[2] == "events":
            if body is not None and len(body) > MAX_BODY:
                raise Refused(413, "Request too long")
            try:
                doc = json.loads(body or b"{}")
            except ValueError:
                raise Refused(400, "the body must be JSON") from None
            if not isinstance(doc, dict):
                raise Refused(400, "the body must be a JSON object")
            return _json(200, self.send_event(parts[1], doc))
        if method == "GET" and len(parts) == 3 and parts[0] == "items" and parts[2] == "similar":
            return _json(200, self.similar(parts[1], _int(query, "n", 10, 1, 50)))
        if method == "GET" and parts == ["models"]:
            return _json(200, self.models())
        if method == "GET" and len(parts) == 3 and parts[0] == "models" and parts[2] == "evaluation.png":
            return 200, {"Content-Type": "image/png"}, self.model_output(parts[1], "evaluation.png")
        if method == "GET" and len(parts) == 3 and parts[0] == "models" and parts[2] == "metrics":
            return _json(200, json.loads(self.model_output(parts[1], "metrics.json")))
        if method == "GET" and parts == ["drift"]:
            return _json(200, self.drift())
        if method == "GET" and parts == ["experiments"]:
            return _json(200, self.experiments())
        if method == "GET" and len(parts) == 3 and parts[0] == "experiments" and parts[2] == "readout":
            return _json(200, self.readout(parts[1]))
        raise Refused(404, "Not Found")

    def _call(self, method: str, path: str, body: Any = None, signed: bool = True) -> Any:
        from shopwise_local.store_backend import call

        status, answer = call(self.target.api_url, method, path, body, signed=signed)
        if status == 404:
            raise LookupError(answer.get("message", "not found"))
        if status != 200:
            raise Refused(502 if status >= 500 else status, f"the API answered {status}: {answer.get('message')}")
        return answer

    def overview(self) -> dict[str, Any]:
        from shopwise.dal.recommendations import get_pointer
        from shopwise.settings import get_settings

        pointer = get_pointer(get_settings().config_table)
        return {
            "stack": self.target.name,
            "environment": self.target.environment,
            "deployed": self.target.deployed,
            "api_url": self.target.api_url,
            "serving": pointer.version,
            "rollback_to": pointer.slots.get(pointer.standby, {}).get("version") or "",
            "allow_events": self.target.allow_events,
            "placements": list(PLACEMENTS),
            "id_types": [t for t in ID_TYPES if t in ("customer", "anonymous")],
            "examples": self.target.examples[:MAX_EXAMPLES],
        }

    def shoppers(self, q: str) -> list[str]:
        """The offered customer ids containing ``q`` (the stack holds pseudonyms only: it cannot list them)."""
        q = q.strip().lower()
        return [e for e in self.target.examples if q in e.lower()][:MAX_EXAMPLES]

    def _facts(self, item_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        from shopwise.dal.catalog import item_facts
        from shopwise.settings import get_settings

        return item_facts(get_settings().items_table, item_ids)

    def _titled(self, answer: dict[str, Any]) -> dict[str, Any]:
        facts = self._facts(i["item_id"] for i in answer.get("items", []))
        for item in answer.get("items", []):
            fact = facts.get(item["item_id"], {})
            item.update({k: fact[k] for k in ("title", "category", "price", "in_stock") if k in fact})
        return answer

    def shopper(self, shopper_id: str, id_type: str, placement: str, n: int) -> dict[str, Any]:
        _id(shopper_id, "the shopper id")
        if id_type not in ("customer", "anonymous"):
            raise Refused(400, "id_type must be customer or anonymous")
        if placement not in PLACEMENTS:
            raise Refused(400, f"placement must be one of {', '.join(PLACEMENTS)}")
        params = urlencode({"id_type": id_type, "placement": placement, "n": n})
        answer = self._call("GET", f"/v1/server/users/{quote(shopper_id, safe='')}/recommendations?{params}")
        answer.pop("recommendation_id", None)
        return {"list": self._titled(answer), "profile": self.profile(shopper_id, id_type == "anonymous")}

    def profile(self, shopper_id: str, anonymous: bool) -> dict[str, Any] | None:
        """The shopper's features as the feature store holds them (what ``shopwise features profile`` prints),
        without the profile id and aliases: pseudonyms stay inside the stack."""
        from shopwise_local.inspect import profile_features

        found = profile_features(shopper_id, anonymous)
        if found is None:
            return None
        described = {k: v for k, v in found.items() if k not in ("profile_id", "aliases")}
        described["aliases"] = len(found.get("aliases") or [])
        return described

    def send_event(self, shopper_id: str, doc: dict[str, Any]) -> dict[str, Any]:
        """A product view or a cart add for this shopper, sent as the store's servers send one."""
        if not self.target.allow_events:
            raise Refused(
                403,
                f"events from the console are off for {self.target.name}: they would train its next model "
                "(start the console with --allow-events to send them)",
            )
        _id(shopper_id, "the shopper id")
        kind, item, id_type = doc.get("event_type"), doc.get("item_id"), doc.get("id_type", "customer")
        if kind not in EVENT_TYPES:
            raise Refused(400, f"event_type must be one of {', '.join(EVENT_TYPES)}")
        if not isinstance(item, str):
            raise Refused(400, "item_id must be a string")
        _id(item, "item_id")
        if id_type not in ("customer", "anonymous"):
            raise Refused(400, "id_type must be customer or anonymous")
        who = {"customer_id" if id_type == "customer" else "anonymous_id": shopper_id}
        event = {
            "event_id": f"console-{time.time_ns()}",
            "event_type": kind,
            "item_id": item,
            "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **who,
        }
        if kind == "add_to_cart":
            event["quantity"] = 1
        answer = self._call("POST", "/v1/server/events", {"events": [event]})
        if answer.get("rejected"):
            raise Refused(400, f"the event was rejected: {answer}")
        return {"accepted": answer.get("accepted", 0), "event_id": event["event_id"]}

    def similar(self, item_id: str, n: int) -> dict[str, Any]:
        _id(item_id, "the item id")
        answer = self._call("GET", f"/v1/items/{quote(item_id, safe='')}/similar?n={n}", signed=False)
        answer.pop("recommendation_id", None)
        answer = self._titled(answer)
        answer["item"] = self._facts([item_id]).get(item_id, {"item_id": item_id})
        return answer

    def models(self) -> dict[str, Any]:
        from shopwise.dal.recommendations import get_pointer
        from shopwise.lifecycle import registry
        from shopwise.settings import get_settings

        table = get_settings().config_table
        pointer = get_pointer(table)
        return {
            "serving": pointer.version,
            "previous": pointer.previous,
            "slots": pointer.slots,
            "models": [
                {**r.to_json(), "slot": pointer.slot_of(r.version), "has_output": bool(r.model_uri)}
                for r in registry.records(table)
            ],
        }

    def model_output(self, version: str, name: str) -> bytes:
        """A file of a version's training output (output.tar.gz beside model.tar.gz)."""
        from shopwise.dal.objects import read_job_output
        from shopwise.lifecycle import registry
        from shopwise.settings import get_settings

        record = registry.get(get_settings().config_table, _id(version, "the version"))
        if record is None or not record.model_uri:
            raise LookupError(f"no registered version {version!r} with a training output")
        return read_job_output(record.model_uri, name)

    def drift(self) -> dict[str, Any]:
        """The newest drift report (the drift job's output), or none yet."""
        from shopwise.dal.objects import newest_key, read_tar_member
        from shopwise.settings import get_settings

        bucket = get_settings().artifacts_bucket
        key = newest_key(bucket, config.MONITORING_PREFIX, "/output.tar.gz")
        if key is None:
            return {"report": None}
        report = json.loads(read_tar_member(bucket, key, "drift.json"))
        return {"report": report, "job": key.removeprefix(config.MONITORING_PREFIX).split("/", 1)[0]}

    def experiments(self) -> dict[str, Any]:
        from shopwise.dal.experiments import get_experiments
        from shopwise.serving.experiments import parse_experiments
        from shopwise.settings import get_settings

        text = get_experiments(get_settings().config_table) or "[]"
        return {"experiments": [e.to_json() for e in parse_experiments(text)]}

    def readout(self, name: str) -> dict[str, Any]:
        """The experiment's readout from the event archive (``shopwise report experiment``), its plot inline."""
        import base64

        from shopwise_local.reports import experiment_report

        _id(name, "the experiment")
        with tempfile.TemporaryDirectory() as tmp:
            written = experiment_report(name, Path(tmp))
            plot = base64.b64encode(written.plot_path.read_bytes()).decode()
        return {**written.readout.to_json(), "plot": f"data:image/png;base64,{plot}"}


def serve_console(console: Console, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """The console on its own loopback server (``shopwise console``): the same ``Console.handle`` the local HTTP
    API mounts at ``/``."""
    if host not in LOOPBACK_HOSTS:
        raise ValueError("the console listens on a loopback address only")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "shopwise-console"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, method: str) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                status, headers, body = _json(413, {"message": "Request too long"})
            else:
                data = self.rfile.read(length) if length else None
                status, headers, body = console.handle(method, url.path, url.query, dict(self.headers.items()), data)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server
