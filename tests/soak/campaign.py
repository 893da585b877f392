"""A seeded fault campaign against the hour life cycle: simulated hours of ingestion and hourly triggers on a
fake clock, with missed, double and killed triggers, storage outages before and during runs, 503 bursts,
dropped connections, late, replayed, misfiled and corrupt data, and Azurite restarts; then every window is
checked against ground truth.

    python -m tests.soak.campaign --hours 48 --seed 3 --out build/soak/soak.json   # `make soak`

Everything is real except the clock: the submitter runs as its CLI (``submitter --now <simulated time>
reconcile``, local backend with a worker process), Azurite is a process of its own behind the fault proxy,
and a killed trigger is a SIGKILL. The claim's age is the storage service's, so a killed run's claim is
found by its owner process being gone, not by the simulated clock. What must hold at the end, after a
drain (reconcile runs without faults until nothing changes):

- every window published as a valid row is scored exactly once, in its own hour, in the current revision;
- no hour keeps predictions of another revision (a reader listing the hour's prefix sees one), no revision
  is left ``submitted``, no switch left unfinished, ``scored.json`` names the current revision;
- no process of any run is left behind.
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from azure.storage.blob import BlobServiceClient
from pydantic import SecretStr

from benchmarks.azurite_process import Azurite
from tests.faults import FaultProxy, Rule
from workloads.aggregator.publish import split_by_partition
from workloads.common.aggregates import DEFAULT_MODEL_FEATURES
from workloads.common.frames import read_predictions, to_parquet
from workloads.common.hour_state import AttemptStatus, read_state
from workloads.common.layout import Container, hour_prefix, scored_marker_blob
from workloads.common.modelstore import publish_model
from workloads.common.pairs import Pair
from workloads.common.storage import StorageSettings, ensure_containers
from workloads.demo.azurite import connection_string, free_port
from workloads.training.train import default_estimator

SHARDS = 4
WINDOWS = 12  # five-minute windows per pair and hour
START = datetime(2026, 11, 20, 0, tzinfo=UTC)
RECONCILE_HOURS = 12
RUN_TIMEOUT = 120.0  # seconds a trigger may take before the soak calls it hung (and kills it)

# Per simulated hour, the chance of each fault: triggers (one kind per hour), then independent ones.
TRIGGER_FAULTS = {"missed_trigger": 0.12, "double_trigger": 0.15, "killed_trigger": 0.15, "outage_before": 0.06}
OTHER_FAULTS = {
    "outage_during": 0.08,
    "burst_503": 0.25,
    "dropped_connections": 0.12,
    "late_data": 0.25,
    "replayed_blob": 0.12,
    "misfiled_window": 0.12,
    "corrupt_blob": 0.06,
    "azurite_restart": 0.06,
}
# Where a 503 burst or dropped connections land: (method, path pattern) of the requests a run makes.
TARGETS = [
    ("GET", r"/aggregates/.*\.parquet$"),
    ("GET", r"/aggregates$"),
    ("PUT", r"/predictions/.*\.parquet$"),
    ("GET", r"/predictions$"),
    ("PUT", r"/hour\.json$"),
    ("GET", r"/hour\.json$"),
    ("PUT", r"/job\.json$"),
    ("PUT", r"/scored\.json$"),
    ("PUT", r"/tasks/.*\.jsonl$"),
    ("GET", r"/models/.*"),
]


Window = tuple[str, str, str]  # device, sensor, window end (ISO 8601, UTC)


def window_key(device: object, sensor: object, end: object) -> Window:
    return str(device), str(sensor), pd.Timestamp(end).tz_convert("UTC").isoformat()


@dataclass
class Soak:
    """The campaign's world: storage, the fleet, ground truth and what happened."""

    hours: int
    seed: int
    pairs: int
    workdir: Path
    rng: random.Random = field(init=False)
    truth: dict[datetime, set[Window]] = field(default_factory=dict)
    withheld: list[tuple[datetime, pd.DataFrame]] = field(default_factory=list)  # rows that arrive late
    corrupt_hours: set[datetime] = field(default_factory=set)
    faults: Counter[str] = field(default_factory=Counter)
    runs: list[dict[str, Any]] = field(default_factory=list)
    marker: str = field(default_factory=lambda: uuid.uuid4().hex)
    proxy: FaultProxy = field(init=False)
    direct: BlobServiceClient = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.fleet = [Pair(f"dev-{i:03d}", sensor) for i in range(self.pairs // 2) for sensor in ("temp", "vib")]
        self.azurite = Azurite(self.workdir / "azurite", free_port())

    # -- set-up ------------------------------------------------------------------------------------
    def start(self) -> None:
        self.azurite.start()
        self.proxy = FaultProxy(self.azurite.port).start()
        self.direct = StorageSettings(connection_string=SecretStr(connection_string(self.azurite.port))).client()
        ensure_containers(self.direct)
        models = self.direct.get_container_client(str(Container.MODELS))
        history = self.rows(START - timedelta(hours=6), windows=72, seed=self.seed + 1)
        for pair in self.fleet:
            own = history[(history.device_id == pair.device_id) & (history.sensor == pair.sensor)]
            estimator = default_estimator().fit(own[list(DEFAULT_MODEL_FEATURES)].to_numpy())
            publish_model(models, pair, estimator, DEFAULT_MODEL_FEATURES)

    def stop(self) -> None:
        self.proxy.stop()
        self.azurite.stop()

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "AZURE_STORAGE_CONNECTION_STRING": self.proxy.connection_string(connection_string(self.azurite.port)),
                "AZURE_STORAGE_RETRY_TOTAL": "2",
                "AZURE_STORAGE_RETRY_BACKOFF_SECONDS": "0.05",
                "AZURE_STORAGE_TIMEOUT_SECONDS": "3",
                "BATCHSCORING_SOAK": self.marker,  # finds every process of every run, workers included
            }
        )
        env.pop("AZURE_STORAGE_ACCOUNT_URL", None)
        return env

    # -- data --------------------------------------------------------------------------------------
    def rows(self, hour: datetime, windows: int = WINDOWS, seed: int = 0) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        ends = [pd.Timestamp(hour + timedelta(minutes=5 * w)) for w in range(windows)]
        n = len(self.fleet) * windows
        avg = 20 + rng.normal(0, 0.3, n)
        return pd.DataFrame(
            {
                "device_id": pd.array([p.device_id for p in self.fleet for _ in ends], dtype="string"),
                "sensor": pd.array([p.sensor for p in self.fleet for _ in ends], dtype="string"),
                "window_end": [e for _ in self.fleet for e in ends],
                "avg": avg,
                "min": avg - 1 - rng.random(n),
                "max": avg + 1 + rng.random(n),
                "stdev": 0.5 + 0.1 * rng.random(n),
                "count": np.full(n, 30, dtype="int64"),
            }
        )

    def upload(self, name: str, data: bytes) -> None:
        self.direct.get_container_client(str(Container.AGGREGATES)).upload_blob(name, data, overwrite=True)

    def publish(self, rows: pd.DataFrame, tag: str, *, hour_folder: datetime | None = None) -> None:
        """Rows into their partitions (or, misfiled, into ``hour_folder``'s same shard), counted as truth."""
        for partition, part in split_by_partition(rows, SHARDS).items():
            folder = partition if hour_folder is None else f"{hour_folder:%Y/%m/%d/%H}/{partition.rsplit('/', 1)[1]}"
            self.upload(f"{folder}/{tag}.parquet", to_parquet(part))
        for row in rows.itertuples():
            hour = row.window_end.floor("h").to_pydatetime()
            self.truth.setdefault(hour, set()).add(window_key(row.device_id, row.sensor, row.window_end))

    def ingest(self, hour: datetime, index: int) -> None:
        """The stream job's output for ``hour``; some pairs' rows are withheld (a device offline) or the
        last window misfiled, to arrive later."""
        frame = self.rows(hour, seed=self.seed * 1000 + index)
        if self.roll("late_data"):
            offline = set(self.rng.sample([p.device_id for p in self.fleet], k=2))
            late = frame["device_id"].isin(offline)
            self.withheld.append((hour, frame[late]))
            frame = frame[~late]
        misfiled = pd.DataFrame()
        if self.roll("misfiled_window"):
            last = frame["window_end"] == frame["window_end"].max()
            misfiled, frame = frame[last], frame[~last]
        self.publish(frame, "asa-output")
        if not misfiled.empty:  # written into the next hour's folders, as a processing-time writer would
            self.publish(misfiled, f"misfiled-{index}", hour_folder=hour + timedelta(hours=1))
        if self.roll("replayed_blob"):
            name = next(iter(split_by_partition(frame, SHARDS)))
            blob = self.direct.get_container_client(str(Container.AGGREGATES)).download_blob(
                f"{name}/asa-output.parquet"
            )
            self.upload(f"{name}/replay-{index}.parquet", blob.readall())
        if self.roll("corrupt_blob"):
            name = next(iter(split_by_partition(frame, SHARDS)))
            self.upload(f"{name}/corrupt-{index}.parquet", b"PAR1 this is not parquet")
            self.corrupt_hours.add(hour)

    def deliver_late(self, now_hour: datetime, *, everything: bool = False) -> None:
        """Withheld rows arrive one to three hours late (inside the reconcile window), as their own blob."""
        keep = []
        for n, (hour, rows) in enumerate(self.withheld):
            if everything or now_hour - hour >= timedelta(hours=self.rng.randint(1, 3)):
                self.publish(rows, f"late-{now_hour:%d%H}-{n}")
            else:
                keep.append((hour, rows))
        self.withheld = keep

    def roll(self, kind: str) -> bool:
        hit = self.rng.random() < OTHER_FAULTS.get(kind, 0.0)
        if hit:
            self.faults[kind] += 1
        return hit

    # -- triggers ----------------------------------------------------------------------------------
    def command(self, now: datetime, hours: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "workloads.submitter.cli",
            "--now",
            now.isoformat(),
            "reconcile",
            "--stack",
            "soak",
            "--hours",
            str(hours),
            "--shard-count",
            str(SHARDS),
            "--workers",
            "1",
        ]

    def trigger(self, now: datetime, *, copies: int = 1, kill_after: float | None = None, hours: int = RECONCILE_HOURS):
        started = time.monotonic()
        procs = [
            subprocess.Popen(
                self.command(now, hours), env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(copies)
        ]
        if kill_after is not None:
            time.sleep(kill_after)
            for proc in procs:
                proc.send_signal(signal.SIGKILL)
        for proc in procs:
            try:
                out, errors = proc.communicate(timeout=RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, errors = proc.communicate()
                self.faults["hung_run"] += 1
            actions = Counter(r["action"] for r in _results(out))
            self.runs.append(
                {
                    "now": now.isoformat(),
                    "rc": proc.returncode,
                    "seconds": round(time.monotonic() - started, 2),
                    "actions": dict(actions),
                    "error": next((line for line in errors.splitlines() if line.startswith("error:")), None),
                }
            )

    def outage(self, seconds: float) -> None:
        self.azurite.stop()
        time.sleep(seconds)
        self.azurite.start()

    def hour_fault_rules(self) -> None:
        """503 bursts and dropped connections, armed for the next trigger."""
        if self.roll("burst_503"):
            method, pattern = self.rng.choice(TARGETS)
            self.proxy.add(Rule(pattern, method=method, times=self.rng.randint(1, 6)))
        if self.roll("dropped_connections"):
            method, pattern = self.rng.choice(TARGETS)
            self.proxy.add(Rule(pattern, fault="drop", method=method, times=self.rng.randint(1, 3)))

    def run_hour(self, index: int) -> None:
        hour = START + timedelta(hours=index)
        self.ingest(hour, index)
        self.deliver_late(hour)
        now = hour + timedelta(hours=1, minutes=20)
        self.proxy.clear()
        self.hour_fault_rules()
        if self.roll("azurite_restart"):
            self.outage(0)
        kind = self.rng.choices(
            [*TRIGGER_FAULTS, "normal"], [*TRIGGER_FAULTS.values(), 1 - sum(TRIGGER_FAULTS.values())]
        )[0]
        if kind != "normal":
            self.faults[kind] += 1
        if kind == "missed_trigger":
            return
        if kind == "outage_before":
            self.azurite.stop()
            self.trigger(now)
            self.azurite.start()
            return
        if self.roll("outage_during"):
            import threading

            timer = threading.Timer(self.rng.uniform(1.0, 4.0), self.outage, args=(self.rng.uniform(0.5, 2.0),))
            timer.start()
            self.trigger(now, copies=2 if kind == "double_trigger" else 1)
            timer.join()
            return
        if kind == "killed_trigger":
            self.trigger(now, kill_after=self.rng.uniform(1.0, 6.0))
            return
        self.trigger(now, copies=2 if kind == "double_trigger" else 1)

    def drain(self) -> int:
        """Reconcile every hour without faults until a run changes nothing (at most 4 runs)."""
        self.proxy.clear()
        self.deliver_late(START + timedelta(hours=self.hours), everything=True)
        end = START + timedelta(hours=self.hours + 1, minutes=20)
        for attempt in range(1, 5):
            self.trigger(end, hours=self.hours + 1)
            if set(self.runs[-1]["actions"]) <= {"skip"}:
                return attempt
        return 4

    # -- verdict -----------------------------------------------------------------------------------
    def check(self) -> dict[str, Any]:
        hours = [START + timedelta(hours=i) for i in range(self.hours)]
        expected = scored = duplicates = missing = unexpected = leftovers = 0
        problems: list[str] = []
        for hour in hours:
            stored = read_state(self.direct, hour).state
            truth = self.truth.get(hour, set())
            expected += len(truth)
            if stored is None or stored.current_job_id is None:
                problems.append(f"{hour:%Y-%m-%dT%H}: never scored")
                missing += len(truth)
                continue
            if any(a.status is AttemptStatus.SUBMITTED for a in stored.attempts) or stored.cleanup_pending:
                problems.append(f"{hour:%Y-%m-%dT%H}: a revision left submitted or a switch unfinished")
            frame = read_predictions(self.direct, hour, stored.current_job_id)
            got = [] if frame.empty else list(zip(frame.device_id, frame.sensor, frame.window_end, strict=True))
            seen = {window_key(d, s, w) for d, s, w in got}
            scored += len(seen & truth)
            duplicates += len(got) - len(seen)
            missing += len(truth - seen)
            unexpected += len(seen - truth)
            prefix = hour_prefix(hour)
            blobs = self.direct.get_container_client(str(Container.PREDICTIONS)).list_blobs(name_starts_with=prefix)
            leftovers += sum(not b.name.startswith(f"{prefix}{stored.current_job_id}/") for b in blobs)
            marker = json.loads(
                self.direct.get_container_client(str(Container.LOGS)).download_blob(scored_marker_blob(hour)).readall()
            )
            if marker["job_id"] != stored.current_job_id:
                problems.append(f"{hour:%Y-%m-%dT%H}: scored.json names {marker['job_id']}")
        orphans = _processes_with(self.marker)
        seconds = [r["seconds"] for r in self.runs]
        return {
            "hours": self.hours,
            "seed": self.seed,
            "pairs": len(self.fleet),
            "faults": dict(sorted(self.faults.items())),
            "runs": len(self.runs),
            "runs_by_exit_code": dict(Counter(str(r["rc"]) for r in self.runs)),
            "run_seconds_median": round(statistics.median(seconds), 2) if seconds else None,
            "windows_expected": expected,
            "windows_scored": scored,
            "duplicates": duplicates,
            "missing": missing,
            "unexpected": unexpected,
            "leftover_prediction_blobs": leftovers,
            "orphan_processes": len(orphans),
            "hours_with_corrupt_blobs": len(self.corrupt_hours),
            "problems": problems,
        }


def _results(stdout: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(stdout)
    except ValueError:
        return []
    return data if isinstance(data, list) else []


def _processes_with(marker: str) -> list[int]:
    """Live processes whose environment carries ``marker``: what a run left behind."""
    found = []
    needle = f"BATCHSCORING_SOAK={marker}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if needle in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def run(hours: int, seed: int, pairs: int = 12, workdir: Path | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        soak = Soak(hours=hours, seed=seed, pairs=pairs, workdir=workdir or Path(tmp))
        started = time.monotonic()
        soak.start()
        try:
            for index in range(hours):
                soak.run_hour(index)
            drains = soak.drain()
            time.sleep(1.0)  # a killed run's worker notices its parent is gone within a second
            verdict = soak.check()
        finally:
            soak.stop()
        verdict["drain_runs"] = drains
        verdict["seconds"] = round(time.monotonic() - started, 1)
        return verdict


def ok(verdict: dict[str, Any]) -> bool:
    return (
        verdict["windows_scored"] == verdict["windows_expected"]
        and not verdict["duplicates"]
        and not verdict["missing"]
        and not verdict["unexpected"]
        and not verdict["leftover_prediction_blobs"]
        and not verdict["orphan_processes"]
        and not verdict["problems"]
    )


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, default=48)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--out", type=Path, default=Path("build/soak/soak.json"))
    args = parser.parse_args()
    verdict = run(args.hours, args.seed, args.pairs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(verdict, indent=2))
    width = max(len(k) for k in verdict)
    for key, value in verdict.items():
        print(f"{key:<{width}}  {value}")
    print(f"wrote {args.out}")
    sys.exit(0 if ok(verdict) else 1)


if __name__ == "__main__":
    main()
