"""JSON on the per-event path: orjson, a compiled codec, for the feature store's documents, the ledger's rows, the
stream's records and the DynamoDB wire's bodies.

Why: the standard library's encoder and decoder were a fifth of the updater's CPU (``py-spy record --gil`` over
``tests/bench/bench_update.py --events 10000 --no-baseline``: ``json.dumps`` 9.7%, ``json.loads`` 11.4%; orjson's
2.2% and 4.1% after). The text is the same JSON: compact separators, UTF-8 (not ``\\u`` escapes, which the
documents never used either), keys sorted where asked. Values orjson refuses and the standard library takes
(integers past 64 bits) fall back to the standard library, so nothing that encoded before fails now. Not the same:
a NaN or an infinity encodes as ``null`` (the standard library wrote ``NaN``, which is not JSON); no input reaches
a document with one (``shopwise.events`` and the catalog reject non-finite numbers), and a decoder here, as every
other JSON reader, refuses ``NaN`` rather than reading it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson


def dumps(value: Any, *, sort_keys: bool = False, default: Callable[[Any], Any] | None = None) -> bytes:
    """``value`` as compact UTF-8 JSON."""
    try:
        return orjson.dumps(value, default=default, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
    except orjson.JSONEncodeError:
        text = json.dumps(value, separators=(",", ":"), sort_keys=sort_keys, ensure_ascii=False, default=default)
        return text.encode()


def dumps_text(value: Any, *, sort_keys: bool = False) -> str:
    """``dumps`` as a string: a DynamoDB string attribute's value."""
    return dumps(value, sort_keys=sort_keys).decode()


def loads(text: bytes | bytearray | memoryview | str) -> Any:
    """The value of a JSON text (raises orjson.JSONDecodeError, a ValueError as json's, for anything else)."""
    return orjson.loads(text)
