"""How many module boundaries a reader follows: one recommendation request and one event, traced through the
real handlers against the running local stack (`make demo` in another terminal).

A crossing is a call from a function of one first-party module (``shopwise``, ``shopwise_jobs``, a Lambda handler)
into a function of another; ``distinct`` counts each (caller module, callee module, callee) edge once, ``calls``
every such call, ``modules`` the first-party modules the path touches. ``control`` and ``control_calls`` count only
the crossings a reader has to follow: into a function that itself goes on into another module. A call into a leaf
(a key layout, a pick's codec, a profile's accessor: work that stays in its module) is looked up, not followed.
Lambdas' decorators (Powertools) and the standard library are not counted.

    .venv/bin/python tests/bench/bench_crossings.py
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = (ROOT / "layers" / "core", ROOT / "lambdas", ROOT / "sagemaker_jobs")


def _module(filename: str) -> str | None:
    path = Path(filename)
    for base in FIRST_PARTY:
        if base in path.parents:
            parts = path.relative_to(base).with_suffix("").parts
            return ".".join(parts)
    return None


class Tracer:
    def __init__(self) -> None:
        self.edges: dict[tuple[str, str, str], int] = {}
        self.modules: set[str] = set()
        self.followed: set[tuple[str, str]] = set()  # (module, function) that went on into another module

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if event != "call":
            return
        callee = _module(frame.f_code.co_filename)
        if callee is None or frame.f_code.co_name.startswith("<"):
            return
        self.modules.add(callee)
        caller_frame = frame.f_back
        while caller_frame is not None and _module(caller_frame.f_code.co_filename) is None:
            caller_frame = caller_frame.f_back
        caller = _module(caller_frame.f_code.co_filename) if caller_frame else "<entry>"
        if caller != callee:
            key = (str(caller), callee, frame.f_code.co_name)
            self.edges[key] = self.edges.get(key, 0) + 1
            # the caller (and every first-party frame above it in its module chain) goes on into another module
            outer = caller_frame
            while outer is not None:
                module = _module(outer.f_code.co_filename)
                if module is not None:
                    self.followed.add((module, outer.f_code.co_name))
                outer = outer.f_back

    def figures(self) -> dict[str, Any]:
        control = {k: n for k, n in self.edges.items() if (k[1], k[2]) in self.followed}
        return {
            "distinct": len(self.edges),
            "calls": sum(self.edges.values()),
            "control": len(control),
            "control_calls": sum(control.values()),
            "modules": len(self.modules),
        }


def traced(function: Any, event: dict[str, Any]) -> tuple[Any, Tracer]:
    tracer = Tracer()
    sys.setprofile(tracer)
    threading.setprofile(tracer)  # the updater writes entities from a thread pool
    try:
        result = function.invoke(event)
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
    return result, tracer


def _visit() -> dict[str, Any]:
    """A Kinesis event: a new visitor's personalisation consent and a product view (the whole update path)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    visitor = f"trace-{uuid.uuid4().hex[:8]}"
    common = {"occurred_at": now, "received_at": now, "anonymous_id": visitor, "pseudonymised": True}
    records = [
        {**common, "event_id": f"{visitor}-c", "event_type": "consent", "granted": ["personalisation"]},
        {**common, "event_id": f"{visitor}-v", "event_type": "product_view", "item_id": "p00267"},
    ]
    sequence = 10**20 + time.time_ns() // 1000
    return {
        "Records": [
            {
                "kinesis": {
                    "partitionKey": visitor,
                    "sequenceNumber": str(sequence + n),
                    "data": base64.b64encode(json.dumps(r).encode()).decode(),
                },
                "eventID": f"shardId-000000000000:{sequence + n}",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/trace",
            }
            for n, r in enumerate(records)
        ]
    }


def main() -> int:
    from shopwise_local.lambda_runtime import LocalFunction, http_api_event
    from shopwise_local.paths import state_dir
    from shopwise_local.stack import StackInfo

    StackInfo.attach(state_dir())
    serve, update = LocalFunction("serve"), LocalFunction("update_features")
    from shopwise_local.store_backend import shopper_token

    path = "/v1/users/cust-001170/recommendations"
    headers = {"Authorization": f"Bearer {shopper_token(customer='cust-001170')}"}  # the shopper's browser
    serve.invoke(http_api_event("GET", path, "n=10&placement=product", headers))  # warm: imports and caches
    response, request = traced(serve, http_api_event("GET", path, "n=10&placement=product", headers))
    assert response["statusCode"] == 200, response

    update.invoke(_visit())  # warm
    _result, event = traced(update, _visit())
    figures = {"request": request.figures(), "event": event.figures()}
    for name, tracer in (("request", request), ("event", event)):
        print(f"{name}: {figures[name]} (* a crossing the reader follows)")
        for (caller, callee, function), count in sorted(tracer.edges.items()):
            mark = "*" if (callee, function) in tracer.followed else " "
            print(f" {mark}{caller:<40} -> {callee}.{function}" + (f"  x{count}" if count > 1 else ""))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
