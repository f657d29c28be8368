"""PynamoDB models bound to their table at run time: ``bound(Model, "shopwise-prod-config")`` is a subclass whose
Meta names the table (a factory, not a fixed ``Meta.table_name``, so one model serves every environment). The
endpoint comes from the standard AWS settings, like boto3's. Not imported on the serve path."""

from __future__ import annotations

from functools import cache
from typing import TypeVar

from pynamodb.models import Model

from shopwise.dal.aws import on_reset

M = TypeVar("M", bound=Model)


@cache
def _bound(model: type[Model], table: str) -> type[Model]:
    meta = type("Meta", (), {"table_name": table})
    return type(f"{model.__name__}In{table.replace('-', '_')}", (model,), {"Meta": meta})


def bound(model: type[M], table: str) -> type[M]:
    if not table:
        raise ValueError(f"{model.__name__}: no table name configured")
    return _bound(model, table)  # type: ignore[return-value]


on_reset(_bound.cache_clear)  # a bound model caches its connection, which holds the endpoint
