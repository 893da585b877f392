"""How many nodes an hour of N pairs needs, how long a run takes and what a month costs, three ways.

Inputs are measurements, not guesses where they exist: CPU per pair of the scoring tasks and of the
submitter, the scorer's start and the blob operations per task come from the fleet benchmark's JSON
(``make bench-fleet``; a copy of the latest run ships as ``measured.json``); prices come from a dated table
kept as data (``prices.json``, overridable). The rest are stated assumptions with defaults: node start and
image pull (Batch allocates and boots a node and pulls the scorer image before its first task: minutes), the
autoscale formula's evaluation interval and look-back (the stack's), and a run's tasks submitted, on average, half
an interval before the next evaluation.

The three ways to hold the pool:
- **autoscale to zero** (the stack's formula, ``infra/autoscale.py``): simulated evaluation by evaluation
  (:func:`scaled_run`), because the formula's behaviour, not the task time, decides the bill: it asks for
  ceil(pending / slots) nodes capped at ``max_nodes``, where pending is the larger of the latest
  ``$PendingTasks`` sample and its average over the look-back (10 minutes), so after the last task the average
  keeps nodes for about a look-back more, and a run waits for the next evaluation before any node is asked for;
  every run pays the node start;
- **warm pool**: ``nodes`` kept all month, runs start at once;
- **Spot** (``spotNodes``): autoscale to zero on low-priority nodes, at the table's Spot factor; evictions
  re-queue tasks (Batch retries them), so runs can take longer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
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
class ServicePrice:
    """One price of the whole bill, with where it comes from: a table a reader can check, not a bare number."""

    price: float
    unit: str
    url: str
    as_of: str
    checked: str = ""  # how the price was confirmed
    assumption: str = ""  # set when it was not: the reader should check it first


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
    services: dict[str, ServicePrice] = field(default_factory=dict)

    def price(self, key: str) -> float:
        """A service price by key (``event_hubs.standard_tu_hour``); a missing one is a clear error, never 0."""
        try:
            return self.services[key].price
        except KeyError:
            raise ValueError(
                f"no price {key!r} in the price table {self.source!r}: add it, or --price {key}=..."
            ) from None

    def with_overrides(self, overrides: dict[str, float]) -> PriceTable:
        """The table with some prices replaced (``--price key=value``): a negotiated rate or another region's."""
        services = dict(self.services)
        for key, value in overrides.items():
            if value < 0:
                raise ValueError(f"--price {key}: a price is not negative, got {value}")
            old = services.get(key)
            if old is None:
                raise ValueError(f"--price {key}: not in the price table; known: {', '.join(sorted(services))}")
            services[key] = ServicePrice(
                value, old.unit, "--price override", "now", assumption="given on the command line"
            )
        return replace(self, services=services)

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
                services={
                    key: ServicePrice(
                        price=float(v["price"]),
                        unit=str(v["unit"]),
                        url=str(v["url"]),
                        as_of=str(v["as_of"]),
                        checked=str(v.get("checked", "")),
                        assumption=str(v.get("assumption", "")),
                    )
                    for key, v in raw.get("services", {}).items()
                },
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid price table {path or 'prices.json'}: {type(exc).__name__}: {exc}") from None
        if not 0 < table.spot_price_factor <= 1 or any(v.vcpus < 1 or v.per_hour <= 0 for v in table.vms.values()):
            raise ValueError(f"invalid price table {path or 'prices.json'}: spot factor in (0, 1], positive VM prices")
        if any(s.price < 0 or not s.url or not s.as_of for s in table.services.values()):
            raise ValueError(
                f"invalid price table {path or 'prices.json'}: each service price not negative, with url and as_of"
            )
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
    lookback_minutes: float = 10.0  # the formula's look-back: max(interval, 10) in infra/config.py
    task_slots_per_node: int | None = None  # None: one per vCPU; a stack's taskSlotsPerNode otherwise
    min_nodes: int = 0  # kept all month, outside the scaled hours

    def __post_init__(self) -> None:
        if self.pairs < 1 or self.pairs_per_task < 1 or self.max_nodes < 1:
            raise ValueError("pairs, pairs per task and max nodes must be at least 1")
        if self.lookback_minutes < 1 or (self.task_slots_per_node is not None and self.task_slots_per_node < 1):
            raise ValueError("look-back at least 1 minute, task slots per node at least 1")
        if not 0 <= self.min_nodes <= self.max_nodes:
            raise ValueError(f"need 0 <= min nodes ({self.min_nodes}) <= max nodes ({self.max_nodes})")
        if self.deadline_minutes <= 0 or self.node_start_minutes < 0 or self.autoscale_interval_minutes < 0:
            raise ValueError("deadline must be positive; node start and autoscale interval not negative")


SAMPLE_MINUTES = 0.5  # Batch samples $PendingTasks every 30 s (the service's metric sampling)


@dataclass(frozen=True)
class ScaledRun:
    """One run of the autoscaled pool, from the submission of its tasks (minute 0)."""

    nodes: int  # the most nodes the formula asked for
    node_minutes: float  # billed, from each node's allocation to its release, beyond min_nodes
    last_task_end: float  # minutes after submission
    release: float  # minutes after submission when the pool is back at min_nodes


def _pending(ends: list[float], tasks: int, t: float) -> int:
    """$PendingTasks at t: tasks submitted at 0 and not finished (active + running)."""
    return 0 if t < 0 else tasks - sum(1 for end in ends if end <= t)


def scaled_run(
    tasks: int,
    slots: int,
    task_minutes: float,
    max_nodes: int,
    interval_minutes: float,
    lookback_minutes: float,
    node_start_minutes: float,
    first_evaluation_minutes: float | None = None,
    min_nodes: int = 0,
) -> ScaledRun:
    """Simulate the formula of ``infra/autoscale.py`` over one run, evaluation by evaluation.

    Why a simulation: the formula asks for ceil(max(latest, look-back average of $PendingTasks) / slots) nodes
    (capped at max_nodes), so the node count depends on how long tasks waited, and nodes stay after the last task
    until the look-back average is 0 (``taskcompletion``: a node leaves once its tasks are done). Tasks are all
    submitted at minute 0; the first evaluation comes ``first_evaluation_minutes`` later (default: half an
    interval, the mean wait); a node asked for at an evaluation is billed from then and runs tasks
    ``node_start_minutes`` later; min_nodes nodes are there from the start and not counted (billed all month).
    Samples before minute 0 are 0 (an idle pool); enough samples exist (an old pool), so the average is used.
    """
    first = interval_minutes / 2 if first_evaluation_minutes is None else first_evaluation_minutes
    samples = max(1, round(lookback_minutes / SAMPLE_MINUTES))
    # Each node: (allocated at, ready at, slot free times, released at or None); warm nodes first.
    nodes: list[tuple[float, float, list[float], list[float | None]]] = [
        (0.0, 0.0, [0.0] * slots, [None]) for _ in range(min_nodes)
    ]
    ends: list[float] = []
    queued, peak, now = tasks, min_nodes, first
    for _ in range(100_000):
        # Tasks start on free slots of ready, not released nodes, up to this evaluation.
        while queued:
            free = [
                (max(ready, slot), n, i)
                for n, (_, ready, slot_free, released) in enumerate(nodes)
                if released[0] is None
                for i, slot in enumerate(slot_free)
            ]
            if not free:
                break
            start, n, i = min(free)
            if start > now:
                break
            nodes[n][2][i] = start + task_minutes
            ends.append(start + task_minutes)
            queued -= 1
        window = [_pending(ends, tasks, now - k * SAMPLE_MINUTES) for k in range(samples)]
        # Tasks not started yet but certain to end later count as pending too: _pending counts unfinished ones.
        wanted = max(window[0], sum(window) / samples)
        target = max(min_nodes, min(max_nodes, math.ceil(wanted / slots - 1e-9) if wanted > 0 else 0))
        live = [n for n, node in enumerate(nodes) if node[3][0] is None]
        if target > len(live):
            nodes += [(now, now + node_start_minutes, [0.0] * slots, [None]) for _ in range(target - len(live))]
        elif target < len(live):
            # Idle nodes go first; a busy one leaves when its tasks end (taskcompletion). Warm nodes stay.
            candidates = sorted(live[min_nodes:], key=lambda n: max(nodes[n][2]), reverse=False)
            for n in candidates[: len(live) - target]:
                nodes[n][3][0] = max(now, max(nodes[n][2]) if nodes[n][1] <= now else now)
        peak = max(peak, target)
        if not queued and len(ends) == tasks and max(ends, default=0.0) <= now and target == min_nodes:
            break
        now += interval_minutes
    else:  # pragma: no cover - a run that never ends is a bug in the simulation, not a plan
        raise RuntimeError("autoscale simulation did not settle")
    released_at = [node[3][0] for node in nodes[min_nodes:]]
    node_minutes = sum(
        (r if r is not None else now) - node[0] for r, node in zip(released_at, nodes[min_nodes:], strict=True)
    )
    return ScaledRun(peak, node_minutes, max(ends, default=0.0), now)


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
    slots = workload.task_slots_per_node or vm.vcpus  # default: one task per core, one BLAS thread each
    compute_budget = max(1.0, 60 * (workload.deadline_minutes - workload.node_start_minutes))
    waves_allowed = max(1, math.floor(compute_budget / task_seconds))
    nodes = min(workload.max_nodes, math.ceil(tasks / (slots * waves_allowed)), math.ceil(tasks / slots))
    compute_minutes = math.ceil(tasks / (nodes * slots)) * task_seconds / 60
    runs = RUNS_PER_DAY[workload.schedule] * HOURS_PER_MONTH / 24
    # Scale to zero: what the stack's formula does (see scaled_run), not just the tasks' time.
    scaled = scaled_run(
        tasks,
        slots,
        task_seconds / 60,
        workload.max_nodes,
        workload.autoscale_interval_minutes,
        workload.lookback_minutes,
        workload.node_start_minutes,
        min_nodes=workload.min_nodes,
    )
    run_gap_minutes = 24 * 60 / RUNS_PER_DAY[workload.schedule]
    # Runs closer than a scaled pool's life: the pool never empties, it costs at most its nodes all the time.
    scaled_hours = min(scaled.node_minutes, scaled.nodes * run_gap_minutes) * runs / 60
    scaled_hours += workload.min_nodes * HOURS_PER_MONTH
    # The submitter plans before the first task and finalises after the last: the run waits for both.
    submitter_minutes = workload.pairs * measured.submitter_cpu_ms_per_pair / 60_000
    scaled_minutes = submitter_minutes + scaled.last_task_end
    warm_run = submitter_minutes + compute_minutes
    options = (
        Option("autoscale to zero", scaled.nodes, scaled_minutes, scaled_hours, scaled_hours * vm.per_hour),
        Option("warm pool", nodes, warm_run, nodes * HOURS_PER_MONTH, nodes * HOURS_PER_MONTH * vm.per_hour),
        Option(
            "Spot, autoscale to zero",
            scaled.nodes,
            scaled_minutes,
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
        fits_deadline=scaled_minutes <= workload.deadline_minutes,
    )
