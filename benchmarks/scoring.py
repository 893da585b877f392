"""Scorer throughput on Azurite: pairs per second for one task, cold and warm model cache.

Run with ``make bench`` (``ARGS="--pairs 1000"``). Prints a table and writes
``benchmarks/results/scoring.json``. Numbers, not assertions: targets are read off the table.

It measures the per-pair path alone (what pairs without a current pack entry take): the hour is published
into one shard folder, the task planned for it as the submitter plans it, and the shard's model pack
removed after training, so every pair fetches and loads its own model.
"""

from __future__ import annotations

import json
import resource
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from workloads.aggregator.publish import publish_aggregates
from workloads.common.aggregates import AggregationSpec, aggregate_readings
from workloads.common.layout import Container, pack_blob
from workloads.common.modelstore import ModelCache
from workloads.common.storage import StorageSettings, ensure_containers
from workloads.demo.azurite import free_port, running_azurite
from workloads.scorer.task import ScorerOptions, score_task
from workloads.simulator.fleet import FleetSpec, simulate
from workloads.submitter.plan import plan_hour
from workloads.training.train import train_and_publish

RESULTS = Path(__file__).parent / "results"
app = typer.Typer(add_completion=False)


@app.command()
def main(
    pairs: Annotated[int, typer.Option(min=4, help="Pairs in the task (devices x 4 sensors).")] = 400,
    concurrency: Annotated[list[int] | None, typer.Option(help="Thread counts to compare (repeatable).")] = None,
    repeats: Annotated[int, typer.Option(min=1, help="Runs per configuration; the median is reported.")] = 3,
) -> None:
    levels = concurrency or [1, 8, 16, 32]
    hour = datetime(2026, 1, 1, 12, tzinfo=UTC)
    fleet = FleetSpec(devices=max(1, pairs // 4), sensors=4, interval=timedelta(seconds=30), seed=3)
    rows: list[dict[str, float | int | str]] = []
    with tempfile.TemporaryDirectory() as tmp, running_azurite(free_port(), Path(tmp)) as conn:
        settings = StorageSettings.model_validate({"connection_string": conn})
        service = settings.client(max_connections=64)
        ensure_containers(service)
        readings, _ = simulate(fleet, hour - timedelta(hours=6), hour + timedelta(hours=1))
        publish_aggregates(service, aggregate_readings(readings, AggregationSpec()), shard_count=1)
        train_and_publish(service, hour - timedelta(hours=5), hour, shard_count=1)
        [manifest] = plan_hour(service, "bench", hour, shard_count=1).tasks
        assert manifest.shard is not None
        service.get_container_client(str(Container.MODELS)).delete_blob(pack_blob(manifest.shard))
        expected = len(fleet.pairs())
        for level in levels:
            for cache_state in ("cold", "warm"):
                seconds = []
                for _ in range(repeats):
                    cache = ModelCache()
                    if cache_state == "warm":
                        score_task(service, manifest, ScorerOptions(concurrency=level), cache)
                    started = time.perf_counter()
                    report = score_task(service, manifest, ScorerOptions(concurrency=level), cache)
                    seconds.append(time.perf_counter() - started)
                    assert report.task.ok == report.task.model_pairs == expected, report.task
                median = statistics.median(seconds)
                rows.append(
                    {
                        "pairs": expected,
                        "threads": level,
                        "model_cache": cache_state,
                        "seconds": round(median, 3),
                        "pairs_per_s": round(expected / median, 1),
                        "ms_per_pair": round(1000 * median / expected, 2),
                    }
                )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table = Table(title=f"scorer, one task on Azurite (peak RSS {peak_mib:.0f} MiB)")
    for column in rows[0]:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    Console().print(table)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "scoring.json"
    out.write_text(json.dumps({"rows": rows, "peak_rss_mib": round(peak_mib, 1)}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    app()
