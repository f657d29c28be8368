"""``shopwise report experiment|campaign``: the readouts (``shopwise_jobs.readout``) over the running stack's event
archive, with a table printed, a JSON document and a plot written."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from shopwise import config
from shopwise.campaigns.runs import latest_run, run_lines
from shopwise.dal.experiments import get_experiments
from shopwise.dal.objects import download_prefix
from shopwise.serving.experiments import HOLDOUT, parse_experiments
from shopwise.settings import get_settings
from shopwise_jobs.dataset import archive_events
from shopwise_jobs.readout import Readout, campaign_readout, experiment_readout, plot_readout


@dataclass(frozen=True)
class Written:
    readout: Readout
    json_path: Path
    plot_path: Path


def configured_shares(name: str) -> dict[str, float] | None:
    """The share of shoppers each arm of a configured experiment should get (holdout first taken), or None."""
    experiments = parse_experiments(get_experiments(get_settings().config_table) or "[]")
    found = next((e for e in experiments if e.name == name), None)
    if found is None:
        return None
    total = sum(v.weight for v in found.variants)
    shares = {v.name: (1.0 - found.holdout) * v.weight / total for v in found.variants}
    if found.holdout > 0:
        shares[HOLDOUT] = found.holdout
    return shares


def _write(readout: Readout, out: Path, stem: str) -> Written:
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{stem}.json"
    json_path.write_text(json.dumps(readout.to_json(), indent=2))
    return Written(readout, json_path, plot_readout(readout, out / f"{stem}.png"))


def experiment_report(name: str, out: Path, attribution_hours: float = 24.0) -> Written:
    settings = get_settings()
    shares = configured_shares(name)
    with tempfile.TemporaryDirectory() as tmp:
        download_prefix(f"s3://{settings.archive_bucket}/{config.ARCHIVE_EVENTS_PREFIX}", Path(tmp))
        readout = experiment_readout(archive_events(Path(tmp)), name, shares, attribution_hours)
    if shares is None:
        readout.notes.append(f"experiment {name!r} is not configured any more: no sample-ratio check")
    return _write(readout, out, f"experiment-{name}")


def campaign_report(name: str, out: Path, run_id: str = "", days: float = 7.0) -> Written:
    settings = get_settings()
    if not run_id:
        latest = latest_run(settings.artifacts_bucket, name)
        if latest is None:
            raise LookupError(f"campaign {name!r} has no run yet")
        run_id = str(latest["run_id"])

    def rows(file: str) -> list[dict[str, object]]:
        return [json.loads(line) for line in run_lines(settings.artifacts_bucket, name, run_id, file)]

    sent, held = rows("recipients.jsonl"), rows("holdout.jsonl")
    if not sent and not held:
        raise LookupError(f"run {run_id} of campaign {name!r} had nobody in its segment")
    since = datetime.fromisoformat(str((sent or held)[0]["generated_at"])).timestamp()
    with tempfile.TemporaryDirectory() as tmp:
        download_prefix(f"s3://{settings.archive_bucket}/{config.ARCHIVE_EVENTS_PREFIX}", Path(tmp))
        readout = campaign_readout(archive_events(Path(tmp)), sent, held, since, days)
    readout.subject = f"campaign {name}, run {run_id}: purchases within {days:g} days"
    return _write(readout, out, f"campaign-{name}-{run_id}")
