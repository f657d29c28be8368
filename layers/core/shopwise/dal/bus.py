"""Events on the account's default EventBridge bus (a campaign run completed: marketing tools subscribe)."""

from __future__ import annotations

import json
from typing import Any

from shopwise.dal.aws import client


def publish(source: str, detail_type: str, detail: dict[str, Any]) -> None:
    response = client("events").put_events(
        Entries=[{"Source": source, "DetailType": detail_type, "Detail": json.dumps(detail)}]
    )
    if response.get("FailedEntryCount"):
        raise RuntimeError(f"EventBridge refused the {detail_type!r} event: {response.get('Entries')}")
