"""The fleet and planning benchmarks end to end at a tiny size: they measure correct work.

No timing is asserted: only that every measurement ran, that its counts are consistent, that the
naive loop, the scorer and the kernel flag exactly the same windows of the same pairs, and that
planning lists the hour once, downloads nothing and writes a manifest per shard folder.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
from pathlib import Path
from typing import Any

from azure.storage.blob import BlobServiceClient
from rich.console import Console

from benchmarks.fleet import BenchOptions, run_benchmark
from benchmarks.fleet_data import SyntheticFleet
from benchmarks.fleet_measure import DEFAULT_KERNEL, KERNEL_ENV
from benchmarks.planning import PlanOptions
from benchmarks.planning import run_benchmark as run_planning_benchmark
from workloads.common.shards import shard_of

PAIRS = 20
SHARD_PAIRS = 8  # 3 shards: a task per shard folder with data


def _kernel_exists() -> bool:
    name = os.environ.get(KERNEL_ENV) or DEFAULT_KERNEL
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _check_scorer(scorer: dict[str, Any]) -> None:
    """(c): every pair scored once, a task per shard folder, and the blob requests of the new design."""
    assert scorer["pairs"] == scorer["pairs_in_run_logs"] == scorer["pairs_ok"] == scorer["pairs_with_predictions"]
    assert scorer["pairs"] == PAIRS
    assert scorer["pairs_failed"] == 0 and scorer["job_status"] == "completed"
    assert len(scorer["repeats"]["wall_s"]) == 2 and scorer["wall_s"] in scorer["repeats"]["wall_s"]
    assert scorer["rows_read"] == PAIRS * 12 and scorer["rows_unaccounted"] == 0
    # The aggregates and the packs use the same shard count; planning makes a task per shard folder with data.
    assert scorer["shard_count"] == 3
    shards = {shard_of(pair.device_id, 3) for pair in SyntheticFleet(PAIRS).pair_ids}
    assert scorer["shards_with_data"] == scorer["tasks"] == scorer["aggregate_blobs_in_hour"] == len(shards) > 1
    assert scorer["slices_max"] == 1
    assert scorer["blob_ops_per_hour"] == scorer["blob_ops_driver"] + scorer["blob_ops_workers"]
    assert scorer["blob_ops_driver"] > 0 and scorer["blob_ops_workers"] > 0
    assert scorer["blob_ops"]["GET"] > 0 and scorer["blob_ops"]["PUT"] > 0
    # The submitter reads no aggregate row and lists no model: of the aggregates it only lists the hour (one
    # page here), of the models nothing; the tasks download each aggregate blob once and their shard's pack.
    submitter, tasks = scorer["blob_ops_driver_by_container"], scorer["blob_ops_workers_by_container"]
    assert submitter["aggregates"] == {"LIST": 1}
    assert "models" not in submitter
    assert tasks["aggregates"] == {"GET": scorer["aggregate_blobs_in_hour"]}
    assert tasks["models"]["GET"] >= scorer["tasks"]
    assert scorer["bytes_read_per_task"] > 0
    read = scorer["bytes_read_per_task_by_container"]
    assert read["aggregates"] > 0 and read["logs"] > 0 and read["models"] > 0  # its folder, manifest, pack
    # Every aggregate blob of the hour is read once, by the one task of its folder.
    assert scorer["aggregate_bytes_read_by_tasks"] == scorer["aggregate_bytes_in_hour"]
    assert scorer["pairs_from_pack"] > 0 and scorer["pairs_from_pack"] + scorer["pairs_from_models"] == PAIRS
    assert 0 < scorer["scorer_start_s"] < scorer["scorer_process_wall_s"]
    assert scorer["aggregate_bytes_in_hour"] > 0


def test_fleet_benchmark_measures_every_path_and_they_agree(
    service: BlobServiceClient, azurite: tuple[int, str], tmp_path: Path
) -> None:
    options = BenchOptions(
        sizes=(PAIRS,),
        reference_sample=3,
        naive_max_pairs=PAIRS,
        scorer_max_pairs=PAIRS,
        workers=2,
        shard_pairs=SHARD_PAIRS,
        kernel_min_seconds=0.05,
        scorer_repeats=2,  # the second run starts from cleared outputs: the hour is scored again, not skipped
    )
    out = tmp_path / "fleet.json"
    printed = io.StringIO()
    run_benchmark(options, out, connection=azurite[1], workdir=tmp_path / "work", console=Console(file=printed))
    report = json.loads(out.read_text())

    assert report["machine"]["cpu_count"] >= 1
    assert report["machine"]["versions"]["scikit-learn"]
    assert report["machine"]["python"]
    [size] = report["sizes"]
    assert size["pairs"] == PAIRS
    measured = size["measurements"]
    assert set(measured) == {"reference", "naive", "scorer", "kernel"}
    for kind in ("reference", "naive", "scorer"):
        assert measured[kind]["status"] == "ok", measured[kind]
        for key in ("pairs_per_s", "ms_per_pair", "cpu_ms_per_pair", "peak_rss_mib"):
            assert measured[kind][key] > 0, (kind, key)
        assert "vs_reference_per_core_s" in measured[kind] and "vs_naive_per_core_s" in measured[kind]
    assert measured["reference"]["pairs"] == 3
    assert measured["naive"]["pairs"] == PAIRS

    _check_scorer(measured["scorer"])

    kernel = measured["kernel"]
    comparisons = {c["between"]: c for c in size["agreement"]}
    expected = ["naive/scorer", "reference/naive"]
    if _kernel_exists():
        assert kernel["status"] == "ok", kernel
        assert kernel["pairs"] + kernel["pairs_not_compiled"] == PAIRS
        assert kernel["pairs"] > 0
        expected += ["naive/kernel", "scorer/kernel"]
    else:
        assert kernel["status"] == "unavailable"
        assert "does not exist" in kernel["note"]
    assert sorted(comparisons) == sorted(expected)
    for name in expected:
        found = comparisons[name]
        pairs = 3 if name.startswith("reference") else kernel["pairs"] if "kernel" in name else PAIRS
        assert found["pairs"] == pairs, found
        assert found["flag_mismatches"] == 0, found
        assert found["max_abs_score_diff"] < 1e-9, found
    # The fleet has anomalies, so agreeing flags are not just "all normal".
    assert comparisons["naive/scorer"]["anomalous_windows"][0] > 0

    text = printed.getvalue()
    assert f"{PAIRS} pairs x 12 windows" in text and "(c) scorer" in text


def test_planning_benchmark_lists_the_hour_and_downloads_nothing(tmp_path: Path) -> None:
    """Its own Azurite (started, loaded with names only, restarted): 2 shard folders of 2 blobs, 50 models."""
    options = PlanOptions(sizes=(2_000,), files_per_shard=2, repeats=1, max_models=50, threads=4)
    out = tmp_path / "planning.json"
    printed = io.StringIO()
    run_planning_benchmark(options, out, workdir=tmp_path / "work", console=Console(file=printed, width=200))
    report = json.loads(out.read_text())

    assert report["machine"]["cpu_count"] >= 1 and len(report["loadavg_at_start"]) == 3
    assert {b["pairs"] for b in report["before"]} == {10_000, 100_000, 1_000_000}
    [size] = report["sizes"]
    assert size["shard_count"] == 2
    assert size["loaded"]["aggregate_blobs"] == 4 and size["loaded"]["model_blobs"] == 50
    assert size["loaded"]["restart_after_aggregates"]["start_s"] > 0
    assert [state["model_blobs"] for state in size["states"]] == [0, 50]
    for state in size["states"]:
        [run] = state["runs"]
        assert run["status"] == "ok" and all(run["checks"].values()), run
        # One listing page, a manifest per shard folder, no GET, nothing asked of the models container.
        assert run["blob_ops_by_container"] == {"aggregates": {"LIST": 1}, "logs": {"PUT": 2}}
        assert run["blobs_listed"] == 4 and run["tasks"] == run["shards"] == run["manifests"] == 2
        assert run["wall_s"] > 0 and run["cpu_s"] > 0 and run["peak_rss_mib"] >= run["rss_before_planning_mib"] > 0
        assert run["azurite_cpu_s"] is not None and len(run["loadavg_before"]) == 3
        assert state["summary"]["runs_ok"] == 1 and state["summary"]["blob_ops"] == {"PUT": 2, "LIST": 1}
    text = printed.getvalue()
    assert "before: re-measured" in text and "after" in text and "2,000" in text


def test_fleet_benchmark_measures_isolation_forests_on_a_sample(tmp_path: Path) -> None:
    """--family iforest: the naive loop on a sample (a forest's skops file takes ~0.2 s to load), no scorer
    run; the kernel scores every pair, equal to the naive loop bit for bit, with min-max over its runs."""
    options = BenchOptions(
        sizes=(12,),
        reference_sample=1,
        naive_max_pairs=3,
        scorer_max_pairs=0,
        workers=1,
        kernel_min_seconds=0.0,
        family="iforest",
        repeats=3,
    )
    out = tmp_path / "fleet-iforest.json"
    printed = io.StringIO()
    run_benchmark(options, out, workdir=tmp_path / "work", console=Console(file=printed, width=200))
    [size] = json.loads(out.read_text())["sizes"]
    assert size["family"] == "iforest"
    measured = size["measurements"]
    assert measured["scorer"]["status"] == "not run"
    naive, kernel = measured["naive"], measured["kernel"]
    assert naive["status"] == kernel["status"] == "ok"
    assert naive["pairs"] == 3 and "sample of 3 pairs; median of 3 run(s)" in naive["note"]
    assert kernel["pairs"] == 12 and kernel["pairs_not_compiled"] == 0 and kernel["pack_bytes_per_pair"] > 10_000
    for result in (naive, kernel):
        assert result["runs"] == len(result["wall_s_runs"]) == 3
        assert result["ms_per_pair_min"] <= result["ms_per_pair"] <= result["ms_per_pair_max"]
    comparisons = {c["between"]: c for c in size["agreement"]}
    assert comparisons["naive/kernel"]["pairs"] == 3
    assert comparisons["naive/kernel"]["flag_mismatches"] == 0
    assert comparisons["naive/kernel"]["max_abs_score_diff"] == 0.0
    assert comparisons["reference/naive"]["flag_mismatches"] == 0
    assert "12 pairs x 12 windows, one hour, iforest" in printed.getvalue()
