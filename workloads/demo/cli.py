"""``batchscoring-demo``: the whole hourly pipeline on this machine, against Azurite, in one command."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from workloads.common.aggregates import AggregationSpec, MessageShape
from workloads.common.cli_options import ShardCount
from workloads.common.console import console as make_console
from workloads.common.shards import DEFAULT_SHARD_COUNT
from workloads.common.storage import StorageSettings
from workloads.common.windows import format_hour, last_complete_hour, parse_hour
from workloads.demo.azurite import PROJECT_ROOT, running_azurite
from workloads.demo.pipeline import DemoConfig, DemoResult, run_demo
from workloads.simulator.fleet import FleetSpec
from workloads.training.families import DEFAULT_FAMILY, FAMILIES, ModelSpec

app = typer.Typer(add_completion=False, help=__doc__)


def _hours_table(result: DemoResult) -> Table:
    table = Table(title="Hourly runs (local backend)", show_lines=False)
    for column in ("hour", "job id", "tasks", "pairs", "ok", "failed", "anomalies", "seconds"):
        table.add_column(column, justify="right" if column not in ("hour", "job id") else "left")
    for run in result.hours:
        r = run.record
        table.add_row(
            format_hour(run.hour),
            r.job_id,
            str(r.tasks),
            str(r.pairs),
            str(r.ok),
            str(r.failed),
            str(r.anomalies),
            f"{run.seconds:.2f}",
        )
    return table


@app.command()
def main(
    devices: Annotated[int, typer.Option(min=1, max=10_000, help="Simulated devices.")] = 25,
    sensors: Annotated[int, typer.Option(min=1, max=32, help="Sensors per device.")] = 4,
    history_hours: Annotated[int, typer.Option(min=2, max=24 * 14, help="Hours of history the models train on.")] = 24,
    score_hours: Annotated[
        int, typer.Option(min=1, max=48, help="Hours scored, ending with the last complete hour.")
    ] = 3,
    window_minutes: Annotated[int, typer.Option(min=1, max=60, help="Tumbling window length (must divide 60).")] = 5,
    interval_seconds: Annotated[int, typer.Option(min=1, max=300, help="Seconds between readings of a sensor.")] = 10,
    anomaly_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Chance a pair has an anomaly in an hour.")
    ] = 0.08,
    message_shape: Annotated[
        MessageShape,
        typer.Option(help="Messages the fleet sends: one per reading, or one per device and timestamp (all sensors)."),
    ] = MessageShape.READING,
    shard_count: ShardCount = DEFAULT_SHARD_COUNT,
    workers: Annotated[int, typer.Option(min=0, max=64, help="Local worker processes (0: in-process).")] = 2,
    seed: Annotated[int, typer.Option(help="Seed of the simulation.")] = 7,
    last_hour: Annotated[
        str | None, typer.Option(help="Newest hour scored, UTC (default: the last complete hour).")
    ] = None,
    bad_pairs: Annotated[bool, typer.Option(help="Break two models on purpose to show they are skipped.")] = True,
    model: Annotated[
        str, typer.Option(help=f"Model family every pair is trained with: {', '.join(FAMILIES)} (trainer --model).")
    ] = DEFAULT_FAMILY,
    port: Annotated[int, typer.Option(help="Azurite blob port; reused if something already listens there.")] = 10000,
    data_dir: Annotated[Path, typer.Option(help="Where a started Azurite keeps its data.")] = PROJECT_ROOT / ".azurite",
) -> None:
    """Simulate a fleet, aggregate it, train and publish models, score each hour, report the results."""
    console = make_console()
    try:
        config = DemoConfig(
            fleet=FleetSpec(
                devices=devices,
                sensors=sensors,
                interval=timedelta(seconds=interval_seconds),
                anomaly_rate=anomaly_rate,
                seed=seed,
            ),
            aggregation=AggregationSpec(window=timedelta(minutes=window_minutes)),
            last_hour=parse_hour(last_hour) if last_hour else last_complete_hour(datetime.now(UTC)),
            score_hours=score_hours,
            history_hours=history_hours,
            shard_count=shard_count,
            workers=workers,
            bad_pairs=bad_pairs,
            message_shape=message_shape,
            model=ModelSpec(family=model),
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    started = time.perf_counter()
    with running_azurite(port, data_dir) as conn:
        settings = StorageSettings.model_validate({"connection_string": conn})
        progress_columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
        )
        with Progress(*progress_columns, console=console) as progress:
            result = run_demo(settings, config, progress)
    seconds = time.perf_counter() - started
    console.print(_hours_table(result))
    console.print(
        f"readings simulated: {result.readings:,} in {result.messages:,} {message_shape} messages   "
        f"dropped by the aggregator: {result.account.invalid:,} invalid, {result.account.late:,} late   "
        f"aggregate rows: {result.aggregate_rows:,}\n"
        f"models published: {result.models}   windows scored: {result.windows_scored:,}\n"
        f"anomalous windows: flagged {result.flagged}, injected {result.injected}, found {result.true_positives}  ->  "
        f"precision {result.precision:.2f}, recall {result.recall:.2f}"
    )
    if result.failures:
        console.print("pairs skipped by the scorer (logged, the rest of the hour was scored):")
        for pair, reason in sorted(result.failures.items()):
            console.print(f"  {pair}: {reason}")
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
    console.print(f"timings: {timings}; total {seconds:.1f}s")
    console.print(
        f"outputs in Azurite (http://127.0.0.1:{port}/devstoreaccount1):\n"
        "  predictions/YYYY/MM/DD/HH/<job id>/<task id>.parquet  (the hour's current revision)\n"
        "  models/packs/<shard>.npz (per-shard model packs beside models/<device>/<sensor>/model.skops)\n"
        "  logs/YYYY/MM/DD/HH/hour.json (the hour's state), <job id>/ (job.json, manifests/, tasks/*.jsonl)"
    )


if __name__ == "__main__":
    app()
