"""`make demo` as a user runs it, minus the serving loop: every stage, then the API answers for a known and an
unknown shopper."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shopwise_local.demo import STAGES, DemoOptions, run_demo
from shopwise_local.endpoint import free_port

pytestmark = pytest.mark.e2e


def test_demo_runs_every_stage_and_reports_timings(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = run_demo(DemoOptions(aws_port=free_port(), api_port=free_port(), serve=False, progress=False))

    out = capsys.readouterr().out
    assert list(summary["timings_s"]) == STAGES
    assert summary["metrics"]["ndcg@10"] > 0
    assert "user " in out and ": personalised, first:" in out
    assert "unknown user: global, first:" in out
    # a view sent through the API reaches the shopper's next product-page list within the wait
    assert "then on a product page: sources realtime" in out
    assert "curl -s 'http://127.0.0.1:" in out
    assert json.loads((state_dir / "demo-summary.json").read_text())["model_version"] == summary["model_version"]
    # everything it started is stopped again
    assert not (state_dir / "stack.json").exists()
