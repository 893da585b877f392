"""The fleet benchmark's measurements, each run in a fresh process of its own.

``python -m benchmarks.fleet_measure KIND WORKSPACE`` rebuilds the workspace's synthetic fleet
(deterministic, not timed), runs one measurement and writes ``KIND.json`` (times, CPU, memory,
counts) and ``KIND.npz`` (the flags and scores it produced, for the agreement check) into
WORKSPACE. A process per measurement keeps peak RSS and CPU time apart per measurement.

Kinds:

``reference``  (a) one Python process per pair of the sample: reads the whole hour's Parquet file,
               unpickles the pair's model, scores it (``benchmarks/fleet_reference.py``);
``naive``      (b) in one process, per pair: skops load from a local file, predict + decision_function;
``scorer``     (c) the submitter's reconcile of the hour with the local backend, on Azurite
               (``AZURE_STORAGE_CONNECTION_STRING``), blob requests counted: planning lists the hour's
               shard folders, each task reads its own folder and its shard's model pack;
``kernel``     (d) the compiled fast path alone: models compiled up front, one ``score_many`` over
               every pair's matrix.
"""

from __future__ import annotations

import gc
import hashlib
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from benchmarks.fleet_data import WINDOW, WINDOWS_PER_HOUR, SyntheticFleet
from benchmarks.procstat import azurite_cpu_seconds, peak_rss_kib

KINDS = ("reference", "naive", "scorer", "kernel")
KERNEL_ENV = "FLEET_BENCH_KERNEL"  # another module with compile_model/score_many, to try a candidate kernel
DEFAULT_KERNEL = "workloads.common.fastpath"
REFERENCE_SCRIPT = Path(__file__).with_name("fleet_reference.py")
MIB = 1024.0  # peak RSS is in KiB


@dataclass(frozen=True)
class WorkspaceSpec:
    """What the measurement processes share: the fleet's identity and the options of the run."""

    pairs: int
    seed: int
    hour: str
    reference: tuple[int, ...]  # the sample (a) runs on
    naive: tuple[int, ...]  # the pairs (b) runs on
    workers: int
    shard_count: int = 1  # the aggregates, the packs and the plan all use it: a task per shard folder
    max_task_bytes: int = 64 * 1024 * 1024  # a shard folder with more aggregate bytes is split into slices
    kernel_min_seconds: float = 1.0
    family: str = "ocsvm"  # the templates' detector (benchmarks/fleet_data.py FAMILIES)
    repeats: int = 3  # (b) and (d) at least this many times: median, min and max reported

    def fleet(self) -> SyntheticFleet:
        return SyntheticFleet(self.pairs, self.seed, datetime.fromisoformat(self.hour), family=self.family)

    def save(self, folder: Path) -> None:
        (folder / "spec.json").write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, folder: Path) -> WorkspaceSpec:
        raw = json.loads((folder / "spec.json").read_text())
        raw["reference"], raw["naive"] = tuple(raw["reference"]), tuple(raw["naive"])
        return cls(**raw)


def _cpu_of(usage: resource.struct_rusage) -> float:
    return float(usage.ru_utime + usage.ru_stime)


def _self_rss_mib() -> float:
    return round(peak_rss_kib() / MIB, 1)


def _rates(pairs: int, wall: float, cpu: float) -> dict[str, float]:
    return {
        "pairs_per_s": round(pairs / wall, 2) if wall > 0 else 0.0,
        "ms_per_pair": round(1000 * wall / pairs, 4) if pairs else 0.0,
        "cpu_ms_per_pair": round(1000 * cpu / pairs, 4) if pairs else 0.0,
    }


def _spread(pairs: int, walls: Sequence[float]) -> dict[str, Any]:
    """Every run's wall time and the min-max of ms per pair beside the median ``_rates`` reports."""
    return {
        "runs": len(walls),
        "wall_s_runs": [round(w, 4) for w in walls],
        "ms_per_pair_min": round(1000 * min(walls) / pairs, 4) if pairs else 0.0,
        "ms_per_pair_max": round(1000 * max(walls) / pairs, 4) if pairs else 0.0,
    }


def _save_results(
    folder: Path,
    kind: str,
    indices: Sequence[int] | np.ndarray,
    flags: np.ndarray,
    scores: np.ndarray,
    **extra: np.ndarray,
) -> None:
    arrays = {"indices": np.asarray(indices, dtype=np.int64), "flags": flags, "scores": scores, **extra}
    save: Any = np.savez_compressed
    save(folder / f"{kind}.npz", **arrays)


# -- (a) the reference style --------------------------------------------------------------------------------
def measure_reference(folder: Path, spec: WorkspaceSpec) -> dict[str, Any]:
    fleet = spec.fleet()
    data = folder / "hour.parquet"
    flags = np.zeros((len(spec.reference), WINDOWS_PER_HOUR), dtype=bool)
    scores = np.zeros((len(spec.reference), WINDOWS_PER_HOUR))
    peak_kib = 0
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    for row, index in enumerate(spec.reference):
        pair = fleet.pair_ids[index]
        done = subprocess.run(
            [
                sys.executable,
                str(REFERENCE_SCRIPT),
                str(data),
                str(folder / "pickle" / f"{index}.pkl"),
                pair.device_id,
                pair.sensor,
                ",".join(fleet.features(index)),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"reference scoring of {pair} failed: {done.stderr[-2000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        flags[row], scores[row] = result["flags"], result["scores"]
        peak_kib = max(peak_kib, int(result["peak_rss_kib"]))
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    _save_results(folder, "reference", spec.reference, flags, scores)
    cpu = _cpu_of(after) - _cpu_of(before)
    return {
        "pairs": len(spec.reference),
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        **_rates(len(spec.reference), wall, cpu),
        "peak_rss_mib": round(peak_kib / MIB, 1),
        "data_file_bytes": data.stat().st_size,
        "note": f"extrapolated from {len(spec.reference)} pair(s), one process each",
    }


# -- (b) the naive in-process skops loop ----------------------------------------------------------------------
def measure_naive(folder: Path, spec: WorkspaceSpec) -> dict[str, Any]:
    import skops.io as sio

    from workloads.common.vetted_types import trusted_for_loading
    from workloads.scorer.scoring import score_rows

    fleet = spec.fleet()
    matrices = fleet.matrices(spec.naive)
    paths = [folder / "skops" / f"{i}.skops" for i in spec.naive]
    flags = np.zeros((len(paths), WINDOWS_PER_HOUR), dtype=bool)
    scores = np.zeros((len(paths), WINDOWS_PER_HOUR))
    trusted = trusted_for_loading()  # skops' defaults and the vetted types, as the model store loads them
    walls: list[float] = []
    cpus: list[float] = []
    for _ in range(max(1, spec.repeats)):  # every run loads every model again, as a fresh loop would
        gc.collect()
        cpu_started, started = time.process_time(), time.perf_counter()
        for row, (path, matrix) in enumerate(zip(paths, matrices, strict=True)):
            estimator = sio.loads(path.read_bytes(), trusted=trusted)
            scores[row], flags[row] = score_rows(estimator, matrix)
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu_started)
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    _save_results(folder, "naive", spec.naive, flags, scores)
    sampled = len(spec.naive) < spec.pairs
    what = f"sample of {len(spec.naive):,} pairs" if sampled else "every pair"
    return {
        "pairs": len(spec.naive),
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        **_rates(len(spec.naive), wall, cpu),
        **_spread(len(spec.naive), walls),
        "peak_rss_mib": _self_rss_mib(),
        "note": f"{what}; median of {len(walls)} run(s)",
    }


# -- (c) our scorer, end to end on Azurite ----------------------------------------------------------------------
def _azurite_port(connection: str) -> int | None:
    for part in connection.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == "blobendpoint":
            return urlsplit(value.strip()).port
    return None


@dataclass
class _HourRun:
    record: Any
    wall: float
    driver_cpu: float
    workers_cpu: float
    worker_rss_kib: int
    driver_rss_kib: int
    storage_cpu: float | None
    counts: dict[str, dict[str, int]]


def _run_hour(spec: WorkspaceSpec, settings: Any, hour: datetime, port: int | None) -> _HourRun:
    """The timed part: reconcile the hour with the local backend, every blob request counted."""
    from benchmarks import blob_counter
    from workloads.scorer.task import ScorerOptions
    from workloads.submitter import local
    from workloads.submitter.reconcile import Reconciler, ReconcileSettings

    service = settings.client()
    counters = blob_counter.new_counters()
    with blob_counter.counting_process_pools(local, counters) as pools:
        backend = local.LocalBackend(settings, workers=spec.workers, options=ScorerOptions())
    if spec.workers > 0 and not pools:
        raise RuntimeError("the local backend created no process pool: its workers' blob requests cannot be counted")
    plan = ReconcileSettings(stack="bench", shard_count=spec.shard_count, max_task_bytes=spec.max_task_bytes)
    reconciler = Reconciler(service, backend, plan)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    storage_before = azurite_cpu_seconds(port)
    blob_counter.install(counters, role=blob_counter.ROLES.index("driver"))
    try:
        with backend:
            cpu_started, started = time.process_time(), time.perf_counter()
            outcome = reconciler.hour(hour, hour + timedelta(hours=2))
            wall, driver_cpu = time.perf_counter() - started, time.process_time() - cpu_started
            counts = blob_counter.snapshot(counters)
            storage_after = azurite_cpu_seconds(port)
            driver_rss = peak_rss_kib()
        # The workers have exited (the pool is shut down), so their whole lives are in RUSAGE_CHILDREN,
        # and each has put its peak RSS into the counters on its way out.
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        worker_rss = blob_counter.peak_rss_kib(counters, blob_counter.ROLES.index("workers"))
    finally:
        blob_counter.uninstall()
    if outcome.record is None:
        raise RuntimeError(f"the hour was not scored: {outcome.action.value}: {outcome.why}")
    storage = storage_after - storage_before if storage_before is not None and storage_after is not None else None
    return _HourRun(
        record=outcome.record,
        wall=wall,
        driver_cpu=driver_cpu,
        workers_cpu=_cpu_of(children) - _cpu_of(children_before),
        worker_rss_kib=worker_rss,
        driver_rss_kib=driver_rss,
        storage_cpu=storage,
        counts=counts,
    )


def _read_back(folder: Path, service: Any, fleet: SyntheticFleet) -> int:
    """Not timed: the predictions the scorer wrote, saved for the agreement check; pairs with all windows."""
    from workloads.common.frames import read_hour_predictions

    index_of = {(p.device_id, p.sensor): i for i, p in enumerate(fleet.pair_ids)}
    predictions = read_hour_predictions(service, fleet.hour)
    flags = np.zeros((fleet.pairs, WINDOWS_PER_HOUR), dtype=bool)
    scores = np.full((fleet.pairs, WINDOWS_PER_HOUR), np.nan)
    seen = np.zeros((fleet.pairs, WINDOWS_PER_HOUR), dtype=bool)
    if len(predictions):
        keys = zip(predictions["device_id"].astype(str), predictions["sensor"].astype(str), strict=True)
        rows = np.array([index_of[key] for key in keys])
        offsets = pd.to_datetime(predictions["window_end"], utc=True) - pd.Timestamp(fleet.hour)
        columns = (offsets // pd.Timedelta(WINDOW)).to_numpy(dtype=np.int64)
        flags[rows, columns] = predictions["is_anomaly"].to_numpy(dtype=bool)
        scores[rows, columns] = predictions["score"].to_numpy(dtype="float64")
        seen[rows, columns] = True
    complete = np.flatnonzero(seen.all(axis=1))
    _save_results(folder, "scorer", complete, flags[complete], scores[complete])
    return len(complete)


def measure_scorer(folder: Path, spec: WorkspaceSpec) -> dict[str, Any]:
    from benchmarks import blob_counter
    from workloads.common.hour_inputs import list_hour_inputs
    from workloads.common.storage import StorageSettings
    from workloads.submitter.finalise import read_run_logs
    from workloads.submitter.record import read_record

    fleet = spec.fleet()
    connection = os.environ["AZURE_STORAGE_CONNECTION_STRING"]
    settings = StorageSettings.model_validate({"connection_string": connection})
    run = _run_hour(spec, settings, fleet.hour, _azurite_port(connection))
    service = settings.client()
    record = read_record(service, fleet.hour, run.record.job_id) or run.record
    task_logs, _, _ = read_run_logs(service, record)
    with_predictions = _read_back(folder, service, fleet)
    inputs = list_hour_inputs(service, fleet.hour)
    driver, workers = run.counts["driver"], run.counts["workers"]
    tasks = max(1, record.tasks)
    cpu = run.driver_cpu + run.workers_cpu
    # Pairs as the tasks found them in their rows (finalise sums the run logs: manifests name no pairs).
    logged_pairs = sum(log.pairs for log in task_logs.values())
    return {
        "pairs": record.pairs,
        "pairs_in_run_logs": logged_pairs,
        "pairs_ok": record.ok,
        "pairs_failed": record.failed,
        "pairs_with_predictions": with_predictions,
        "job_status": record.status.value,
        "tasks": record.tasks,
        "shards_with_data": record.shards,
        "slices_max": max((log.slices for log in task_logs.values()), default=0),
        "rows_read": sum(log.rows_read for log in task_logs.values()),
        "rows_unaccounted": record.unaccounted_rows,
        "workers": spec.workers,
        "max_task_bytes": spec.max_task_bytes,
        "wall_s": round(run.wall, 3),
        "cpu_s": round(cpu, 3),
        "driver_cpu_s": round(run.driver_cpu, 3),
        "workers_cpu_s": round(run.workers_cpu, 3),
        "storage_emulator_cpu_s": round(run.storage_cpu, 3) if run.storage_cpu is not None else None,
        **_rates(record.pairs, run.wall, cpu),
        "peak_rss_mib": round(max(run.worker_rss_kib, run.driver_rss_kib) / MIB, 1),
        "driver_peak_rss_mib": round(run.driver_rss_kib / MIB, 1),
        "worker_peak_rss_mib": round(run.worker_rss_kib / MIB, 1),
        "blob_ops_per_hour": blob_counter.operations(driver) + blob_counter.operations(workers),
        "blob_ops": {op: driver[op] + workers[op] for op in blob_counter.OPERATIONS if driver[op] + workers[op]},
        "blob_ops_driver": blob_counter.operations(driver),
        "blob_ops_workers": blob_counter.operations(workers),
        "blob_ops_driver_by_kind": {op: driver[op] for op in blob_counter.OPERATIONS if driver[op]},
        "blob_ops_workers_by_kind": {op: workers[op] for op in blob_counter.OPERATIONS if workers[op]},
        "blob_ops_driver_by_container": blob_counter.by_container(driver),
        "blob_ops_workers_by_container": blob_counter.by_container(workers),
        "bytes_read_per_task": round(blob_counter.bytes_received(workers) / tasks),
        "bytes_read_per_pair": round(blob_counter.bytes_received(workers) / max(1, record.pairs)),
        "shard_count": spec.shard_count,
        "pairs_from_pack": sum(log.pack_pairs for log in task_logs.values()),
        "pairs_from_models": sum(log.model_pairs for log in task_logs.values()),
        "task_wall_s_max": round(max((t.timings_ms["total"] for t in task_logs.values()), default=0) / 1000, 3),
        **_scorer_start(connection, record),
        "bytes_read_per_task_by_container": {
            c: round(workers[f"bytes_{c}"] / tasks) for c in blob_counter.CONTAINERS if workers[f"bytes_{c}"]
        },
        "bytes_read_driver": blob_counter.bytes_received(driver),
        "bytes_read_driver_by_container": {
            c: driver[f"bytes_{c}"] for c in blob_counter.CONTAINERS if driver[f"bytes_{c}"]
        },
        "aggregate_bytes_read_by_tasks": workers["bytes_aggregates"],
        "bytes_written": driver["bytes_sent"] + workers["bytes_sent"],
        "aggregate_bytes_in_hour": sum(b.size for b in inputs),
        "aggregate_blobs_in_hour": len(inputs),
        "note": (
            f"{record.tasks} task(s) for {record.shards} shard folder(s) of {spec.shard_count} "
            f"(up to {spec.max_task_bytes / 2**20:g} MiB of aggregates per task), {spec.workers} worker process(es)"
        ),
    }


def _scorer_start(connection: str, record: Any) -> dict[str, Any]:
    """Not part of (c)'s time: one task run again as Batch runs it, a fresh ``scorer`` process, to time
    its start (process start to the first pair scored: imports, manifest, its folder's blobs and pack read).
    Re-running a task of a finished job rewrites the same outputs."""
    import subprocess
    import sys

    if not record.manifests:
        return {}
    env = {**os.environ, "AZURE_STORAGE_CONNECTION_STRING": connection}
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "workloads.scorer.cli", "--manifest", record.manifests[0]],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    wall = time.time() - started
    if done.returncode != 0:
        return {"scorer_start": f"failed: {done.stderr.strip()[-300:]}"}
    summary = json.loads(done.stdout)
    timings = summary["timings_ms"]
    began = datetime.fromisoformat(summary["started_at"]).timestamp()
    first_pair = began - started + (timings.get("read_inputs", 0) + timings.get("read_pack", 0)) / 1000
    return {"scorer_start_s": round(first_pair, 3), "scorer_process_wall_s": round(wall, 3)}


# -- (d) the in-memory kernel ---------------------------------------------------------------------------------
class KernelUnavailableError(RuntimeError):
    pass


def load_kernel() -> ModuleType:
    name = os.environ.get(KERNEL_ENV) or DEFAULT_KERNEL
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(f"{exc.name}.")):
            raise KernelUnavailableError(f"{name} does not exist (yet): the kernel was not measured") from None
        raise
    missing = [attr for attr in ("compile_model", "score_many") if not hasattr(module, attr)]
    if missing:
        raise KernelUnavailableError(f"{name} lacks {', '.join(missing)}: the kernel was not measured")
    return module


def _as_window_array(value: Any, like: np.ndarray, dtype: Any) -> np.ndarray:
    array = np.asarray(value, dtype=dtype)
    return np.broadcast_to(array, like.shape) if array.shape != like.shape else array


def measure_kernel(folder: Path, spec: WorkspaceSpec) -> dict[str, Any]:
    kernel = load_kernel()
    fleet = spec.fleet()
    compile_started = time.perf_counter()
    compiled: list[Any] = []
    indices: list[int] = []
    for index, estimator in enumerate(fleet.models()):
        model = kernel.compile_model(estimator)
        if model is not None:
            compiled.append(model)
            indices.append(index)
    compile_s = time.perf_counter() - compile_started
    matrices = fleet.matrices(indices)
    fleet.__dict__.pop("values", None)  # only the matrices stay in memory
    gc.collect()
    walls: list[float] = []
    cpus: list[float] = []
    results: list[Any] = []
    total_started = time.perf_counter()
    while len(walls) < spec.repeats or (
        time.perf_counter() - total_started < spec.kernel_min_seconds and len(walls) < 50
    ):
        cpu_started, started = time.process_time(), time.perf_counter()
        results = kernel.score_many(compiled, matrices)
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu_started)
    flags = np.zeros((len(indices), WINDOWS_PER_HOUR), dtype=bool)
    scores = np.zeros((len(indices), WINDOWS_PER_HOUR))
    borderline = np.zeros((len(indices), WINDOWS_PER_HOUR), dtype=bool)
    for row, scored in enumerate(results):
        flags[row] = np.asarray(scored.flags, dtype=bool)
        scores[row] = np.asarray(scored.scores, dtype="float64")
        borderline[row] = _as_window_array(getattr(scored, "borderline", False), flags[row], bool)
    _save_results(folder, "kernel", indices, flags, scores, borderline=borderline)
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    peak_rss = _self_rss_mib()  # before the packs below
    packs = _pack_extras(fleet, indices, compiled, spec.shard_count)
    return {
        "pairs": len(indices),
        "pairs_not_compiled": fleet.pairs - len(indices),
        "wall_s": round(wall, 4),
        "cpu_s": round(cpu, 4),
        **_rates(len(indices), wall, cpu),
        **_spread(len(indices), walls),
        "compile_s": round(compile_s, 3),
        "borderline_windows": int(borderline.sum()),
        "peak_rss_mib": peak_rss,
        **packs,
        "kernel": kernel.__name__,
        "note": f"median of {len(walls)} run(s); compiling took {compile_s:.1f} s (not timed)",
    }


def _pack_extras(
    fleet: SyntheticFleet, indices: Sequence[int], compiled: Sequence[Any], shard_count: int
) -> dict[str, Any]:
    """Not part of (d)'s time: the compiled models as per-shard model packs, their size and decode time."""
    from workloads.common.model_pack import PackEntry, read_pack, write_pack
    from workloads.common.shards import shard_of

    if not indices:
        return {}
    shards = shard_count
    groups: dict[int, list[Any]] = {}
    for index, model in zip(indices, compiled, strict=True):
        pair = fleet.pair_ids[index]
        # A stand-in digest: the pack's size and decode time do not depend on it.
        digest = hashlib.sha256(str(pair).encode()).hexdigest()
        groups.setdefault(shard_of(pair.device_id, shards), []).append(
            PackEntry(pair.device_id, pair.sensor, digest, tuple(f"f{i}" for i in range(model.n_features)), model)
        )
    packs = [write_pack(entries) for entries in groups.values()]
    gc.collect()
    cpu_started, started = time.process_time(), time.perf_counter()
    decoded = sum(len(read_pack(data)) for data in packs)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    sizes = [len(data) for data in packs]
    return {
        "pack_shards": len(packs),
        "pack_bytes_per_pair": round(sum(sizes) / decoded),
        "pack_bytes_max_shard": max(sizes),
        "pack_read_ms_per_pair": round(1000 * wall / decoded, 4),
        "pack_read_cpu_ms_per_pair": round(1000 * cpu / decoded, 4),
    }


MEASURES = {
    "reference": measure_reference,
    "naive": measure_naive,
    "scorer": measure_scorer,
    "kernel": measure_kernel,
}


def main(argv: Sequence[str]) -> int:
    if len(argv) != 2 or argv[0] not in MEASURES:
        print(f"usage: python -m benchmarks.fleet_measure {{{','.join(KINDS)}}} WORKSPACE", file=sys.stderr)
        return 2
    kind, folder = argv[0], Path(argv[1])
    spec = WorkspaceSpec.load(folder)
    try:
        result: dict[str, Any] = {"status": "ok", **MEASURES[kind](folder, spec)}
    except KernelUnavailableError as exc:
        result = {"status": "unavailable", "note": str(exc)}
    (folder / f"{kind}.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
