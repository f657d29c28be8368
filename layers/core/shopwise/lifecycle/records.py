"""A trained model version as the registry records it: data window, metrics, hyperparameters, code version, where
its artefacts are, its status and why (``shopwise.lifecycle.registry`` keeps them; ``shopwise.lifecycle.gate``
judges them)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from shopwise.lifecycle.figures import TrainingMetrics


@dataclass
class ModelRecord:
    version: str
    status: str = "candidate"  # candidate | rejected | active | retired | rolled_back
    reason: str = ""
    trained_at: float = 0.0
    data_window: list[float] = field(default_factory=list)
    metric: str = "ndcg@10"
    validation: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)
    selected: str = ""
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    code_version: str = ""
    model_uri: str = ""
    output_uri: str = ""
    trigger: str = ""  # what started the run: schedule | drift: <alarms> | manual
    gate: str = ""  # the promotion gate's verdict and how it compared
    # the training job's comparison with the model serving then: {"version", "kind", "recipe": {...},
    # "candidate": {...}, "champion": {...}, "test_users", "skipped"} (shopwise_jobs.training.champion_comparison)
    champion: dict[str, Any] = field(default_factory=dict)
    # the version's package in the environment's SageMaker model package group (``shopwise.dal.model_packages``)
    package_arn: str = ""

    @classmethod
    def from_metrics(
        cls, version: str, metrics: TrainingMetrics, model_uri: str, code_version: str, trigger: str = ""
    ) -> ModelRecord:
        """A candidate from what the training job reported."""
        return cls(
            version=version,
            trained_at=time.time(),
            data_window=list(metrics.data_window),
            metric=metrics.metric,
            validation=dict(metrics.validation),
            test=dict(metrics.test),
            selected=metrics.summary,
            hyperparameters=dict(metrics.hyperparameters),
            code_version=code_version,
            model_uri=model_uri,
            trigger=trigger,
            champion=dict(metrics.champion),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelRecord:
        return cls(**data)
