"""What serving knows when it answers: the request, and the shopper as read (``shopwise.dal.serving_read``) with the
decisions that need no blend — is the profile one that may be personalised now, and which experiments run."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from shopwise.dal.feature_store import Doc
from shopwise.dal.recommendations import RecommendationRow
from shopwise.dal.serving_read import ListsRead, ShopperRead
from shopwise.features.definitions import ProfileFeatures
from shopwise.picks import ViewPick
from shopwise.serving.experiments import Experiment, parse_experiments


class NotFound(LookupError):
    """Nothing to answer with: an unknown item, or no model loaded yet (the serve API's 404)."""


@dataclass(frozen=True)
class Request:
    user_id: str
    profile_id: str  # "c:<customer pseudonym>" or "a:<anonymous id>"
    placement: str = "home"
    n: int = 10
    category: str = ""
    market: str = ""
    exclude: frozenset[str] = frozenset()
    referrer: str = ""  # a referrer source (``shopwise.keys.referrer_source``)
    # what the page knows before any event reaches the stream: the product on screen, then the session's recent
    # items, newest first (``shopwise.serving.view.context_view``)
    context: tuple[str, ...] = ()


@lru_cache(maxsize=8)
def _experiments(text: str) -> list[Experiment]:
    return parse_experiments(text) if text else []


@dataclass(frozen=True)
class Shopper:
    """The shopper as serving may use them: the live profile (None unless it holds a personalisation grant now: a
    shopper who revoked it, or never granted it, gets what a stranger gets), its serving view, the rows read."""

    target: str  # the live profile id (the asked one, or the one it was stitched into)
    profile: ProfileFeatures | None
    view: list[ViewPick]
    view_at: float  # the newest interaction the view reflects
    rows: dict[str, RecommendationRow]
    unavailable: frozenset[str]
    experiments: list[Experiment]
    trips: int = 0

    @classmethod
    def of(cls, target: str, doc: Doc | None, lists: ListsRead, now: float) -> Shopper:
        profile: ProfileFeatures | None = None
        view: dict[str, Any] = {}
        if doc and doc.data.get("features"):
            features = ProfileFeatures.from_json(doc.data["features"])
            if features.consented(now):
                profile, view = features, doc.data.get("serving") or {}
        return cls(
            target,
            profile,
            [ViewPick.decode(e) for e in view.get("items", [])],
            float(view.get("at", 0.0)),
            lists.rows,
            lists.unavailable,
            _experiments(lists.experiments),
            lists.trips,
        )

    @classmethod
    def read(cls, read: ShopperRead, now: float) -> Shopper:
        return cls.of(read.target, read.profile, read, now)
