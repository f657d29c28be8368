"""Serving: what a request is answered with. Three steps, in order, for every route:

1. read — data access's one BatchGetItem (``shopwise.dal.serving_read``), through the ``Reader`` given (the unit
   tests hand a fake one);
2. decide — may the shopper be personalised now (``shopwise.serving.shopper``), which experiment arm are they in
   (``shopwise.serving.experiments``), with which blend knobs;
3. blend — the list (``shopwise.serving.blend``), then the response.

Every response carries a recommendation_id, the experiment and variant, and the model version; a shopper's answer is
also written as one impression line to the function's log (``impression_line``): a log subscription ships those
lines to the event archive, so what was shown reaches training and the experiment readout with no network call on
the request path.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol, TextIO

from shopwise.dal.serving_read import ItemRead, ListsRead, ShopperRead
from shopwise.features.definitions import ProfileFeatures
from shopwise.keys import POPULAR_KEY, id_value, is_customer, item_key
from shopwise.picks import NO_SOURCE
from shopwise.serving import blend
from shopwise.serving.blend import Blended, BlendParams, params_for
from shopwise.serving.experiments import NO_EXPERIMENT, Assignment, assign
from shopwise.serving.shopper import NotFound, Request, Shopper
from shopwise.serving.view import context_keys

MAX_N = 100
MAX_RANK_ITEMS = 500
MAX_EXCLUDE = 100
MAX_CONTEXT = 5  # recent items a request may name (the newest few are used: ``shopwise.serving.view.CONTEXT_LIMIT``)

__all__ = ["MAX_CONTEXT", "MAX_EXCLUDE", "MAX_N", "MAX_RANK_ITEMS", "NotFound", "Reader", "Request", "Shopper"]


class Served(NamedTuple):
    """An answer for a shopper, and the live profile it was made for: the impression line names the profile; the
    response never does (a pseudonym or a profile key must not leave the API)."""

    response: dict[str, Any]
    profile_id: str


class Reader(Protocol):
    """The reads serving makes (``shopwise.dal.serving_read.ServingReader``; a fake in the unit tests)."""

    def shopper(self, profile_id: str, keys: list[str]) -> ShopperRead: ...

    def lists(self, keys: list[str], experiments: bool = False) -> ListsRead: ...

    def item(self, item_id: str, n: int, keys: list[str]) -> ItemRead: ...


def recommend(req: Request, reader: Reader, repeat_categories: tuple[str, ...] = ()) -> Served:
    """The shopper's list for a placement (``blend.shopper_list``)."""
    now = time.time()
    keys = [*blend.segment_keys(req.market, req.category, req.referrer).values(), POPULAR_KEY]
    keys += context_keys(req.context)  # the page's items' neighbours and next-item rules: the same round trip
    shopper = Shopper.read(reader.shopper(req.profile_id, keys), now)
    return answer(req, shopper, repeat_categories, now)


def answer(req: Request, shopper: Shopper, repeat_categories: tuple[str, ...], now: float) -> Served:
    """The answer for a shopper already read (no I/O; campaign runs call it for every recipient)."""
    assignment, params, profile = _decide(req, shopper)
    made = blend.shopper_list(req, shopper, profile, params, repeat_categories, now, not assignment.holdout)
    market = req.market or (profile.market[0] if profile and profile.market else "")
    subject = {"user_id": req.user_id, "placement": req.placement, "market": market}
    return Served(_response(subject, assignment, made, market, shopper.trips, req.referrer), shopper.target)


def rank(req: Request, item_ids: list[str], reader: Reader) -> Served:
    """The given items re-ranked for the shopper (``blend.ranked``), each with whether it is in stock."""
    now = time.time()
    shopper = Shopper.read(reader.shopper(req.profile_id, [POPULAR_KEY]), now)
    assignment, params, profile = _decide(req, shopper)
    made = blend.ranked(req, shopper, profile, params, item_ids, now)
    subject = {"user_id": req.user_id, "placement": req.placement, "market": req.market}
    response = _response(subject, assignment, made, req.market, shopper.trips)
    for item in response["items"]:
        item["in_stock"] = item["item_id"] not in shopper.unavailable
    return Served(response, shopper.target)


def popular(n: int, market: str, category: str, reader: Reader) -> dict[str, Any]:
    """Bestsellers of a category and/or market, then global ones; in stock only (``blend.bestsellers``)."""
    lists = reader.lists([*blend.segment_keys(market, category).values(), POPULAR_KEY])
    made = blend.bestsellers(n, market, category, lists.rows, lists.unavailable)
    return _response({"market": market, "category": category}, NO_EXPERIMENT, made, market, lists.trips)


def similar(item_id: str, n: int, reader: Reader) -> dict[str, Any]:
    """Items like this one (``blend.neighbours``); 404 for an id neither the catalog nor the model knows."""
    read = reader.item(item_id, n, [item_key(item_id), POPULAR_KEY])
    if item_key(item_id) not in read.rows and not read.known:
        raise NotFound(f"item {item_id!r} is neither in the catalog nor in the model")
    title = read.title or f"item {item_id}"
    made = blend.neighbours(item_id, n, read.rows, read.unavailable, read.category, title)
    return _response({"item_id": item_id}, NO_EXPERIMENT, made, "", read.trips)


def _decide(req: Request, shopper: Shopper) -> tuple[Assignment, BlendParams, ProfileFeatures | None]:
    """The shopper's experiment arm, the blend's knobs for it and the placement, and the profile the blend may use
    (none in the holdout, which is served a non-personalised control)."""
    assignment = assign(shopper.experiments, req.placement, shopper.target)
    profile = None if assignment.holdout else shopper.profile
    return assignment, params_for(req.placement, assignment.params), profile


def _response(
    subject: dict[str, str], assignment: Assignment, made: Blended, market: str, trips: int, referrer: str = ""
) -> dict[str, Any]:
    return {
        **subject,
        "recommendation_id": str(uuid.uuid4()),
        "experiment": assignment.experiment,
        "variant": assignment.variant,
        "model_version": made.model_version,
        "source": made.sources[0] if made.sources else NO_SOURCE,
        "sources": made.sources,
        "items": made.to_json(market, referrer),
        "read_round_trips": trips,
    }


def impression_line(served: Served, stream: TextIO, now: float | None = None) -> None:
    """One log line that is exactly an ``impression`` event (shopwise.events.Impression, origin ``serve``) for a
    shopper's answer: the log subscription's filter picks it, Firehose puts it in the event archive beside the
    storefront's events."""
    response, profile = served
    if not response["items"]:
        return
    at = datetime.fromtimestamp(now or time.time(), UTC).isoformat()
    market = response.get("market", "")
    event = {
        "event_id": f"imp-{response['recommendation_id']}",
        "event_type": "impression",
        "occurred_at": at,
        "received_at": at,
        ("customer_id" if is_customer(profile) else "anonymous_id"): id_value(profile),
        "pseudonymised": True,
        "origin": "serve",
        "recommendation_id": response["recommendation_id"],
        "items": [item["item_id"] for item in response["items"]],
        "placement": response["placement"],
        "experiment": response["experiment"],
        "variant": response["variant"],
        "model_version": response["model_version"],
        "source": response["source"],
        "scores": [item["score"] for item in response["items"]],
        **({"market": market} if 2 <= len(market) <= 8 else {}),
    }
    stream.write(json.dumps(event, separators=(",", ":")) + "\n")
