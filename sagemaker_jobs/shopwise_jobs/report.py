"""`shopwise evaluate`: every model family tuned on the validation split and reported on the test split, as a
table (stdout), a JSON file and an HTML report with a plot of each metric against K per model."""

from __future__ import annotations

import base64
import html
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from shopwise_jobs.dataset import read_catalog, read_events_any
from shopwise_jobs.selection import Result
from shopwise_jobs.training import Hyperparameters, describe, tune

Log = Callable[[str], None]
TABLE_COLUMNS = [
    ("ndcg@10", "ndcg@10"),
    ("recall@20", "recall@20"),
    ("hitrate@10", "hit@10"),
    ("mrr", "mrr"),
    ("coverage@10", "cov@10"),
    ("popularity@10", "pop@10"),
    ("revenue_hitrate@10", "rev@10"),
    ("cold_users/ndcg@10", "coldU ndcg@10"),
    ("cold_items/recall@20", "coldI rec@20"),
]
CURVES = ["ndcg", "recall", "hitrate", "coverage"]


def table(results: list[Result]) -> str:
    header = f"{'model':<22}" + "".join(f"{label:>14}" for _, label in TABLE_COLUMNS) + "  params"
    lines = [header]
    for r in results:
        m = r.test.metrics if r.test else {}
        cells = "".join(f"{m[key]:>14.4f}" if key in m else f"{'-':>14}" for key, _ in TABLE_COLUMNS)
        lines.append(f"{r.name:<22}{cells}  {r.params}")
    return "\n".join(lines)


def plot_curves(results: list[Result]) -> bytes:
    """Each metric against K per model (peers dashed): ``evaluation.png``."""
    return plot_models(
        {r.name: {"test": r.test.metrics, "peer": r.peer} for r in results if r.test is not None},
    )


def plot_models(models: dict[str, dict[str, Any]]) -> bytes:
    """The same plot from a metrics document's ``models`` table (name -> {"test": {"ndcg@10": ..}, "peer"}): what
    the training job writes beside metrics.json, so every registered version has its figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CURVES), figsize=(4.2 * len(CURVES), 3.6))
    for ax, metric in zip(axes, CURVES, strict=True):
        ks: list[int] = []
        for name, doc in models.items():
            test = doc.get("test") or {}
            points = sorted(
                (int(key.split("@", 1)[1]), value) for key, value in test.items() if key.startswith(f"{metric}@")
            )
            if not points:
                continue
            ks = ks or [k for k, _ in points]
            ax.plot(
                [k for k, _ in points],
                [v for _, v in points],
                marker="o",
                label=name,
                linestyle="--" if doc.get("peer") else "-",
            )
        ax.set_title(f"{metric}@K")
        ax.set_xlabel("K")
        ax.set_xticks(ks)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def write_report(results: list[Result], summary: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        **summary,
        "models": [
            {
                "name": r.name,
                "peer": r.peer,
                "params": r.params,
                "validation": r.validation,
                "test": r.test.metrics if r.test else None,
                "tried": r.tried,
                "fit_seconds": round(r.fit_seconds, 2),
            }
            for r in results
        ],
    }
    json_path, html_path = out / "evaluation.json", out / "evaluation.html"
    json_path.write_text(json.dumps(doc, indent=2, default=str))
    png = plot_curves(results)
    (out / "evaluation.png").write_bytes(png)
    rows = "".join(
        "<tr><td>"
        + html.escape(r.name)
        + "</td>"
        + "".join(
            f"<td>{r.test.metrics[key]:.4f}</td>" if r.test and key in r.test.metrics else "<td>-</td>"
            for key, _ in TABLE_COLUMNS
        )
        + f"<td><code>{html.escape(json.dumps(r.params))}</code></td></tr>"
        for r in results
    )
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in TABLE_COLUMNS)
    split_doc = html.escape(json.dumps(summary["split"]))
    html_path.write_text(
        f"""<!doctype html><html><head><meta charset="utf-8"><title>shopwise evaluation</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:4px 10px;text-align:right}}td:first-child{{text-align:left}}
table{{border-collapse:collapse}}tr:nth-child(even){{background:#f3f3f3}}</style></head><body>
<h1>shopwise offline evaluation</h1>
<p>{html.escape(summary["data"])}. Split: <code>{split_doc}</code>. Full ranking over all items, seen items excluded;
models tuned on a validation split cut from the training part, reported on the test split, best validation
first. Recall@K = hits / min(K, relevant); cold users have at most 5 training items; cold items at most 5 training
users.</p>
<table><tr><th>model</th>{head}<th>params</th></tr>{rows}</table>
<h2>Metrics against K</h2><img alt="metrics against K" src="data:image/png;base64,{base64.b64encode(png).decode()}">
<p>Generated {time.strftime("%Y-%m-%d %H:%M:%S")} by <code>shopwise evaluate</code>.</p></body></html>
"""
    )
    return json_path, html_path


def evaluate_files(
    events: Path, items: Path | None, out: Path, hyperparameters: dict[str, Any], log: Log = print
) -> dict[str, Any]:
    hp = Hyperparameters.parse(hyperparameters)
    data = read_events_any(events)
    if data.interactions.empty:
        raise ValueError(f"{events}: no interactions to evaluate on")
    interactions = data.interactions
    catalog = read_catalog(items) if items else pd.DataFrame(columns=["item_id"])
    tuned = tune(interactions, catalog, hp, log)
    results = tuned.results
    log("\n" + table(results))
    summary = {
        "data": describe(interactions, catalog),
        "split": tuned.test.describe(),
        "validation_split": tuned.validation.describe(),
        "metric": hp.metric,
    }
    json_path, html_path = write_report(results, summary, out)
    log(f"\nwrote {json_path}, {html_path}")
    return summary
