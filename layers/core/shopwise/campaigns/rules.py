"""Triggered email campaigns: who is in a segment now, by rules over the profile features the feature store holds.

A campaign is configuration (``CAMPAIGNS``; per environment in ``shopwise.config``): its kind, the rule's
windows, the frequency cap and the holdout share. ``trigger`` is a pure function of a profile and the time: a
shopper is in a segment while its condition holds and leaves it as soon as it ends (they bought, carted, or the
window passed). Only a shopper with the marketing consent now and a contact id (an email or a customer account,
both pseudonymised) qualifies.

Kinds:
  abandoned_cart       items in the cart, the newest added at least ``wait_hours`` and at most ``window_days``
                       ago, no purchase since
  browse_abandonment   at least ``min_views`` distinct items of one category viewed within ``window_days``, the
                       newest at least ``wait_hours`` ago, none of that category carted or bought since — or, failing
                       that, one item viewed at least ``min_views`` times (the profile's view log), the newest view
                       at least ``wait_hours`` ago, not carted or bought since
  post_purchase        the newest order ``days_after`` days ago (within a ``window_days`` band): complements and
                       replenishment, never what was bought in it
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shopwise.features.definitions import DAY, HOUR, MARKETING, PERSONALISATION, ProfileFeatures
from shopwise.serving.experiments import bucket

KINDS = ("abandoned_cart", "browse_abandonment", "post_purchase")


class CampaignError(ValueError):
    pass


@dataclass(frozen=True)
class CampaignSpec:
    name: str
    kind: str
    wait_hours: float = 4.0
    window_days: float = 7.0
    min_views: int = 2
    days_after: float = 7.0
    holdout: float = 0.1  # share of the segment kept out of the send: the campaign's lift is measured against it
    cap_days: float = 7.0  # at most one email of this campaign per shopper in this many days
    items: int = 6  # recommendations per email

    def lookback_days(self) -> float:
        """How far back a member's newest event can lie: every trigger needs a view, cart add or order within the
        window (an order ``days_after`` plus the window ago for post-purchase), and the newest event is no older."""
        return self.window_days + (self.days_after if self.kind == "post_purchase" else 0.0)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise CampaignError(f"{self.name}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if not 0 <= self.holdout < 1:
            raise CampaignError(f"{self.name}: holdout must be a share in [0, 1), got {self.holdout}")
        if self.wait_hours < 0 or self.window_days <= 0 or self.cap_days < 0 or self.items < 1:
            raise CampaignError(f"{self.name}: wait_hours, cap_days >= 0, window_days > 0 and items >= 1 are needed")


CAMPAIGNS: tuple[CampaignSpec, ...] = (
    CampaignSpec("abandoned-cart", "abandoned_cart", wait_hours=4, window_days=7, cap_days=7),
    CampaignSpec("browse-abandonment", "browse_abandonment", wait_hours=6, window_days=3, min_views=2, cap_days=7),
    CampaignSpec("post-purchase", "post_purchase", days_after=7, window_days=1, cap_days=14),
)


def campaign(name: str, campaigns: tuple[CampaignSpec, ...] = CAMPAIGNS) -> CampaignSpec:
    for spec in campaigns:
        if spec.name == name:
            return spec
    raise CampaignError(f"no campaign {name!r}: configured are {', '.join(c.name for c in campaigns)}")


@dataclass(frozen=True)
class Trigger:
    """Why a shopper is in the segment: the items the email is about (the cart, the browsed category's items, the
    order), and the items its recommendations must leave out."""

    about: list[str]
    exclude: list[str] = field(default_factory=list)
    category: str = ""


def trigger(
    spec: CampaignSpec, profile: ProfileFeatures, now: float, categories: dict[str, str] | None = None
) -> Trigger | None:
    """The shopper's trigger for this campaign now, or None (not in the segment). ``categories``: item -> category
    path for the items the shopper viewed (browse abandonment needs them)."""
    if not (profile.consented(now, MARKETING) and profile.consented(now, PERSONALISATION)):
        return None  # the email is made of what the profile knows: both grants, now (a revoke freezes the profile)
    if spec.kind == "abandoned_cart":
        return _abandoned_cart(spec, profile, now)
    if spec.kind == "browse_abandonment":
        return _browse_abandonment(spec, profile, now, categories or {})
    return _post_purchase(spec, profile, now)


def _abandoned_cart(spec: CampaignSpec, profile: ProfileFeatures, now: float) -> Trigger | None:
    cart = profile.current_cart()
    if not cart:
        return None
    added = max(float(e[0]) for e in profile.cart_log if e[2] in cart and e[3] is not None and int(e[3]) > 0)
    if not (now - spec.window_days * DAY <= added <= now - spec.wait_hours * HOUR):
        return None
    if profile.last_purchase_at >= added:  # they bought since: the cart was not abandoned
        return None
    return Trigger(about=sorted(cart), exclude=sorted(cart))


def _browse_abandonment(
    spec: CampaignSpec, profile: ProfileFeatures, now: float, categories: dict[str, str]
) -> Trigger | None:
    viewed = [(str(item), float(at)) for item, at in profile.recent.get("view", [])]
    recent = [(i, at) for i, at in viewed if at >= now - spec.window_days * DAY and categories.get(i)]
    by_category: dict[str, list[tuple[str, float]]] = {}
    for item, at in recent:
        by_category.setdefault(categories[item], []).append((item, at))
    acted = {str(p[0]) for kind in ("cart", "purchase") for p in profile.recent.get(kind, [])}
    best: Trigger | None = None
    for category, views in sorted(by_category.items()):
        newest = max(at for _, at in views)
        if len(views) < spec.min_views or newest > now - spec.wait_hours * HOUR:
            continue
        acted_since = [
            p
            for kind in ("cart", "purchase")
            for p in profile.recent.get(kind, [])
            if categories.get(str(p[0])) == category and float(p[1]) >= min(at for _, at in views)
        ]
        if acted_since:
            continue
        items = [i for i, _ in sorted(views, key=lambda v: -v[1]) if i not in acted]
        if items and (best is None or len(items) > len(best.about)):
            best = Trigger(about=items, exclude=items, category=category)
    return best or _viewed_again(spec, profile, now, categories)


def _viewed_again(
    spec: CampaignSpec, profile: ProfileFeatures, now: float, categories: dict[str, str]
) -> Trigger | None:
    """One item viewed ``min_views`` times or more in the window, left alone for ``wait_hours``, never carted or
    bought since its first of those views: the item most viewed (then the most recently)."""
    since = now - spec.window_days * DAY
    counts = profile.view_counts(since)
    views = {i: [float(at) for at, item in profile.view_log if item == i and float(at) >= since] for i in counts}
    acted = {kind: {str(p[0]): float(p[1]) for p in profile.recent.get(kind, [])} for kind in ("cart", "purchase")}
    ranked = sorted(counts, key=lambda i: (-counts[i], -max(views[i]), i))
    for item in ranked:
        if counts[item] < spec.min_views or max(views[item]) > now - spec.wait_hours * HOUR:
            continue
        if any(acted[kind].get(item, -1.0) >= min(views[item]) for kind in acted):
            continue
        return Trigger(about=[item], exclude=[item], category=categories.get(item, ""))
    return None


def _post_purchase(spec: CampaignSpec, profile: ProfileFeatures, now: float) -> Trigger | None:
    bought_at = profile.last_purchase_at
    if not bought_at:
        return None
    due = bought_at + spec.days_after * DAY
    if not (due <= now < due + spec.window_days * DAY):
        return None
    order = [str(p[0]) for p in profile.recent.get("purchase", []) if float(p[1]) == bought_at]
    return Trigger(about=order, exclude=order)


def held_out(spec: CampaignSpec, recipient: str) -> bool:
    """A stable share of each segment is kept out of the send (the campaign's control group): the experiments'
    assignment hash, salted with the campaign's name."""
    return bucket(spec.name, recipient) < spec.holdout
