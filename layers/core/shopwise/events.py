"""Storefront event schemas, defined once and imported by the Lambdas, the jobs and the local runtime.

Every event carries event_id, occurred_at and at least one of anonymous_id / customer_id. The server stamps
received_at. Timestamps are timezone-aware UTC; a naive timestamp is read as UTC.

Clock rule (stated in the README): an event whose occurred_at lies more than ``MAX_FUTURE_SKEW`` after
received_at, or more than ``MAX_PAST_AGE`` before it, is rejected by the live API; history goes through
``shopwise import`` instead, which accepts any past time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from shopwise.keys import anonymous_alias, customer_alias, device_alias, email_alias

MAX_FUTURE_SKEW = timedelta(minutes=5)
MAX_PAST_AGE = timedelta(days=90)

Id = Annotated[str, Field(min_length=1, max_length=128)]
# an amount of money: finite (JSON's Infinity, NaN and 1e999 are refused), within what any store charges, and
# rounded to micro-units (so a DynamoDB number, whose smallest magnitude is 1e-130, always holds it)
MAX_AMOUNT = 1e12
Amount = Annotated[float, Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False), AfterValidator(lambda v: round(v, 6))]
Market = Annotated[str, Field(min_length=2, max_length=8)]


class EventBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: Id
    occurred_at: datetime
    received_at: datetime | None = None
    anonymous_id: Id | None = None
    customer_id: Id | None = None
    session_id: Id | None = None
    market: Market | None = None
    referrer: Annotated[str, Field(max_length=2048)] | None = None
    user_agent_class: Literal["desktop", "mobile", "tablet", "bot", "other"] | None = None
    # set by the server once customer, email and device ids are keyed hashes (shopwise.privacy.pseudonyms); never by a client
    pseudonymised: bool = False
    # set by the server: who vouched for the event (shopwise.access.callers) — the store's servers, a browser whose
    # token names the customer, a browser for its visitor only, the serve API (impressions), a bulk import
    origin: Literal["server", "shopper", "visitor", "serve", "import"] | None = None

    @field_validator("occurred_at", "received_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00:00+01:00 is before the first moment UTC can hold
            raise ValueError("a time no calendar holds in UTC") from None

    @model_validator(mode="after")
    def _someone(self) -> EventBase:
        if not (self.anonymous_id or self.customer_id):
            raise ValueError("anonymous_id or customer_id is required")
        return self

    @property
    def profile_id(self) -> str:
        """The profile key the event names: "c:<customer>" if the customer is known, else "a:<anonymous id>".
        Identity stitching (shopwise.features.identity) may have merged it into another profile since."""
        return customer_alias(self.customer_id) if self.customer_id else anonymous_alias(str(self.anonymous_id))


class ProductView(EventBase):
    event_type: Literal["product_view"]
    item_id: Id
    price: Annotated[float, Field(ge=0)] | None = None


class AddToCart(EventBase):
    event_type: Literal["add_to_cart"]
    item_id: Id
    quantity: Annotated[int, Field(ge=1, le=10_000)] = 1
    unit_price: Annotated[float, Field(ge=0)] | None = None


class RemoveFromCart(EventBase):
    event_type: Literal["remove_from_cart"]
    item_id: Id
    quantity: Annotated[int, Field(ge=1, le=10_000)] = 1


class LineItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    item_id: Id
    quantity: Annotated[int, Field(ge=1, le=10_000)] = 1
    unit_price: Amount = 0.0
    currency: Annotated[str, Field(min_length=3, max_length=3)] = "USD"


class Purchase(EventBase):
    event_type: Literal["purchase"]
    order_id: Id
    items: Annotated[list[LineItem], Field(min_length=1, max_length=500)]
    revenue: Amount | None = None
    currency: Annotated[str, Field(min_length=3, max_length=3)] = "USD"


class Search(EventBase):
    event_type: Literal["search"]
    query: Annotated[str, Field(min_length=1, max_length=512)]
    results: Annotated[list[Id], Field(max_length=500)] = []


class Impression(EventBase):
    event_type: Literal["impression"]
    recommendation_id: Id
    items: Annotated[list[Id], Field(min_length=1, max_length=500)]
    placement: Annotated[str, Field(max_length=64)] = "home"
    # set by the serve API's own impression records: the A/B arm and the model that made the list
    experiment: Annotated[str, Field(max_length=128)] | None = None
    variant: Annotated[str, Field(max_length=128)] | None = None
    model_version: Annotated[str, Field(max_length=128)] | None = None
    # where the answer's first item came from: personalised, realtime, popular_market, ... (drift's serving side)
    source: Annotated[str, Field(max_length=64)] | None = None
    # the items' scores as served, in the order of ``items`` (drift's score distribution)
    scores: Annotated[list[float], Field(max_length=500)] | None = None


class Click(EventBase):
    event_type: Literal["click"]
    item_id: Id
    recommendation_id: Id | None = None
    placement: Annotated[str, Field(max_length=64)] | None = None


class Identify(EventBase):
    """Links the ids of one person: anonymous_id, customer_id, email, device_id. The email never goes past the
    collector: it is replaced by email_hash there."""

    event_type: Literal["identify"]
    email: (
        Annotated[str, StringConstraints(strip_whitespace=True, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")] | None
    ) = None
    email_hash: Id | None = None
    device_id: Id | None = None

    def aliases(self) -> list[str]:
        """Every alias key this event links, the event's own profile first."""
        found = [self.profile_id]
        if self.anonymous_id:
            found.append(anonymous_alias(self.anonymous_id))
        if self.customer_id:
            found.append(customer_alias(self.customer_id))
        if self.device_id:
            found.append(device_alias(self.device_id))
        if self.email_hash:
            found.append(email_alias(self.email_hash))
        return list(dict.fromkeys(found))


class Rekey(EventBase):
    """Written by the collector, never sent by a client, while the pseudonymisation key is being rotated: the
    aliases the event's ids had under the keys before the current one. The updater moves what those aliases hold
    to the current ones (``shopwise.features.identity.link`` with ``rekeyed``), so a shopper keeps their profile
    across a rotation."""

    event_type: Literal["rekey"]
    previous: Annotated[list[Annotated[str, Field(min_length=3, max_length=140)]], Field(min_length=1, max_length=16)]

    def aliases(self) -> list[str]:
        """The current aliases first (the survivors), then the previous ones."""
        current = [self.profile_id]
        if self.anonymous_id:
            current.append(anonymous_alias(self.anonymous_id))
        return list(dict.fromkeys([*current, *self.previous]))


class Consent(EventBase):
    event_type: Literal["consent"]
    granted: list[Literal["personalisation", "marketing", "analytics"]] = []
    revoked: list[Literal["personalisation", "marketing", "analytics"]] = []


Event = Annotated[
    ProductView | AddToCart | RemoveFromCart | Purchase | Search | Impression | Click | Identify | Consent | Rekey,
    Field(discriminator="event_type"),
]
EVENT_TYPES = (
    "product_view",
    "add_to_cart",
    "remove_from_cart",
    "purchase",
    "search",
    "impression",
    "click",
    "identify",
    "consent",
    "rekey",
)
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


class EventRejected(ValueError):
    """An event that can never be accepted, with the field at fault."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def parse_event(raw: Any) -> Event:
    """Validate one event; raise EventRejected naming the first field at fault."""
    try:
        return EVENT_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
            raise EventRejected("event_type", f"expected one of {', '.join(EVENT_TYPES)}") from None
        # the discriminator tag is the first element of loc for union members: drop it from the field path
        loc = [str(part) for part in first["loc"]]
        if loc and loc[0] in EVENT_TYPES:
            loc = loc[1:]
        raise EventRejected(".".join(loc) or "event", first["msg"]) from None


def check_clock(event: Event, received_at: datetime) -> None:
    if event.occurred_at > received_at + MAX_FUTURE_SKEW:
        raise EventRejected("occurred_at", f"more than {MAX_FUTURE_SKEW} in the future")
    if event.occurred_at < received_at - MAX_PAST_AGE:
        raise EventRejected(
            "occurred_at", f"older than {MAX_PAST_AGE.days} days: use `shopwise import events` for history"
        )


TRUSTED_PURCHASE_ORIGINS = ("server", "shopper", "import")


def trusted(event: Event) -> bool:
    """Whether the readouts, the drift job and training may count the event: an impression only as the serve API
    recorded it, a purchase only as the store's servers, a shopper's token or a bulk import vouched for it (the
    collector refuses client impressions and guests' purchases from browsers; this also keeps out anything in the
    archive from before those rules)."""
    if isinstance(event, Impression):
        return event.origin == "serve"
    if isinstance(event, Purchase):
        return event.origin in TRUSTED_PURCHASE_ORIGINS
    return True


def interaction_items(event: Event) -> list[tuple[str, str]]:
    """The (item_id, kind) pairs an event contributes to features and training: kind is view, cart or purchase."""
    if isinstance(event, ProductView | Click):
        return [(event.item_id, "view")]
    if isinstance(event, AddToCart):
        return [(event.item_id, "cart")]
    if isinstance(event, Purchase):
        return [(line.item_id, "purchase") for line in event.items]
    return []


def to_record(event: EventBase) -> dict[str, Any]:
    """The JSON-ready form that travels on the stream and lands in the archive."""
    return event.model_dump(mode="json", exclude_none=True)
