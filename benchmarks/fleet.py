"""Fleet-scale scoring benchmark: the reference style, the naive loop, our scorer and our kernel, per fleet size.

    .venv/bin/python -m benchmarks.fleet --pairs 1000 10000 100000 --out build/bench/fleet.json
    make bench-fleet                       # the same; ARGS="--pairs 1000" passes options through
    .venv/bin/python -m benchmarks.fleet --family iforest --pairs 10000 --naive-max-pairs 100 \
        --reference-sample 5 --scorer-max-pairs 0     # IsolationForest: (b) on a sample, no (c)

Per fleet size it builds a synthetic fleet (``benchmarks/fleet_data.py``: eight trained
StandardScaler + OneClassSVM pipelines, or with ``--family iforest`` StandardScaler + IsolationForest,
cloned to every pair, twelve 5-minute windows per pair for one hour; not timed), then measures, each in
a fresh process (``benchmarks/fleet_measure.py``):

(a) reference  one process per pair on a sample: read the whole hour's file, unpickle, score;
(b) naive      skops load + predict + decision_function per pair from local files, no writes
               (``--repeats`` runs, at most ``--naive-max-pairs`` pairs: a forest's skops file is 3 MB and
               takes about 0.2 s to load, so an IsolationForest fleet is measured on a sample);
(c) scorer     the hour reconciled by the submitter with the local backend on Azurite, end to end,
               with every blob request counted (capped by ``--scorer-max-pairs``: above it, "not run").
               The aggregates are published into shard folders (``publish_aggregates``) and the model
               packs with the same shard count, about ``--shard-pairs`` pairs per shard, so a shard
               folder is one task (a folder over ``--task-input-mib`` would be split into slices);
(d) kernel     the compiled fast path alone (``workloads.common.fastpath``): ``score_many`` over
               every pair's matrix, models compiled beforehand (at least ``--repeats`` runs).

(b) and (d) report the median run, with min-max and every run's wall time in the JSON.

It prints one table per size and writes everything, machine facts included, as JSON. Numbers only:
nothing here asserts a time. Ratios "per core-second" compare CPU time (user + system, children
included); the storage emulator's CPU is reported beside the scorer's, not in it.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from benchmarks.azurite_process import Azurite
from benchmarks.fleet_data import FAMILIES, SyntheticFleet, sample_indices, write_pickle_models, write_skops_models
from benchmarks.fleet_measure import KINDS, WorkspaceSpec
from workloads.submitter.plan import DEFAULT_TASK_BYTES

ROOT = Path(__file__).resolve().parents[1]
LABELS = {
    "reference": "(a) reference",
    "naive": "(b) naive loop",
    "scorer": "(c) scorer",
    "kernel": "(d) kernel",
}
# Run the measurement with ``-c`` rather than ``-m``: spawned worker processes then re-import no
# benchmark module as their ``__main__``, so the scorer's workers import only what the scorer does.
_MEASURE = "import sys; from benchmarks.fleet_measure import main; raise SystemExit(main(sys.argv[1:]))"
# The flags of these must agree pair by pair and window by window; (a) is compared with (b) as well.
AGREEING = ("naive", "scorer", "kernel")


@dataclass(frozen=True)
class BenchOptions:
    sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    reference_sample: int = 30
    naive_max_pairs: int = 10_000
    scorer_max_pairs: int = 100_000
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    shard_pairs: int = 2_500  # pairs per shard aimed at: shard count = ceil(pairs / shard_pairs), a task each
    max_task_bytes: int = DEFAULT_TASK_BYTES  # the submitter's default: a shard folder above it becomes slices
    seed: int = 7
    kernel_min_seconds: float = 1.0
    scorer_repeats: int = 3  # (c) runs, each on a restarted Azurite; the median by wall time is reported
    family: str = "ocsvm"  # the fleet's detector: ocsvm or iforest (benchmarks/fleet_data.py)
    repeats: int = 3  # (b) and (d) runs: median, min-max


# -- machine facts ---------------------------------------------------------------------------------------------
def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def machine_facts() -> dict[str, Any]:
    facts: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            p: _version(p)
            for p in ("numpy", "scikit-learn", "skops", "pandas", "pyarrow", "azure-storage-blob", "azure-core")
        },
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain")),
    }
    with contextlib.suppress(Exception):
        from threadpoolctl import threadpool_info

        facts["blas"] = [
            {k: info.get(k) for k in ("internal_api", "version", "num_threads", "threading_layer")}
            for info in threadpool_info()
        ]
    with contextlib.suppress(OSError, ValueError):
        package = json.loads((ROOT / "node_modules" / "azurite" / "package.json").read_text())
        facts["azurite"] = package.get("version")
    return facts


# -- running one size ----------------------------------------------------------------------------------------
def _run_measure(kind: str, folder: Path, env: dict[str, str]) -> dict[str, Any]:
    log = folder / f"{kind}.log"
    with log.open("wb") as sink:
        done = subprocess.run(
            [sys.executable, "-c", _MEASURE, kind, str(folder)],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            check=False,
        )
    result_file = folder / f"{kind}.json"
    if done.returncode or not result_file.exists():
        tail = log.read_text(errors="replace")[-3000:]
        return {"status": "error", "note": f"exit code {done.returncode}", "log_tail": tail}
    result: dict[str, Any] = json.loads(result_file.read_text())
    return result


def _child_env(connection: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    if connection is not None:
        env["AZURE_STORAGE_CONNECTION_STRING"] = connection
        env.pop("AZURE_STORAGE_ACCOUNT_URL", None)
    return env


@contextlib.contextmanager
def _storage(connection: str | None, folder: Path) -> Iterator[tuple[str, Azurite | None]]:
    """The given Azurite (emptied; it cannot be restarted from here), or a fresh one for this size only."""
    from workloads.common.layout import Container
    from workloads.common.storage import StorageSettings
    from workloads.demo.azurite import connection_string, free_port

    if connection is not None:
        service = StorageSettings.model_validate({"connection_string": connection}).client()
        for name in Container:
            container = service.get_container_client(str(name))
            with contextlib.suppress(Exception):
                for blob in container.list_blobs():
                    container.delete_blob(blob.name)
        yield connection, None
        return
    azurite = Azurite(folder / "azurite", free_port())
    azurite.start()
    try:
        yield connection_string(azurite.port), azurite
    finally:
        azurite.stop()


def _clear_outputs(connection: str) -> None:
    """Delete what a reconcile wrote (hour state, records, logs, predictions): the hour is never scored again."""
    from workloads.common.layout import Container
    from workloads.common.storage import StorageSettings

    service = StorageSettings.model_validate({"connection_string": connection}).client()
    for name in (Container.LOGS, Container.PREDICTIONS):
        container = service.get_container_client(str(name))
        names = [blob.name for blob in container.list_blobs()]
        for start in range(0, len(names), 256):
            container.delete_blobs(*names[start : start + 256])


def _measure_scorer(connection: str, azurite: Azurite | None, folder: Path, repeats: int) -> dict[str, Any]:
    """(c) ``repeats`` times, each on a restarted, idle Azurite holding only the published fleet; the run of
    median wall time is reported, with every run's wall, CPU and Azurite CPU beside it."""
    runs: list[dict[str, Any]] = []
    for index in range(repeats):
        if index:
            _clear_outputs(connection)
        if azurite is not None:
            azurite.restart()
            azurite.settle()
        runs.append(_run_measure("scorer", folder, _child_env(connection)))
        if runs[-1].get("status") != "ok":
            return runs[-1]
    ordered = sorted(runs, key=lambda run: float(run["wall_s"]))
    result = dict(ordered[len(ordered) // 2])
    result["repeats"] = {
        key: [run.get(key) for run in runs] for key in ("wall_s", "cpu_s", "storage_emulator_cpu_s", "peak_rss_mib")
    }
    result["settled_storage"] = azurite is not None
    result["note"] = f"{result['note']}; median of {len(runs)} run(s) by wall time" + (
        ", each on a restarted, idle Azurite" if azurite is not None else ", on the given Azurite (not restarted)"
    )
    return result


def _publish(connection: str, fleet: SyntheticFleet, shard_count: int) -> None:
    from benchmarks.fleet_data import publish_fleet
    from workloads.common.storage import StorageSettings, ensure_containers

    service = StorageSettings.model_validate({"connection_string": connection}).client(max_connections=16)
    ensure_containers(service)
    publish_fleet(service, fleet, shard_count)


def _compare(folder: Path, first: str, second: str) -> dict[str, Any] | None:
    paths = folder / f"{first}.npz", folder / f"{second}.npz"
    if not all(p.exists() for p in paths):
        return None
    a, b = (np.load(p) for p in paths)
    common, rows_a, rows_b = np.intersect1d(a["indices"], b["indices"], return_indices=True)
    flags_a, flags_b = a["flags"][rows_a], b["flags"][rows_b]
    differ = flags_a != flags_b
    diff = np.abs(a["scores"][rows_a] - b["scores"][rows_b])
    result: dict[str, Any] = {
        "between": f"{first}/{second}",
        "pairs": len(common),
        "windows": int(differ.size),
        "flag_mismatches": int(differ.sum()),
        "max_abs_score_diff": float(diff.max()) if diff.size else 0.0,
        "anomalous_windows": [int(flags_a.sum()), int(flags_b.sum())],
    }
    borderline = [x["borderline"][rows] for x, rows in ((a, rows_a), (b, rows_b)) if "borderline" in x]
    if borderline:
        outside = ~np.logical_or.reduce(borderline)
        result["flag_mismatches_outside_borderline"] = int((differ & outside).sum())
    return result


def agreement(folder: Path) -> list[dict[str, Any]]:
    pairs = [*itertools.combinations(AGREEING, 2), ("reference", "naive")]
    return [found for first, second in pairs if (found := _compare(folder, first, second)) is not None]


def _ratio(value: float) -> float:
    return float(f"{value:.3g}")


def _add_ratios(measurements: dict[str, dict[str, Any]]) -> None:
    for base in ("reference", "naive"):
        baseline = measurements.get(base, {})
        base_cpu, base_wall = baseline.get("cpu_ms_per_pair"), baseline.get("ms_per_pair")
        for result in measurements.values():
            if result.get("status") != "ok" or not base_cpu or not base_wall:
                continue
            if result.get("cpu_ms_per_pair"):
                result[f"vs_{base}_per_core_s"] = _ratio(base_cpu / result["cpu_ms_per_pair"])
            if result.get("ms_per_pair"):
                result[f"vs_{base}_wall"] = _ratio(base_wall / result["ms_per_pair"])
    scorer, naive = measurements.get("scorer", {}), measurements.get("naive", {})
    if scorer.get("status") == "ok" and scorer.get("storage_emulator_cpu_s") is not None and naive.get("cpu_s"):
        with_storage = 1000 * (scorer["cpu_s"] + scorer["storage_emulator_cpu_s"]) / max(1, scorer["pairs"])
        scorer["cpu_ms_per_pair_with_storage"] = round(with_storage, 4)
        scorer["vs_naive_per_core_s_with_storage"] = _ratio(naive["cpu_ms_per_pair"] / with_storage)


def run_size(
    pairs: int, options: BenchOptions, folder: Path, connection: str | None, console: Console
) -> dict[str, Any]:
    shutil.rmtree(folder, ignore_errors=True)  # no result of an earlier run may pass for this one's
    folder.mkdir(parents=True)
    started = time.perf_counter()
    fleet = SyntheticFleet(pairs, options.seed, family=options.family)
    naive = sample_indices(pairs, options.naive_max_pairs)  # (a)'s sample is part of (b)'s, to compare them
    spec = WorkspaceSpec(
        pairs=pairs,
        seed=options.seed,
        hour=fleet.hour.isoformat(),
        reference=tuple(naive[i] for i in sample_indices(len(naive), options.reference_sample)),
        naive=tuple(naive),
        workers=options.workers,
        shard_count=max(1, -(-pairs // options.shard_pairs)),
        max_task_bytes=options.max_task_bytes,
        kernel_min_seconds=options.kernel_min_seconds,
        family=options.family,
        repeats=options.repeats,
    )
    spec.save(folder)
    console.log(f"{pairs:,} pairs: writing local files (hour Parquet, {len(spec.naive):,} skops, pickles)")
    from workloads.common.frames import to_parquet

    (folder / "hour.parquet").write_bytes(to_parquet(fleet.frame()))
    write_pickle_models(fleet, spec.reference, folder / "pickle")
    write_skops_models(fleet, spec.naive, folder / "skops")
    build_s = time.perf_counter() - started
    measurements: dict[str, dict[str, Any]] = {}
    env = _child_env()
    for kind in ("reference", "naive", "kernel"):
        console.log(f"{pairs:,} pairs: measuring {LABELS[kind]}")
        measurements[kind] = _run_measure(kind, folder, env)
    if pairs > options.scorer_max_pairs:
        measurements["scorer"] = {
            "status": "not run",
            "note": f"not run ({pairs:,} pairs > --scorer-max-pairs {options.scorer_max_pairs:,})",
        }
    else:
        with _storage(connection, folder) as (conn, azurite):
            console.log(
                f"{pairs:,} pairs: publishing the hour's aggregates and {pairs:,} models to Azurite "
                f"({spec.shard_count} shard(s))"
            )
            step = time.perf_counter()
            _publish(conn, fleet, spec.shard_count)
            build_s += time.perf_counter() - step
            console.log(f"{pairs:,} pairs: measuring {LABELS['scorer']}")
            measurements["scorer"] = _measure_scorer(conn, azurite, folder, options.scorer_repeats)
    measurements = {kind: measurements[kind] for kind in KINDS}
    _add_ratios(measurements)
    return {
        "pairs": pairs,
        "family": options.family,
        "windows_per_pair": 12,
        "build_s": round(build_s, 1),
        "hour_file_bytes": (folder / "hour.parquet").stat().st_size,
        "measurements": measurements,
        "agreement": agreement(folder),
    }


# -- reporting -----------------------------------------------------------------------------------------------
def _number(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    if digits < 0:  # significant digits
        return f"{value:,.{-digits}g}" if abs(value) < 10**-digits else f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _mib(value: Any) -> str:
    return "-" if value is None else f"{value / 2**20:,.2f}"


COLUMNS = (
    "measurement",
    "pairs run",
    "pairs/s",
    "ms/pair",
    "CPU ms/pair",
    "x (a) per core-s",
    "x (b) per core-s",
    "MiB read/task",
    "blob ops/hour",
    "peak RSS MiB",
)


def size_table(size: dict[str, Any]) -> Table:
    table = Table(title=f"{size['pairs']:,} pairs x 12 windows, one hour, {size.get('family', 'ocsvm')}")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "measurement" else "right")
    for kind, result in size["measurements"].items():
        if result.get("status") != "ok":
            table.add_row(LABELS[kind], *[str(result.get("status"))] + ["-"] * (len(COLUMNS) - 2))
            continue
        spread = ""
        if "ms_per_pair_min" in result:
            spread = f" ({_number(result['ms_per_pair_min'], -3)}-{_number(result['ms_per_pair_max'], -3)})"
        table.add_row(
            LABELS[kind],
            _number(result.get("pairs")),
            _number(result.get("pairs_per_s"), -3),
            _number(result.get("ms_per_pair"), -3) + spread,
            _number(result.get("cpu_ms_per_pair"), -3),
            _number(result.get("vs_reference_per_core_s"), -3),
            _number(result.get("vs_naive_per_core_s"), -3),
            _mib(result.get("bytes_read_per_task")),
            _number(result.get("blob_ops_per_hour")),
            _number(result.get("peak_rss_mib"), 0),
        )
    return table


def note_lines(size: dict[str, Any]) -> list[str]:
    lines = []
    for kind, result in size["measurements"].items():
        note = str(result.get("note", ""))
        if kind == "scorer" and result.get("status") == "ok":
            pairs = max(1, result["pairs"])
            note += (
                f"; {result['pairs_ok']:,} ok, {result['pairs_failed']:,} failed; "
                f"CPU {1000 * result['driver_cpu_s'] / pairs:.3g} ms/pair submitter + "
                f"{1000 * result['workers_cpu_s'] / pairs:.3g} ms/pair workers (process start included)"
            )
            if result.get("storage_emulator_cpu_s") is not None:
                note += f", Azurite {1000 * result['storage_emulator_cpu_s'] / pairs:.3g} ms/pair (not counted)"
            by_container = result.get("bytes_read_per_task_by_container", {})
            note += f"; blob ops {result['blob_ops']}; read per task (MiB): " + ", ".join(
                f"{name} {value / 2**20:.2f}" for name, value in by_container.items()
            )
            note += (
                f" ({result['bytes_read_per_pair']:,} bytes per pair); {result['shard_count']} shard(s), "
                f"{result['shards_with_data']} with data; submitter blob ops {result['blob_ops_driver_by_kind']}, "
                f"read {result['bytes_read_driver'] / 2**20:.2f} MiB; "
                f"{result['pairs_from_pack']:,} pairs from packs, {result['pairs_from_models']:,} from their models; "
                f"peak RSS submitter {result['driver_peak_rss_mib']} MiB, worker {result['worker_peak_rss_mib']} MiB; "
                f"slowest task {result['task_wall_s_max']} s; a fresh scorer process reaches its first pair in "
                f"{result.get('scorer_start_s', '?')} s"
            )
        if kind == "kernel" and result.get("pack_shards"):
            note += (
                f"; as {result['pack_shards']:,} shard pack(s): {result['pack_bytes_per_pair']:,} bytes/pair, "
                f"read_pack {result['pack_read_cpu_ms_per_pair']:.3g} CPU ms/pair (not in the kernel's time)"
            )
        if kind == "reference" and result.get("status") == "ok":
            note += f"; whole hour file {result['data_file_bytes'] / 2**20:.2f} MiB per process"
        if note:
            lines.append(f"{LABELS[kind]}: {note}")
    return lines


def agreement_lines(size: dict[str, Any]) -> list[str]:
    lines = []
    for found in size["agreement"]:
        line = (
            f"{found['between']}: {found['pairs']:,} pairs, {found['flag_mismatches']} flag mismatch(es) in "
            f"{found['windows']:,} windows ({found['anomalous_windows'][0]:,} flagged), "
            f"max |score diff| {found['max_abs_score_diff']:.3g}"
        )
        if "flag_mismatches_outside_borderline" in found:
            line += f", {found['flag_mismatches_outside_borderline']} outside borderline windows"
        lines.append(line)
    return lines


def run_benchmark(
    options: BenchOptions,
    out: Path,
    *,
    connection: str | None = None,
    workdir: Path | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run every size, print its table, write ``out`` (JSON) and return what was written.

    ``connection``: an Azurite to use (emptied before each size) instead of starting one per size.
    ``workdir``: where the fleets' files go (kept); default a temporary folder beside ``out``, removed.
    """
    console = console or Console(width=None if sys.stdout.isatty() else 150)
    out.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "benchmark": "fleet",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_facts(),
        "options": asdict(options),
        "sizes": [],
    }
    work = Path(tempfile.mkdtemp(prefix="fleet-work-", dir=out.parent)) if workdir is None else workdir
    try:
        for pairs in options.sizes:
            size = run_size(pairs, options, work / f"pairs-{pairs}", connection, console)
            report["sizes"].append(size)
            console.print(size_table(size))
            for line in note_lines(size):
                console.print(f"  {line}", highlight=False)
            for line in agreement_lines(size):
                console.print(f"  agreement {line}", highlight=False)
            out.write_text(json.dumps(report, indent=2))  # after every size: a long run keeps what it measured
    finally:
        if workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    console.print(f"wrote {out}")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet", description=__doc__.split("\n\n")[0])
    defaults = BenchOptions()
    parser.add_argument("--pairs", type=int, nargs="+", default=list(defaults.sizes), help="fleet sizes to run")
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON results (default build/bench/fleet.json, fleet-iforest.json)"
    )
    parser.add_argument("--family", choices=FAMILIES, default=defaults.family, help="the pairs' model family")
    parser.add_argument("--repeats", type=int, default=defaults.repeats, help="(b) and (d) runs (median, min-max)")
    parser.add_argument("--reference-sample", type=int, default=defaults.reference_sample, help="pairs (a) runs")
    parser.add_argument("--naive-max-pairs", type=int, default=defaults.naive_max_pairs, help="(b) samples above")
    parser.add_argument(
        "--scorer-max-pairs", type=int, default=defaults.scorer_max_pairs, help="(c) is not run above this"
    )
    parser.add_argument("--workers", type=int, default=defaults.workers, help="local backend worker processes")
    parser.add_argument("--shard-pairs", type=int, default=defaults.shard_pairs, help="pairs per shard aimed at")
    parser.add_argument(
        "--task-input-mib",
        type=float,
        default=defaults.max_task_bytes / 2**20,
        help="aggregate MiB per task above which a shard folder is split into slices (the submitter's default)",
    )
    parser.add_argument("--scorer-repeats", type=int, default=defaults.scorer_repeats, help="(c) runs (median)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--kernel-min-seconds", type=float, default=defaults.kernel_min_seconds)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the fleets' files here")
    args = parser.parse_args(argv)
    if min(*args.pairs, args.reference_sample, args.naive_max_pairs, args.shard_pairs, args.scorer_repeats) < 1:
        parser.error("--pairs, --reference-sample, --naive-max-pairs, --shard-pairs must be at least 1")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    out = args.out or Path(
        "build/bench/fleet.json" if args.family == "ocsvm" else f"build/bench/fleet-{args.family}.json"
    )
    if args.task_input_mib * 2**20 < 1:
        parser.error("--task-input-mib must be positive")
    options = BenchOptions(
        sizes=tuple(args.pairs),
        reference_sample=args.reference_sample,
        naive_max_pairs=args.naive_max_pairs,
        scorer_max_pairs=args.scorer_max_pairs,
        workers=args.workers,
        shard_pairs=args.shard_pairs,
        max_task_bytes=int(args.task_input_mib * 2**20),
        seed=args.seed,
        kernel_min_seconds=args.kernel_min_seconds,
        scorer_repeats=args.scorer_repeats,
        family=args.family,
        repeats=args.repeats,
    )
    report = run_benchmark(options, out, workdir=args.workdir)
    failed = [
        f"{size['pairs']}:{kind}"
        for size in report["sizes"]
        for kind, result in size["measurements"].items()
        if result.get("status") == "error"
    ]
    if failed:
        print(f"measurement(s) failed: {', '.join(failed)} (see the log tails in {out})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
