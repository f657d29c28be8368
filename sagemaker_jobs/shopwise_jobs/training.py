"""The training job: build the data set, select and evaluate models on a temporal split, fit on everything,
write the model and metrics.json. Runs under the SageMaker script-mode contract (see ``contract.py``)."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from shopwise_jobs.artifacts import TrainedModel
from shopwise_jobs.contract import TrainingContract
from shopwise_jobs.dataset import interaction_matrix, read_catalog, read_event_files, temporal_split
from shopwise_jobs.evaluation import evaluate
from shopwise_jobs.models import ItemKNN, Popularity


@dataclass(frozen=True)
class Hyperparameters:
    top_k: int = 50
    neighbours: int = 100
    shrinkage: float = 10.0
    test_fraction: float = 0.1
    half_life_days: float = 0.0
    popular_window_days: float = 30.0
    eval_k: int = 10
    model_version: str = ""

    @classmethod
    def parse(cls, values: dict[str, Any]) -> Hyperparameters:
        known = {f: t for f, t in cls.__annotations__.items()}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown hyperparameters: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        casts = {"int": int, "float": float, "str": str}
        return cls(**{k: casts[known[k]](v) for k, v in values.items()})


def _popularity(matrix_interactions: Any, window_days: float, items: np.ndarray) -> Popularity:
    """Popularity in the last window; all-time strength breaks ties and fills items quiet in the window."""
    recent_cut = float(matrix_interactions["ts"].max()) - window_days * 86400.0
    recent = matrix_interactions[matrix_interactions["ts"] >= recent_cut]
    index = {item: i for i, item in enumerate(items)}
    scores = np.zeros(len(items), dtype=np.float32)
    for frame, scale in ((matrix_interactions, 1e-3), (recent, 1.0)):
        counts = frame.groupby("item_id").size()
        for item, count in counts.items():
            if item in index:
                scores[index[item]] += scale * float(count)
    return Popularity(scores=scores)


def train(contract: TrainingContract, log: Any = print) -> dict[str, Any]:
    started = time.time()
    hp = Hyperparameters.parse(contract.hyperparameters)
    version = hp.model_version or contract.job_name
    data = read_event_files(contract.channel("events"))
    interactions = data.interactions
    if data.skipped:
        log(f"skipped {data.skipped} of {data.records} archive records that are not valid events")
    catalog_dir = contract.optional_channel("catalog")
    catalog_items = len(read_catalog(catalog_dir)) if catalog_dir else 0
    log(
        f"data: {len(interactions)} interactions, {interactions['user_id'].nunique()} users, "
        f"{interactions['item_id'].nunique()} items, catalog {catalog_items} items"
    )

    split = temporal_split(interactions, hp.test_fraction)
    train_matrix = interaction_matrix(split.train, half_life_days=hp.half_life_days)
    candidates: dict[str, Popularity | ItemKNN] = {
        "popularity": _popularity(split.train, hp.popular_window_days, train_matrix.items),
        "itemknn": ItemKNN.fit(train_matrix.matrix, hp.neighbours, hp.shrinkage),
    }
    results = {name: evaluate(model.score, train_matrix, split.test, hp.eval_k) for name, model in candidates.items()}
    selected = max(results, key=lambda name: results[name][f"recall@{hp.eval_k}"])
    for name, metrics in results.items():
        log(f"validation {name}: " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))

    full = interaction_matrix(interactions, half_life_days=hp.half_life_days)
    model = TrainedModel(
        users=full.users,
        items=full.items,
        history=full.matrix,
        knn=ItemKNN.fit(full.matrix, hp.neighbours, hp.shrinkage),
        popularity=_popularity(interactions, hp.popular_window_days, full.items),
        meta={
            "model_version": version,
            "trained_at": int(time.time()),
            "hyperparameters": hp.__dict__,
            "users": len(full.users),
            "items": len(full.items),
            "interactions": len(interactions),
        },
    )
    model.save(contract.model_dir)
    metrics_doc = {
        "model_version": version,
        "selected": selected,
        f"recall@{hp.eval_k}": results[selected][f"recall@{hp.eval_k}"],
        "split": {"kind": "temporal", "cutoff": split.cutoff, "test_fraction": hp.test_fraction},
        "models": results,
        "archive_records": data.records,
        "skipped_records": data.skipped,
        "train_seconds": round(time.time() - started, 2),
    }
    for directory in (contract.model_dir, contract.output_data_dir):
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "metrics.json").write_text(json.dumps(metrics_doc, indent=2))
    # metric lines for the job's metric definitions (regex "recall@10=([0-9.]+)")
    for name, metrics in results.items():
        for key, value in metrics.items():
            log(f"metric {name}:{key}={value:.6f}")
    log(f"metric recall@{hp.eval_k}={metrics_doc[f'recall@{hp.eval_k}']:.6f}")
    return metrics_doc


def main(argv: list[str] | None = None) -> int:
    contract = TrainingContract.from_environment(sys.argv[1:] if argv is None else argv)
    try:
        train(contract)
    except Exception as exc:
        contract.fail(exc)
        raise
    return 0
