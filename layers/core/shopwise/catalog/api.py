"""PUT /v1/items: the store's back office updates the catalog in place (price, stock, category, title ...).

Authorised by IAM at API Gateway (the store's back office signs its requests; see ``shopwise_cdk.serving``). Each
item is a partial update: only the fields given change, an unknown item is created. Answers per item, like
POST /v1/events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shopwise.events import Amount

MAX_ITEMS_PER_REQUEST = 100
MAX_BODY_BYTES = 1_000_000


class ItemPatch(BaseModel):
    """The fields of a catalog item that can change; absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    item_id: Annotated[str, Field(min_length=1, max_length=128)]
    title: Annotated[str, Field(max_length=512)] | None = None
    category: Annotated[str, Field(max_length=512)] | None = None
    price: Amount | None = None
    in_stock: bool | None = None
    brand: Annotated[str, Field(max_length=128)] | None = None
    market: Annotated[str, Field(max_length=8)] | None = None

    @field_validator("item_id", mode="before")
    @classmethod
    def _str_id(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, exclude={"item_id"})


@dataclass
class CatalogResult:
    results: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        counts = {s: sum(1 for r in self.results if r["status"] == s) for s in ("created", "updated", "rejected")}
        answer: dict[str, Any] = {**counts, "results": self.results}
        if not counts["created"] + counts["updated"]:  # every error answer says what was wrong
            first = next((r for r in self.results if r["status"] == "rejected"), {})
            answer["message"] = f"no item changed: the first rejected at {first.get('field')}: {first.get('reason')}"
        return answer


def update_catalog(raw_items: list[Any], table: str, features_table: str) -> CatalogResult:
    """Patch each valid item in place; stock changes also reach the out-of-stock set serving reads."""
    from shopwise.dal.catalog import patch_item, set_availability

    result = CatalogResult()
    stock: dict[str, bool] = {}
    for index, raw in enumerate(raw_items):
        item_id = raw.get("item_id") if isinstance(raw, dict) else None
        try:
            patch = ItemPatch.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "item"
            result.results.append(
                {"index": index, "item_id": item_id, "status": "rejected", "field": where, "reason": first["msg"]}
            )
            continue
        changes = patch.changes()
        if not changes:
            result.results.append(
                {
                    "index": index,
                    "item_id": patch.item_id,
                    "status": "rejected",
                    "field": "item",
                    "reason": "nothing to change: give at least one of title, category, price, in_stock, brand, market",
                }
            )
            continue
        created = patch_item(table, patch.item_id, changes)
        if patch.in_stock is not None:
            stock[patch.item_id] = patch.in_stock
        result.results.append({"index": index, "item_id": patch.item_id, "status": "created" if created else "updated"})
    set_availability(features_table, stock)
    return result
