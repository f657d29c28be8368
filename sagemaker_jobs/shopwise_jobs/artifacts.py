"""The model directory: what training writes and batch transform reads.

Each model object is a dataclass of numpy arrays, sparse matrices and numbers; it is stored field by field
(``<part>.<field>.npy``; a sparse matrix as the folder ``<part>.<field>.csr/`` of its ``data``, ``indices``,
``indptr`` and ``shape`` arrays; numbers in ``model.json``) so a 1 GB EASE matrix is written and read without
pickling, and the directory says what it holds.

Read memory-mapped: every array, the users' history too, is a copy-on-write map of its file, so the batch
transform's workers on one instance share one copy of the model in the page cache instead of a copy each, and a
worker touches only the pages of the rows it scores. Copy-on-write, not read-only: ``implicit``'s compiled fold-in
takes only writable buffers (it writes nothing; a write would copy just that page into the writer's memory, never
reach the file). Directories written before (``.npz`` matrices) still load, into memory.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

from shopwise_jobs.models import EASE, IALS, Affinity, ContentKNN, Hybrid, ItemKNN, Popularity, SequentialRules

KINDS: dict[str, type] = {
    "popularity": Popularity,
    "itemknn": ItemKNN,
    "ease": EASE,
    "ials": IALS,
    "sequential": SequentialRules,
    "content": ContentKNN,
    "affinity": Affinity,
}


def save_csr(path: Path, matrix: sparse.spmatrix) -> None:
    """A sparse matrix as the folder ``path`` (``<name>.csr``): its CSR arrays, one ``.npy`` each, each written
    beside its file and moved over it (a reader's memory map of the old file stays valid; a crash leaves the old)."""
    matrix = sparse.csr_matrix(matrix)
    path.mkdir(parents=True, exist_ok=True)
    for name, array in (
        ("data", matrix.data),
        ("indices", matrix.indices),
        ("indptr", matrix.indptr),
        ("shape", np.array(matrix.shape, dtype=np.int64)),
    ):
        with (path / f"{name}.npy.part").open("wb") as handle:
            np.save(handle, array, allow_pickle=False)
        os.replace(path / f"{name}.npy.part", path / f"{name}.npy")


def load_csr(path: Path) -> sparse.csr_matrix:
    """``save_csr``'s folder as a CSR matrix over copy-on-write memory maps of its arrays (nothing is read until
    used)."""
    arrays = {n: np.load(path / f"{n}.npy", mmap_mode="c", allow_pickle=False) for n in ("data", "indices", "indptr")}
    shape = tuple(int(v) for v in np.load(path / "shape.npy", allow_pickle=False))
    return sparse.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape, copy=False)


def load_matrix(base: Path) -> sparse.csr_matrix:
    """The matrix stored at ``base`` (no suffix): the ``.csr`` folder, or the ``.npz`` file of older directories."""
    if base.with_name(base.name + ".npz").exists():
        return sparse.load_npz(base.with_name(base.name + ".npz")).tocsr()
    return load_csr(base.with_name(base.name + ".csr"))


def save_part(obj: Any, model_dir: Path, part: str) -> dict[str, Any]:
    """Arrays of a model dataclass to files; returns its scalar fields."""
    scalars: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if sparse.issparse(value):
            save_csr(model_dir / f"{part}.{f.name}.csr", value)
        elif isinstance(value, np.ndarray):
            np.save(model_dir / f"{part}.{f.name}.npy", value, allow_pickle=False)
        else:
            scalars[f.name] = value
    return scalars


def load_part(cls: type, model_dir: Path, part: str, scalars: dict[str, Any]) -> Any:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in scalars:
            values[f.name] = scalars[f.name]
        elif (model_dir / f"{part}.{f.name}.npy").exists():
            values[f.name] = np.load(model_dir / f"{part}.{f.name}.npy", mmap_mode="c", allow_pickle=False)
        else:
            values[f.name] = load_matrix(model_dir / f"{part}.{f.name}")
    return cls(**values)


@dataclass
class TrainedModel:
    users: np.ndarray
    items: np.ndarray
    history: sparse.csr_matrix  # users x items strength: scores the users, excludes what they own
    kind: str  # the selected model family
    model: Any  # one of KINDS
    similar: ItemKNN  # item-item neighbours: similar items, and the item that explains a pick
    next_items: SequentialRules  # what shoppers go on to after an item within a session
    popularity: Popularity
    content: ContentKNN | None  # neighbours for items nobody has touched yet
    segments: dict[str, list[list[Any]]]  # "category:<c>" / "market:<m>" -> [[item_id, score], ...] best first
    meta: dict[str, Any]
    # item id -> [category path, title] for the model's items: serving's filters, diversity rule and reason texts
    catalog: dict[str, list[str]] = field(default_factory=dict)

    def category(self, item_id: str) -> str:
        return self.catalog.get(item_id, ["", ""])[0]

    def title(self, item_id: str) -> str:
        return self.catalog.get(item_id, ["", ""])[1]

    def without_users(self, drop: np.ndarray) -> TrainedModel:
        """The model without some users (a boolean mask over ``users``): their index entries and history rows."""
        keep = np.flatnonzero(~drop)
        return dataclasses.replace(self, users=self.users[keep], history=self.history[keep])

    def save(self, model_dir: Path) -> None:
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "users.json").write_text(json.dumps(self.users.tolist()))
        (model_dir / "items.json").write_text(json.dumps(self.items.tolist()))
        save_csr(model_dir / "history.csr", self.history)
        parts: dict[str, tuple[str, Any]] = {
            "similar": ("itemknn", self.similar),
            "next": ("sequential", self.next_items),
            "popularity": ("popularity", self.popularity),
        }
        if isinstance(self.model, Hybrid):  # one part per blended model: model.0, model.1, ...
            for n, (kind, part) in enumerate(zip(self.model.kinds, self.model.parts, strict=True)):
                parts[f"model.{n}"] = (kind, part)
        else:
            parts["model"] = (self.kind, self.model)
        if self.content is not None:
            parts["content"] = ("content", self.content)
        stored = {
            part: {"kind": kind, "scalars": save_part(obj, model_dir, part)} for part, (kind, obj) in parts.items()
        }
        (model_dir / "segments.json").write_text(json.dumps(self.segments))
        (model_dir / "catalog.json").write_text(json.dumps(self.catalog))
        doc = {**self.meta, "kind": self.kind, "parts": stored}
        if isinstance(self.model, Hybrid):
            doc["hybrid_weights"] = self.model.weights
        (model_dir / "model.json").write_text(json.dumps(doc, indent=2, sort_keys=True, default=str))

    @classmethod
    def load(cls, model_dir: Path) -> TrainedModel:
        missing = [n for n in ("users.json", "items.json", "model.json") if not (model_dir / n).exists()]
        if missing:
            raise FileNotFoundError(f"{model_dir} is not a shopwise model directory (missing {', '.join(missing)})")
        meta = json.loads((model_dir / "model.json").read_text())
        specs = meta.pop("parts")
        parts = {part: load_part(KINDS[spec["kind"]], model_dir, part, spec["scalars"]) for part, spec in specs.items()}
        kinds = {part: spec["kind"] for part, spec in specs.items()}
        if meta["kind"] == "hybrid":
            count = len(meta["hybrid_weights"])
            model = Hybrid(
                parts=[parts[f"model.{n}"] for n in range(count)],
                kinds=[kinds[f"model.{n}"] for n in range(count)],
                weights=meta["hybrid_weights"],
            )
        else:
            model = parts["model"]
        return cls(
            users=np.array(json.loads((model_dir / "users.json").read_text()), dtype=str),
            items=np.array(json.loads((model_dir / "items.json").read_text()), dtype=str),
            history=load_matrix(model_dir / "history"),
            kind=meta["kind"],
            model=model,
            similar=parts["similar"],
            next_items=parts["next"],
            popularity=parts["popularity"],
            content=parts.get("content"),
            segments=json.loads((model_dir / "segments.json").read_text()),
            meta=meta,
            catalog=json.loads((model_dir / "catalog.json").read_text())
            if (model_dir / "catalog.json").exists()
            else {},
        )
