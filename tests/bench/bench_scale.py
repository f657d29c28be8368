"""`make scale`: the offline path's stages on simulated stores of growing size, measured, their growth fitted, and
each extrapolated to the design envelope against its hard limit.

    .venv/bin/python tests/bench/bench_scale.py [--shoppers 10000,30000,100000,300000] [--days 14]
        [--budget quick|full] [--from-log LOG... [--envelope-events N]]

Stores: ``shopwise simulate`` at each size (items growing with shoppers: 1,500 at 10,000 up to 50,000 at 300,000).
Stages, each in a child process (its wall time, and its peak resident memory from the kernel's accounting):
- **data set** — the training job's own build (``read_event_import``: every event parsed, rows and the consent
  rule), what the retrain runs where ``dataset_engine`` is "python";
- **training** — ``shopwise train --hp budget=quick``: the data set again, the feature snapshot, one configuration
  per family fitted and scored, the blend, the test evaluation;
- **batch transform** — ``shopwise batch-recommend``: every user's top 50 from the trained model, one process
  (every item scored: these catalogs are below ``CANDIDATES_FROM_ITEMS``);
- **transform over candidates** — the same with ``SHOPWISE_CANDIDATES_FROM_ITEMS=0``: what a catalog of 100,000
  items or more gets (``shopwise_jobs.candidates``);
- **training as at the envelope** and **transform as at the envelope** — training and the transform configured as a
  catalog of a million items is (``ENVELOPE_ENV``): the families that fit there (no EASE, which stops at 20,000
  items), content neighbours from their index, iALS's candidates from its factor index, tuning, evaluation and
  the transform over candidates. Measured at these sizes, their growth is the one the envelope's retrain follows;
  the rows above are the dense paths these catalogs really take;
- **tuning as at the envelope** and **final fit as at the envelope** — of that training run, the job's two halves
  (``seconds`` in its metrics), what the training job does where the data set and the feature snapshot come built
  from Spark: tuning (every family's grid, the blend, the test figures, the champion comparison), which runs on a
  fixed sample of shoppers holding at most ``TUNING_INTERACTIONS`` interactions and so is extrapolated in the
  interactions it tunes on up to that cap; and the served model's fit on every shopper, part by part, each
  extrapolated in what drives it (the content index in items, item-kNN in its products up to their bound, the
  rest in events). Item-kNN's part is measured once more, as **item-kNN at the envelope's width**
  (``bench_knn.py``: the same rows, their items spread over a million columns, the products unchanged), and
  extrapolated from there (times how much slower the job ran it than the fit on its own), at least linearly in its
  products: at a fixed width its time a product does not grow with them (``final_fit``). A table of the served
  fit's parts follows the stages'. The parts that use several
  cores (item-kNN's blocks, iALS, the content index) are told from the process's CPU time against their wall time
  on this machine's cores, and the envelope's fit is given on one ml.r5.24xlarge's 96 vCPUs by Amdahl's law from
  that share. Their memory: each half's own (its peak resident memory above what it started with: the job's
  ``memory_mb``), extrapolated as its time is, and the rows the whole fit holds (the job's ``frame_mb``) in events;
  the last row adds the rows and the larger half against the largest instance. (The process's own peak, in the
  rows above, is the training job's Python data set build and feature snapshot, which Spark does at the envelope.)
- **transform at the envelope's histories** — the transform's own path over candidates (``bench_transform.py
  --histories``) on the model trained as at the envelope, its shoppers' histories made as long as the envelope's
  (each row the sum of as many shoppers' rows as the envelope has events a shopper to these stores' ~20: 13): a
  user's cost there, grown in the catalog to a million items, times the envelope's 10 M shoppers, and the users a
  transform worker scores a second against the plan's (``USERS_PER_WORKER_S``). The whole transform's row above
  grows in events, which cannot tell the shoppers' number from their histories' length.
``--stages`` runs some of them (a size's trained model is reused when training is not among them). ``--budget full``
trains as at the envelope on the full grids (``make scale-full``: the deployed default's up to
``training.FULL_BUDGET_INTERACTIONS``), its table in a README block of its own; ``--envelope-events`` extrapolates
a run's log to a store of that many events instead of the envelope.
Per stage: seconds, peak MB, bytes of memory per event; the growth exponent of time and memory in events (least
squares on logs); and the extrapolation to the envelope (``ENVELOPE``: 10 M shoppers, 1 M items, 1,000 events/s
for the training window) against the limits it must fit — the largest SageMaker training instance's memory, and
the daily retrain's 2-hour budget — with the instances that would take. A stage's extrapolation is no better than
its fit over these sizes; the printout says which stages do not fit. The final line is JSON; the Markdown table
the README's limits section shows is written to ``.local/bench/scale.md`` and, with ``--readme`` (``make scale``), into
README.md between its ``make scale`` markers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shopwise import config
from shopwise.lifecycle.transform import USERS_PER_WORKER_S  # the transform plan's rate, which HISTORIES checks
from shopwise_jobs.models import (  # item-kNN's work is at most shoppers x ITEMKNN_HISTORY^2; its blocks' and the
    FIT_CHUNK_ROWS,  # chunks' sizes bound what the served fit has in flight
    ITEMKNN_HISTORY,
    SPARSE_BLOCK_PAIRS,
)
from shopwise_jobs.selection import tuning_workers  # the instance's families side by side: a worker per 8 vCPUs
from shopwise_jobs.training import (
    TUNING_INTERACTIONS,  # the sample tuning stops growing at
    final_side_by_side,  # whether the instance's served fit runs its parts at once
)
from shopwise_local.machine import numpy_pages

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE = REPO_ROOT / ".local" / "cache"
OUT = REPO_ROOT / ".local" / "bench"
PYTHON = sys.executable
SHOPWISE = str(Path(sys.executable).with_name("shopwise"))

# the design envelope (../shared/DESIGN.md): the data a daily retrain reads
ENVELOPE_SHOPPERS = 10_000_000
ENVELOPE_ITEMS = 1_000_000
ENVELOPE_EVENTS = 1_000 * 86_400 * 30  # 1,000 events/s over a 30-day training window: 2.6 billion
BUDGET_S = 2 * 3600  # the daily retrain, end to end
# the transform's share of it: prod's plan (EnvironmentConfig.transform_budget_minutes)
TRANSFORM_BUDGET_S = config.environment("prod").transform_budget_minutes * 60
LARGEST_TRAINING_GB = 768  # ml.r5.24xlarge (ml.m5.24xlarge: 384)


def items_for(shoppers: int) -> int:
    """1,500 items at 10,000 shoppers to 50,000 at 300,000 (a power law between the two)."""
    exponent = math.log(50_000 / 1_500) / math.log(300_000 / 10_000)
    return int(1_500 * (shoppers / 10_000) ** exponent)


# a fresh launcher per stage: the kernel's peak over its waited-for children is the stage's own (a process's
# RUSAGE_CHILDREN only ever grows, so this script's would carry the largest stage run before)
LAUNCHER = (
    "import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(done.returncode)"
)


MACHINE_MB = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20


class OutOfMemory(RuntimeError):
    """A stage the kernel killed for memory (SIGKILL, its peak near the machine's memory): a measurement of where
    this machine's limit lies, recorded as the stage's result instead of ending the run."""

    def __init__(self, command: Sequence[str], seconds: float, peak_mb: float) -> None:
        super().__init__(f"{' '.join(command)} killed at {peak_mb / 1024:.1f} GB after {seconds:.0f} s")
        self.seconds, self.peak_mb = seconds, peak_mb


def measured(command: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(seconds, peak resident MB, stdout) of one stage run in its own process tree (``env``: added to ours);
    ``OutOfMemory`` if the kernel killed it for memory."""
    started = time.perf_counter()
    done = subprocess.run(
        [PYTHON, "-c", LAUNCHER, *command],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    seconds = time.perf_counter() - started
    last = (done.stderr.strip().splitlines() or [""])[-1]
    peak_mb = int(last) / 1024 if last.isdigit() else 0.0
    # the launcher exits with its child's status: killed by a signal, -9, which an exit status carries as 247
    if done.returncode in (-signal.SIGKILL, -signal.SIGKILL & 0xFF) and peak_mb >= 0.8 * MACHINE_MB:
        raise OutOfMemory(command, seconds, peak_mb)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    return seconds, peak_mb, done.stdout


def attempt(command: Sequence[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """A stage's figures, ``out_of_memory`` with its time and peak until the kernel killed it."""
    try:
        seconds, peak, _ = measured(command, env)
    except OutOfMemory as killed:
        print(killed, flush=True)
        return {"seconds": killed.seconds, "peak_mb": killed.peak_mb, "out_of_memory": True}
    return {"seconds": seconds, "peak_mb": peak}


def completed(row: dict[str, Any], stage: str) -> bool:
    """The size measured the stage to its end (not run, or killed for memory: no point on its curve)."""
    return stage in row["stages"] and not row["stages"][stage].get("out_of_memory")


def exponent(xs: Sequence[float], ys: Sequence[float]) -> float:
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum((a - mx) ** 2 for a in lx)


DATASET = (
    "import sys, json; from pathlib import Path; from shopwise_jobs.dataset import read_event_import; "
    "d = read_event_import(Path(sys.argv[1])); print(json.dumps({'records': d.records, 'rows': len(d.interactions)}))"
)


TUNING = "tuning as at the envelope"  # times within the stage before them: no peak memory of their own
FINAL = "final fit as at the envelope"
# item-kNN's part of the final fit again, on the same rows spread over the envelope's million columns (bench_knn.py)
KNN_WIDE = "item-kNN at the envelope's width"
# the transform's own path over candidates on the envelope's model, its shoppers' histories as long as the
# envelope's (bench_transform.py --histories): what a user costs there, which the store's whole transform grown in
# events cannot tell from the catalog's growth and the shoppers' (the envelope's 260 events a shopper: 13x these
# stores' 20)
HISTORIES = "transform at the envelope's histories"
HISTORY_USERS = 4096
WITHIN = (TUNING, FINAL)
# the training at the envelope runs this many times a size, each figure its best run's
REPEATS = int(os.environ.get("SHOPWISE_SCALE_REPEATS", "2"))
INSTANCE, INSTANCE_VCPUS = "ml.r5.24xlarge", 96  # the largest training instance: 768 GB, 96 vCPUs
STAGES = (
    "data set",
    "training",
    "batch transform",
    "transform over candidates",
    "training as at the envelope",
    TUNING,
    FINAL,
    KNN_WIDE,
    "transform as at the envelope",
    HISTORIES,
)
# what a catalog of a million items gets, forced on these smaller ones: every approximate path, no EASE, iALS's
# half-steps in processes (shopwise_jobs.als: from a million entries, so every size grows on the path the envelope's
# fit takes)
ENVELOPE_ENV = {
    "SHOPWISE_CANDIDATES_FROM_ITEMS": "0",
    "SHOPWISE_CONTENT_ANN_FROM_ITEMS": "0",
    "SHOPWISE_FACTOR_INDEX_FROM_ITEMS": "0",
    "SHOPWISE_ALS_PROCESSES_FROM": "0",
    # the content index, where the served fit runs it in a process of its own, before the other parts: on these 2
    # cores it took a core from them (which the instance gives it), item-kNN's wall time doubling for the same CPU
    "SHOPWISE_APART_FIRST": "1",
}
# the families a catalog of a million items can tune, and their blend, which a job tries by default (before
# 2026-12-04 the rows "as at the envelope" tried no blend: at 30,000 shoppers it was 83 of tuning's 94 s)
ENVELOPE_FAMILIES = "popularity,itemknn,sequential,ials,content,affinity,hybrid"


# the tuning grids of the training as at the envelope (``--budget``): quick, one configuration a family (make scale's
# table), or full, the deployed default (39 configurations, 23 fits), whose tuning the instance's workers spread fit
# by fit (``tuning_on_instance``)
BUDGETS = ("quick", "full")


def run_size(shoppers: int, days: int, stages_wanted: Sequence[str] = STAGES, budget: str = "quick") -> dict[str, Any]:
    items = items_for(shoppers)
    store = CACHE / f"scale-{shoppers}-{days}d"
    if not (store / "events.csv").exists():
        # simulated aside and moved into place whole: a run stopped mid-simulation left a truncated events.csv that
        # later runs took for the store (a 300,000-shopper store of 1.6 M events, fewer than 100,000 shoppers')
        partial = store.with_name(store.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        subprocess.run(
            [SHOPWISE, "simulate", "--shoppers", str(shoppers), "--items", str(items), "--days", str(days),
             "--out", str(partial), "--no-progress"],
            check=True, capture_output=True,
        )  # fmt: skip
        shutil.rmtree(store, ignore_errors=True)
        partial.rename(store)
    events = sum(1 for _ in (store / "events.csv").open()) - 1
    stages: dict[str, dict[str, Any]] = {}
    if "data set" in stages_wanted:
        stages["data set"] = attempt([PYTHON, "-c", DATASET, str(store / "events.csv")])
    model = store / "model"
    dense = {"batch transform", "transform over candidates"}  # what scores the model "training" fits
    if "training" in stages_wanted or (dense & set(stages_wanted) and not (model / "metrics.json").exists()):
        stages["training"] = attempt(
            [SHOPWISE, "train", "--events", str(store / "events.csv"), "--items", str(store / "items.csv"),
             "--out", str(model), "--hp", "budget=quick"]
        )  # fmt: skip
    if stages.get("training", {}).get("out_of_memory"):  # no model to score: the transforms are not run
        stages_wanted = [s for s in stages_wanted if s not in dense]
    recommend = [
        SHOPWISE,
        "batch-recommend",
        "--model",
        str(model),
        "--out",
        str(store / "lists.jsonl"),
        "--no-progress",
    ]
    if "batch transform" in stages_wanted:  # every item scored below CANDIDATES_FROM_ITEMS (all sizes here)
        stages["batch transform"] = attempt(recommend)
    if "transform over candidates" in stages_wanted:  # what a catalog of 100,000 items or more gets
        stages["transform over candidates"] = attempt(recommend, {"SHOPWISE_CANDIDATES_FROM_ITEMS": "0"})
    envelope_model = store / ("model-envelope" if budget == "quick" else f"model-envelope-{budget}")
    runs: list[tuple[float, float, dict[str, Any]]] = []
    if {"training as at the envelope", *WITHIN} & set(stages_wanted) or (
        "transform as at the envelope" in stages_wanted and not (envelope_model / "metrics.json").exists()
    ):
        # run REPEATS times, each time its best (timeit's rule: the slower runs are the machine's noise, not the
        # code's) — single parts of one run at 100,000 shoppers moved up to 2.5x between runs, and a 10x range of
        # sizes turned that into hours at the envelope
        for _ in range(REPEATS):
            figures = attempt(
                [SHOPWISE, "train", "--events", str(store / "events.csv"), "--items", str(store / "items.csv"),
                 "--out", str(envelope_model), "--hp", f"budget={budget}", "--hp", f"models={ENVELOPE_FAMILIES}"],
                ENVELOPE_ENV,
            )  # fmt: skip
            if figures.get("out_of_memory"):
                break
            fitted = json.loads((envelope_model / "metrics.json").read_text())
            runs.append((figures["seconds"], figures["peak_mb"], fitted))
        if not runs:  # killed the first time: its halves, item-kNN's width and its transform are not run
            stages["training as at the envelope"] = figures
            stages_wanted = [s for s in stages_wanted if s not in (KNN_WIDE, "transform as at the envelope")]
    if runs:
        seconds, peak, fitted = min(runs, key=lambda run: run[0])
        stages["training as at the envelope"] = {"seconds": seconds, "peak_mb": peak, "runs": len(runs)}
        # of which the job's two halves (its metrics' seconds): what the training job does at the envelope, where the
        # data set and the feature snapshot come built from Spark. Their memory is not their own: the run's peak is
        # the data set's events, held in the process before the fit starts
        spent, split = dict(fitted["seconds"]), fitted["split"]
        for half in ("tuning", "champion", "final fit"):
            spent[half] = min(run[2]["seconds"][half] for run in runs)
        # each part its best run's wall and CPU time
        best_part = {
            part: min((run[2]["seconds"]["final parts"].get(part, math.inf), index) for index, run in enumerate(runs))[
                1
            ]
            for part in spent["final parts"]
        }
        spent["final parts"] = {part: runs[i][2]["seconds"]["final parts"][part] for part, i in best_part.items()}
        spent["final parts cpu"] = {
            part: runs[i][2]["seconds"]["final parts cpu"][part] for part, i in best_part.items()
        }
        tuned = (fitted.get("tuning_sample") or {}).get("interactions") or (
            split["train_interactions"] + split["test_interactions"]
        )
        # each half's own memory: its peak resident memory above what it started with (the job's memory_mb; the
        # rows it holds, frame_mb, come on top of it at any size)
        phase = fitted.get("memory_mb") or {}
        own = {name: max(f["peak_mb"] - f["start_mb"], 0.0) for name, f in phase.items()}
        stages[TUNING] = {
            "seconds": float(spent["tuning"] + spent["champion"]),
            "peak_mb": None,
            "own_mb": max(own.get("tuning", 0.0), own.get("champion", 0.0)) if own else None,
            "interactions": float(tuned),
        }
        if all("tuning parts" in run[2]["seconds"] for run in runs):
            # each family's tuning (and the blend's, "hybrid"), its best run's wall and CPU: on the instance the
            # families run side by side (selection.tune_families), so tuning there is the longest of them
            stages[TUNING]["parts"] = {
                part: min(
                    [run[2]["seconds"]["tuning parts"][part], run[2]["seconds"]["tuning parts cpu"][part]]
                    for run in runs
                )
                for part in fitted["seconds"]["tuning parts"]
            }
        if all(run[2]["seconds"].get("tuning tasks") for run in runs):
            # each family's tasks (its fits' configurations, then its test refit), the best run's: the instance's
            # workers take them one by one (selection.tune_families)
            quickest = min(runs, key=lambda run: run[2]["seconds"]["tuning"])
            stages[TUNING]["tasks"] = quickest[2]["seconds"]["tuning tasks"]
        if all(run[2]["seconds"].get("tuning hybrid steps") for run in runs):
            # the blend's steps (the families' fits, each history rows' search, its test refit), each its best run's
            steps = [run[2]["seconds"]["tuning hybrid steps"] for run in runs]
            stages[TUNING]["hybrid steps"] = {step: min(s[step] for s in steps) for step in steps[0]}
        wall, cpu = spent["final parts"], spent["final parts cpu"]
        stages[FINAL] = {
            "seconds": float(spent["final fit"]),
            "peak_mb": None,
            "own_mb": own.get("final fit"),
            "frame_mb": fitted.get("frame_mb"),
            # each part's [held at its start above the phase's, its own peak above that]
            "parts_mb": (fitted.get("memory_parts_mb") or {}).get("final fit"),
            "work": fitted.get("final parts work") or {},  # item-kNN's products
            # what the served fit keeps by its end, by its arrays' sizes: event-sized and item-sized
            "held_mb": fitted.get("final held mb"),
            "cpu_seconds": float(sum(cpu.values())),
            "parts_seconds": float(sum(wall.values())),
            "parts": {part: [wall[part], cpu[part]] for part in wall},
            # parts that ran in a process of their own beside the others (shopwise_jobs.apart): their time overlaps
            "apart": list(fitted["seconds"].get("final parts apart") or []),
        }
    if KNN_WIDE in stages_wanted:
        seconds, peak, out = measured(
            [PYTHON, str(Path(__file__).with_name("bench_knn.py")), "--events", str(store / "events.csv"),
             "--items", str(store / "items.csv"), "--metrics", str(envelope_model / "metrics.json"),
             "--width", str(ENVELOPE_ITEMS), "--repeats", str(REPEATS)]
        )  # fmt: skip
        knn = json.loads(out.strip().splitlines()[-1])
        stages[KNN_WIDE] = {"seconds": knn["wide"][0], "peak_mb": None, **knn}
    if "transform as at the envelope" in stages_wanted:
        at_envelope = [*recommend[:3], str(envelope_model), *recommend[4:]]
        seconds, peak, _ = measured(at_envelope, ENVELOPE_ENV)
        stages["transform as at the envelope"] = {"seconds": seconds, "peak_mb": peak}
    if HISTORIES in stages_wanted and (envelope_model / "metrics.json").exists():
        factor = history_factor(events, shoppers)
        _, _, out = measured(
            [PYTHON, str(Path(__file__).with_name("bench_transform.py")), "--histories", str(envelope_model),
             "--factors", f"1,{factor}", "--users", str(HISTORY_USERS)],
            ENVELOPE_ENV,
        )  # fmt: skip
        found = json.loads(out.strip().splitlines()[-1])["histories"]
        longer = found[f"x{factor}"]
        stages[HISTORIES] = {
            "seconds": longer["ms_per_user"] * ENVELOPE_SHOPPERS / 1000,  # the envelope's shoppers at this cost
            "peak_mb": None,
            "factor": factor,
            "ms_per_user": longer["ms_per_user"],
            "items_a_shopper": longer["items_a_shopper"],
            "as_is": found["x1"],
        }
    row = {"shoppers": shoppers, "items": items, "days": days, "events": events, "budget": budget, "stages": stages}
    print(json.dumps(row), flush=True)
    return row


def history_factor(events: int, shoppers: int) -> int:
    """How many times as long as a simulated store's a shopper's history is at the envelope (events a shopper)."""
    return max(1, round((ENVELOPE_EVENTS / ENVELOPE_SHOPPERS) / (events / shoppers)))


def transform_at_histories(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The transform at the envelope from what a user costs at the envelope's histories: that cost at each size
    grown in the catalog (its width, the one thing the sizes still have short of the envelope: the history
    lengths are already the envelope's), at least not falling, times the envelope's shoppers; and what one transform
    worker (a core) scores a second there, against the plan's ``USERS_PER_WORKER_S``, with the workers the
    transform's budget would want (prod's: TRANSFORM_BUDGET_S)."""
    items = [float(r["items"]) for r in rows]
    costs = [float(r["stages"][HISTORIES]["ms_per_user"]) for r in rows]
    growth = exponent(items, costs)
    ms = costs[-1] * (ENVELOPE_ITEMS / items[-1]) ** max(growth, 0.0)
    core_s = ms * ENVELOPE_SHOPPERS / 1000
    per_worker = 1000 / ms
    return {
        "time_exponent": round(growth, 2),
        "grows_in": "items",
        "ms_per_user": round(ms, 3),
        "users_per_worker_s": round(per_worker),
        "plan_users_per_worker_s": USERS_PER_WORKER_S,
        "envelope_hours": round(core_s / 3600, 1),
        "envelope_minutes": round(core_s / 60, 1),
        "memory_exponent": None,
        "envelope_gb": None,
        "fits_memory": True,
        "fits_budget": core_s <= BUDGET_S,
        "instances_for_budget": math.ceil(core_s / BUDGET_S),
        "workers_for_budget": math.ceil(core_s / TRANSFORM_BUDGET_S),
        "budget_minutes": TRANSFORM_BUDGET_S / 60,
    }


def extrapolate(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each stage's growth fitted over the sizes that measured it to its end (a size run with ``--stages`` has only
    some, and one killed for memory is no point on the curve; a stage fewer than two sizes measured is left out), and
    extrapolated to the envelope."""
    out: dict[str, dict[str, Any]] = {}
    everywhere = rows
    for stage in STAGES:
        rows = [r for r in everywhere if completed(r, stage)]
        if stage == KNN_WIDE or len(rows) < 2:  # (item-kNN at the envelope's width: a part of the final fit's)
            continue
        if stage == HISTORIES:  # grown in the catalog, not in events
            out[stage] = transform_at_histories(rows)
            continue
        events = [float(r["events"]) for r in rows]
        seconds = [float(r["stages"][stage]["seconds"]) for r in rows]
        xs, target = events, float(ENVELOPE_EVENTS)
        if stage == TUNING:  # grows in the interactions it tunes on, which stop at the sample's cap
            xs = [float(r["stages"][stage]["interactions"]) for r in rows]
            target = min(TUNING_INTERACTIONS, ENVELOPE_EVENTS * xs[-1] / events[-1])
        time_exp = exponent(xs, seconds)
        scale = target / xs[-1]
        at_envelope_s = seconds[-1] * scale**time_exp
        catalog = 1.0
        if stage == TUNING and all(r.get("items") for r in rows):
            # the sample caps the shoppers and their interactions, not the catalog: every item-driven step (the
            # content index over the catalog, iALS's item factors, the candidates' item side) keeps growing. From
            # 100,000 to 300,000 shoppers its interactions grew 1.28x (to the cap) and its time 3.04x, with the
            # items 3.1x; so past the cap it is grown in items too, at least linearly (an over-estimate below the
            # cap, where the interactions' fitted growth already carries some of the catalog's)
            catalog = ENVELOPE_ITEMS / float(rows[-1]["items"])
            at_envelope_s *= catalog
        memory: dict[str, Any] = {"memory_exponent": None, "envelope_gb": None, "fits_memory": True}
        if stage not in WITHIN:
            peaks = [float(r["stages"][stage]["peak_mb"]) for r in rows]
            memory_exp = exponent(events, peaks)
            at_envelope_gb = peaks[-1] / 1024 * (ENVELOPE_EVENTS / events[-1]) ** max(memory_exp, 0.0)
            memory = {
                "memory_exponent": round(memory_exp, 2),
                "envelope_gb": round(at_envelope_gb, 1),
                "fits_memory": at_envelope_gb <= LARGEST_TRAINING_GB,
            }
        out[stage] = {
            "time_exponent": round(time_exp, 2),
            "envelope_hours": round(at_envelope_s / 3600, 1),
            "envelope_minutes": round(at_envelope_s / 60, 1),
            **memory,
            "fits_budget": at_envelope_s <= BUDGET_S,
            # the budget's multiple: the instances it would take for a stage that shards (the transform does, by
            # request object; the data set does on Spark), and for one that does not, how far it is from fitting
            "instances_for_budget": math.ceil(at_envelope_s / BUDGET_S),
        }
        if stage == TUNING:
            out[stage]["catalog_factor"] = round(catalog, 1)
            out[stage].update(tuning_on_instance(rows, xs, target, catalog, at_envelope_s))
        if stage == FINAL:
            out[stage].update(final_fit(rows))
            out[stage]["envelope_hours"] = out[stage]["single_hours"]
            out[stage]["fits_budget"] = out[stage]["single_hours"] * 3600 <= BUDGET_S
        if stage in WITHIN and all(r["stages"][stage].get("own_mb") for r in rows):
            # a half's own memory, grown as its time is: tuning in the interactions it tunes on (capped) and the
            # catalog, the served fit in events
            owns = [float(r["stages"][stage]["own_mb"]) for r in rows]
            growth = exponent(xs, owns)
            out[stage]["own_exponent"] = round(growth, 2)
            out[stage]["own_gb"] = round(owns[-1] / 1024 * scale ** max(growth, 0.0) * catalog, 1)
            if (
                stage == FINAL
                and rows[-1]["stages"][stage].get("parts_mb")
                and rows[-1]["stages"][stage].get("held_mb")
            ):
                by_part = final_fit_memory(rows)
                out[stage]["own_gb_by_part"] = by_part
                out[stage]["own_gb"], out[stage]["own_largest"] = final_fit_own_gb(
                    by_part, rows[-1]["stages"][FINAL].get("apart") or []
                )
    rows = [r for r in everywhere if FINAL in r["stages"]]
    if TUNING in out and FINAL in out:
        tuning_minutes = out[TUNING].get("instance_minutes", out[TUNING]["envelope_minutes"])
        hours = tuning_minutes / 60 + out[FINAL]["instance_hours"]
        out["retrain fit"] = {"hours": round(hours, 1), "fits_budget": hours * 3600 <= BUDGET_S}
        frames = [r["stages"][FINAL].get("frame_mb") for r in rows]
        if frames[-1] and "own_gb" in out[TUNING] and "own_gb" in out[FINAL]:
            # what the fit holds at the envelope: the rows (bytes an event, as the last size held them) and the
            # larger half's own memory on top
            frame_gb = float(frames[-1]) / 1024 * ENVELOPE_EVENTS / rows[-1]["events"]
            # tuning's families side by side each hold the tuning data and their own peak: at most its own memory
            # in every worker (an upper bound)
            tuning_gb = out[TUNING]["own_gb"] * out[TUNING].get("side_by_side", 1)
            held = frame_gb + max(tuning_gb, out[FINAL]["own_gb"])
            out["retrain fit"].update(
                frame_bytes_per_event=round(float(frames[-1]) * 2**20 / rows[-1]["events"], 1),
                frame_gb=round(frame_gb, 1),
                memory_gb=round(held, 1),
                fits_memory=held <= LARGEST_TRAINING_GB,
            )
    return out


def tuning_on_instance(
    rows: list[dict[str, Any]], xs: list[float], target: float, catalog: float, one_process_s: float
) -> dict[str, Any]:
    """Tuning on the instance, where its families run side by side (``selection.tune_families``: a worker for every
    8 of its vCPUs, 12 on the instance, more than a job's families): the longest family, then the blend's search
    (which needs them all), then the rest (the splits, the champion comparison) — each of them extrapolated as the
    whole is (its own growth in the interactions it tunes on up to the cap, and the catalog's multiple past it).
    Nothing when the sizes did not record tuning by family (runs before 2026-12-04)."""
    if not all(r["stages"][TUNING].get("parts") for r in rows):
        return {}
    names = set.intersection(*(set(r["stages"][TUNING]["parts"]) for r in rows))
    grown: dict[str, float] = {}
    for name in sorted(names):
        seconds = [max(float(r["stages"][TUNING]["parts"][name][0]), 1e-3) for r in rows]
        grown[name] = seconds[-1] * (target / xs[-1]) ** exponent(xs, seconds) * catalog
    families = {name: s for name, s in grown.items() if name != "hybrid"}
    last = rows[-1]["stages"][TUNING]
    rest = max(float(last["seconds"]) - sum(float(p[0]) for p in last["parts"].values()), 0.0)
    rest_s = one_process_s * rest / float(last["seconds"])
    longest = max(families, key=lambda name: families[name])
    tasks = last.get("tasks") or {}
    if set(families) <= set(tasks) and any(len(tasks[name]["fits"]) > 1 for name in families):
        # families of several fits (budget=full): their fits spread over the workers, each task grown as its
        # family's whole is
        grown_tasks = {
            name: (
                [float(t) * families[name] / max(float(last["parts"][name][0]), 1e-3) for t in tasks[name]["fits"]],
                float(tasks[name]["test"]) * families[name] / max(float(last["parts"][name][0]), 1e-3),
            )
            for name in families
        }
        fits = sum(len(fits) for fits, _test in grown_tasks.values())
        workers = tuning_workers(fits, INSTANCE_VCPUS)
        side_by_side = tasks_on_workers(grown_tasks, workers)
    else:
        fits = 0
        workers = tuning_workers(len(families), INSTANCE_VCPUS)  # as the job sizes them on the instance
        if workers < len(families):  # (not at 96 vCPUs): the families queue for the workers, longest first
            ends = [0.0] * workers
            for name in sorted(families, key=lambda n: -families[n]):
                ends[ends.index(min(ends))] += families[name]
            side_by_side = max(ends)
        else:
            side_by_side = families[longest]
    blend_s = grown.get("hybrid", 0.0)
    blend_steps = blend_on_instance(rows, xs, target, catalog)
    if blend_steps:
        blend_s = blend_steps["seconds"]
    instance_s = side_by_side + blend_s + rest_s
    return {
        "instance_minutes": round(instance_s / 60, 1),
        "side_by_side": workers,
        "longest_family": longest,
        "fits_spread": fits,  # (0: each family a task, whole)
        **({"blend_minutes": round(blend_s / 60, 1), "blend_steps": blend_steps} if blend_steps else {}),
        "parts_minutes": {name: round(s / 60, 1) for name, s in sorted(grown.items(), key=lambda kv: -kv[1])},
        "rest_minutes": round(rest_s / 60, 1),
    }


def tasks_on_workers(families: dict[str, tuple[list[float], float]], workers: int) -> float:
    """When ``workers`` processes are done with the families' tuning, submitted as ``selection.tune_families`` does:
    each family of one fit whole (the fit, then its test refit) in the families' order, then every fit of the
    families of several, each to the worker free first; then, family by family as their fits end (the job waits on
    them in order), each one's test refit. ``families``: name -> (its fits' seconds, its test refit's seconds)."""
    ends = [0.0] * max(workers, 1)

    def run(seconds: float, ready: float = 0.0) -> float:
        worker = ends.index(min(ends))
        ends[worker] = max(ends[worker], ready) + seconds
        return ends[worker]

    for fits, test in families.values():
        if len(fits) == 1:
            run(fits[0] + test)
    fitted = {name: max(run(s) for s in fits) for name, (fits, _test) in families.items() if len(fits) > 1}
    waited = 0.0
    for name, done in fitted.items():
        waited = max(waited, done)
        run(families[name][1], waited)
    return max(ends)


def blend_on_instance(rows: list[dict[str, Any]], xs: list[float], target: float, catalog: float) -> dict[str, Any]:
    """The blend's search on the instance, where its three searches (one for each kind of history rows) run side by
    side (``selection.tune_hybrid`` with tuning's workers): the families' fits, then the longest search, then the
    test refit, each step grown as tuning is. Nothing when the sizes did not record the blend's steps (runs before
    2026-12-04's 6bb3e52)."""
    if not all(r["stages"][TUNING].get("hybrid steps") for r in rows):
        return {}
    names = set.intersection(*(set(r["stages"][TUNING]["hybrid steps"]) for r in rows))
    grown: dict[str, float] = {}
    for name in sorted(names):
        seconds = [max(float(r["stages"][TUNING]["hybrid steps"][name]), 1e-3) for r in rows]
        grown[name] = seconds[-1] * (target / xs[-1]) ** exponent(xs, seconds) * catalog
    searches = [s for name, s in grown.items() if name.startswith("rows ")]
    total = grown.get("fits", 0.0) + (max(searches) if searches else 0.0) + grown.get("test", 0.0)
    return {"seconds": total, "minutes": {name: round(s / 60, 1) for name, s in grown.items()}}


# parts of the final fit that grow in the catalog, not in the events: the content index; the selected model's
# affinity (its attributes' token matrix over the catalog: 1.46 of its 1.49 s at 300,000 shoppers; the column sums
# of the interaction matrix, the one step in events, are hundredths of a second)
ITEM_PARTS = ("content", "model:affinity")
# parts that are item-kNN fits, grown in their products: the served similar items (which the selected model's item-kNN
# is when fitted alike: training.served_part) and the selected model's own of other neighbours or shrinkage
KNN_PARTS = ("similar", "model:itemknn")


def driver(rows: list[dict[str, Any]], part: str) -> tuple[list[float], float]:
    """What a part of the served fit grows in, at each size and at the envelope: the content index in items;
    item-kNN in its products (the job's ``final parts work``), themselves grown in events up to their bound,
    shoppers x ITEMKNN_HISTORY^2 (each shopper's co-occurrences counted over their most recent items); the rest in
    events."""
    if part in ITEM_PARTS:
        return [float(r["items"]) for r in rows], float(ENVELOPE_ITEMS)
    events = [float(r["events"]) for r in rows]
    # item-kNN's products: the served similar items' fit, or the selected model's own item-kNN (other neighbours,
    # the same rows)
    work = [r["stages"][FINAL].get("work", {}).get("similar" if part in KNN_PARTS else part) for r in rows]
    if all(work):
        products = [float(w) for w in work]
        # (a part one size alone fitted — the blend differs from size to size — grows linearly)
        growth = exponent(events, products) if len(rows) > 1 else 1.0
        grown = products[-1] * (ENVELOPE_EVENTS / events[-1]) ** growth
        return products, min(grown, float(ENVELOPE_SHOPPERS) * ITEMKNN_HISTORY**2)
    return events, float(ENVELOPE_EVENTS)


def knn_slowdown(row: dict[str, Any]) -> float:
    """How much more work the job did for item-kNN than the same fit on its own (bench_knn's, at the catalog's
    width): their CPU times' ratio, never below 1."""
    job_cpu = float(row["stages"][FINAL]["parts"]["similar"][1])
    alone_cpu = float(row["stages"][KNN_WIDE]["native"][1])
    return max(job_cpu / max(alone_cpu, 0.01), 1.0)


# a served-fit part under this many seconds at a size was not fitted there (taken from tuning) or too short to time
TIMED_S = 0.01


def final_fit(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The served model's fit at the envelope, part by part: each part's growth fitted in what drives it (the
    content index in items, to 1 M; item-kNN in its products; every other part in events, to 2.6 B), and its time on
    INSTANCE's vCPUs by Amdahl's law from the share of its work that ran in parallel here — the process's CPU time
    against the part's wall time on this machine's n cores (speedup s: parallel share p = (1 - 1/s) / (1 - 1/n)).

    Item-kNN, where the run measured it at the envelope's width (KNN_WIDE: the same rows over a million columns),
    is extrapolated from that: its wall time there, times how much more work (CPU time) the job did for it than the
    same fit on its own (never less than 1), grown in its products at least linearly, its CPU time over wall as
    measured there; a blend's own item-kNN (the same rows, other neighbours) as that, times their ratio in the job.
    At a fixed width its time a product does not grow with the products (fitted ^0.94 and below over these stores:
    more products a pair as the store grows), so linear is the bound. Fitted on the job's own times instead, the
    job's slowdown at the largest size (1.18 s against 0.93 alone at 100,000 shoppers) read as growth in products:
    ^1.19, 9.2 hours in one process, where the linear bound gives about 2."""
    cores = os.cpu_count() or 1
    last = rows[-1]["stages"][FINAL]["parts"]
    apart: set[str] = set()  # the parts that ran in a process of their own where last timed
    single = together = work = cpu_total = wall_total = 0.0
    beside: list[float] = []  # each part that ran in a process of its own: its time on the instance
    inside: dict[str, tuple[float, float]] = {}  # each part of the job's process: (on the instance, its core-seconds)
    by_part: dict[str, dict[str, Any]] = {}
    for part in last:
        # the sizes that fitted the part: a blend's parts differ from size to size (iALS in the 300,000-shopper
        # store's, not in the 100,000's), and a part the job took from tuning took no time (the content index,
        # fitted once a job: 0.001-0.005 s, which read as the index's time at 300,000 shoppers put it at nothing at
        # the envelope); one size alone is grown linearly. Its share in parallel, and whether it ran apart, as the
        # last of them measured
        timed = [r for r in rows if r["stages"][FINAL]["parts"].get(part, [0.0])[0] >= TIMED_S] or rows[-1:]
        wall, cpu = (float(x) for x in timed[-1]["stages"][FINAL]["parts"][part])
        if part in (timed[-1]["stages"][FINAL].get("apart") or []):
            apart.add(part)
        sizes, target = driver(timed, part)
        walls = [max(float(r["stages"][FINAL]["parts"][part][0]), 0.01) for r in timed]
        # (never below 0: a part whose time fell was taken from tuning at the larger size — the content index at
        # 300,000 shoppers, 0.01 s — and costs what it did there)
        growth = fitted = max(exponent(sizes, walls), 0.0) if len(timed) > 1 else 1.0
        if part not in ITEM_PARTS and part not in KNN_PARTS:
            # a pass over every event grows at least linearly in them: a fitted exponent below 1 (the matrix ^0.92,
            # its fixed costs a larger share at the small sizes) would put it below its own work at the envelope
            growth = max(growth, 1.0)
        measured_at, scaled = "the catalog's width", ""
        if part in KNN_PARTS and all(KNN_WIDE in r["stages"] for r in rows):
            # its time at the envelope's width, times as much more work as the job did for the same fit on its own
            # at the catalog's width (the job's heap: CPU time, not wall time, which on these 2 cores also counts the
            # content index's process beside it taking a core — 7.4 s of wall against 3.1 alone at 300,000 shoppers,
            # for 7.2 s of CPU against 5.6 — where the instance gives each side cores of its own)
            walls = [max(float(r["stages"][KNN_WIDE]["wide"][0]), 0.01) * knn_slowdown(r) for r in rows]
            wide_wall, wide_cpu = (float(x) for x in rows[-1]["stages"][KNN_WIDE]["wide"])
            share_of = wide_cpu / max(wide_wall, 0.01)  # its share in parallel: as measured
            if part != "similar":
                # the selected model's own item-kNN counts the same rows with other neighbours: the served one's
                # times at the envelope's width, times their ratio in the job where it was last timed. Fitted on
                # the job's own times, over the two sizes whose blend had it, it read the job's slowdown as growth
                # in products (^1.54 from 100,000 to 300,000 shoppers in a full-grid run: 3.6 h on the instance,
                # where the served item-kNN over the same rows read ^1.07 at the envelope's width and 0.4 h)
                ratio = wall / max(float(timed[-1]["stages"][FINAL]["parts"]["similar"][0]), 0.01)
                walls, share_of = [w * ratio for w in walls], cpu / max(wall, 0.01)
                scaled = f"the served item-kNN's x {ratio:.2f}, their ratio at {timed[-1]['shoppers']:,} shoppers"
            sizes, target = driver(rows, part)
            wall, cpu = walls[-1], walls[-1] * share_of
            fitted = exponent(sizes, walls)
            growth, measured_at = max(fitted, 1.0), f"{ENVELOPE_ITEMS:,} columns"
        at_envelope = walls[-1] * (target / sizes[-1]) ** growth
        speedup = min(max(cpu / max(wall, 0.01), 1.0), float(cores))
        share = (1 - 1 / speedup) / (1 - 1 / cores) if cores > 1 else 0.0
        one_core = at_envelope * speedup  # the part's work on one core
        on_instance = one_core * ((1 - share) + share / INSTANCE_VCPUS)
        single += at_envelope
        work += one_core
        if part in apart:
            beside.append(on_instance)
        else:
            together += on_instance
            inside[part] = (on_instance, one_core)
        cpu_total, wall_total = cpu_total + cpu, wall_total + wall
        by_part[part] = {
            "walls": walls,
            "sizes": [r["shoppers"] for r in (rows if scaled else timed)],
            "grows_in": "items" if part in ITEM_PARTS else "products" if part in KNN_PARTS else "events",
            "growth": round(growth, 2),
            "fitted": round(fitted, 2),
            "measured_at": measured_at,
            "scaled": scaled,
            "parallel_share": round(share, 2),
            "single_hours": round(at_envelope / 3600, 2),
            "instance_hours": round(on_instance / 3600, 2),
        }
    # the parts apart run while the others do: the fit takes the longer side, and never less than all its work
    # spread over the instance's vCPUs (the two sides' parallel stretches share them)
    in_process = together
    side_by_side = final_side_by_side(INSTANCE_VCPUS)
    longest = ""
    if side_by_side and inside:
        in_process, longest = parts_side_by_side(inside)
    instance = max(in_process, *beside, work / INSTANCE_VCPUS)
    speedup = cpu_total / max(wall_total, 0.01)
    return {
        "side_by_side": side_by_side,
        "longest_part": longest,
        "single_hours": round(single / 3600, 1),
        "speedup_here": round(speedup, 2),
        "parallel_share": round((1 - 1 / speedup) / (1 - 1 / cores) if cores > 1 and speedup > 1 else 0.0, 2),
        "instance_hours": round(instance / 3600, 1),
        "fits_budget_on_instance": instance <= BUDGET_S,
        "apart": sorted(apart),
        "together_hours": round(together / 3600, 2),  # the parts in the job's process, one after another
        "by_part": by_part,
    }


# the served fit's parts built before the others, which read them (the interaction matrix, the rows served and the
# matrices they read); and the parts that run one after the other within their thread (the segment lists count from
# the bestsellers' coded rows)
BEFORE_PARTS = ("ids", "matrix", "history", "inputs")
CHAINED_PARTS = ("popularity", "segments")


def parts_side_by_side(inside: dict[str, tuple[float, float]]) -> tuple[float, str]:
    """The job's process on the instance with the served fit's parts at once (``training.final_side_by_side``): the
    parts built first, then the longest of the others (the chained ones as one), and never less than the others'
    work spread over the instance's vCPUs. Each part's time is its own with every vCPU to itself (Amdahl's, as
    one after another): at once they share the vCPUs, which the work's bound carries. Returns the seconds and the
    longest part (the chained ones by the first's name)."""
    first = sum(inside[p][0] for p in BEFORE_PARTS if p in inside)
    pooled = {p: t for p, t in inside.items() if p not in BEFORE_PARTS}
    spans = {p: t[0] for p, t in pooled.items() if p not in CHAINED_PARTS}
    chained = [p for p in CHAINED_PARTS if p in pooled]
    if chained:
        spans[chained[0]] = sum(pooled[p][0] for p in chained)
    longest = max(spans, key=lambda p: spans[p]) if spans else ""
    pooled_work = sum(t[1] for t in pooled.values())
    return first + max(spans.get(longest, 0.0), pooled_work / INSTANCE_VCPUS), longest


# parts of the served fit whose own memory is what they have in flight, not what they read: item-kNN's blocks (at
# most SPARSE_BLOCK_PAIRS products each, about at that cap from 100,000 shoppers) and the chunks of rows of the
# sessions and rules ("next_items"; "model" in logs from before the selected model's parts were timed apart) and of
# the segment lists (at most FIT_CHUNK_ROWS each), a block or chunk a thread
IN_FLIGHT = ("similar", "model:itemknn", "model", "next_items", "segments")


def final_fit_memory(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The served fit's own memory at the envelope, part by part, the largest of: what the fit keeps (its arrays'
    sizes at its end, the job's ``final held mb``: the event-sized ones grown with the events, the item-sized with
    the items) and the part's own peak. A part that works in blocks or chunks needs what it has in flight: its peak here times the
    ratio of what is in flight at the envelope, on INSTANCE's vCPUs at their cap, to here (this machine's cores, at
    this size's block or chunk); the content index grows with the items, linearly; the rest with the events,
    linearly. (A fit of the exponent on these peaks says little: resident memory moves with what the allocator
    reuses.)"""
    cores = os.cpu_count() or 1
    last = rows[-1]
    final = last["stages"][FINAL]
    events = float(last["events"])
    kept = final["held_mb"]
    before = kept["events"] * ENVELOPE_EVENTS / events + kept["items"] * ENVELOPE_ITEMS / float(last["items"])
    out: dict[str, float] = {}
    for part, (_held, own) in final["parts_mb"].items():
        if part in KNN_PARTS:
            products = float((final.get("work") or {}).get("similar") or 0.0)
            block = min(float(SPARSE_BLOCK_PAIRS), products / cores) if products else float(SPARSE_BLOCK_PAIRS)
            scale = INSTANCE_VCPUS * SPARSE_BLOCK_PAIRS / (cores * max(block, 1.0))
        elif part in IN_FLIGHT:
            rows_here = events  # the segment lists read every row; the rules the consented ones, about as many
            chunk = min(float(FIT_CHUNK_ROWS), rows_here / cores)
            scale = INSTANCE_VCPUS * min(float(FIT_CHUNK_ROWS), ENVELOPE_EVENTS / INSTANCE_VCPUS) / (cores * chunk)
        elif part in ITEM_PARTS:
            scale = ENVELOPE_ITEMS / float(last["items"])
        else:
            scale = ENVELOPE_EVENTS / events
        # a part in a process of its own holds none of what the job's process keeps: its own peak alone
        out[part] = round(((0.0 if part in final.get("apart", ()) else before) + own * scale) / 1024, 1)
    return out


def final_fit_own_gb(by_part: dict[str, float], apart: Sequence[str]) -> tuple[float, str]:
    """The served fit's own memory at the envelope, and the part of the job's process at its largest: one part of
    the job's process at a time, and beside it every part in a process of its own."""
    inside = {part: gb for part, gb in by_part.items() if part not in apart} or {"": 0.0}
    largest = max(inside, key=lambda part: inside[part])
    return round(inside[largest] + sum(by_part[part] for part in apart), 1), largest


def events_label(events: float) -> str:
    return f"{events / 1e9:.1f} B events" if events >= 1e9 else f"{events / 1e6:,.0f} M events"


def markdown(rows: list[dict[str, Any]], fits: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| stage | "
        + " | ".join(f"{r['events'] / 1e6:.2f} M events: s / peak MB" for r in rows)
        + f" | growth (time, memory) | at the envelope ({events_label(ENVELOPE_EVENTS)}) |",
        "|---|" + "---|" * len(rows) + "---|---|",
    ]
    for stage, fit in fits.items():
        if stage == "retrain fit":
            continue
        if stage == HISTORIES:
            lines.append(histories_line(rows, fit))
            continue
        own = stage not in WITHIN  # a stage's own peak memory, or only a time within another stage
        cells = [
            (
                f"{r['stages'][stage]['seconds']:.0f} / "
                + (
                    f"{r['stages'][stage]['peak_mb']:,.0f}"
                    if own
                    else (f"+{r['stages'][stage]['own_mb']:,.0f}" if r["stages"][stage].get("own_mb") else "—")
                )
            )
            if completed(r, stage)
            else (
                f"killed for memory at {r['stages'][stage]['peak_mb'] / 1024:,.1f} GB after "
                f"{r['stages'][stage]['seconds']:,.0f} s (this machine: {MACHINE_MB / 1024:,.0f} GB)"
                if stage in r["stages"]
                else "not run"
            )
            for r in rows
        ]
        misses = [
            *([] if fit["fits_memory"] else [f"over the largest instance's {LARGEST_TRAINING_GB} GB"]),
            *([] if fit["fits_budget"] else [f"{fit['instances_for_budget']:,}x the 2-hour budget"]),
        ]
        size = f", {fit['envelope_gb']:,} GB" if own else ""
        verdict = f"{fit['envelope_hours']:,} h{size}: " + ("; ".join(misses) or "fits")
        own_gb = f", +{fit['own_gb']:,} GB its own" if "own_gb" in fit else ""
        if stage == TUNING:
            catalog = (
                f", and {fit['catalog_factor']:,}x the catalog, grown at least linearly in items past the cap"
                if fit.get("catalog_factor", 1.0) > 1.0
                else ""
            )
            verdict = (
                f"{fit['envelope_minutes']:,} min of one process (on {TUNING_INTERACTIONS / 1e6:.0f} M interactions, "
                f"the sample's cap{catalog}){own_gb}"
            )
            if "instance_minutes" in fit:
                parts = ", ".join(f"{name} {minutes:,}" for name, minutes in fit["parts_minutes"].items())
                blend = (
                    f" ({fit['blend_minutes']:,} min: its fits, then the longest of its three searches side by side, "
                    f"then its test refit)"
                    if "blend_minutes" in fit
                    else ""
                )
                spread = (
                    f"its {fit['fits_spread']} fits spread over {fit['side_by_side']} workers, each family's test "
                    f"refit after its fits (the longest family fit after fit: {fit['longest_family']}"
                    if fit.get("fits_spread")
                    else f"its families side by side: the longest ({fit['longest_family']}"
                )
                verdict += (
                    f"; **{fit['instance_minutes']:,} min on one {INSTANCE}** with {spread}), then the blend's "
                    f"search{blend}, then the rest ({fit['rest_minutes']:,} min; by part, min: {parts})"
                )
        if stage == FINAL:
            at_once = (
                f" with its parts side by side (the matrix and the rows served first, then the longest: "
                f"{part_name(fit['longest_part'])}; {fit['together_hours']:,} h one after another)"
                if fit.get("side_by_side") and fit.get("longest_part")
                else ""
            )
            beside = (
                f" ({' and '.join(part_name(p) for p in fit['apart'])} in a process of its own beside the other "
                "parts" + ("" if at_once else f", {fit['together_hours']:,} h one after another") + ": the longer side)"
                if fit.get("apart")
                else ""
            )
            verdict = (
                f"{fit['envelope_hours']:,} h in one process here; {fit['parallel_share']:.0%} of its work in parallel "
                f"({fit['speedup_here']}x on these {os.cpu_count()} cores): **{fit['instance_hours']:,} h on one "
                f"{INSTANCE}** ({INSTANCE_VCPUS} vCPUs){at_once}{beside}{own_gb}"
            )
        growth = (
            f"^{fit['time_exponent']}, ^{fit['memory_exponent']}"
            if own
            else f"^{fit['time_exponent']}, " + (f"^{fit['own_exponent']}" if "own_exponent" in fit else "—")
        )
        lines.append(f"| {stage} | " + " | ".join(cells) + f" | {growth} | {verdict} |")
    if "retrain fit" in fits:
        total = fits["retrain fit"]
        memory = (
            f"; holds {total['memory_gb']:,} GB (the rows {total['frame_gb']:,} GB at "
            f"{total['frame_bytes_per_event']:,.0f} bytes an event, and the larger half's own): "
            + ("fits" if total["fits_memory"] else "over")
            + f" the largest instance's {LARGEST_TRAINING_GB} GB"
            if "memory_gb" in total
            else ""
        )
        lines.append(
            "| the retrain's fit (tuning + final fit) | " + " | ".join("" for _ in rows) + " | | "
            f"{total['hours']:,} h: "
            + ("fits the 2-hour budget" if total["fits_budget"] else "over the 2-hour budget")
            + memory
            + " |"
        )
    if FINAL in fits and "by_part" in fits[FINAL]:
        lines += ["", *by_part_table([r for r in rows if FINAL in r["stages"]], fits[FINAL]["by_part"])]
    return "\n".join(lines)


def histories_line(rows: list[dict[str, Any]], fit: dict[str, Any]) -> str:
    """The row of HISTORIES: a user's cost at each size (its history as long as the envelope's), and the transform
    at the envelope from it."""
    cells = [
        (
            f"{r['stages'][HISTORIES]['ms_per_user']:.2f} ms a user of {r['stages'][HISTORIES]['items_a_shopper']:,.0f} "
            f"items (x{r['stages'][HISTORIES]['factor']}; {r['stages'][HISTORIES]['as_is']['ms_per_user']:.2f} as is)"
        )
        if HISTORIES in r["stages"]
        else "not run"
        for r in rows
    ]
    verdict = (
        f"{fit['ms_per_user']:,} ms a user at {ENVELOPE_ITEMS:,} items: {fit['envelope_hours']:,} h of one core for "
        f"{ENVELOPE_SHOPPERS / 1e6:.0f} M shoppers, **{fit['users_per_worker_s']:,} users a second a worker** (the "
        f"plan assumes {fit['plan_users_per_worker_s']:,.0f}): {fit['workers_for_budget']:,} workers for "
        f"{fit['budget_minutes']:.0f} minutes"
    )
    return f"| {HISTORIES} | " + " | ".join(cells) + f" | items ^{fit['time_exponent']} | {verdict} |"


PART_NAMES = {
    "ids": "the served set's ids, every row's codes",
    "matrix": "interaction matrix",
    "inputs": "the parts' shared inputs",
    "model": "the selected model, whole",
    "content": "content index",
    "similar": "item-kNN",
    "next_items": "next-item rules",
    "history": "history rows",
    "popularity": "bestsellers",
    "segments": "segment lists",
}


def part_name(part: str) -> str:
    """A part of the served fit for people: the served parts by what they are, the selected model's own parts
    ("model:ials") by their family."""
    kind = part.removeprefix("model:")
    return f"the selected model's {kind}" if kind != part else PART_NAMES.get(part, part)


def by_part_table(rows: list[dict[str, Any]], parts: dict[str, dict[str, Any]]) -> list[str]:
    """The served fit's parts: wall seconds at each size (item-kNN's also at the envelope's width where measured),
    what each grows in and how fast, and its hours at the envelope."""
    lines = [
        "| part of the served fit | "
        + " | ".join(f"{r['shoppers']:,} shoppers: s" for r in rows)
        + f" | grows in | growth | at the envelope: one process / one {INSTANCE} (h) |",
        "|---|" + "---|" * len(rows) + "---|---|---|",
    ]
    for part, fit in sorted(parts.items(), key=lambda kv: -kv[1]["instance_hours"]):
        # a size whose selected model had no such part, or took it from tuning: a dash
        cells = [
            f"{r['stages'][FINAL]['parts'][part][0]:.2f}" if r["stages"][FINAL]["parts"].get(part, [0.0])[0] else "—"
            for r in rows
        ]
        grows = fit["grows_in"]
        if fit["measured_at"] != "the catalog's width" and len(fit["walls"]) == len(rows):
            how = "" if fit.get("scaled") else ", as much work as in the job"
            cells = [
                f"{cell} ({wall:.2f} at {fit['measured_at']}{how})"
                for cell, wall in zip(cells, fit["walls"], strict=True)
            ]
            scaled = f": {fit['scaled']}" if fit.get("scaled") else ""
            grows += f" at {fit['measured_at']}{scaled} (fitted ^{fit['fitted']}, taken at least linear)"
        elif fit["growth"] > fit["fitted"] and len(fit.get("sizes", rows)) > 1:
            grows += f" (fitted ^{fit['fitted']}, taken at least linear)"
        if len(fit.get("sizes", rows)) < 2:
            grows += " (one size: taken linear)"
        lines.append(
            f"| {part_name(part)} | " + " | ".join(cells) + f" | {grows} | ^{fit['growth']} | "
            f"{fit['single_hours']:,} / {fit['instance_hours']:,} ({fit['parallel_share']:.0%} in parallel) |"
        )
    return lines


def plot_growth(rows: list[dict[str, Any]], fits: dict[str, dict[str, Any]], path: Path) -> dict[str, Any]:
    """The growth table as a picture (``scale.png``): each stage's wall time and peak memory against the events, on
    log axes, measured (dots) and extrapolated to the envelope by its fitted growth (dashed), against the 2-hour
    budget and the largest instance's memory; the served fit's hours on one ml.r5.24xlarge (a star) beside its
    single process's. Returns what it drew, stage by stage: (events, seconds) and (events, GB) lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn: dict[str, Any] = {"time": {}, "memory": {}}
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    # (a user's cost at the envelope's histories is no time over the store's events: its row says it)
    for n, stage in enumerate(s for s in STAGES if s in fits and s != HISTORIES):
        measured_rows = [r for r in rows if completed(r, stage)]
        events = [float(r["events"]) for r in measured_rows]
        seconds = [float(r["stages"][stage]["seconds"]) for r in measured_rows]
        colour = f"C{n % 10}"
        at_envelope = float(fits[stage]["envelope_minutes"]) * 60
        if stage == FINAL:
            at_envelope = float(fits[stage]["single_hours"]) * 3600
        xs, ys = [*events, float(ENVELOPE_EVENTS)], [*seconds, at_envelope]
        drawn["time"][stage] = list(zip(xs, ys, strict=True))
        label = f"{stage} (^{fits[stage]['time_exponent']}" + (", up to its sample's cap)" if stage == TUNING else ")")
        left.plot(events, seconds, "o-", color=colour, label=label)
        left.plot(xs[-2:], ys[-2:], "--", color=colour, alpha=0.6)
        if stage == FINAL and "instance_hours" in fits[stage]:
            on_instance = float(fits[stage]["instance_hours"]) * 3600
            drawn["time"]["final fit on one instance"] = [(float(ENVELOPE_EVENTS), on_instance)]
            left.plot(
                [ENVELOPE_EVENTS], [on_instance], "*", color=colour, markersize=14, label=f"{FINAL}, one {INSTANCE}"
            )
        if stage not in WITHIN and fits[stage].get("envelope_gb") is not None:
            peaks = [float(r["stages"][stage]["peak_mb"]) / 1024 for r in measured_rows]
            gb = [*peaks, float(fits[stage]["envelope_gb"])]
            drawn["memory"][stage] = list(zip(xs, gb, strict=True))
            right.plot(events, peaks, "o-", color=colour, label=f"{stage} (^{fits[stage]['memory_exponent']})")
            right.plot(xs[-2:], gb[-2:], "--", color=colour, alpha=0.6)
        for killed in (r for r in rows if stage in r["stages"] and not completed(r, stage)):
            drawn["memory"].setdefault(f"{stage}: killed for memory", []).append(
                (float(killed["events"]), float(killed["stages"][stage]["peak_mb"]) / 1024)
            )
            right.plot(
                *drawn["memory"][f"{stage}: killed for memory"][-1],
                "X",
                color=colour,
                markersize=11,
                label=f"{stage}: killed for memory",
            )
    if "memory_gb" in fits.get("retrain fit", {}):
        held = float(fits["retrain fit"]["memory_gb"])
        drawn["memory"]["the retrain's fit"] = [(float(ENVELOPE_EVENTS), held)]
        right.plot([ENVELOPE_EVENTS], [held], "*", color="black", markersize=14, label="the retrain's fit, held")
    left.axhline(BUDGET_S, color="red", linewidth=1)
    left.text(events_floor(rows), BUDGET_S * 1.15, "the retrain's 2 hours", color="red", fontsize=8)
    right.axhline(LARGEST_TRAINING_GB, color="red", linewidth=1)
    right.text(
        events_floor(rows), LARGEST_TRAINING_GB * 1.15, f"{INSTANCE}: {LARGEST_TRAINING_GB} GB", color="red", fontsize=8
    )
    for ax, what in ((left, "wall seconds"), (right, "peak GB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("events in the training window (the envelope: 2.6 B)")
        ax.set_ylabel(what)
        ax.axvline(ENVELOPE_EVENTS, color="grey", linewidth=0.8, linestyle=":")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="upper left")
    sizes = ", ".join(f"{r['shoppers']:,}" for r in rows)
    fig.suptitle(f"make scale: stores of {sizes} shoppers, measured and extrapolated to the envelope")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return drawn


def events_floor(rows: list[dict[str, Any]]) -> float:
    return min(float(r["events"]) for r in rows)


README = REPO_ROOT / "README.md"
BEGIN, END = "<!-- make scale: begin -->", "<!-- make scale: end -->"


def markers(budget: str) -> tuple[str, str]:
    """The README block a budget's table goes in: quick's is make scale's; full's (the deployed default's tuning) its
    own."""
    return (
        (BEGIN, END)
        if budget == "quick"
        else (f"<!-- make scale budget={budget}: begin -->", f"<!-- make scale budget={budget}: end -->")
    )


PLOT = REPO_ROOT / "docs" / "scale.png"  # the README shows it beside the table


def write_readme_table(
    table: str, rows: list[dict[str, Any]], days: int, runs: Sequence[list[int]] = (), options: str = ""
) -> None:
    """The README's growth table is this run's: replaced between its markers, with the command that made it (the
    sizes measured: a table re-rendered ``--from-log`` names its run's, not the default's; one merged from the logs of
    several runs, ``runs`` the sizes of each, names every run and the one command that measures them all)."""
    text = README.read_text()
    begin, end = markers(budget_of(rows))
    if begin not in text or end not in text:
        raise SystemExit(f"README.md has no {begin} ... {end} block to write the table into")
    sizes = ",".join(str(r["shoppers"]) for r in rows)
    command = f"`.venv/bin/python tests/bench/bench_scale.py --shoppers {sizes} --days {days}{options} --readme`"
    if len(runs) > 1:
        each = " and ".join(f"`--shoppers {','.join(map(str, run))}`" for run in runs)
        command = (
            f"`.venv/bin/python tests/bench/bench_scale.py --from-log LOG... --readme` from the logs of {len(runs)} "
            f"runs of the same stages' code ({each}, `--days {days}`); {command} measures every size in one run"
        )
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    README.write_text(f"{head}{begin}\n{table}\n\nWritten by {command}.\n{end}{tail}")


def budget_of(rows: list[dict[str, Any]]) -> str:
    """The tuning budget the sizes' training as at the envelope ran (logs before it was recorded: quick); sizes of
    two budgets are refused — their tuning is not one curve."""
    budgets = {r.get("budget", "quick") for r in rows}
    if len(budgets) > 1:
        raise SystemExit(f"the sizes' training ran different budgets ({', '.join(sorted(budgets))}): not one curve")
    return budgets.pop() if budgets else "quick"


def logged_rows(logs: Sequence[Path]) -> tuple[list[dict[str, Any]], list[list[int]]]:
    """The sizes the runs' logs measured (a JSON line per size), in order of shoppers, and each run's sizes; a size
    two logs both measured is refused rather than one of them silently kept."""
    rows: list[dict[str, Any]] = []
    runs: list[list[int]] = []
    for log in logs:
        found = [json.loads(line) for line in log.read_text().splitlines() if line.startswith('{"shoppers"')]
        if not found:
            raise SystemExit(f'{log} has no measured size (a JSON line starting {{"shoppers"): not a run\'s log')
        runs.append([r["shoppers"] for r in found])
        rows += found
    sizes = [r["shoppers"] for r in rows]
    if twice := sorted({s for s in sizes if sizes.count(s) > 1}):
        raise SystemExit(f"sizes measured in more than one log: {twice}; keep one run's")
    if len({r["days"] for r in rows}) > 1:
        raise SystemExit("the logs simulated stores over different --days: their sizes do not make one curve")
    budget_of(rows)
    return sorted(rows, key=lambda r: r["shoppers"]), runs


def retarget(events: float) -> None:
    """The extrapolation's target a store of ``events`` in its training window, its shoppers and items in the
    envelope's proportion to them (each at least one)."""
    global ENVELOPE_EVENTS, ENVELOPE_SHOPPERS, ENVELOPE_ITEMS
    share = events / ENVELOPE_EVENTS
    ENVELOPE_SHOPPERS = max(1, round(ENVELOPE_SHOPPERS * share))
    ENVELOPE_ITEMS = max(1, round(ENVELOPE_ITEMS * share))
    ENVELOPE_EVENTS = round(events)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shoppers", default="10000,30000,100000,300000")
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument(
        "--stages", default=",".join(STAGES), help=f"of: {', '.join(STAGES)} (a size's model is reused)"
    )
    parser.add_argument(
        "--budget",
        choices=BUDGETS,
        default="quick",
        help="the tuning grids of the training as at the envelope: quick (make scale's table) or full (the deployed "
        "default; its table goes in a README block of its own, its model in model-envelope-full)",
    )
    parser.add_argument("--readme", action="store_true", help="write the table into README.md (make scale does)")
    parser.add_argument(
        "--from-log",
        type=Path,
        nargs="+",
        help="fit and print (and with --readme write) the table from a run's log (.local/bench/bench_scale.log), "
        "or the sizes of several runs' logs together, instead of running the stages again",
    )
    parser.add_argument(
        "--envelope-events",
        type=float,
        help="extrapolate to a store of this many events in its training window instead of the envelope's 2.6 B (its "
        "shoppers and items in the envelope's proportion): where a grid or a stage stops fitting; not with --readme",
    )
    args = parser.parse_args()
    if args.envelope_events:
        if args.readme:
            parser.error("--envelope-events extrapolates to another store than the envelope: not the README's table")
        retarget(args.envelope_events)
    wanted = [s.strip() for s in args.stages.split(",")]
    if unknown := set(wanted) - set(STAGES):
        parser.error(f"unknown stages {sorted(unknown)}: expected some of {', '.join(STAGES)}")
    os.environ.setdefault("SHOPWISE_HOME", str(REPO_ROOT / ".local" / "scale-home"))
    if not args.from_log:  # the stages' processes: memory as cheap to touch the first time as an instance's
        print(numpy_pages(), flush=True)
    # a run's log: a JSON line per size measured, then the table, then the whole result as one JSON line
    rows, runs = logged_rows(args.from_log) if args.from_log else ([], [])
    for shoppers in () if args.from_log else (int(s) for s in args.shoppers.split(",")):
        size_wanted = wanted
        trained = [r for r in rows if completed(r, "training")]
        if len(trained) >= 2 and "training" in wanted:  # training the fit says this machine cannot hold is left out
            peaks = [float(r["stages"]["training"]["peak_mb"]) for r in trained]
            shoppers_seen = [float(r["shoppers"]) for r in trained]
            expected = peaks[-1] * (shoppers / shoppers_seen[-1]) ** exponent(shoppers_seen, peaks)
            if expected > 0.8 * MACHINE_MB:
                print(f"{shoppers:,} shoppers without training and its transforms: the fit puts training at "
                      f"{expected / 1024:.0f} GB, this machine has {MACHINE_MB / 1024:.0f} GB", flush=True)  # fmt: skip
                size_wanted = [
                    s for s in wanted if s not in ("training", "batch transform", "transform over candidates")
                ]
        rows.append(run_size(shoppers, args.days, size_wanted, args.budget))
    fits = extrapolate(rows) if len(rows) > 1 else {}
    table = markdown(rows, fits) if fits else ""
    OUT.mkdir(parents=True, exist_ok=True)
    budget = budget_of(rows)
    suffix = "" if budget == "quick" else f"-{budget}"
    if table:  # (one size alone has no growth to fit: its row is printed, the last table kept)
        (OUT / f"scale{suffix}.md").write_text(table + "\n")
    if fits and budget == "quick":  # (the plot is make scale's every stage)
        plot_growth(rows, fits, OUT / "scale.png")
    if args.readme and table:
        measured = [s for s in STAGES if s not in WITHIN and any(s in r["stages"] for r in rows)]
        stages = "" if set(measured) >= set(STAGES) - set(WITHIN) else f' --stages "{",".join(measured)}"'
        options = ("" if budget == "quick" else f" --budget {budget}") + stages
        write_readme_table(table, rows, int(rows[-1]["days"]), runs, options)
        if budget == "quick":
            plot_growth(rows, fits, PLOT)
    print(table)
    print(json.dumps({"sizes": rows, "envelope": fits}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
