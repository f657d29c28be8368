"""A/B experiments in configuration: variants with weights and a holdout served a non-personalised control.

The experiments live in the config table (row ``experiments``, a JSON list) and are read in the request's one
round trip, so a change takes effect on the next request. ``shopwise experiments set FILE`` writes them (an
operator's IAM credentials: there is no HTTP route that changes them). Assignment hashes the shopper's profile id
with the experiment's salt: stable across requests and devices once the shopper is stitched, independent between
experiments with different salts.

    [{"name": "home-realtime", "salt": "2026-11", "holdout": 0.05, "placements": ["home", "product"],
      "variants": [{"name": "control", "weight": 1},
                   {"name": "more-realtime", "weight": 1, "params": {"realtime_weight": 1.2}}]}]
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

EXPERIMENTS_KEY = "experiments"
HOLDOUT = "holdout"
DEFAULT_VARIANT = "default"
PLACEMENTS = ("home", "product", "cart", "email")
# the blend's knobs a variant may set (shopwise.serving.blend.BlendParams)
PARAMS = ("personal_weight", "realtime_weight", "max_per_category")


class ExperimentError(ValueError):
    pass


@dataclass(frozen=True)
class Variant:
    name: str
    weight: float
    params: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    name: str
    salt: str
    holdout: float
    variants: tuple[Variant, ...]
    placements: tuple[str, ...] = PLACEMENTS

    @classmethod
    def from_json(cls, raw: Any) -> Experiment:
        if not isinstance(raw, dict):
            raise ExperimentError("an experiment is a JSON object with name, salt, holdout and variants")
        name = str(raw.get("name") or "")
        if not name:
            raise ExperimentError("experiment: name is required")
        holdout = raw.get("holdout", 0.0)
        if not isinstance(holdout, int | float) or not 0 <= holdout < 1:
            raise ExperimentError(f"{name}: holdout must be a share in [0, 1), got {holdout!r}")
        variants = raw.get("variants") or []
        if not isinstance(variants, list) or not variants:
            raise ExperimentError(f"{name}: variants must be a non-empty list")
        parsed = []
        for v in variants:
            if not isinstance(v, dict) or not v.get("name"):
                raise ExperimentError(f"{name}: every variant needs a name")
            weight = v.get("weight", 1)
            if not isinstance(weight, int | float) or weight <= 0:
                raise ExperimentError(f"{name}/{v['name']}: weight must be a positive number, got {weight!r}")
            params = v.get("params") or {}
            unknown = sorted(set(params) - set(PARAMS))
            if unknown:
                raise ExperimentError(f"{name}/{v['name']}: unknown params {unknown}; known: {list(PARAMS)}")
            bad = [k for k, value in params.items() if not isinstance(value, int | float) or value < 0]
            if bad:
                raise ExperimentError(f"{name}/{v['name']}: params {bad} must be non-negative numbers")
            parsed.append(Variant(str(v["name"]), float(weight), {k: float(x) for k, x in params.items()}))
        if len({v.name for v in parsed}) != len(parsed) or HOLDOUT in {v.name for v in parsed}:
            raise ExperimentError(f"{name}: variant names must be distinct and not {HOLDOUT!r}")
        placements = raw.get("placements") or list(PLACEMENTS)
        wrong = sorted(set(placements) - set(PLACEMENTS))
        if wrong:
            raise ExperimentError(f"{name}: unknown placements {wrong}; known: {list(PLACEMENTS)}")
        return cls(name, str(raw.get("salt") or name), float(holdout), tuple(parsed), tuple(placements))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "salt": self.salt,
            "holdout": self.holdout,
            "placements": list(self.placements),
            "variants": [{"name": v.name, "weight": v.weight, "params": v.params} for v in self.variants],
        }


def parse_experiments(text: str) -> list[Experiment]:
    """The stored (or uploaded) JSON list; every problem is an ExperimentError that names it."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExperimentError(f"experiments are not JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(raw, list):
        raise ExperimentError("experiments: expected a JSON list of experiments")
    experiments = [Experiment.from_json(r) for r in raw]
    names = [e.name for e in experiments]
    if len(set(names)) != len(names):
        raise ExperimentError(f"experiment names must be distinct: {names}")
    return experiments


@dataclass(frozen=True)
class Assignment:
    experiment: str  # "" when no experiment covers the placement
    variant: str
    params: dict[str, float]

    @property
    def holdout(self) -> bool:
        return self.variant == HOLDOUT


NO_EXPERIMENT = Assignment("", DEFAULT_VARIANT, {})


def bucket(salt: str, profile_id: str) -> float:
    """A stable, uniform number in [0, 1) for this shopper and salt."""
    digest = hashlib.blake2b(f"{salt}:{profile_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def assign(experiments: list[Experiment], placement: str, profile_id: str) -> Assignment:
    """The first experiment that covers the placement decides: the holdout share first, then variants by weight."""
    for experiment in experiments:
        if placement not in experiment.placements:
            continue
        u = bucket(experiment.salt, profile_id)
        if u < experiment.holdout:
            return Assignment(experiment.name, HOLDOUT, {})
        u = (u - experiment.holdout) / (1.0 - experiment.holdout)
        total = sum(v.weight for v in experiment.variants)
        edge = 0.0
        for variant in experiment.variants:
            edge += variant.weight / total
            if u < edge:
                return Assignment(experiment.name, variant.name, variant.params)
        last = experiment.variants[-1]
        return Assignment(experiment.name, last.name, last.params)
    return NO_EXPERIMENT
