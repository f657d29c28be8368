"""The promotion gate: whether a candidate may replace the active version, and every reason it may not.

It compares the candidate with the active version without the active one's advantage of having trained on the data
it is judged on: the training job (the active model as its champion channel) refits the active model's recipe on the
candidate's validation split, and scores the active artefact beside the candidate on the test interactions after the
active model's data window. A candidate worse by more than a margin, and by more than two standard errors, in either
comparison is refused; so is one that fails a sanity check (a metric that is not a number, a catalog coverage below
a floor). Pure: no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from shopwise.config import PROMOTION_MARGIN
from shopwise.lifecycle.records import ModelRecord

MIN_COVERAGE = 0.01  # of the catalog in someone's top 10, on the test split


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reasons: list[str]
    compared_with: str = ""
    basis: str = ""  # how the comparison with the active version was made (or why it was not)


def gate(candidate: ModelRecord, current: ModelRecord | None, margin: float = PROMOTION_MARGIN) -> GateResult:
    """Whether the candidate may replace the active version, and every reason it may not."""
    reasons: list[str] = []
    value = candidate.validation.get(candidate.metric)
    if value is None or not math.isfinite(value):
        reasons.append(f"validation {candidate.metric} is {value!r}: not a number")
    bad = sorted(k for k, v in candidate.test.items() if not math.isfinite(v))
    if bad:
        reasons.append(f"test metrics that are not numbers: {', '.join(bad)}")
    coverage = candidate.test.get("coverage@10")
    if coverage is not None and coverage < MIN_COVERAGE:
        reasons.append(f"coverage@10 {coverage:.4f} is below the floor {MIN_COVERAGE}")
    basis = "no active model"
    if current is not None and value is not None and math.isfinite(value):
        comparisons = _comparisons(candidate, current)
        basis = "; ".join(c[0] for c in comparisons)
        for where, mine, theirs, noise in comparisons:
            if mine is not None and theirs is not None and mine < theirs * (1.0 - margin) and theirs - mine > noise:
                reasons.append(
                    f"{candidate.metric} {mine:.4f} is more than {margin:.0%} below the active version "
                    f"{current.version}'s {theirs:.4f} {where}"
                    + (f", beyond two standard errors of the difference ({noise:.4f})" if noise else "")
                )
    return GateResult(not reasons, reasons, current.version if current else "", basis)


def _noise(mine: dict[str, Any], theirs: dict[str, Any], metric: str) -> float:
    errors = [float(side.get(f"se/{metric}", 0.0) or 0.0) for side in (mine, theirs)]
    return 2.0 * math.sqrt(errors[0] ** 2 + errors[1] ** 2)


def _comparisons(candidate: ModelRecord, current: ModelRecord) -> list[tuple[str, float | None, float | None, float]]:
    """Each way the candidate is compared with the active model: (where, its figure, the active one's, the noise a
    shortfall must exceed). When the training job had the active model as its champion: its recipe refitted on
    the candidate's validation split (same data, no leak), and the artefact itself on the test shoppers who acted
    after its data window (skipped when fewer than 20). Without a champion comparison (no channel, an older
    record): the two validation metrics, each on its own window, margin only."""
    champion, metric = candidate.champion, candidate.metric
    if champion.get("version") != current.version:
        return [
            (
                "on validation windows of their own",
                candidate.validation.get(metric),
                current.validation.get(metric),
                0.0,
            )
        ]
    found = []
    recipe = champion.get("recipe") or {}
    if metric in recipe:
        found.append(
            (
                "with its recipe refitted on the same validation split",
                candidate.validation.get(metric),
                recipe.get(metric),
                _noise(candidate.validation, recipe, metric),
            )
        )
    if champion.get("skipped"):
        found.append((f"(its artefact not compared: {champion['skipped']})", None, None, 0.0))
    else:
        mine, theirs = champion.get("candidate") or {}, champion.get("champion") or {}
        found.append(
            (
                f"on the {champion.get('test_users', 0)} test shoppers after its data window",
                mine.get(metric),
                theirs.get(metric),
                _noise(mine, theirs, metric),
            )
        )
    return found
