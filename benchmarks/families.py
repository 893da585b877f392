"""What each model family costs per pair: training, model size, and scoring on each path, on Azurite.

Run with ``make bench-families`` (``ARGS="--pairs 400"``). For every family (``trainer train --model``) the
same fleet is trained on 6 hours of 5-minute windows, one shard; Azurite is restarted after the bulk load so
that timings run on settled storage; then one scorer task scores the next hour twice over:

- ``model`` path: the shard's pack removed, so every pair GETs and loads its own skops model (cold cache);
- ``pack`` path (families with a fast path): one GET of the shard's pack, every pair in one vectorised pass
  (a pair with a borderline row still takes its model's path, counted as such).

Each is repeated (median, min-max); CPU is measured for this process (the scorer task runs in it) and for
Azurite. Prints a table, writes ``build/bench/families.json``. Numbers, not assertions.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from benchmarks.azurite_process import Azurite
from benchmarks.procstat import peak_rss_kib, pid_cpu_seconds
from workloads.aggregator.publish import publish_aggregates
from workloads.common.aggregates import AggregationSpec, aggregate_readings
from workloads.common.layout import PACK_FOLDER, Container, pack_blob
from workloads.common.modelstore import ModelCache
from workloads.common.storage import StorageSettings, ensure_containers
from workloads.demo.azurite import connection_string, free_port
from workloads.scorer.task import ScorerOptions, score_task
from workloads.simulator.fleet import FleetSpec, simulate
from workloads.submitter.plan import plan_hour
from workloads.training.families import FAMILIES, ModelSpec
from workloads.training.train import train_and_publish

OUT = Path("build/bench/families.json")
HOUR = datetime(2026, 1, 1, 12, tzinfo=UTC)
app = typer.Typer(add_completion=False)


def _spread(values: list[float], per: int) -> dict[str, float]:
    """Median and min-max of per-pair milliseconds."""
    ms = [1000 * v / per for v in values]
    return {"median": round(statistics.median(ms), 3), "min": round(min(ms), 3), "max": round(max(ms), 3)}


def _score(service: Any, manifest: Any, azurite: Azurite, repeats: int, expect_path: str) -> dict[str, Any]:
    """Time the task ``repeats`` times from a cold model cache; CPU of this process and of Azurite."""
    walls, own_cpu, storage_cpu, paths = [], [], [], []
    for _ in range(repeats):
        before = (time.perf_counter(), pid_cpu_seconds(os.getpid()), pid_cpu_seconds(azurite.pid))
        report = score_task(service, manifest, ScorerOptions(concurrency=16), ModelCache())
        after = (time.perf_counter(), pid_cpu_seconds(os.getpid()), pid_cpu_seconds(azurite.pid))
        walls.append(after[0] - before[0])
        own_cpu.append((after[1] or 0) - (before[1] or 0))
        storage_cpu.append((after[2] or 0) - (before[2] or 0))
        task = report.task
        assert task.failed == 0 and task.ok == task.pairs, task
        paths.append({"pack": task.pack_pairs, "model": task.model_pairs})
    pairs = report.task.pairs
    return {
        "path": expect_path,
        "pairs": pairs,
        "wall_ms_per_pair": _spread(walls, pairs),
        "scorer_cpu_ms_per_pair": _spread(own_cpu, pairs),
        "azurite_cpu_ms_per_pair": _spread(storage_cpu, pairs),
        "pairs_by_path": paths[-1],
    }


@app.command()
def main(
    pairs: Annotated[int, typer.Option(min=4, help="Pairs per family (devices x 4 sensors).")] = 200,
    repeats: Annotated[int, typer.Option(min=1, help="Scoring runs per path; the median is reported.")] = 3,
    family: Annotated[list[str] | None, typer.Option(help="Families to measure (repeatable); default all.")] = None,
) -> None:
    # IsolationForest.fit warns through joblib's delayed (scikit-learn's own bagging code): noise, not a finding.
    warnings.filterwarnings("ignore", message=".*sklearn.utils.parallel.delayed.*", category=UserWarning)
    chosen = family or list(FAMILIES)
    fleet = FleetSpec(devices=max(1, pairs // 4), sensors=4, interval=timedelta(seconds=30), seed=3)
    readings, _ = simulate(fleet, HOUR - timedelta(hours=6), HOUR + timedelta(hours=1))
    aggregates = aggregate_readings(readings, AggregationSpec())
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        azurite = Azurite(Path(tmp) / "azurite", free_port())
        azurite.start()
        try:
            conn = connection_string(azurite.port)
            service = StorageSettings.model_validate({"connection_string": conn}).client(max_connections=64)
            ensure_containers(service)
            publish_aggregates(service, aggregates, shard_count=1)
            [manifest] = plan_hour(service, "bench", HOUR, shard_count=1).tasks
            assert manifest.shard is not None
            models = service.get_container_client(str(Container.MODELS))
            for name in chosen:
                started = time.perf_counter()
                trained = train_and_publish(
                    service, HOUR - timedelta(hours=6), HOUR, model=ModelSpec(family=name), shard_count=1
                )
                train_s = time.perf_counter() - started
                count = len(trained.published)
                sizes = [b.size for b in models.list_blobs() if b.name.endswith("model.skops")]
                packed = trained.packs.written.get(manifest.shard, 0) if trained.packs else 0
                pack = models.download_blob(pack_blob(manifest.shard)).readall() if packed else b""
                azurite.restart()
                azurite.settle()
                row: dict[str, Any] = {
                    "family": name,
                    "summary": FAMILIES[name].summary,
                    "pairs_trained": count,
                    "skipped": {str(p): str(skip) for p, skip in trained.skipped.items()},
                    "train_ms_per_pair": round(1000 * train_s / max(1, count), 2),
                    "model_kib_mean": round(statistics.fmean(sizes) / 1024, 1),
                    "pack_entries": packed,
                    "pack_kib_per_entry": round(len(pack) / 1024 / packed, 2) if packed else None,
                    "paths": [],
                }
                if packed:
                    row["paths"].append(_score(service, manifest, azurite, repeats, "pack"))
                for blob in models.list_blobs(name_starts_with=PACK_FOLDER):
                    models.delete_blob(blob.name)
                row["paths"].append(_score(service, manifest, azurite, repeats, "model"))
                results.append(row)
                for blob in models.list_blobs():
                    models.delete_blob(blob.name)
        finally:
            azurite.stop()
    _print(results)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"hour": HOUR.isoformat(), "results": results, "peak_rss_kib": peak_rss_kib()}, indent=2))
    print(f"wrote {OUT}")


def _print(results: list[dict[str, Any]]) -> None:
    table = Table(title="per-family cost per pair (one task, one shard, Azurite; median \\[min-max] of repeats)")
    columns = ("family", "trained", "train ms", "model KiB", "pack KiB/entry", "path", "by path")
    for column in (*columns, "wall ms", "scorer CPU ms", "Azurite CPU ms"):
        table.add_column(column, justify="right")

    def cell(spread: dict[str, float]) -> str:
        return f"{spread['median']:.3g} [{spread['min']:.3g}-{spread['max']:.3g}]"

    for row in results:
        for index, path in enumerate(row["paths"]):
            first = index == 0
            table.add_row(
                row["family"] if first else "",
                str(row["pairs_trained"]) if first else "",
                str(row["train_ms_per_pair"]) if first else "",
                str(row["model_kib_mean"]) if first else "",
                str(row["pack_kib_per_entry"] or "-") if first else "",
                path["path"],
                " ".join(f"{k} {v}" for k, v in path["pairs_by_path"].items()),
                cell(path["wall_ms_per_pair"]),
                cell(path["scorer_cpu_ms_per_pair"]),
                cell(path["azurite_cpu_ms_per_pair"]),
            )
    Console(width=200).print(table)


if __name__ == "__main__":
    app()
