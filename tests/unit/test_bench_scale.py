"""make scale's extrapolation of the served fit's item-kNN part: what the README's 2-hour verdict rests on."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.bench import bench_scale
from tests.bench.bench_scale import FINAL, INSTANCE_VCPUS, KNN_WIDE, TUNING, driver, final_fit


def sizes(job: list[float], native: list[float], wide: list[float], products: list[float]) -> list[dict[str, Any]]:
    """Three stores whose served fit is item-kNN alone: its wall time in the job (CPU 1.8x: 2 cores), its products,
    and bench_knn's fit of the same rows at the catalog's width and at a million columns."""
    return [
        {
            "shoppers": 10_000 * 3**n,
            "events": 200_000.0 * 3**n,
            "stages": {
                FINAL: {"parts": {"similar": [j, 1.8 * j]}, "work": {"similar": p}},
                KNN_WIDE: {"native": [nat, 1.8 * nat], "wide": [w, 1.8 * w], "products": p},
            },
        }
        for n, (j, nat, w, p) in enumerate(zip(job, native, wide, products, strict=True))
    ]


@pytest.fixture(autouse=True)
def two_cores(monkeypatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)


def test_item_knn_is_extrapolated_from_the_envelopes_width_linearly_and_as_slow_as_the_job_ran_it() -> None:
    products = [2e6, 8e6, 32e6]
    # sub-linear at a million columns (a fixed cost weighs on the small sizes): taken as linear
    rows = sizes(job=[0.05, 0.2, 1.2], native=[0.05, 0.2, 0.9], wide=[0.2, 0.4, 1.0], products=products)
    _, target = driver(rows, "similar")
    part = final_fit(rows)["by_part"]["similar"]
    wall = 1.0 * 1.2 / 0.9  # the wide fit, as much slower as the job ran it than the fit on its own
    assert part["growth"] == 1.0 and part["fitted"] < 1.0
    assert part["single_hours"] == pytest.approx(wall * target / products[-1] / 3600, rel=0.01)
    share = (1 - 1 / 1.8) / (1 - 1 / 2)
    on_instance = wall * target / products[-1] * 1.8 * ((1 - share) + share / INSTANCE_VCPUS)
    assert part["instance_hours"] == pytest.approx(on_instance / 3600, rel=0.01)


def test_item_knn_growing_faster_than_its_products_at_the_envelopes_width_keeps_its_growth() -> None:
    products = [2e6, 8e6, 32e6]
    rows = sizes(job=[0.1, 0.4, 1.6], native=[0.1, 0.4, 1.6], wide=[0.1, 0.6, 3.6], products=products)
    part = final_fit(rows)["by_part"]["similar"]
    _, target = driver(rows, "similar")
    growth = math.log(6) / math.log(4)  # each size: 4x the products, 6x the time
    assert part["growth"] == pytest.approx(growth, abs=0.01)
    assert part["single_hours"] == pytest.approx(3.6 * (target / products[-1]) ** growth / 3600, rel=0.01)


def test_the_selected_models_item_knn_grows_as_the_served_one_at_the_envelopes_width_times_their_ratio() -> None:
    """The blend's own item-kNN counts the same rows as the served one: its job times over the sizes whose blend had
    it (here the two largest, 9x apart in time for 4x the products) are not its growth; the served item-kNN's at a
    million columns is, scaled by their ratio in the job at the largest size."""
    products = [2e6, 8e6, 32e6]
    rows = sizes(job=[0.05, 0.2, 1.2], native=[0.05, 0.2, 0.9], wide=[0.2, 0.4, 1.0], products=products)
    rows[1]["stages"][FINAL]["parts"]["model:itemknn"] = [0.3, 0.54]
    rows[2]["stages"][FINAL]["parts"]["model:itemknn"] = [2.7, 4.86]
    fitted = final_fit(rows)["by_part"]
    served, own = fitted["similar"], fitted["model:itemknn"]
    assert own["growth"] == served["growth"] == 1.0 and own["measured_at"] == served["measured_at"]
    assert own["single_hours"] == pytest.approx(served["single_hours"] * 2.7 / 1.2, rel=0.02)
    assert own["walls"] == pytest.approx([w * 2.7 / 1.2 for w in served["walls"]])
    assert own["parallel_share"] == served["parallel_share"]  # CPU 1.8x its wall in the job, as the served one's
    line = next(line for line in bench_scale.by_part_table(rows, fitted) if "selected model's itemknn" in line)
    assert "the served item-kNN's x 2.25, their ratio at 90,000 shoppers" in line and "— (" in line
    # without the width stage: its own times, fitted (9x the time for 4x the products)
    for row in rows:
        del row["stages"][KNN_WIDE]
    alone = final_fit(rows)["by_part"]["model:itemknn"]
    assert alone["growth"] == pytest.approx(math.log(9) / math.log(4), abs=0.01) and not alone["scaled"]


def test_a_run_without_the_width_stage_extrapolates_the_jobs_own_times_by_their_fitted_growth() -> None:
    rows = sizes(job=[0.05, 0.2, 1.2], native=[0.05, 0.2, 0.9], wide=[0.2, 0.4, 1.0], products=[2e6, 8e6, 32e6])
    for row in rows:
        del row["stages"][KNN_WIDE]
    part = final_fit(rows)["by_part"]["similar"]
    assert part["measured_at"] == "the catalog's width" and part["growth"] > 1.1
    assert "1,000,000 columns" not in "\n".join(bench_scale.by_part_table(rows, {"similar": part}))


def test_a_size_run_without_a_stage_leaves_it_out_of_that_stages_fit_and_says_not_run() -> None:
    rows = sizes(job=[0.05, 0.2, 1.2], native=[0.05, 0.2, 0.9], wide=[0.2, 0.4, 1.0], products=[2e6, 8e6, 32e6])
    for n, row in enumerate(rows):
        row["stages"][FINAL]["seconds"] = sum(wall for wall, _cpu in row["stages"][FINAL]["parts"].values())
        if n < 2:  # the largest size was run with --stages, without the data set
            row["stages"]["data set"] = {"seconds": 10.0 * 4**n, "peak_mb": 100.0 * 3**n}
    fits = bench_scale.extrapolate(rows)
    assert fits["data set"]["time_exponent"] == pytest.approx(math.log(4) / math.log(3), abs=0.01)  # events 3x a size
    assert fits["data set"]["memory_exponent"] == pytest.approx(1.0, abs=0.01)
    assert fits[FINAL]["by_part"]["similar"]["measured_at"] == "1,000,000 columns"  # every size measured it
    knn = next(
        line for line in bench_scale.by_part_table(rows, fits[FINAL]["by_part"]) if line.startswith("| item-kNN")
    )
    assert "| products at 1,000,000 columns (fitted ^" in knn and "taken at least linear) |" in knn
    assert "one size" not in knn
    line = next(line for line in bench_scale.markdown(rows, fits).splitlines() if line.startswith("| data set |"))
    assert line.split(" | ")[1:4] == ["10 / 100", "40 / 300", "not run"]


def test_a_pass_over_every_event_that_fits_below_linear_is_grown_linearly_and_the_table_says_so() -> None:
    """The interaction matrix's fixed costs weigh on the small stores, so its fitted exponent in events can read
    below 1 (^0.92 in a run): a pass over every event is taken at least linear; one above keeps its own."""
    rows = [
        {
            "shoppers": 10_000 * 3**n,
            "events": 200_000.0 * 3**n,
            "stages": {FINAL: {"parts": {"matrix": [0.1 * 2.5**n, 0.1 * 2.5**n], "segments": [0.1 * 4**n] * 2}}},
        }
        for n in range(3)
    ]
    parts = final_fit(rows)["by_part"]
    matrix, segments = parts["matrix"], parts["segments"]
    assert matrix["fitted"] == pytest.approx(math.log(2.5) / math.log(3), abs=0.01) and matrix["growth"] == 1.0
    target = bench_scale.ENVELOPE_EVENTS / 1_800_000.0
    assert matrix["single_hours"] == pytest.approx(0.1 * 2.5**2 * target / 3600, abs=0.01)
    assert segments["growth"] == pytest.approx(math.log(4) / math.log(3), abs=0.01)  # above linear: its own
    table = "\n".join(bench_scale.by_part_table(rows, parts))
    matrix_line = next(line for line in table.splitlines() if line.startswith(f"| {bench_scale.part_name('matrix')}"))
    assert f"events (fitted ^{matrix['fitted']}, taken at least linear) | ^1.0 |" in matrix_line
    assert "taken at least linear" not in next(
        line for line in table.splitlines() if line.startswith(f"| {bench_scale.part_name('segments')}")
    )


def test_a_part_fitted_apart_overlaps_the_others_on_the_instance_and_adds_its_memory_to_theirs(monkeypatch) -> None:
    """The content index in a process of its own (the job's ``final parts apart``): the served fit on the instance
    takes the longer of it and the other parts one after another (the job's parts in turn, as below 16 vCPUs),
    where in the job's process it took their sum; its own peak comes on top of the job's process's largest,
    without what that process keeps."""
    monkeypatch.setattr(bench_scale, "final_side_by_side", lambda cores=None: False)

    def stores(apart: list[str]) -> list[dict[str, Any]]:
        return [
            {
                "shoppers": 10_000 * 3**n,
                "events": 200_000.0 * 3**n,
                "items": 1_500.0 * 3**n,
                "stages": {
                    FINAL: {
                        # serial parts (CPU = wall): their hours on the instance are their hours in one process
                        "parts": {"content": [4.0 * 3**n, 4.0 * 3**n], "segments": [1.0 * 3**n, 1.0 * 3**n]},
                        "parts_mb": {"content": [0.0, 30.0], "segments": [5.0, 100.0]},
                        "held_mb": {"events": 50.0, "items": 10.0},
                        "apart": apart,
                    }
                },
            }
            for n in range(3)
        ]

    together, beside = final_fit(stores([])), final_fit(stores(["content"]))
    content, segments = (beside["by_part"][p]["instance_hours"] for p in ("content", "segments"))
    assert together["instance_hours"] == pytest.approx(content + segments, abs=0.1)
    assert beside["instance_hours"] == pytest.approx(max(content, segments), abs=0.1)
    assert beside["together_hours"] == pytest.approx(segments, abs=0.01) and beside["apart"] == ["content"]
    rows = stores(["content"])
    memory = bench_scale.final_fit_memory(rows)
    held = 50.0 * bench_scale.ENVELOPE_EVENTS / 1_800_000.0 + 10.0 * bench_scale.ENVELOPE_ITEMS / 13_500.0
    assert memory["content"] == pytest.approx(30.0 * bench_scale.ENVELOPE_ITEMS / 13_500.0 / 1024, abs=0.1)
    assert memory["segments"] > held / 1024  # the job's process: what it keeps, and the part's own on top
    # the job's process at its largest part, the content index's process beside it: their sum, where in one process
    # the largest part alone
    own, largest = bench_scale.final_fit_own_gb(memory, ["content"])
    assert largest == "segments" and own == pytest.approx(memory["segments"] + memory["content"], abs=0.1)
    assert bench_scale.final_fit_own_gb(memory, []) == (max(memory.values()), max(memory, key=memory.__getitem__))


def logged(path, shoppers: list[int], days: int = 14, budget: str | None = None) -> None:
    """A run's log as bench_scale writes it: a JSON line per size, then the table and the whole result (``budget``:
    none, as logs before it was recorded)."""
    lines = [
        json.dumps(
            {"shoppers": s, "days": days, "events": 20.0 * s, "stages": {}, **({"budget": budget} if budget else {})}
        )
        for s in shoppers
    ]
    path.write_text("\n".join([*lines, "| stage | ... |", json.dumps({"sizes": [], "envelope": {}})]) + "\n")


def test_the_logs_of_two_runs_make_one_curve_in_order_of_shoppers_and_the_readme_names_both(
    tmp_path, monkeypatch
) -> None:
    logged(tmp_path / "small.log", [10_000, 30_000, 100_000])
    logged(tmp_path / "large.log", [300_000])
    rows, runs = bench_scale.logged_rows([tmp_path / "large.log", tmp_path / "small.log"])
    assert [r["shoppers"] for r in rows] == [10_000, 30_000, 100_000, 300_000]
    assert runs == [[300_000], [10_000, 30_000, 100_000]]
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{bench_scale.BEGIN}\nold table\n{bench_scale.END}\nafter\n")
    monkeypatch.setattr(bench_scale, "README", readme)
    bench_scale.write_readme_table("| new table |", rows, 14, runs)
    text = readme.read_text()
    assert "old table" not in text and "| new table |" in text and text.endswith(f"{bench_scale.END}\nafter\n")
    assert "`--shoppers 300000` and `--shoppers 10000,30000,100000`" in text
    assert "--shoppers 10000,30000,100000,300000 --days 14 --readme` measures every size in one run" in text


def test_logs_that_measured_a_size_twice_or_over_other_days_are_refused(tmp_path) -> None:
    logged(tmp_path / "a.log", [10_000, 30_000])
    logged(tmp_path / "b.log", [30_000, 100_000])
    logged(tmp_path / "c.log", [100_000], days=28)
    (tmp_path / "d.log").write_text("| a table, no sizes |\n")
    with pytest.raises(SystemExit, match=r"more than one log: \[30000\]"):
        bench_scale.logged_rows([tmp_path / "a.log", tmp_path / "b.log"])
    with pytest.raises(SystemExit, match="different --days"):
        bench_scale.logged_rows([tmp_path / "a.log", tmp_path / "c.log"])
    with pytest.raises(SystemExit, match="not a run's log"):
        bench_scale.logged_rows([tmp_path / "d.log"])


def test_the_growth_plot_draws_each_stage_to_its_extrapolation_at_the_envelope(tmp_path) -> None:
    rows = [
        {
            "shoppers": 10_000 * 3**n,
            "events": 200_000.0 * 3**n,
            "stages": {
                "data set": {"seconds": 2.0 * 3**n, "peak_mb": 100.0 * 2**n},
                "transform as at the envelope": {"seconds": 1.0 * 9**n, "peak_mb": 50.0},
            },
        }
        for n in range(3)
    ]
    fits = bench_scale.extrapolate(rows)
    drawn = bench_scale.plot_growth(rows, fits, tmp_path / "scale.png")
    assert (tmp_path / "scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    envelope = float(bench_scale.ENVELOPE_EVENTS)
    # linear in events: 18 s at 1.8 M events is 2.6 B / 1.8 M times that at the envelope; squared, its square
    (x, seconds) = drawn["time"]["data set"][-1]
    assert x == envelope and seconds == pytest.approx(18.0 * envelope / 1_800_000, rel=0.01)
    (_, seconds) = drawn["time"]["transform as at the envelope"][-1]
    assert seconds == pytest.approx(81.0 * (envelope / 1_800_000) ** 2, rel=0.01)
    (_, gb) = drawn["memory"]["data set"][-1]
    assert gb == pytest.approx(fits["data set"]["envelope_gb"]) and [p[1] for p in drawn["memory"]["data set"]][:3] == [
        pytest.approx(100.0 * 2**n / 1024) for n in range(3)
    ]


def test_a_stage_the_kernel_kills_for_memory_is_recorded_and_left_off_its_curve(monkeypatch, tmp_path) -> None:
    """The 300,000-shopper store's training was killed at 23 GB of this machine's 24 and ended the whole run; now the
    kill (SIGKILL, the peak near the machine's memory) is the stage's result, and the curve is the sizes that ended."""
    killed = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
    failed = [sys.executable, "-c", "raise SystemExit(3)"]
    monkeypatch.setattr(bench_scale, "MACHINE_MB", 1.0)  # any Python process is near a machine of 1 MB
    figures = bench_scale.attempt(killed)
    assert figures["out_of_memory"] and figures["peak_mb"] > 0.8 and figures["seconds"] > 0
    with pytest.raises(RuntimeError, match="failed") as raised:  # an error is an error, whatever the memory
        bench_scale.attempt(failed)
    assert not isinstance(raised.value, bench_scale.OutOfMemory)
    monkeypatch.setattr(bench_scale, "MACHINE_MB", 10_000_000.0)  # killed far from the machine's memory: not memory
    with pytest.raises(RuntimeError) as raised:
        bench_scale.measured(killed)
    assert not isinstance(raised.value, bench_scale.OutOfMemory)

    monkeypatch.setattr(bench_scale, "MACHINE_MB", 24_000.0)
    rows = [
        {
            "shoppers": 10_000 * 3**n,
            "events": 200_000.0 * 3**n,
            "stages": {"data set": {"seconds": 2.0 * 3**n, "peak_mb": 100.0 * 3**n}},
        }
        for n in range(3)
    ]
    rows.append(
        {
            "shoppers": 270_000,
            "events": 5_400_000.0,
            "stages": {"data set": {"seconds": 900.0, "peak_mb": 23_500.0, "out_of_memory": True}},
        }
    )
    fits = bench_scale.extrapolate(rows)
    assert fits["data set"]["time_exponent"] == pytest.approx(1.0, abs=0.01)  # the three that ended, not the kill
    cells = next(line for line in bench_scale.markdown(rows, fits).splitlines() if line.startswith("| data set |"))
    assert "killed for memory at 22.9 GB after 900 s (this machine: 23 GB)" in cells
    drawn = bench_scale.plot_growth(rows, fits, tmp_path / "scale.png")
    assert drawn["memory"]["data set: killed for memory"] == [(5_400_000.0, pytest.approx(23_500.0 / 1024))]
    assert len(drawn["time"]["data set"]) == 4  # three measured, and the envelope


def test_item_knn_is_as_slow_as_the_jobs_cpu_time_says_not_its_wall_time_beside_the_content_index() -> None:
    """On 2 cores the content index's process beside the fit takes a core: the job's item-kNN took 7.4 s of wall
    against 3.1 alone at 300,000 shoppers, for 7.2 s of CPU against 5.6. The work the job added is the CPU's ratio;
    the wall's would carry this machine's contention to an instance that gives each side its own cores."""
    products = [2e6, 8e6, 32e6]
    rows = sizes(job=[0.05, 0.2, 0.9], native=[0.05, 0.2, 0.9], wide=[0.1, 0.4, 1.6], products=products)
    for row in rows:  # each size's job: twice the wall alone, the same CPU (a core taken by the index beside it)
        wall, cpu = row["stages"][FINAL]["parts"]["similar"]
        row["stages"][FINAL]["parts"]["similar"] = [2 * wall, cpu]
    part = final_fit(rows)["by_part"]["similar"]
    _, target = driver(rows, "similar")
    assert part["walls"] == pytest.approx([0.1, 0.4, 1.6])  # the wide fit's own, not doubled
    assert part["single_hours"] == pytest.approx(1.6 * target / products[-1] / 3600, rel=0.01)
    more = sizes(job=[0.05, 0.2, 0.9], native=[0.05, 0.2, 0.9], wide=[0.1, 0.4, 1.6], products=products)
    more[-1]["stages"][FINAL]["parts"]["similar"][1] *= 1.25  # the job did a quarter more work at the largest size
    assert final_fit(more)["by_part"]["similar"]["walls"][-1] == pytest.approx(2.0)


def test_tuning_stops_growing_in_interactions_at_the_samples_cap_but_not_in_the_catalog() -> None:
    """The 300,000-shopper store tuned on 1.28x the interactions of the 100,000 one (the cap) in 3.04x the time,
    its catalog 3.1x: the sample bounds the shoppers, not the items, so past the cap tuning grows in items."""
    cap = float(bench_scale.TUNING_INTERACTIONS)
    rows = [
        {
            "shoppers": 10_000 * 3**n,
            "events": 200_000.0 * 3**n,
            "items": 1_000.0 * 3**n,
            "stages": {TUNING: {"seconds": 2.0 * 3**n, "own_mb": 100.0 * 3**n, "interactions": cap * 3 ** (n - 2)}},
        }
        for n in range(3)
    ]
    fit = bench_scale.extrapolate(rows)[TUNING]
    catalog = bench_scale.ENVELOPE_ITEMS / 9_000.0
    assert fit["catalog_factor"] == pytest.approx(catalog, abs=0.1)
    # at the cap already: the interactions add nothing, the catalog its multiple
    assert fit["envelope_minutes"] == pytest.approx(18.0 * catalog / 60, rel=0.01)
    assert fit["own_gb"] == pytest.approx(900.0 / 1024 * catalog, rel=0.01)
    line = next(x for x in bench_scale.markdown(rows, {TUNING: fit}).splitlines() if x.startswith(f"| {TUNING} |"))
    assert "grown at least linearly in items past the cap" in line


def test_tuning_on_the_instance_is_its_longest_family_then_the_blend_then_the_rest() -> None:
    """With tuning by family recorded, each family is extrapolated as the whole is and the instance runs them side
    by side (a worker per 8 vCPUs: 12 at 96): tuning there is the longest family, plus the blend's search after
    them, plus what no family took. The retrain's fit adds that, not tuning in one process."""
    cap = float(bench_scale.TUNING_INTERACTIONS)
    parts = {"content": 4.0, "ials": 2.0, "itemknn": 1.0, "hybrid": 2.0}  # 9 of 10 s: 1 s the splits
    rows = [
        {
            "shoppers": 10_000 * 3**n,
            "events": 200_000.0 * 3**n,
            "items": 1_000.0 * 3**n,
            "stages": {
                TUNING: {
                    "seconds": 10.0 * 3**n,
                    "own_mb": 100.0,
                    "interactions": cap * 3 ** (n - 2),
                    "parts": {name: [s * 3**n, s * 3**n] for name, s in parts.items()},
                },
                FINAL: {
                    "seconds": 5.0,
                    "own_mb": 100.0,
                    "parts": {"similar": [5.0, 9.0]},
                    "work": {"similar": 1e6 * 3**n},
                },
            },
        }
        for n in range(3)
    ]
    fits = bench_scale.extrapolate(rows)
    fit, catalog = fits[TUNING], bench_scale.ENVELOPE_ITEMS / 9_000.0
    assert fit["envelope_minutes"] == pytest.approx(90.0 * catalog / 60, rel=0.01)  # one process: every part
    assert fit["longest_family"] == "content" and fit["side_by_side"] == 3
    assert fit["instance_minutes"] == pytest.approx((36.0 + 18.0 + 9.0) * catalog / 60, rel=0.01)
    assert fit["parts_minutes"]["content"] == pytest.approx(36.0 * catalog / 60, abs=0.1)
    assert fits["retrain fit"]["hours"] == pytest.approx(
        fit["instance_minutes"] / 60 + fits[FINAL]["instance_hours"], abs=0.1
    )
    line = next(x for x in bench_scale.markdown(rows, fits).splitlines() if x.startswith(f"| {TUNING} |"))
    assert f"{fit['instance_minutes']:,} min on one {bench_scale.INSTANCE}" in line and "longest (content)" in line
    # with the blend's steps recorded, its three searches run side by side too: its fits (0.4 s of the 2), the
    # longest search (0.5), its test refit (0.2)
    for n, row in enumerate(rows):
        steps = {"fits": 0.4, "rows 0": 0.3, "rows 1": 0.5, "rows 2": 0.4, "test": 0.2}
        row["stages"][TUNING]["hybrid steps"] = {step: t * 3**n for step, t in steps.items()}
    searched = bench_scale.extrapolate(rows)[TUNING]
    assert searched["blend_minutes"] == pytest.approx((0.4 + 0.5 + 0.2) * 9 * catalog / 60, abs=0.1)
    assert searched["instance_minutes"] == pytest.approx((36.0 + 9.9 + 9.0) * catalog / 60, rel=0.01)
    line = next(x for x in bench_scale.markdown(rows, {TUNING: searched}).splitlines() if x.startswith(f"| {TUNING} |"))
    assert "the longest of its three searches side by side" in line
    # a run from before tuning was recorded by family: one process, as before
    for row in rows:
        del row["stages"][TUNING]["parts"]
    assert "instance_minutes" not in bench_scale.extrapolate(rows)[TUNING]


def test_tasks_on_workers_take_whole_families_then_each_fit_then_each_familys_test_refit_after_its_fits() -> None:
    """As tune_families submits them: "a" (one fit: 3 s, then its 1 s test) whole on the first worker; "b"'s three
    2 s fits to the worker free first (the second, the second again, then the first at 4 s: done at 6); its test
    refit once they are all done, on the worker free first: 7 s, where one after another took 11."""
    families = {"a": ([3.0], 1.0), "b": ([2.0, 2.0, 2.0], 1.0)}
    assert bench_scale.tasks_on_workers(families, 2) == pytest.approx(7.0)
    assert bench_scale.tasks_on_workers(families, 1) == pytest.approx(11.0)
    # with a worker a task, a family's chain: its longest fit, then its test refit
    assert bench_scale.tasks_on_workers(families, 8) == pytest.approx(4.0)
    # the job waits on the families of several fits in order: "c"'s refit waits for "b"'s fits too
    assert bench_scale.tasks_on_workers({"b": ([5.0], 0.0), "c": ([5.0, 1.0], 1.0), "d": ([1.0, 1.0], 1.0)}, 3) == (
        pytest.approx(6.0)
    )


def test_tuning_at_the_full_budget_spreads_each_fit_over_the_workers_and_the_table_says_so() -> None:
    """budget=full: iALS's 12 fits and item-kNN's 4 recorded as tasks. On the instance's 12 workers they spread,
    each grown as its family's whole is; tuning there is far below the longest family one fit after another."""
    cap = float(bench_scale.TUNING_INTERACTIONS)
    parts = {"ials": 13.0, "itemknn": 5.0, "sequential": 1.0}
    tasks = {"ials": ([1.0] * 12, 1.0), "itemknn": ([1.0] * 4, 1.0), "sequential": ([0.5], 0.5)}
    rows = [
        {
            "shoppers": 10_000 * 3**n,
            "events": 200_000.0 * 3**n,
            "items": 1_000.0 * 3**n,
            "budget": "full",
            "stages": {
                TUNING: {
                    "seconds": 20.0 * 3**n,
                    "own_mb": 100.0,
                    "interactions": cap * 3 ** (n - 2),
                    "parts": {name: [s * 3**n, s * 3**n] for name, s in parts.items()},
                    "tasks": {
                        name: {"fits": [t * 3**n for t in fits], "test": test * 3**n}
                        for name, (fits, test) in tasks.items()
                    },
                },
            },
        }
        for n in range(3)
    ]
    fit = bench_scale.extrapolate(rows)[TUNING]
    catalog = bench_scale.ENVELOPE_ITEMS / 9_000.0
    assert fit["fits_spread"] == 17 and fit["side_by_side"] == 12
    # at the last size: 17 fits on 12 workers (sequential whole, 1 s, first), then iALS's and item-kNN's fits, 9 s
    # each, two rounds (the second on the five workers free first), then each family's 9 s test refit: 27 s, and
    # the rest of tuning (1 s of 20, times 9)
    assert fit["instance_minutes"] == pytest.approx((27.0 + 9.0) * catalog / 60, rel=0.01)
    line = next(x for x in bench_scale.markdown(rows, {TUNING: fit}).splitlines() if x.startswith(f"| {TUNING} |"))
    assert "its 17 fits spread over 12 workers" in line
    # without the tasks: each family whole, the longest (iALS, 13 s x 9) alone longer than all of the above
    for row in rows:
        del row["stages"][TUNING]["tasks"]
    whole = bench_scale.extrapolate(rows)[TUNING]
    assert whole["fits_spread"] == 0 and whole["instance_minutes"] > 3 * fit["instance_minutes"]


def test_sizes_of_two_budgets_are_refused_and_the_full_budgets_table_has_its_own_readme_block(
    tmp_path, monkeypatch
) -> None:
    logged(tmp_path / "quick.log", [10_000, 30_000])
    logged(tmp_path / "full.log", [100_000], budget="full")
    with pytest.raises(SystemExit, match="different budgets"):
        bench_scale.logged_rows([tmp_path / "quick.log", tmp_path / "full.log"])
    logged(tmp_path / "full-small.log", [10_000, 30_000], budget="full")
    rows, runs = bench_scale.logged_rows([tmp_path / "full-small.log"])
    readme = tmp_path / "README.md"
    begin, end = bench_scale.markers("full")
    readme.write_text(f"{bench_scale.BEGIN}\nquick table\n{bench_scale.END}\n{begin}\nold\n{end}\n")
    monkeypatch.setattr(bench_scale, "README", readme)
    bench_scale.write_readme_table("| full table |", rows, 14, runs, " --budget full")
    text = readme.read_text()
    assert "quick table" in text and "old" not in text and f"{begin}\n| full table |" in text
    assert "--shoppers 10000,30000 --days 14 --budget full --readme" in text


def test_the_selected_models_parts_grow_by_what_drives_each() -> None:
    """A blend's parts timed apart (training.served_part): its own item-kNN grows in the same products as the
    served similar items', its iALS in events; and each reads as its family in the table."""
    products = [2e6, 8e6, 40e6]  # 4x, then 5x: faster than the events (3x a size)
    rows = sizes(job=[0.1, 0.4, 1.6], native=[0.1, 0.4, 1.6], wide=[0.1, 0.4, 1.6], products=products)
    for row in rows:
        parts = row["stages"][FINAL]["parts"]
        parts["model:itemknn"] = list(parts["similar"])
        parts["model:ials"] = list(parts["similar"])
    fitted = final_fit(rows)["by_part"]
    knn_sizes, knn_target = driver(rows, "model:itemknn")
    event_sizes, event_target = driver(rows, "model:ials")
    assert knn_sizes == products and event_sizes == [r["events"] for r in rows]
    assert knn_target > products[-1] * (event_target / event_sizes[-1])  # the products outgrow the events
    assert fitted["model:itemknn"]["grows_in"] == "products" and fitted["model:ials"]["grows_in"] == "events"
    # iALS by its fitted growth in events; the item-kNN as the served one (the same times here: its hours too)
    grown = 1.6 * (event_target / event_sizes[-1]) ** bench_scale.exponent(event_sizes, [0.1, 0.4, 1.6]) / 3600
    assert fitted["model:ials"]["single_hours"] == pytest.approx(grown, rel=0.02)
    assert fitted["model:itemknn"]["single_hours"] == fitted["similar"]["single_hours"]
    assert fitted["similar"]["single_hours"] == pytest.approx(1.6 * knn_target / products[-1] / 3600, rel=0.02)
    table = "\n".join(bench_scale.by_part_table(rows, fitted))
    assert "| the selected model's ials |" in table and "| the selected model's itemknn |" in table


def test_the_transform_at_the_envelopes_histories_grows_in_the_catalog_and_checks_the_plans_rate() -> None:
    """A user's cost with the envelope's history lengths, grown in items to a million (never falling), times 10 M
    shoppers: the hours of one core, the users a worker scores a second, and the workers prod's transform budget (15
    minutes) would want."""
    from tests.bench.bench_scale import HISTORIES, history_factor, transform_at_histories

    assert history_factor(5_852_408, 300_000) == 13  # 260 events a shopper at the envelope, 19.5 here
    items = [1_500.0, 15_000.0]

    def stores(costs: list[float]) -> list[dict[str, Any]]:
        return [
            {"items": n, "stages": {HISTORIES: {"ms_per_user": ms, "items_a_shopper": 150.0, "factor": 13}}}
            for n, ms in zip(items, costs, strict=True)
        ]

    rows = stores([1.0, 2.0])
    fit = transform_at_histories(rows)
    ms = 2.0 * (1_000_000 / 15_000) ** math.log10(2)  # 10x the items, 2x the cost
    assert fit["ms_per_user"] == pytest.approx(ms, rel=1e-3)
    assert fit["users_per_worker_s"] == round(1000 / ms)
    assert fit["budget_minutes"] == 15 and fit["workers_for_budget"] == math.ceil(ms * 10_000_000 / 1000 / 900)
    assert transform_at_histories(stores([2.0, 1.0]))["ms_per_user"] == pytest.approx(
        1.0
    )  # a falling cost is not extrapolated


def test_the_served_fits_parts_side_by_side_take_the_first_ones_then_the_longest_or_their_work_spread() -> None:
    """On the instance the job runs its served fit's parts at once (training.final_side_by_side from 16 vCPUs): the
    matrix and the rows served first, then the longest part (the bestsellers and the segment lists one after the
    other in their thread), never less than the parts' work over the 96 vCPUs."""
    from shopwise_jobs.training import final_side_by_side

    assert final_side_by_side(INSTANCE_VCPUS) and not final_side_by_side(2)
    inside = {
        "matrix": (1.0, 1.0),
        "history": (0.5, 0.5),
        "similar": (10.0, 300.0),
        "model:ials": (8.0, 500.0),
        "popularity": (3.0, 3.0),
        "segments": (4.0, 4.0),
    }
    assert bench_scale.parts_side_by_side(inside) == pytest.approx((1.5 + 10.0, "similar"))
    inside["popularity"] = (7.0, 7.0)  # the chain (7 + 4) outlasts item-kNN
    assert bench_scale.parts_side_by_side(inside) == pytest.approx((1.5 + 11.0, "popularity"))
    inside["model:ials"] = (8.0, 1_500.0)  # the work over 96 vCPUs outlasts every part
    assert bench_scale.parts_side_by_side(inside)[0] == pytest.approx(1.5 + (300 + 1_500 + 7 + 4) / INSTANCE_VCPUS)


def test_the_instances_served_fit_with_its_parts_side_by_side_is_shorter_than_one_after_another(monkeypatch) -> None:
    products = [2e6, 8e6, 32e6]
    rows = sizes(job=[0.1, 0.4, 1.6], native=[0.1, 0.4, 1.6], wide=[0.1, 0.4, 1.6], products=products)
    for row in rows:
        row["stages"][FINAL]["parts"]["model:ials"] = [2.0 * row["shoppers"] / 10_000, 3.6 * row["shoppers"] / 10_000]
        row["stages"][FINAL]["parts"]["matrix"] = [0.1, 0.1]
    at_once = final_fit(rows)
    monkeypatch.setattr(bench_scale, "final_side_by_side", lambda cores=None: False)
    in_turn = final_fit(rows)
    assert at_once["side_by_side"] and at_once["longest_part"] == "model:ials" and not in_turn["side_by_side"]
    hours = {part: fit["instance_hours"] for part, fit in in_turn["by_part"].items()}
    assert in_turn["instance_hours"] == pytest.approx(sum(hours.values()), abs=0.1)
    assert at_once["instance_hours"] == pytest.approx(hours["matrix"] + hours["model:ials"], abs=0.1)
    assert at_once["instance_hours"] < in_turn["instance_hours"]


def test_a_part_some_sizes_did_not_fit_is_grown_over_the_sizes_that_did() -> None:
    """The blend differs from size to size, and a part taken from tuning takes no time: each part is grown over
    the sizes that timed it (one size: linearly), and the table shows a dash where a size did not."""
    rows = sizes(job=[0.1, 0.4, 1.6], native=[0.1, 0.4, 1.6], wide=[0.1, 0.4, 1.6], products=[2e6, 8e6, 32e6])
    for n, row in enumerate(rows):
        row["items"] = 1_000.0 * 3**n
        parts = row["stages"][FINAL]["parts"]
        if n != 1:  # iALS in the blend of the first and the last size only: 4x its time for 9x the events
            parts["model:ials"] = [1.0 * 4 ** (n // 2), 1.8 * 4 ** (n // 2)]
        parts["content"] = [0.0, 0.0] if n < 2 else [3.0, 3.0]  # taken from tuning, then fitted at the last
    fitted = final_fit(rows)["by_part"]
    assert fitted["model:ials"]["sizes"] == [10_000, 90_000]
    assert fitted["model:ials"]["fitted"] == pytest.approx(math.log(4) / math.log(9), abs=0.01)
    assert fitted["model:ials"]["growth"] == 1.0  # (a pass over every event: at least linear)
    assert fitted["content"]["sizes"] == [90_000] and fitted["content"]["growth"] == 1.0
    assert fitted["content"]["single_hours"] == pytest.approx(3.0 * bench_scale.ENVELOPE_ITEMS / 9_000 / 3600, abs=0.01)
    table = "\n".join(bench_scale.by_part_table(rows, fitted))
    ials = next(line for line in table.splitlines() if line.startswith("| the selected model's ials |"))
    assert ials.split(" | ")[1:4] == ["1.00", "—", "4.00"]
    assert "(one size: taken linear)" in next(line for line in table.splitlines() if line.startswith("| content"))


def test_the_benchmarks_switch_numpys_huge_pages_off_only_where_a_balloon_reports_free_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """make scale's stages touch fresh memory at a tenth of the speed with NumPy's huge pages on a machine whose
    balloon reports free pages to its host: the benchmarks turn them off there (the environment their children
    inherit), and only there, and never over a choice already made."""
    from shopwise_local.machine import free_page_reporting, numpy_pages

    def device(name: str, kind: int, features: str) -> None:
        (tmp_path / name).mkdir()
        (tmp_path / name / "device").write_text(f"0x{kind:04x}\n")
        (tmp_path / name / "features").write_text(features + "\n")

    device("virtio1", 0x0002, "0" * 5 + "1" + "0" * 58)  # a block device with bit 5 set: not a balloon
    device("virtio0", 0x0005, "01100001" + "0" * 56)  # a balloon without free page reporting (bit 5)
    assert not free_page_reporting(tmp_path)
    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
    assert "as NumPy sets them" in numpy_pages(tmp_path) and "NUMPY_MADVISE_HUGEPAGE" not in os.environ
    (tmp_path / "virtio0" / "features").write_text("01100101" + "0" * 56 + "\n")  # this machine's: reporting
    assert free_page_reporting(tmp_path) and not free_page_reporting(tmp_path / "absent")
    assert "off" in numpy_pages(tmp_path) and os.environ["NUMPY_MADVISE_HUGEPAGE"] == "0"
    monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")  # chosen: kept
    assert numpy_pages(tmp_path) == "NUMPY_MADVISE_HUGEPAGE=1, as set" and os.environ["NUMPY_MADVISE_HUGEPAGE"] == "1"
