"""How many nodes an hour of N pairs needs, how long a run takes and what a month costs, three ways.

Inputs are measurements, not guesses where they exist: CPU per pair of the scoring tasks and of the
submitter, the scorer's start and the blob operations per task come from the fleet benchmark's JSON
(``make bench-fleet``; a copy of the latest run ships as ``measured.json``); prices come from a dated table
kept as data (``prices.json``, overridable). The rest are stated assumptions with defaults: node start and
image pull (Batch allocates and boots a node and pulls the scorer image before its first task: minutes) and
the autoscale formula's evaluation interval, after which idle nodes are released.

The three ways to hold the pool:
- **autoscale to zero** (the default formula): nodes are billed from allocation to the evaluation after
  their last task, every run pays the node start;
- **warm pool**: ``nodes`` kept all month, runs start at once;
- **Spot** (``spotNodes``): autoscale to zero on low-priority nodes, at the table's Spot factor; evictions
  re-queue tasks (Batch retries them), so runs can take longer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

HOURS_PER_MONTH = 730.0  # Azure's billing month
LIST_PAGE = 5000  # models per List Blobs page (the planner lists every model once per run)

Schedule = Literal["hourly", "every-30-minutes", "every-15-minutes", "daily"]
RUNS_PER_DAY: dict[str, float] = {"hourly": 24, "every-30-minutes": 48, "every-15-minutes": 96, "daily": 1}


@dataclass(frozen=True)
class VmPrice:
    vcpus: int
    per_hour: float


@dataclass(frozen=True)
class PriceTable:
    source: str
    as_of: str
    currency: str
    region: str
    spot_price_factor: float
    vms: dict[str, VmPrice]
    write_per_10k: float
    read_per_10k: float
    list_per_10k: float

    @classmethod
    def load(cls, path: Path | None = None) -> PriceTable:
        text = path.read_text() if path else resources.files(__package__).joinpath("prices.json").read_text()
        raw = json.loads(text)
        try:
            ops = raw["blob_operations_per_10k"]
            table = cls(
                source=str(raw["source"]),
                as_of=str(raw["as_of"]),
                currency=str(raw["currency"]),
                region=str(raw["region"]),
                spot_price_factor=float(raw["spot_price_factor"]),
                vms={size: VmPrice(int(v["vcpus"]), float(v["per_hour"])) for size, v in raw["vms"].items()},
                write_per_10k=float(ops["write"]),
                read_per_10k=float(ops["read"]),
                list_per_10k=float(ops["list"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid price table {path or 'prices.json'}: {type(exc).__name__}: {exc}") from None
        if not 0 < table.spot_price_factor <= 1 or any(v.vcpus < 1 or v.per_hour <= 0 for v in table.vms.values()):
            raise ValueError(f"invalid price table {path or 'prices.json'}: spot factor in (0, 1], positive VM prices")
        return table


@dataclass(frozen=True)
class Measured:
    """Per-pair and per-task costs from one benchmark run."""

    source: str
    task_cpu_ms_per_pair: float
    submitter_cpu_ms_per_pair: float
    scorer_start_s: float
    reads_per_task: float
    writes_per_task: float

    @classmethod
    def load(cls, path: Path | None = None) -> Measured:
        """The shipped ``measured.json``, or a ``make bench-fleet`` report (its largest scorer run)."""
        if path is None:
            return cls._from_summary(json.loads(resources.files(__package__).joinpath("measured.json").read_text()))
        report = json.loads(path.read_text())
        runs = [
            size["measurements"]["scorer"]
            for size in report.get("sizes", [])
            if size["measurements"].get("scorer", {}).get("status") == "ok"
        ]
        if not runs:
            raise ValueError(f"{path}: no scorer measurement in this benchmark report (run make bench-fleet)")
        run = max(runs, key=lambda r: r["pairs"])
        return cls._from_summary(
            {
                "source": f"{path}, {run['pairs']:,} pairs, commit {report.get('machine', {}).get('git_commit')}",
                "pairs": run["pairs"],
                "tasks": run["tasks"],
                "task_cpu_ms_per_pair": 1000 * run["workers_cpu_s"] / run["pairs"],
                "submitter_cpu_ms_per_pair": 1000 * run["driver_cpu_s"] / run["pairs"],
                "scorer_start_s": run.get("scorer_start_s", 1.0),
                "blob_ops": run["blob_ops"],
            }
        )

    @classmethod
    def _from_summary(cls, raw: dict[str, Any]) -> Measured:
        tasks, ops = max(1, int(raw["tasks"])), raw["blob_ops"]
        return cls(
            source=str(raw["source"]),
            task_cpu_ms_per_pair=float(raw["task_cpu_ms_per_pair"]),
            submitter_cpu_ms_per_pair=float(raw["submitter_cpu_ms_per_pair"]),
            scorer_start_s=float(raw["scorer_start_s"]),
            reads_per_task=ops.get("GET", 0) / tasks,
            writes_per_task=ops.get("PUT", 0) / tasks,
        )


@dataclass(frozen=True)
class Workload:
    pairs: int
    vm_size: str
    schedule: Schedule = "hourly"
    pairs_per_task: int = 2500  # pairs / shardCount: a task per shard folder
    max_nodes: int = 100
    deadline_minutes: float = 20.0  # a run should end this long after it starts
    node_start_minutes: float = 4.0  # allocation, boot, image pull (assumption)
    autoscale_interval_minutes: float = 5.0

    def __post_init__(self) -> None:
        if self.pairs < 1 or self.pairs_per_task < 1 or self.max_nodes < 1:
            raise ValueError("pairs, pairs per task and max nodes must be at least 1")
        if self.deadline_minutes <= 0 or self.node_start_minutes < 0 or self.autoscale_interval_minutes < 0:
            raise ValueError("deadline must be positive; node start and autoscale interval not negative")


@dataclass(frozen=True)
class Option:
    name: str
    nodes: int
    run_minutes: float  # from the run's start to its last task's end
    node_hours_per_month: float
    compute_per_month: float


@dataclass(frozen=True)
class Plan:
    workload: Workload
    tasks: int
    task_seconds: float
    slots_per_node: int
    runs_per_month: float
    blob_operations_per_month: float
    blob_cost_per_month: float
    submitter_cpu_seconds_per_run: float
    options: tuple[Option, ...]
    fits_deadline: bool

    @property
    def cheapest(self) -> Option:
        return min(self.options, key=lambda o: o.compute_per_month)


def plan(workload: Workload, prices: PriceTable, measured: Measured) -> Plan:
    """Nodes that finish a run within the deadline (capped by ``max_nodes``) and what each pool costs."""
    vm = prices.vms.get(workload.vm_size)
    if vm is None:
        raise ValueError(f"no price for {workload.vm_size}: the table has {sorted(prices.vms)}; add it with --prices")
    tasks = math.ceil(workload.pairs / workload.pairs_per_task)
    per_task = min(workload.pairs, workload.pairs_per_task)
    task_seconds = measured.scorer_start_s + per_task * measured.task_cpu_ms_per_pair / 1000
    slots = vm.vcpus  # one task per core (taskSlotsPerNode), one BLAS thread each
    compute_budget = max(1.0, 60 * (workload.deadline_minutes - workload.node_start_minutes))
    waves_allowed = max(1, math.floor(compute_budget / task_seconds))
    nodes = min(workload.max_nodes, math.ceil(tasks / (slots * waves_allowed)), math.ceil(tasks / slots))
    waves = math.ceil(tasks / (nodes * slots))
    compute_minutes = waves * task_seconds / 60
    runs = RUNS_PER_DAY[workload.schedule] * HOURS_PER_MONTH / 24
    # Scale to zero: billed from allocation to the first evaluation after the last task (half an interval on average).
    billed = workload.node_start_minutes + compute_minutes + workload.autoscale_interval_minutes / 2
    run_gap_minutes = 24 * 60 / RUNS_PER_DAY[workload.schedule]
    scaled_hours = nodes * min(billed, run_gap_minutes) * runs / 60
    # The submitter plans before the first task and finalises after the last: the run waits for both.
    submitter_minutes = workload.pairs * measured.submitter_cpu_ms_per_pair / 60_000
    scaled_run = submitter_minutes + workload.node_start_minutes + compute_minutes
    warm_run = submitter_minutes + compute_minutes
    options = (
        Option("autoscale to zero", nodes, scaled_run, scaled_hours, scaled_hours * vm.per_hour),
        Option("warm pool", nodes, warm_run, nodes * HOURS_PER_MONTH, nodes * HOURS_PER_MONTH * vm.per_hour),
        Option(
            "Spot, autoscale to zero",
            nodes,
            scaled_run,
            scaled_hours,
            scaled_hours * vm.per_hour * prices.spot_price_factor,
        ),
    )
    lists = math.ceil(workload.pairs / LIST_PAGE) + 2  # models, and the hour's aggregates and state
    reads, writes = tasks * measured.reads_per_task, tasks * measured.writes_per_task
    ops_cost = (reads * prices.read_per_10k + writes * prices.write_per_10k + lists * prices.list_per_10k) / 10_000
    return Plan(
        workload=workload,
        tasks=tasks,
        task_seconds=task_seconds,
        slots_per_node=slots,
        runs_per_month=runs,
        blob_operations_per_month=(reads + writes + lists) * runs,
        blob_cost_per_month=ops_cost * runs,
        submitter_cpu_seconds_per_run=60 * submitter_minutes,
        options=options,
        fits_deadline=scaled_run <= workload.deadline_minutes,
    )
