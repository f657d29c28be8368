"""The figures the model lifecycle passes between its parts, defined once: what the training job reports and the
registry records (``TrainingMetrics``), and what the drift job reports, the drift function publishes as CloudWatch
metrics and the CDK app alarms on and plots (``DriftFigures``). Jobs log some figures as ``metric <name>=<value>``
lines, which SageMaker turns into job metrics through the regular expressions given here."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from shopwise.config import NEW_ITEM_ALARM, PSI_ALARM, UNKNOWN_SHOPPER_ALARM


def metric_line(name: str, value: float) -> str:
    """How a job logs a figure for SageMaker's metric definitions."""
    return f"metric {name}={value:.6f}"


def metric_pattern(name: str) -> str:
    """The metric definition's regular expression that reads ``metric_line(name, ...)``."""
    return rf"metric {name}=([0-9.]+)"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


@dataclass(frozen=True)
class TrainingMetrics:
    """The part of the training job's ``metrics.json`` the registry records and the gate judges (the document also
    holds every family's figures, the splits and timings, for people)."""

    model_version: str
    metric: str  # what selection maximised on the validation split ("ndcg@10")
    selected: str  # the selected family
    summary: str  # the selection, readable ("hybrid of ...")
    validation: dict[str, float]  # the selected model's validation figure (and its standard error)
    test: dict[str, float]  # the selected model's figures on the test split
    data_window: list[float]  # the first and last interaction trained on (epoch seconds)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    champion: dict[str, Any] = field(default_factory=dict)  # the comparison with the model serving then, if any

    # the selected model's test figures the job logs as metric lines (the training job's metric definitions)
    LOGGED: ClassVar[tuple[str, ...]] = ("ndcg@10", "recall@10", "recall@20")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> TrainingMetrics:
        """From a metrics.json (older documents kept the selected model's test figures only under ``models``)."""
        selected = str(doc.get("selected", ""))
        test = doc.get("test") or (doc.get("models", {}).get(selected, {}) or {}).get("test") or {}
        return cls(
            model_version=str(doc.get("model_version", "")),
            metric=str(doc.get("metric", "ndcg@10")),
            selected=selected,
            summary=str(doc.get("summary") or selected),
            validation={k: float(v) for k, v in (doc.get("validation") or {}).items() if v is not None},
            test={k: float(v) for k, v in test.items() if isinstance(v, int | float)},
            data_window=[float(x) for x in doc.get("data_window", [])],
            hyperparameters=dict(doc.get("hyperparameters") or {}),
            champion=dict(doc.get("champion") or {}),
        )

    def log_lines(self) -> list[str]:
        return [metric_line(k, self.test[k]) for k in self.LOGGED if k in self.test]


@dataclass(frozen=True)
class DriftFigure:
    """One figure of the drift report: where it sits in drift.json, its CloudWatch metric, and its alarm."""

    name: str  # the DriftFigures field
    metric: str  # the CloudWatch metric the drift function publishes (namespace ``shopwise``)
    path: tuple[str, ...]  # where drift.json holds it
    alarm: float | None = None  # above this it alarms and starts a retrain (None: published and plotted only)
    means: str = ""
    logged: str = ""  # the job also logs it as this metric line (the drift job's metric definitions)
    statistic: str = "Maximum"


@dataclass(frozen=True)
class DriftFigures:
    """The drift job's figures (``shopwise_jobs.drift``), as the drift function publishes them."""

    max_feature_psi: float | None = None
    event_mix_psi: float | None = None
    new_item_share: float | None = None
    unknown_shopper_share: float | None = None
    personalised_share: float | None = None
    coverage: float | None = None
    last_to_first_score_p50: float | None = None
    ctr: float | None = None
    personalised_ctr: float | None = None

    FIGURES: ClassVar[tuple[DriftFigure, ...]] = (
        DriftFigure(
            "max_feature_psi",
            "DriftMaxFeaturePSI",
            ("max_feature_psi",),
            PSI_ALARM,
            "a profile or item feature shifted (PSI)",
            "drift_max_psi",
        ),
        DriftFigure(
            "event_mix_psi", "DriftEventMixPSI", ("event_mix_psi",), PSI_ALARM, "the event-type mix shifted (PSI)"
        ),
        DriftFigure(
            "new_item_share",
            "DriftNewItemShare",
            ("new_item_share",),
            NEW_ITEM_ALARM,
            "recent interactions on items the model does not know",
            "drift_new_item_share",
        ),
        DriftFigure(
            "unknown_shopper_share",
            "DriftUnknownShopperShare",
            ("unknown_shopper_share",),
            UNKNOWN_SHOPPER_ALARM,
            "recent shoppers the model does not know",
            "drift_unknown_shopper_share",
        ),
        DriftFigure("personalised_share", "ServedPersonalisedShare", ("serving", "personalised_share")),
        DriftFigure("coverage", "ServedCatalogCoverage", ("serving", "coverage")),
        DriftFigure("last_to_first_score_p50", "ServedLastToFirstScoreP50", ("serving", "last_to_first_score", "p50")),
        DriftFigure("ctr", "RecommendationCTR", ("performance", "ctr"), statistic="Average"),
        DriftFigure("personalised_ctr", "PersonalisedCTR", ("performance", "personalised_ctr"), statistic="Average"),
    )
    ALARMS_METRIC: ClassVar[str] = "DriftAlarms"  # how many alarms the report raised

    @classmethod
    def from_report(cls, report: dict[str, Any]) -> DriftFigures:
        values: dict[str, float | None] = {}
        for figure in cls.FIGURES:
            value: Any = report
            for part in figure.path:
                value = value.get(part) if isinstance(value, dict) else None
            values[figure.name] = _number(value)
        return cls(**values)

    def metrics(self) -> dict[str, float]:
        """CloudWatch metric name -> value, for the figures the report has."""
        return {f.metric: value for f in self.FIGURES if (value := getattr(self, f.name)) is not None}

    def log_lines(self) -> list[str]:
        return [
            metric_line(f.logged, value)
            for f in self.FIGURES
            if f.logged and (value := getattr(self, f.name)) is not None
        ]

    @classmethod
    def figure(cls, name: str) -> DriftFigure:
        return next(f for f in cls.FIGURES if f.name == name)

    @classmethod
    def alarmed(cls) -> tuple[DriftFigure, ...]:
        """The figures with an alarm threshold (the alarms that start a retrain)."""
        return tuple(f for f in cls.FIGURES if f.alarm is not None)

    @classmethod
    def logged(cls) -> dict[str, str]:
        """Logged metric name -> its metric definition's regular expression (the drift job's)."""
        return {f.logged: metric_pattern(f.logged) for f in cls.FIGURES if f.logged}
