"""The figures the lifecycle's parts pass between them: one definition read the same way by each."""

from __future__ import annotations

import math
import re
from dataclasses import fields

from shopwise.lifecycle.figures import DriftFigures, TrainingMetrics, metric_line, metric_pattern


def test_each_drift_figure_is_a_field_read_from_its_place_in_the_report() -> None:
    assert [f.name for f in DriftFigures.FIGURES] == [f.name for f in fields(DriftFigures)]
    report = {
        "max_feature_psi": 0.31,
        "event_mix_psi": float("nan"),  # not a number: not published
        "new_item_share": 0.05,
        "serving": {"personalised_share": 0.4, "last_to_first_score": {"p50": 0.25}},
        "performance": {"ctr": 0.02, "personalised_ctr": None},
    }
    figures = DriftFigures.from_report(report)
    assert figures.last_to_first_score_p50 == 0.25 and figures.event_mix_psi is None
    assert figures.metrics() == {
        "DriftMaxFeaturePSI": 0.31,
        "DriftNewItemShare": 0.05,
        "ServedPersonalisedShare": 0.4,
        "ServedLastToFirstScoreP50": 0.25,
        "RecommendationCTR": 0.02,
    }
    # the logged lines are what the job's metric definitions read back
    logged = DriftFigures.logged()
    for line in figures.log_lines():
        name = line.split()[1].split("=")[0]
        assert float(re.fullmatch(logged[name], line).group(1)) > 0  # type: ignore[union-attr]
    assert {f.metric for f in DriftFigures.alarmed()} == {
        "DriftMaxFeaturePSI",
        "DriftEventMixPSI",
        "DriftNewItemShare",
        "DriftUnknownShopperShare",
    }


def test_training_metrics_survive_the_document_and_older_documents_still_read() -> None:
    metrics = TrainingMetrics(
        "v1", "ndcg@10", "ease", "ease (l2=300)", {"ndcg@10": 0.1}, {"ndcg@10": 0.12, "recall@20": 0.2}, [1.0, 2.0]
    )
    assert TrainingMetrics.from_json({**metrics.to_json(), "models": {}}) == metrics
    older = {"model_version": "v0", "selected": "ease", "models": {"ease": {"test": {"ndcg@10": 0.1, "note": "x"}}}}
    assert (
        TrainingMetrics.from_json(older).test == {"ndcg@10": 0.1} and TrainingMetrics.from_json(older).summary == "ease"
    )
    assert metrics.log_lines() == ["metric ndcg@10=0.120000", "metric recall@20=0.200000"]
    match = re.fullmatch(metric_pattern("recall@20"), metric_line("recall@20", 0.2))
    assert match and math.isclose(float(match.group(1)), 0.2)
