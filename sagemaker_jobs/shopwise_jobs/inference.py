"""Batch-transform handler functions, as the SageMaker inference toolkit calls them: model_fn once, then
input_fn -> predict_fn -> output_fn per request. Requests and answers are JSON Lines."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from shopwise_jobs.artifacts import TrainedModel
from shopwise_jobs.scoring import answer

JSON_LINES = "application/jsonlines"


def model_fn(model_dir: str) -> TrainedModel:
    """The model, without the shoppers erased since it was trained (``SHOPWISE_ERASURES``: the s3:// prefix of the
    pending erasures, set on the transform job): no list is computed for them."""
    model = TrainedModel.load(Path(model_dir))
    erasures = os.environ.get("SHOPWISE_ERASURES", "")
    if erasures:
        from shopwise.dal.erasures import pending_targets

        targets = pending_targets(erasures)
        if targets:
            model = model.without_users(np.array([targets.alias(str(u)) for u in model.users], dtype=bool))
    return model


def input_fn(body: str | bytes, content_type: str = JSON_LINES) -> list[dict[str, Any]]:
    if content_type not in (JSON_LINES, "application/json", "application/x-jsonlines"):
        raise ValueError(f"unsupported content type {content_type!r}: send {JSON_LINES}")
    text = body.decode() if isinstance(body, bytes) else body
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def predict_fn(requests: list[dict[str, Any]], model: TrainedModel) -> list[dict[str, Any]]:
    k = int(os.environ.get("SHOPWISE_TOP_K", model.meta.get("hyperparameters", {}).get("top_k", 50)))
    return [row for request in requests for row in answer(model, request, k)]


def output_fn(rows: list[dict[str, Any]], accept: str = JSON_LINES) -> str:
    return "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows)
