"""The fleet benchmark end to end at a tiny size, on the session's Azurite: it measures correct work.

No timing is asserted: only that every measurement ran, that its counts are consistent, and that the
naive loop, the scorer and the kernel flag exactly the same windows of the same pairs.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
from pathlib import Path

from azure.storage.blob import BlobServiceClient
from rich.console import Console

from benchmarks.fleet import BenchOptions, run_benchmark
from benchmarks.fleet_measure import DEFAULT_KERNEL, KERNEL_ENV

PAIRS = 20


def _kernel_exists() -> bool:
    name = os.environ.get(KERNEL_ENV) or DEFAULT_KERNEL
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def test_fleet_benchmark_measures_every_path_and_they_agree(
    service: BlobServiceClient, azurite: tuple[int, str], tmp_path: Path
) -> None:
    options = BenchOptions(
        sizes=(PAIRS,),
        reference_sample=3,
        naive_max_pairs=PAIRS,
        scorer_max_pairs=PAIRS,
        workers=2,
        chunk_size=8,
        kernel_min_seconds=0.05,
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

    scorer = measured["scorer"]
    assert scorer["pairs"] == scorer["pairs_ok"] == scorer["pairs_with_predictions"] == PAIRS
    assert scorer["pairs_failed"] == 0 and scorer["job_status"] == "completed"
    assert scorer["tasks"] == 3  # 20 pairs in tasks of 8
    assert scorer["blob_ops_per_hour"] == scorer["blob_ops_driver"] + scorer["blob_ops_workers"]
    assert scorer["blob_ops_driver"] > 0 and scorer["blob_ops_workers"] > 0
    assert scorer["blob_ops"]["GET"] > 0 and scorer["blob_ops"]["PUT"] > 0
    assert scorer["bytes_read_per_task"] > 0
    read = scorer["bytes_read_per_task_by_container"]
    assert "aggregates" not in read and read["logs"] > 0 and read["models"] > 0  # its own rows, its pack
    assert scorer["pairs_from_pack"] > 0 and scorer["pairs_from_pack"] + scorer["pairs_from_models"] == PAIRS
    assert 0 < scorer["scorer_start_s"] < scorer["scorer_process_wall_s"]
    assert scorer["aggregate_bytes_in_hour"] > 0

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
