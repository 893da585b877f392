"""The whole monthly bill of the stack: every service it declares, priced from quantities a reader can check.

Why this exists: scoring nodes and blob operations, what the planner priced first, are a small part of what the
stack costs at fleet scale; ingestion (Event Hubs, Stream Analytics) runs around the clock, stored aggregates and
predictions grow to their retention, and the diagnostic settings send a log record per blob operation to Log
Analytics. Each line here is quantity x unit price, with the quantity's reasoning in its ``basis`` and the price
from the dated table (``prices.json``, each price with its URL; unconfirmed ones marked as assumptions).

Quantities come from four places, named in each line: the fleet's sizing (``sizing.size_for``: Event Hubs tier and
units, streaming units, the submitter's memory), the Batch plan (``model.plan``: the autoscale formula simulated),
the fleet benchmark (``measured.json``: blob operations per task, submitter CPU per pair) and :class:`Assumptions`
(bytes per log record, per aggregate row, ...: stated defaults, each overridable).

Storage is priced at steady state: a container holds ``retention days x bytes written a day`` once the stack is
older than its retention (aggregates after 30 days, predictions after 365 by default); before that the bill is
smaller and grows linearly. The days it takes are in the storage line's basis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

from workloads.capacity.model import HOURS_PER_MONTH, RUNS_PER_DAY, Measured, Plan, PriceTable, Schedule
from workloads.capacity.sizing import FleetLoad, Sizing, SizingError, memory_gb_for, needs_of, size_for

DAYS_PER_MONTH = HOURS_PER_MONTH / 24
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
GB = 1e9  # Azure bills storage and log ingestion in 10^9 bytes
FREE_RETENTION_DAYS = 31  # Log Analytics keeps Analytics logs this long at no charge


@dataclass(frozen=True)
class Assumptions:
    """What no measurement gives yet: each a stated default, overridable, printed with the bill."""

    aggregate_row_bytes: float = 60.0  # one Parquet row per pair per window, compressed
    prediction_bytes_per_pair: float = 200.0  # one scored row per pair per hour
    model_bytes_per_pair: float = 1500.0  # the fleet benchmark read 1,766 bytes per pair (models + aggregates)
    run_log_bytes_per_task: float = 2000.0  # manifests and job records in the logs container
    stream_writes_per_blob: int = 2  # Put Block + Put Block List for each output blob of the stream job
    blob_log_record_bytes: float = 1000.0  # a StorageBlobLogs row (about 50 columns: URI, caller, latency, ...)
    batch_log_records_per_task: float = 2.0  # ServiceLog: task start and complete events
    batch_log_records_per_run: float = 6.0  # pool resize start/complete, job events; AuditLog: rare
    batch_log_record_bytes: float = 1000.0
    logic_log_records_per_run: float = 8.0  # WorkflowRuntime: run, trigger, each action start and end
    logic_log_record_bytes: float = 1500.0
    metric_row_bytes: float = 250.0  # an AzureMetrics row (AllMetrics: one per metric per minute that has data)
    # Metric series with data each minute over Batch, Stream Analytics, Logic App, Event Hubs and the blob service.
    metrics_per_minute: float = 60.0
    event_hubs_log_gb_month: float = 0.0  # allLogs: operational, auto-scale and VNet events are rare on Standard
    stream_job_log_gb_month: float = 0.0  # Execution / Authoring: only on errors and configuration changes
    telemetry_record_bytes: float = 1000.0  # an App Insights request/dependency row
    telemetry_hours_reconciled: int = 24  # a span per reconciled hour (reconcileHours)
    container_start_seconds: float = 60.0  # ACI pulls the submitter image and starts: billed from the pull
    reconcile_seconds: float = 30.0  # reading the window's state, listing its hours, beyond planning


def assumptions_with(overrides: dict[str, float]) -> Assumptions:
    """The defaults with some replaced (``--assume key=value``): a measured record size, a real payload."""
    known = {f.name: f.type for f in fields(Assumptions)}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ValueError(f"--assume {', '.join(unknown)}: not an assumption; known: {', '.join(sorted(known))}")
    if any(value < 0 for value in overrides.values()):
        raise ValueError(f"--assume takes numbers that are not negative, got {overrides}")
    values: dict[str, Any] = {k: int(v) if known[k] in ("int", int) else v for k, v in overrides.items()}
    return replace(Assumptions(), **values)


@dataclass(frozen=True)
class StackShape:
    """What the bill reads from a stack's config (or the CLI): the keys that change quantities."""

    shard_count: int
    window_minutes: int = 5
    aggregates_retention_days: int = 30
    predictions_retention_days: int = 365
    logs_retention_days: int = 90
    log_retention_days: int = 30  # the Log Analytics workspace's
    storage_redundancy: str = "LRS"
    registry_sku: str = "Standard"
    telemetry: bool = False
    spot_nodes: bool = False
    submitter_vcpus: float = 1.0  # the container group's request (infra/scheduler.py)
    schedule: Schedule = "hourly"


@dataclass(frozen=True)
class Line:
    item: str
    quantity: float
    unit: str
    price_key: str
    cost: float
    basis: str


@dataclass(frozen=True)
class ServiceBill:
    service: str
    lines: tuple[Line, ...]

    @property
    def cost(self) -> float:
        return sum(line.cost for line in self.lines)


@dataclass(frozen=True)
class QuotaNeed:
    """Cores the pool can ask for at maxNodes (as ``python -m infra.quota`` counts them)."""

    vm_size: str
    family: str
    vcpus_per_node: int
    dedicated_cores: int
    spot_cores: int


@dataclass(frozen=True)
class Ingestion:
    """The sizing of one part of the fleet, and how many such parts (namespaces and jobs) carry the whole."""

    sizing: Sizing
    parts: int = 1
    submitter_memory_gb: float = 1.5  # for the whole fleet: one submitter plans every part
    refusal: str = ""  # why one namespace and job do not carry the whole fleet (size_for's message)

    @classmethod
    def of(cls, sizing: Sizing) -> Ingestion:
        return cls(sizing, 1, sizing.submitter_memory_gb)


def ingestion_for(load: FleetLoad, margin: float = 1.5, max_parts: int = 64) -> Ingestion:
    """``size_for`` of the load; a load no single namespace and job carries is split into the fewest equal parts
    that each fit (what ``size_for``'s refusal advises), so the bill still shows what such a fleet costs."""
    refusal = ""
    for parts in range(1, max_parts + 1):
        part = replace(load, pairs=math.ceil(load.pairs / parts))
        try:
            sizing = size_for(part, margin)
        except SizingError as exc:
            refusal = refusal or str(exc)
            continue
        memory = memory_gb_for(needs_of(load, margin).submitter_mib) if parts > 1 else sizing.submitter_memory_gb
        return Ingestion(sizing, parts, memory, refusal)
    raise SizingError(f"{load.pairs:,} pairs do not fit even in {max_parts} namespaces and stream jobs")


@dataclass(frozen=True)
class Bill:
    pairs: int
    sizing: Sizing
    services: tuple[ServiceBill, ...]
    quota: QuotaNeed
    currency: str
    ingestion_parts: int = 1
    ingestion_refusal: str = ""

    @property
    def total(self) -> float:
        return sum(s.cost for s in self.services)

    def service(self, name: str) -> ServiceBill:
        return next(s for s in self.services if s.service == name)


def _line(prices: PriceTable, item: str, quantity: float, unit: str, key: str, basis: str) -> Line:
    return Line(item, quantity, unit, key, quantity * prices.price(key), basis)


def event_hubs(sizing: Sizing, load: FleetLoad, prices: PriceTable, parts: int = 1) -> ServiceBill:
    """Standard: throughput units all month plus ingress events; Premium: processing units (ingress included).

    Priced at the sizing's baseline units: auto-inflate can raise Standard's up to ``max_throughput_units`` and
    never lowers them again by itself, so a burst can leave the bill higher until someone scales back."""
    if sizing.event_hubs_tier == "Premium":
        pus = parts * sizing.processing_units * HOURS_PER_MONTH
        basis = f"{_times(parts)}{sizing.processing_units} PU x {HOURS_PER_MONTH:g} h"
        return ServiceBill(
            "Event Hubs", (_line(prices, "processing units", pus, "PU-h", "event_hubs.premium_pu_hour", basis),)
        )
    tus = parts * sizing.throughput_units * HOURS_PER_MONTH
    events = load.events_per_month / 1e6
    return ServiceBill(
        "Event Hubs",
        (
            _line(
                prices,
                "throughput units",
                tus,
                "TU-h",
                "event_hubs.standard_tu_hour",
                f"{_times(parts)}{sizing.throughput_units} TU x {HOURS_PER_MONTH:g} h "
                f"(auto-inflate up to {sizing.max_throughput_units})",
            ),
            _line(
                prices,
                "ingress events",
                events,
                "million",
                "event_hubs.standard_ingress_per_million",
                f"{load.events_per_second:,.0f} events/s x {SECONDS_PER_MONTH:,.0f} s",
            ),
        ),
    )


def _times(parts: int) -> str:
    return f"{parts} namespaces/jobs x " if parts > 1 else ""


def stream_analytics(sizing: Sizing, prices: PriceTable, parts: int = 1) -> ServiceBill:
    """Streaming units are billed while the job runs: around the clock."""
    hours = parts * sizing.streaming_units * HOURS_PER_MONTH
    basis = f"{_times(parts)}{sizing.streaming_units} SU x {HOURS_PER_MONTH:g} h"
    return ServiceBill(
        "Stream Analytics", (_line(prices, "streaming units", hours, "SU-h", "stream_analytics.su_hour", basis),)
    )


def batch_nodes(plan: Plan, shape: StackShape, prices: PriceTable) -> ServiceBill:
    """The stack's pool: autoscaled dedicated or Spot nodes, hours from the simulated formula (``model.scaled_run``)."""
    option = plan.options[2 if shape.spot_nodes else 0]
    vm = prices.vms[plan.workload.vm_size]
    factor = prices.spot_price_factor if shape.spot_nodes else 1.0
    kind = "Spot " if shape.spot_nodes else ""
    line = Line(
        f"{kind}{plan.workload.vm_size} node-hours",
        option.node_hours_per_month,
        "node-h",
        f"vms.{plan.workload.vm_size}",
        option.compute_per_month,
        f"{option.nodes} nodes at peak, {option.node_hours_per_month / plan.runs_per_month:.2f} node-h per run "
        f"(formula: look-back {plan.workload.lookback_minutes:g} min, evaluation every "
        f"{plan.workload.autoscale_interval_minutes:g} min) x {plan.runs_per_month:g} runs, "
        f"{vm.per_hour * factor:.4f} {prices.currency}/h",
    )
    return ServiceBill("Batch", (line,))


def storage(
    plan: Plan, shape: StackShape, measured: Measured, assume: Assumptions, prices: PriceTable, writers: int = 1
) -> tuple[ServiceBill, float]:
    """Blob operations (scoring's measured ones, the stream job's output writes) and capacity at steady state.

    Returns the bill and the blob operations a month, which the diagnostic settings log one record each."""
    pairs, runs = plan.workload.pairs, plan.runs_per_month
    windows_per_hour = 60 / shape.window_minutes
    # The stream job writes a blob per shard folder each time a window closes (custom partitioning by shard), and
    # per writer: the query is partitioned by the Event Hub's partitions (PARTITION BY PartitionId), and each
    # partition's writer makes its own Parquet file ("every batch will create a new file", infra/stream_job.py).
    stream_blobs_per_month = windows_per_hour * shape.shard_count * HOURS_PER_MONTH * writers
    stream_writes = stream_blobs_per_month * assume.stream_writes_per_blob
    stream_cost = stream_writes * prices.write_per_10k / 10_000
    ops = plan.blob_operations_per_month + stream_writes
    hours_per_day = 24.0
    aggregates_day = pairs * windows_per_hour * assume.aggregate_row_bytes * hours_per_day
    predictions_day = pairs * assume.prediction_bytes_per_pair * hours_per_day
    logs_day = plan.tasks * assume.run_log_bytes_per_task * RUNS_PER_DAY[shape.schedule]
    models = pairs * assume.model_bytes_per_pair
    stored = (
        aggregates_day * shape.aggregates_retention_days
        + predictions_day * shape.predictions_retention_days
        + logs_day * shape.logs_retention_days
        + models
    ) / GB
    longest = max(shape.aggregates_retention_days, shape.predictions_retention_days, shape.logs_retention_days)
    key = f"storage.gb_month.{shape.storage_redundancy}"
    return (
        ServiceBill(
            "Storage",
            (
                Line(
                    "blob operations, scoring",
                    plan.blob_operations_per_month,
                    "ops",
                    "blob_operations_per_10k",
                    plan.blob_cost_per_month,
                    f"measured per task x {plan.tasks} tasks x {runs:g} runs, and model listings",
                ),
                Line(
                    "blob writes, stream output",
                    stream_writes,
                    "ops",
                    "blob_operations_per_10k.write",
                    stream_cost,
                    f"{windows_per_hour:g} windows/h x {shape.shard_count} shards x {writers} partition writers x "
                    f"{assume.stream_writes_per_blob} writes x {HOURS_PER_MONTH:g} h",
                ),
                _line(
                    prices,
                    f"capacity, hot {shape.storage_redundancy}",
                    stored,
                    "GB-month",
                    key,
                    f"steady state (after {longest} days): aggregates {aggregates_day / GB:.3f} GB/day x "
                    f"{shape.aggregates_retention_days} d, predictions {predictions_day / GB:.3f} GB/day x "
                    f"{shape.predictions_retention_days} d, run logs x {shape.logs_retention_days} d, models "
                    f"{models / GB:.2f} GB",
                ),
            ),
        ),
        ops,
    )


def log_analytics(
    plan: Plan, shape: StackShape, blob_ops: float, assume: Assumptions, prices: PriceTable
) -> tuple[ServiceBill, float]:
    """Ingestion of what infra/monitoring.py sends: blob logs (StorageRead/Write/Delete, a record per operation),
    Batch ServiceLog/AuditLog, Logic App WorkflowRuntime, Stream Analytics Execution/Authoring, Event Hubs allLogs
    and every resource's AllMetrics. The free monthly grant is taken off once, here (Application Insights data lands
    in the same workspace and is priced after it)."""
    runs = plan.runs_per_month
    blob_gb = blob_ops * assume.blob_log_record_bytes / GB
    batch_gb = (
        (plan.tasks * assume.batch_log_records_per_task + assume.batch_log_records_per_run)
        * runs
        * assume.batch_log_record_bytes
        / GB
    )
    logic_gb = assume.logic_log_records_per_run * runs * assume.logic_log_record_bytes / GB
    metrics_gb = assume.metrics_per_minute * HOURS_PER_MONTH * 60 * assume.metric_row_bytes / GB
    total = blob_gb + batch_gb + logic_gb + metrics_gb + assume.event_hubs_log_gb_month + assume.stream_job_log_gb_month
    free = prices.price("log_analytics.free_gb_month")
    key = "log_analytics.ingestion_gb"
    lines = [
        _line(prices, "blob logs", blob_gb, "GB", key, f"{blob_ops:,.0f} ops x {assume.blob_log_record_bytes:g} B"),
        _line(prices, "Batch logs", batch_gb, "GB", key, "task start/complete and pool events"),
        _line(prices, "Logic App logs", logic_gb, "GB", key, f"{assume.logic_log_records_per_run:g} records/run"),
        _line(prices, "metrics (AllMetrics)", metrics_gb, "GB", key, f"{assume.metrics_per_minute:g} series/min"),
        _line(
            prices,
            "Event Hubs and stream job logs",
            assume.event_hubs_log_gb_month + assume.stream_job_log_gb_month,
            "GB",
            key,
            "errors and changes only (assumed)",
        ),
        Line("free grant", -min(total, free), "GB", key, -min(total, free) * prices.price(key), f"{free:g} GB/month"),
    ]
    extra_days = max(0, shape.log_retention_days - FREE_RETENTION_DAYS)
    if extra_days:
        kept = total * extra_days / DAYS_PER_MONTH
        lines.append(
            _line(
                prices,
                "retention past 31 days",
                kept,
                "GB-month",
                "log_analytics.retention_gb_month",
                f"{extra_days} d",
            )
        )
    return ServiceBill("Log Analytics", tuple(lines)), total


def application_insights(
    plan: Plan, measured: Measured, shape: StackShape, assume: Assumptions, prices: PriceTable
) -> ServiceBill:
    """With telemetry on: a span per task and per blob call it makes, a span per reconciled hour, per run."""
    if not shape.telemetry:
        return ServiceBill("Application Insights", ())
    per_task = 1 + measured.reads_per_task + measured.writes_per_task
    records = (plan.tasks * per_task + assume.telemetry_hours_reconciled) * plan.runs_per_month
    gb = records * assume.telemetry_record_bytes / GB
    basis = f"{per_task:.1f} spans/task x {plan.tasks} tasks + {assume.telemetry_hours_reconciled} per run"
    return ServiceBill(
        "Application Insights", (_line(prices, "traces", gb, "GB", "log_analytics.ingestion_gb", basis),)
    )


def registry(shape: StackShape, prices: PriceTable) -> ServiceBill:
    key = f"registry.day.{shape.registry_sku}"
    return ServiceBill(
        "Container Registry",
        (_line(prices, f"{shape.registry_sku} registry", DAYS_PER_MONTH, "days", key, "one registry"),),
    )


def logic_app(plan: Plan, prices: PriceTable) -> ServiceBill:
    """Consumption: the Recurrence trigger, the HTTP start and the If condition per run (Terminate only on 204)."""
    executions = 3 * plan.runs_per_month
    basis = f"3 built-in executions x {plan.runs_per_month:g} runs"
    return ServiceBill(
        "Logic App",
        (_line(prices, "trigger and actions", executions, "executions", "logic_apps.builtin_action", basis),),
    )


def container_instances(
    plan: Plan, memory_gb: float, shape: StackShape, assume: Assumptions, prices: PriceTable
) -> ServiceBill:
    """The submitter: one container group run per trigger, billed per second of its vCPU and memory requests.
    ``submitter reconcile`` submits and exits (the next run finalises), so a run lasts the image pull and start,
    the window's reconcile, and planning (measured CPU per pair)."""
    seconds = assume.container_start_seconds + assume.reconcile_seconds + plan.submitter_cpu_seconds_per_run
    runs = plan.runs_per_month
    basis = f"{seconds:.0f} s/run x {runs:g} runs"
    return ServiceBill(
        "Container Instances",
        (
            _line(
                prices,
                "vCPU",
                shape.submitter_vcpus * seconds * runs,
                "vCPU-s",
                "container_instances.vcpu_second",
                f"{shape.submitter_vcpus:g} vCPU x {basis}",
            ),
            _line(
                prices,
                "memory",
                memory_gb * seconds * runs,
                "GB-s",
                "container_instances.gb_second",
                f"{memory_gb:g} GB x {basis}",
            ),
        ),
    )


def quota_need(
    vm_size: str, max_nodes: int, spot: bool, dedicated_fallback_nodes: int, prices: PriceTable
) -> QuotaNeed:
    """infra/quota.py's count (it imports no Pulumi); vCPUs from the size's name there, from the price table here
    when the name does not parse."""
    from infra.quota import vcpus, vm_family

    try:
        per_node, family = vcpus(vm_size), vm_family(vm_size)
    except ValueError:
        per_node, family = prices.vms[vm_size].vcpus, "unknown family"
    dedicated = dedicated_fallback_nodes if spot else max_nodes
    return QuotaNeed(vm_size, family, per_node, dedicated * per_node, (max_nodes if spot else 0) * per_node)


def whole_bill(
    plan: Plan,
    load: FleetLoad,
    ingestion: Ingestion,
    shape: StackShape,
    measured: Measured,
    prices: PriceTable,
    assume: Assumptions | None = None,
    dedicated_fallback_nodes: int = 0,
) -> Bill:
    """Every service the stack declares, a month of it, for the plan's pairs."""
    assume = assume or Assumptions()
    sizing, parts = ingestion.sizing, ingestion.parts
    blobs, blob_ops = storage(plan, shape, measured, assume, prices, writers=sizing.partitions * parts)
    logs, _ = log_analytics(plan, shape, blob_ops, assume, prices)
    services = (
        event_hubs(sizing, load, prices, parts),
        stream_analytics(sizing, prices, parts),
        batch_nodes(plan, shape, prices),
        blobs,
        logs,
        application_insights(plan, measured, shape, assume, prices),
        registry(shape, prices),
        logic_app(plan, prices),
        container_instances(plan, ingestion.submitter_memory_gb, shape, assume, prices),
    )
    quota = quota_need(
        plan.workload.vm_size, plan.workload.max_nodes, shape.spot_nodes, dedicated_fallback_nodes, prices
    )
    return Bill(plan.workload.pairs, sizing, services, quota, prices.currency, parts, ingestion.refusal)
