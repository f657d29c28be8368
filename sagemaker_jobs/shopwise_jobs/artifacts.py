"""The model directory: what training writes and batch transform reads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

from shopwise_jobs.models import ItemKNN, Popularity


@dataclass
class TrainedModel:
    users: np.ndarray
    items: np.ndarray
    history: sparse.csr_matrix  # users x items strength, used to score and to exclude owned items
    knn: ItemKNN
    popularity: Popularity
    meta: dict[str, Any]

    def save(self, model_dir: Path) -> None:
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "users.json").write_text(json.dumps(self.users.tolist()))
        (model_dir / "items.json").write_text(json.dumps(self.items.tolist()))
        sparse.save_npz(model_dir / "history.npz", self.history)
        sparse.save_npz(model_dir / "similarity.npz", self.knn.similarity)
        np.save(model_dir / "popularity.npy", self.popularity.scores)
        (model_dir / "model.json").write_text(json.dumps(self.meta, indent=2, sort_keys=True))

    @classmethod
    def load(cls, model_dir: Path) -> TrainedModel:
        missing = [n for n in ("users.json", "items.json", "model.json") if not (model_dir / n).exists()]
        if missing:
            raise FileNotFoundError(f"{model_dir} is not a shopwise model directory (missing {', '.join(missing)})")
        return cls(
            users=np.array(json.loads((model_dir / "users.json").read_text()), dtype=str),
            items=np.array(json.loads((model_dir / "items.json").read_text()), dtype=str),
            history=sparse.load_npz(model_dir / "history.npz").tocsr(),
            knn=ItemKNN(similarity=sparse.load_npz(model_dir / "similarity.npz").tocsr()),
            popularity=Popularity(scores=np.load(model_dir / "popularity.npy")),
            meta=json.loads((model_dir / "model.json").read_text()),
        )
