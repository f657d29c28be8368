"""PynamoDB models, bound to their table name at run time (a factory, not a fixed Meta.table_name)."""

from __future__ import annotations

from functools import cache

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute, VersionAttribute
from pynamodb.models import Model


class ProfileModel(Model):
    """One shopper profile: its features as one JSON document, versioned for conditional updates."""

    profile_id = UnicodeAttribute(hash_key=True)
    features = JSONAttribute(null=True)
    version = VersionAttribute()


class ItemModel(Model):
    """A catalog item and the interaction counters the feature updater keeps on it."""

    item_id = UnicodeAttribute(hash_key=True)
    title = UnicodeAttribute(null=True)
    category = UnicodeAttribute(null=True)
    price = NumberAttribute(null=True)
    views = NumberAttribute(null=True)
    carts = NumberAttribute(null=True)
    purchases = NumberAttribute(null=True)


def _meta(table_name: str, region: str | None) -> type:
    attributes: dict[str, object] = {"table_name": table_name}
    if region:
        attributes["region"] = region
    return type("Meta", (), attributes)


@cache
def profile_model(table_name: str, region: str | None = None) -> type[ProfileModel]:
    return type("Profile", (ProfileModel,), {"Meta": _meta(table_name, region)})


@cache
def item_model(table_name: str, region: str | None = None) -> type[ItemModel]:
    return type("Item", (ItemModel,), {"Meta": _meta(table_name, region)})
