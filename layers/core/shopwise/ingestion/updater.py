"""The updater wired to a stack's tables: what the stream's function runs for each batch, and what a replay of the
failure queue runs (``shopwise.ingestion.failures``) — one path into the feature store."""

from __future__ import annotations

from typing import Any

from shopwise import fastjson
from shopwise.dal.catalog import categories
from shopwise.dal.feature_store import FeatureStore
from shopwise.dal.ledger import EventLedger
from shopwise.dal.recommendations import serving_rows
from shopwise.events import Event, EventRejected, parse_event
from shopwise.ingestion.update_features import Delivery, UpdateOutcome, update_features
from shopwise.settings import Settings


def event_of(data: bytes | str | dict[str, Any] | None) -> Event:
    """A stream record's event (its data, or an archived record: None for an archive line that is not JSON), or
    EventRejected: not JSON, not a valid event, or not through the collector."""
    if data is None:
        raise EventRejected("record", "not JSON")
    if not isinstance(data, dict):
        try:
            data = fastjson.loads(data)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise EventRejected("record", f"not JSON: {exc}") from None
    event = parse_event(data)
    if not event.pseudonymised:
        raise EventRejected("pseudonymised", "the event did not come through the collector: ids are not pseudonymised")
    return event


class Updater:
    """The feature store and the event ledger of one stack, and the write units spent on them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = FeatureStore(settings.features_table)
        self.ledger = EventLedger(settings.ledger_table)

    @property
    def write_units(self) -> int:
        return self.store.write_units + self.ledger.write_units

    def apply(self, deliveries: list[Delivery]) -> UpdateOutcome:
        settings = self.settings
        return update_features(
            deliveries,
            self.store,
            self.ledger,
            lambda items: categories(settings.items_table, items),
            rows=lambda keys: {
                k: r.items for k, r in serving_rows(settings.lists_stem, settings.config_table, keys).items()
            },
        )
