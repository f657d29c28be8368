"""The catalog item, as the bulk import and the catalog API see it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shopwise.catalog import categories


class CatalogItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_id: Annotated[str, Field(min_length=1, max_length=128)]
    title: Annotated[str, Field(max_length=512)] = ""
    # category path, most general first: "Movies>Comedy>Romance"
    category: Annotated[str, Field(max_length=512)] = ""
    price: Annotated[float, Field(ge=0)] | None = None
    brand: Annotated[str, Field(max_length=128)] = ""
    in_stock: bool = True
    created_at: datetime | None = None
    market: Annotated[str, Field(max_length=8)] = ""
    attributes: dict[str, Any] = {}

    @field_validator("item_id", mode="before")
    @classmethod
    def _str_id(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @property
    def category_path(self) -> list[str]:
        return categories.parts(self.category)
