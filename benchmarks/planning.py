"""Planning benchmark: the submitter's plan of one hour at 10k, 100k and 1M pairs, on a settled Azurite.

    .venv/bin/python -m benchmarks.planning --pairs 10000 100000 1000000 --out build/bench/planning.json
    make bench-plan                        # the same; ARGS="--pairs 10000 --repeats 5" passes options

What is timed is what reconcile does before it hands an hour's tasks to a backend: list the hour
(``list_hour_inputs``), ``plan_hour`` on that listing and ``write_manifests``, each run in a fresh process
(``benchmarks/planning_measure.py``) that imports what the submitter imports.

Per fleet size it starts a fresh Azurite and publishes only the blob NAMES the stream job would write for
the hour (planning lists, it never downloads): ``shard_count = ceil(pairs / --shard-pairs)`` shard folders
(1,000 pairs per shard: 10, 100 and 1,000 shards) with ``--files-per-shard`` empty ``.parquet`` blobs each
(Stream Analytics may roll several blobs per folder). It restarts Azurite (settled storage: its metadata
saved and reloaded, nothing left of the bulk load) and measures ``--repeats`` runs; then it adds one
empty model blob per pair (``<device>/<sensor>/model.skops``, at most ``--max-models``) to the ``models``
container, restarts Azurite again and measures again: planning lists no model, so its time, CPU, memory
and blob operations must not change with them. Between runs it waits until Azurite is idle (it saves its
metadata 5 s after a write; the previous run's manifests are writes).

Reported per run, and as median (min-max) over the runs: wall time, submitter CPU (user + system,
``getrusage`` in the child) and Azurite's CPU (its pid, /proc) over the same interval, the submitter's
peak RSS (``VmHWM``: ``ru_maxrss`` of a child can be its parent's), blob operations by kind and container
(GETs must be 0), the load average and what other processes used of the machine meanwhile. The "before"
rows are the previous design's numbers (it read the hour's rows and listed every model): quoted from its
closing note, and re-measured once by the same method on its code (``BEFORE``). Numbers only: nothing here
asserts a time; the plan's shape and the absence of downloads are checked, and a run that fails them makes
the benchmark exit 1.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rich.console import Console
from rich.table import Table

from benchmarks.azurite_process import Azurite
from benchmarks.fleet import machine_facts
from benchmarks.fleet_data import DEFAULT_HOUR, SENSORS
from workloads.common.shards import MAX_SHARD_COUNT, shard_name

ROOT = Path(__file__).resolve().parents[1]
_MEASURE = "import sys; from benchmarks.planning_measure import main; raise SystemExit(main(sys.argv[1:]))"

# The previous design: plan_hour downloaded and checked the hour's rows, listed every model with its checksum
# and cut each task's rows; write_manifests wrote each task's input blob and manifest. Not re-measurable from
# this code. "quoted": the numbers of its closing note (commit edcdb23); "re-measured": its planner (unchanged from
# edcdb23 to 25ef1f2, the commit before the redesign) run once by the same method as this benchmark (fresh
# Azurite, the hour's rows as one local-aggregator blob, one empty model blob per pair with the metadata
# publish_model writes, restarted; 3 fresh processes running list_hour_inputs + plan_hour(chunk_size=5000,
# shard_count=pairs/2500) + write_manifests), 2026-12-02 on the 2-core machine at a 1-minute load of 0.5-1.5.
# Spreads are [median, min, max].
BEFORE: tuple[dict[str, Any], ...] = (
    {
        "pairs": 10_000,
        "source": "re-measured (code 25ef1f2)",
        "model_blobs": 10_000,
        "tasks": 4,
        "wall_s": [1.982, 1.722, 2.254],
        "cpu_s": [0.801, 0.735, 0.834],
        "azurite_cpu_s": [1.66, 1.24, 1.87],
        "peak_rss_mib": [311.6, 307.8, 329.6],
        "blob_ops_by_container": {"aggregates": {"LIST": 1, "GET": 1}, "models": {"LIST": 2}, "logs": {"PUT": 8}},
        "loadavg_1min": [0.6, 0.52, 0.61],
        "note": (
            "re-measured: CPU plan_hour 0.52 s (read 4.6 MB of rows, list 10k models), write_manifests 0.28 s "
            "(4 input blobs + 4 manifests); RSS 143 MiB before planning. No planning-alone number was published "
            "for 10k before; the fleet benchmark's whole submitter (plan + finalise) peaked at 397 MiB (README)"
        ),
    },
    {
        "pairs": 100_000,
        "source": "quoted (closing note, edcdb23)",
        "model_blobs": 100_000,
        "tasks": 40,
        "wall_s": [17.0, 17.0, 17.0],
        "cpu_s": [6.1, 6.1, 6.1],
        "peak_rss_mib": [856, 856, 856],
        "blob_ops_by_container": {"models": {"LIST": 20}},
        "note": (
            "closing note of issue 9 and README *Planning a million pairs*: plan_hour + write_manifests alone, "
            "stand-in model blobs; Azurite ~14 s of the wall serving 20 model listing pages; CPU = model listing "
            "scan 2.3 s, reading and checking 1.2 M rows 1.7 s, cutting and writing 40 tasks 1.6 s"
        ),
    },
    {
        "pairs": 100_000,
        "source": "re-measured (code 25ef1f2)",
        "model_blobs": 100_000,
        "tasks": 40,
        "wall_s": [20.662, 19.473, 21.387],
        "cpu_s": [6.999, 6.683, 7.616],
        "azurite_cpu_s": [17.26, 15.79, 17.38],
        "peak_rss_mib": [700.6, 698.8, 729.0],
        "blob_ops_by_container": {"aggregates": {"LIST": 1, "GET": 3}, "models": {"LIST": 20}, "logs": {"PUT": 80}},
        "loadavg_1min": [1.45, 1.12, 1.49],
        "note": (
            "re-measured: CPU plan_hour 5.4 s (read 39 MB of rows, 1.2 M, list 100k models), write_manifests "
            "1.6 s (40 input blobs + 40 manifests)"
        ),
    },
    {
        "pairs": 1_000_000,
        "source": "not measurable",
        "model_blobs": 1_000_000,
        "cpu_s_extrapolated": 60,
        "peak_rss_gib_extrapolated": "6-8",
        "blob_ops_by_container": {"models": {"LIST": 200}},
        "note": (
            "not measurable before: linear extrapolation ~60 s CPU and 6-8 GiB RSS (closing note of issue 9); "
            "the model listing alone 200 pages and ~23 s of scanning; the hour's 12 M rows read by the submitter"
        ),
    },
)


@dataclass(frozen=True)
class PlanOptions:
    sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    shard_pairs: int = 1_000  # pairs per shard: shard count = ceil(pairs / shard_pairs), the README's advice
    files_per_shard: int = 3  # blobs the stream job rolled in one shard folder this hour
    repeats: int = 3
    max_models: int | None = None  # model blobs added per size: one per pair unless capped
    threads: int = 32  # upload threads for the bulk load (empty bodies, raw HTTP)
    hour: str = DEFAULT_HOUR.isoformat()


# -- the bulk load: names only --------------------------------------------------------------------------------
def shard_count_for(pairs: int, shard_pairs: int) -> int:
    return min(MAX_SHARD_COUNT, max(1, math.ceil(pairs / shard_pairs)))


def aggregate_names(hour: datetime, shard_count: int, files_per_shard: int) -> list[str]:
    """The blob names a stream job would write for the hour: shard folders, a few ASA-style files each."""
    names = []
    for shard in range(shard_count):
        folder = f"{hour:%Y/%m/%d/%H}/{shard_name(shard, shard_count)}"
        for index in range(files_per_shard):
            digest = hashlib.sha256(f"{folder}/{index}".encode()).hexdigest()
            guid = f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
            names.append(f"{folder}/{index}_{guid}_1.parquet")
    return names


def model_names(count: int) -> Iterator[str]:
    """``<device>/<sensor>/model.skops`` of the first ``count`` pairs, named as the fleet benchmark names them."""
    per_device = len(SENSORS)
    for i in range(count):
        yield f"dev-{i // per_device + 1:06d}/{SENSORS[i % per_device]}/model.skops"


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    account: str
    key: str

    @property
    def connection(self) -> str:
        from workloads.demo.azurite import connection_string

        return connection_string(self.port, self.host)

    def container_sas(self, container: str) -> str:
        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        return generate_container_sas(
            self.account,
            container,
            account_key=self.key,
            permission=ContainerSasPermissions(write=True, create=True),
            expiry=datetime.now(UTC) + timedelta(days=2),
        )


def put_empty_blobs(
    endpoint: Endpoint, container: str, names: Sequence[str], threads: int, metadata: dict[str, str] | None = None
) -> float:
    """Create ``names`` as empty block blobs, many at once, through plain keep-alive HTTP with a container SAS
    (the SDK's per-request work would cost more CPU than Azurite on two cores). Returns the seconds taken."""
    sas = endpoint.container_sas(container)
    version = dict(part.split("=", 1) for part in sas.split("&"))["sv"]
    headers = {"x-ms-blob-type": "BlockBlob", "x-ms-version": version, "Content-Length": "0"}
    headers |= {f"x-ms-meta-{key}": value for key, value in (metadata or {}).items()}
    prefix = f"/{endpoint.account}/{container}/"
    started = time.perf_counter()

    def upload(part: Sequence[str]) -> int:
        connection = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=120)
        done = 0
        try:
            for name in part:
                for attempt in range(6):
                    try:
                        connection.request("PUT", f"{prefix}{quote(name, safe='/')}?{sas}", b"", headers)
                        response = connection.getresponse()
                        body = response.read()
                    except (OSError, http.client.HTTPException):
                        connection.close()
                        connection = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=120)
                        if attempt == 5:
                            raise
                        time.sleep(0.5 * (attempt + 1))
                        continue
                    if response.status != 201:
                        raise RuntimeError(f"PUT {name}: {response.status} {body[:300]!r}")
                    break
                done += 1
        finally:
            connection.close()
        return done

    workers = max(1, min(threads, len(names)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        uploaded = sum(pool.map(upload, [names[i::workers] for i in range(workers)]))
    if uploaded != len(names):
        raise RuntimeError(f"uploaded {uploaded} of {len(names)} blobs")
    return time.perf_counter() - started


# -- one measured run -----------------------------------------------------------------------------------------
def _child_env(connection: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["AZURE_STORAGE_CONNECTION_STRING"] = connection
    env.pop("AZURE_STORAGE_ACCOUNT_URL", None)
    return env


def measure_once(folder: Path, azurite: Azurite, spec: dict[str, Any]) -> dict[str, Any]:
    from workloads.demo.azurite import connection_string

    name = f"run-r{spec['revision']:03d}"
    spec_file, out, log = folder / f"{name}.spec.json", folder / f"{name}.json", folder / f"{name}.log"
    spec_file.write_text(json.dumps({**spec, "azurite_pid": azurite.pid}))
    with log.open("wb") as sink:
        done = subprocess.run(
            [sys.executable, "-c", _MEASURE, str(spec_file), str(out)],
            cwd=ROOT,
            env=_child_env(connection_string(azurite.port)),
            stdout=sink,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if not out.exists():
        return {"status": "error", "note": f"exit code {done.returncode}", "log_tail": log.read_text()[-3000:]}
    result: dict[str, Any] = json.loads(out.read_text())
    result["status"] = "ok" if done.returncode == 0 else "checks failed"
    return result


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4), "max": round(max(values), 4)}


def summarise(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if r.get("status") == "ok"]
    if not ok:
        return {"runs_ok": 0}
    summary: dict[str, Any] = {"runs_ok": len(ok)}
    for key in ("wall_s", "cpu_s", "azurite_cpu_s", "peak_rss_mib", "rss_before_planning_mib", "others_cpu_s"):
        values = [r[key] for r in ok if r.get(key) is not None]
        if values:
            summary[key] = _spread(values)
    for step in ("list", "plan", "manifests"):
        summary[f"cpu_s_{step}"] = _spread([r["cpu_s_by_step"][step] for r in ok])
    summary["loadavg_1min"] = _spread([r["loadavg_before"][0] for r in ok])
    # The same plan every time: the operations of a run do not vary, so one run's stand for all.
    operations = {json.dumps(r["blob_ops_by_container"], sort_keys=True) for r in ok}
    summary["blob_ops"] = ok[0]["blob_ops"]
    summary["blob_ops_by_container"] = ok[0]["blob_ops_by_container"]
    summary["blob_ops_same_in_every_run"] = len(operations) == 1
    for key in ("blobs_listed", "tasks", "shards"):
        summary[key] = ok[0][key]
    return summary


def measure_state(
    folder: Path, azurite: Azurite, base: dict[str, Any], first_revision: int, options: PlanOptions, console: Console
) -> list[dict[str, Any]]:
    runs = []
    for repeat in range(options.repeats):
        settled = azurite.settle()  # idle: no metadata save of the last writes (or of the restart) in flight
        run = measure_once(folder, azurite, {**base, "revision": first_revision + repeat})
        run["settle_wait_s"] = round(settled, 1)
        runs.append(run)
        if run.get("status") == "ok":
            console.log(
                f"  run {repeat + 1}: {run['wall_s']:.3f} s wall, {run['cpu_s']:.3f} s CPU, Azurite "
                f"{run['azurite_cpu_s']} s, peak RSS {run['peak_rss_mib']} MiB, ops {run['blob_ops']}, "
                f"load {run['loadavg_before'][0]}"
            )
        else:
            console.log(f"  run {repeat + 1}: {run.get('status')}: {run.get('note', run.get('checks'))}")
    return runs


# -- one size -------------------------------------------------------------------------------------------------
def run_size(pairs: int, options: PlanOptions, folder: Path, console: Console) -> dict[str, Any]:
    from workloads.common.layout import Container
    from workloads.common.storage import StorageSettings, ensure_containers
    from workloads.demo.azurite import ACCOUNT, KEY, free_port

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    hour = datetime.fromisoformat(options.hour)
    shard_count = shard_count_for(pairs, options.shard_pairs)
    models = pairs if options.max_models is None else min(pairs, options.max_models)
    names = aggregate_names(hour, shard_count, options.files_per_shard)
    azurite = Azurite(folder / "azurite", free_port())
    endpoint = Endpoint("127.0.0.1", azurite.port, ACCOUNT, KEY)
    size: dict[str, Any] = {
        "pairs": pairs,
        "shard_count": shard_count,
        "files_per_shard": options.files_per_shard,
        "loaded": {"aggregate_blobs": len(names), "aggregate_body_bytes": 0, "model_blobs_requested": models},
        "states": [],
    }
    base = {
        "hour": hour.isoformat(),
        "shard_count": shard_count,
        "files_per_shard": options.files_per_shard,
    }
    try:
        size["loaded"]["azurite_start_s"] = round(azurite.start(), 2)
        service = StorageSettings.model_validate({"connection_string": endpoint.connection}).client()
        ensure_containers(service)
        console.log(f"{pairs:,} pairs: {len(names):,} aggregate blob names in {shard_count:,} shard folders")
        took = put_empty_blobs(endpoint, str(Container.AGGREGATES), names, options.threads)
        size["loaded"]["aggregates_load_s"] = round(took, 1)
        size["loaded"]["restart_after_aggregates"] = azurite.restart()
        console.log(f"{pairs:,} pairs: restarted Azurite {size['loaded']['restart_after_aggregates']}; measuring")
        runs = measure_state(folder, azurite, base, 1, options, console)
        size["states"].append({"model_blobs": 0, "runs": runs, "summary": summarise(runs)})
        if models:
            console.log(f"{pairs:,} pairs: {models:,} empty model blobs into 'models'")
            try:
                took = put_empty_blobs(endpoint, str(Container.MODELS), list(model_names(models)), options.threads)
                size["loaded"]["models_load_s"] = round(took, 1)
                size["loaded"]["models_per_s"] = round(models / took)
                size["loaded"]["restart_after_models"] = azurite.restart()
                size["loaded"]["model_blobs"] = models
            except Exception as exc:  # an emulator that cannot hold them: say so, keep what was measured
                size["loaded"]["model_blobs"] = 0
                size["loaded"]["models_error"] = f"{type(exc).__name__}: {exc}"[:500]
                console.log(f"{pairs:,} pairs: loading models failed: {size['loaded']['models_error']}")
            if size["loaded"].get("model_blobs"):
                console.log(f"{pairs:,} pairs: restarted Azurite {size['loaded']['restart_after_models']}; measuring")
                runs = measure_state(folder, azurite, base, 1 + options.repeats, options, console)
                size["states"].append({"model_blobs": models, "runs": runs, "summary": summarise(runs)})
        size["loaded"]["azurite_metadata_bytes"] = azurite.metadata_bytes()
    finally:
        with contextlib.suppress(Exception):
            azurite.stop()
    return size


# -- reporting ------------------------------------------------------------------------------------------------
def _median(summary: dict[str, Any], key: str, digits: int = 2) -> str:
    found = summary.get(key)
    if not found:
        return "-"
    return f"{found['median']:,.{digits}f} ({found['min']:,.{digits}f}-{found['max']:,.{digits}f})"


def _ops(summary: dict[str, Any]) -> str:
    by = summary.get("blob_ops_by_container", {})
    parts = [f"{c} {op} {n}" for c, ops in by.items() for op, n in ops.items()]
    return ", ".join(parts) or "-"


COLUMNS = (
    "design",
    "pairs",
    "model blobs",
    "listed / tasks",
    "wall s",
    "submitter CPU s",
    "Azurite CPU s",
    "peak RSS MiB",
    "blob ops",
    "GET",
    "load 1m",
)


def _spread_text(values: Sequence[float] | None, digits: int = 2) -> str:
    if not values:
        return "-"
    median, low, high = values
    if low == high == median:
        return f"{median:,.{digits}f}"
    return f"{median:,.{digits}f} ({low:,.{digits}f}-{high:,.{digits}f})"


def _before_row(before: dict[str, Any]) -> list[str]:
    ops = before.get("blob_ops_by_container", {})
    gets = sum(n for by in ops.values() for op, n in by.items() if op == "GET")
    if "cpu_s_extrapolated" in before:
        measured = ["not measurable", f"~{before['cpu_s_extrapolated']} (extrap.)", "-"]
        rss = f"{before['peak_rss_gib_extrapolated']} GiB (extrap.)"
    else:
        measured = [_spread_text(before.get(k)) for k in ("wall_s", "cpu_s", "azurite_cpu_s")]
        rss = _spread_text(before.get("peak_rss_mib"), 0)
    return [
        f"before: {before['source']}",
        f"{before['pairs']:,}",
        f"{before['model_blobs']:,}",
        f"rows read / {before['tasks']:,}" if "tasks" in before else "-",
        *measured,
        rss,
        _ops({"blob_ops_by_container": ops}) + ("" if gets else " (+ the hour's rows)"),
        str(gets) if "aggregates" in ops else "-",
        _spread_text(before.get("loadavg_1min"), 1),
    ]


def report_table(report: dict[str, Any]) -> Table:
    table = Table(title="Planning one hour: list + plan_hour + write_manifests (median (min-max) of runs)")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column in {"design", "blob ops"} else "right")
    rows: list[tuple[int, int, list[str]]] = [(b["pairs"], 0, _before_row(b)) for b in report["before"]]
    for size in report["sizes"]:
        for state in size["states"]:
            summary = state["summary"]
            if not summary.get("runs_ok"):
                row = ["after", f"{size['pairs']:,}", f"{state['model_blobs']:,}", "failed", *["-"] * 7]
            else:
                row = [
                    "after",
                    f"{size['pairs']:,}",
                    f"{state['model_blobs']:,}",
                    f"{summary['blobs_listed']:,} / {summary['tasks']:,}",
                    _median(summary, "wall_s"),
                    _median(summary, "cpu_s"),
                    _median(summary, "azurite_cpu_s"),
                    _median(summary, "peak_rss_mib", 0),
                    _ops(summary),
                    str(summary["blob_ops"].get("GET", 0)),
                    _median(summary, "loadavg_1min", 1),
                ]
            rows.append((size["pairs"], 1, row))
    for _, _, row in sorted(rows, key=lambda item: (item[0], item[1])):
        table.add_row(*row)
    return table


def note_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    for size in report["sizes"]:
        loaded = size["loaded"]
        line = (
            f"{size['pairs']:,} pairs: {size['shard_count']:,} shards x {size['files_per_shard']} empty blobs "
            f"= {loaded['aggregate_blobs']:,} aggregate names (loaded in {loaded.get('aggregates_load_s', '?')} s); "
            f"model blobs: {loaded.get('model_blobs', 0):,} of {loaded['model_blobs_requested']:,} requested"
        )
        if loaded.get("models_load_s") is not None:
            line += f" (loaded in {loaded['models_load_s']} s, {loaded['models_per_s']:,}/s)"
        if loaded.get("models_error"):
            line += f" - NOT loaded: {loaded['models_error']}"
        line += f"; Azurite metadata {loaded.get('azurite_metadata_bytes', 0) / 2**20:,.1f} MiB"
        for state in size["states"]:
            summary = state["summary"]
            if summary.get("runs_ok"):
                line += (
                    f"; with {state['model_blobs']:,} models: RSS {summary['rss_before_planning_mib']['median']:.0f} "
                    f"MiB before planning (imports); CPU list/plan/manifests "
                    f"{summary['cpu_s_list']['median']:.3f}/{summary['cpu_s_plan']['median']:.3f}/"
                    f"{summary['cpu_s_manifests']['median']:.3f} s, others used "
                    f"{_median(summary, 'others_cpu_s')} CPU s of the machine meanwhile"
                )
        lines.append(line)
    for before in report["before"]:
        lines.append(f"before, {before['pairs']:,} pairs, {before['source']}: {before['note']}")
    return lines


def run_benchmark(
    options: PlanOptions, out: Path, *, workdir: Path | None = None, console: Console | None = None
) -> dict[str, Any]:
    console = console or Console(width=None if sys.stdout.isatty() else 180)
    out.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "benchmark": "planning",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_facts(),
        "loadavg_at_start": [round(v, 2) for v in os.getloadavg()],
        "options": asdict(options),
        "before": list(BEFORE),
        "sizes": [],
    }
    work = Path(tempfile.mkdtemp(prefix="planning-work-", dir=out.parent)) if workdir is None else workdir
    try:
        for pairs in options.sizes:
            report["sizes"].append(run_size(pairs, options, work / f"pairs-{pairs}", console))
            report["loadavg_at_end"] = [round(v, 2) for v in os.getloadavg()]
            out.write_text(json.dumps(report, indent=2))  # after every size: a long run keeps what it measured
    finally:
        if workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    console.print(report_table(report))
    for line in note_lines(report):
        console.print(f"  {line}", highlight=False)
    console.print(
        f"  machine: {report['machine']['cpus_usable']} usable core(s); load average at start "
        f"{report['loadavg_at_start']}, at end {report.get('loadavg_at_end')}",
        highlight=False,
    )
    console.print(f"wrote {out}")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.planning", description=__doc__.split("\n\n")[0])
    defaults = PlanOptions()
    parser.add_argument("--pairs", type=int, nargs="+", default=list(defaults.sizes), help="fleet sizes")
    parser.add_argument("--out", type=Path, default=Path("build/bench/planning.json"), help="JSON results")
    parser.add_argument("--shard-pairs", type=int, default=defaults.shard_pairs, help="pairs per shard")
    parser.add_argument("--files-per-shard", type=int, default=defaults.files_per_shard, help="blobs per folder")
    parser.add_argument("--repeats", type=int, default=defaults.repeats, help="runs per state (>= 3 for a spread)")
    parser.add_argument(
        "--max-models",
        type=int,
        default=None,
        help="model blobs at most (default one per pair; Azurite cannot save much over 600k blobs, see Makefile)",
    )
    parser.add_argument("--threads", type=int, default=defaults.threads, help="upload threads for the bulk load")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the emulators' folders here")
    args = parser.parse_args(argv)
    if min(*args.pairs, args.shard_pairs, args.files_per_shard, args.repeats, args.threads) < 1:
        parser.error("--pairs, --shard-pairs, --files-per-shard, --repeats and --threads must be at least 1")
    if args.max_models is not None and args.max_models < 0:
        parser.error("--max-models must be at least 0")
    options = PlanOptions(
        sizes=tuple(args.pairs),
        shard_pairs=args.shard_pairs,
        files_per_shard=args.files_per_shard,
        repeats=args.repeats,
        max_models=args.max_models,
        threads=args.threads,
    )
    report = run_benchmark(options, args.out, workdir=args.workdir)
    failed = [
        f"{size['pairs']}/{state['model_blobs']} models"
        for size in report["sizes"]
        for state in size["states"]
        if state["summary"].get("runs_ok", 0) < len(state["runs"])
    ]
    if failed:
        print(f"run(s) failed or failed their checks: {', '.join(failed)} (see {args.out})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
