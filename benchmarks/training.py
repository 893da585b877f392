"""Training benchmark: ``trainer submit`` on the local backend, one task per shard, for a 10,000-pair fleet.

    .venv/bin/python -m benchmarks.training --pairs 10000 --out build/bench/training.json
    make bench-train                       # the same; ARGS="--pairs 2000 --repeats 1" passes options

It starts a fresh Azurite, publishes ``--hours`` hours (default 24) of the synthetic fleet's 5-minute aggregates
(``benchmarks/fleet_data.SyntheticFleet``: 12 windows per pair and hour) into ``--shards`` shard folders per hour,
as the stream job writes them, with a few bad pairs: ``--bad-pairs`` whose features are all NaN and as many that
have only one hour of windows (both ``too_few_windows`` at ``--min-rows`` 24). Then it restarts Azurite (the bulk
load's metadata saved and reloaded) and waits until it is idle, and runs what ``trainer submit --backend local
--workers 2`` runs (``pool.run_training``: listing, manifests, one task per shard on two worker processes, the
summary) ``--repeats`` times, waiting for Azurite to settle between runs. Each repeat trains the same job again,
so it replaces the same models and pack entries (no run starts from an empty ``models`` container but the first).

Reported per run, and as median (min-max): wall time; CPU (user + system) of the submitting process
(``getrusage``), of the worker processes (``RUSAGE_CHILDREN`` after the pool has been shut down and its workers
joined) and of Azurite (its pid, /proc); pairs trained and skipped by reason; per-pair milliseconds (wall, and
worker CPU). Nothing is asserted about time; a summary that is not ok, or counts that are not the fleet's, make
it exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from benchmarks.azurite_process import Azurite
from benchmarks.fleet import machine_facts
from benchmarks.fleet_data import DEFAULT_HOUR, SyntheticFleet
from benchmarks.procstat import machine_cpu_seconds, pid_cpu_seconds


@dataclass(frozen=True)
class TrainOptions:
    pairs: int = 10_000
    hours: int = 24
    shards: int = 4
    bad_pairs: int = 5
    workers: int = 2
    repeats: int = 3
    min_rows: int = 24


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def history(options: TrainOptions) -> tuple[pd.DataFrame, dict[str, int]]:
    """The fleet's aggregates of ``hours`` hours ending at ``DEFAULT_HOUR`` and the bad pairs by kind."""
    first = DEFAULT_HOUR - timedelta(hours=options.hours)
    frames = [SyntheticFleet(options.pairs, hour=first + timedelta(hours=h)).frame() for h in range(options.hours)]
    frame = pd.concat(frames, ignore_index=True)
    pairs = SyntheticFleet(options.pairs).pair_ids
    rng = np.random.default_rng(5)
    chosen = rng.choice(len(pairs), 2 * options.bad_pairs, replace=False)
    nan_pairs = {pairs[i] for i in chosen[: options.bad_pairs]}
    short_pairs = {pairs[i] for i in chosen[options.bad_pairs :]}
    keys = frame["device_id"].astype(str) + "/" + frame["sensor"].astype(str)
    is_nan = keys.isin({str(p) for p in nan_pairs}).to_numpy()
    is_short = keys.isin({str(p) for p in short_pairs}).to_numpy()
    frame.loc[is_nan, ["avg", "min", "max", "stdev"]] = np.nan
    frame = frame.loc[~(is_short & (frame["window_end"] >= pd.Timestamp(first + timedelta(hours=1))))]
    return frame.reset_index(drop=True), {"all_nan": len(nan_pairs), "one_hour_only": len(short_pairs)}


def measure_once(connection: str, azurite: Azurite, options: TrainOptions) -> dict[str, Any]:
    from workloads.common.storage import StorageSettings
    from workloads.submitter.local import LocalBackend
    from workloads.training.families import ModelSpec
    from workloads.training.pool import TrainingRequest, run_training

    settings = StorageSettings.model_validate({"connection_string": connection})
    service = settings.client()
    request = TrainingRequest(
        stack="bench",
        start=DEFAULT_HOUR - timedelta(hours=options.hours),
        end=DEFAULT_HOUR,
        shard_count=options.shards,
        features=("avg", "min", "max", "stdev"),
        model=ModelSpec(),
        min_rows=options.min_rows,
    )
    self_before, children_before = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    azurite_before = pid_cpu_seconds(azurite.pid) or 0.0
    machine_before = machine_cpu_seconds()
    started = time.perf_counter()
    with LocalBackend(settings, workers=options.workers, max_task_retries=1) as backend:
        summary = run_training(service, request, backend)
    wall = time.perf_counter() - started
    machine_after = machine_cpu_seconds()
    workers_cpu = _cpu(resource.RUSAGE_CHILDREN) - children_before
    submitter_cpu = _cpu(resource.RUSAGE_SELF) - self_before
    azurite_cpu = (pid_cpu_seconds(azurite.pid) or 0.0) - azurite_before
    result = {
        "wall_s": round(wall, 2),
        "submitter_cpu_s": round(submitter_cpu, 2),
        "workers_cpu_s": round(workers_cpu, 2),
        "azurite_cpu_s": round(azurite_cpu, 2),
        "load_average_1m_after": round(os.getloadavg()[0], 2),
        "summary": summary.as_json(),
    }
    if machine_before is not None and machine_after is not None:
        # What every other process on the machine used meanwhile: a shared machine's runs are slower, not costlier.
        busy = machine_after[0] - machine_before[0]
        result["others_cpu_s"] = round(busy - submitter_cpu - workers_cpu - azurite_cpu, 2)
    trained = max(summary.trained, 1)
    result["ms_per_pair_wall"] = round(wall * 1000 / trained, 2)
    result["ms_per_pair_worker_cpu"] = round(workers_cpu * 1000 / trained, 2)
    return result


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 2), "min": min(values), "max": max(values)}


def run_benchmark(options: TrainOptions, folder: Path, console: Console) -> dict[str, Any]:
    from workloads.aggregator.publish import publish_aggregates
    from workloads.common.storage import StorageSettings, ensure_containers
    from workloads.demo.azurite import connection_string, free_port

    shutil.rmtree(folder / "azurite-training", ignore_errors=True)  # a fresh account: nothing of an earlier run
    azurite = Azurite(folder / "azurite-training", free_port())
    azurite.start()
    try:
        connection = connection_string(azurite.port)
        service = StorageSettings.model_validate({"connection_string": connection}).client()
        ensure_containers(service)
        started = time.perf_counter()
        frame, bad = history(options)
        generated = time.perf_counter() - started
        blobs = publish_aggregates(service, frame, options.shards)
        loaded = time.perf_counter() - started - generated
        console.print(
            f"{options.pairs} pairs x {options.hours} h: {len(frame):,} rows in {len(blobs)} blobs "
            f"(generated {generated:.0f} s, uploaded {loaded:.0f} s); bad pairs {bad}"
        )
        restart = azurite.restart()
        azurite.settle()
        runs = []
        for index in range(options.repeats):
            run = measure_once(connection, azurite, options)
            runs.append(run)
            console.print(f"run {index + 1}: {run['wall_s']} s, {run['summary']['trained']} trained")
            azurite.settle()
    finally:
        azurite.stop()
    return {
        "options": options.__dict__,
        "rows": len(frame),
        "aggregate_blobs": len(blobs),
        "bad_pairs": bad,
        "azurite_restart": restart,
        "runs": runs,
        "median": {
            key: _spread([r[key] for r in runs])
            for key in (
                "wall_s",
                "submitter_cpu_s",
                "workers_cpu_s",
                "azurite_cpu_s",
                "others_cpu_s",
                "ms_per_pair_wall",
                "ms_per_pair_worker_cpu",
            )
            if all(key in r for r in runs)
        },
        "machine": machine_facts(),
    }


def _cell(spread: dict[str, float]) -> str:
    return f"{spread['median']} ({spread['min']}-{spread['max']})"


def report_table(report: dict[str, Any]) -> Table:
    options, median, last = report["options"], report["median"], report["runs"][-1]["summary"]
    table = Table(
        title=f"trainer submit, local backend, {options['workers']} workers: {options['pairs']:,} pairs x "
        f"{options['hours']} h, {options['shards']} shards, median (min-max) of {len(report['runs'])}"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("wall time (s)", _cell(median["wall_s"]))
    table.add_row("CPU submitter (s)", _cell(median["submitter_cpu_s"]))
    table.add_row(f"CPU {options['workers']} workers (s)", _cell(median["workers_cpu_s"]))
    table.add_row("CPU Azurite (s)", _cell(median["azurite_cpu_s"]))
    if "others_cpu_s" in median:
        table.add_row("CPU of other processes meanwhile (s)", _cell(median["others_cpu_s"]))
    table.add_row("per pair, wall (ms)", _cell(median["ms_per_pair_wall"]))
    table.add_row("per pair, worker CPU (ms)", _cell(median["ms_per_pair_worker_cpu"]))
    if "read_seconds" in last:
        table.add_row(
            "task time, all tasks: read / train+publish (s)",
            f"{last['read_seconds']} / {last['train_publish_seconds']}",
        )
    table.add_row("tasks ok / failed", f"{last['tasks_ok']} / {last['tasks_failed']}")
    table.add_row("pairs trained", f"{last['trained']:,}")
    table.add_row("skipped by reason", ", ".join(f"{k}: {v}" for k, v in last["skipped"].items()) or "none")
    table.add_row("rows read", f"{last['rows_read']:,}")
    table.add_row("packs written", str(last["packs_written"]))
    return table


def check(report: dict[str, Any]) -> list[str]:
    """What would make the numbers meaningless: a failed run, or counts that are not the fleet's."""
    options, bad = report["options"], sum(report["bad_pairs"].values())
    problems = []
    for index, run in enumerate(report["runs"], 1):
        summary = run["summary"]
        if not summary["ok"]:
            problems.append(f"run {index}: not ok ({summary['failed']}, missing {summary['missing_logs']})")
        if (summary["trained"], summary["skipped"]) != (options["pairs"] - bad, {"too_few_windows": bad}):
            problems.append(f"run {index}: trained {summary['trained']}, skipped {summary['skipped']}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=TrainOptions.pairs)
    parser.add_argument("--hours", type=int, default=TrainOptions.hours)
    parser.add_argument("--shards", type=int, default=TrainOptions.shards)
    parser.add_argument("--bad-pairs", type=int, default=TrainOptions.bad_pairs)
    parser.add_argument("--workers", type=int, default=TrainOptions.workers)
    parser.add_argument("--repeats", type=int, default=TrainOptions.repeats)
    parser.add_argument("--folder", type=Path, default=Path("build/bench"))
    parser.add_argument("--out", type=Path, default=Path("build/bench/training.json"))
    args = parser.parse_args(argv)
    options = TrainOptions(
        pairs=args.pairs,
        hours=args.hours,
        shards=args.shards,
        bad_pairs=args.bad_pairs,
        workers=args.workers,
        repeats=args.repeats,
    )
    console = Console()
    report = run_benchmark(options, args.folder, console)
    console.print(report_table(report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    console.print(f"wrote {args.out}")
    problems = check(report)
    for problem in problems:
        console.print(f"[red]{problem}[/red]")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
