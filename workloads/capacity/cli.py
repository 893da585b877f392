"""``batchscoring-plan``: nodes, run time and the whole monthly bill of scoring N pairs.

First the Batch pool three ways (autoscale to zero as the stack's formula behaves, warm, Spot); then, per fleet
size, every service the stack declares priced for a month (``workloads/capacity/bill.py``), its total, and the
cores the pool needs at maxNodes. ``--stack Pulumi.<stack>.yaml`` takes the pool, shards, retention, redundancy,
registry, telemetry and the fleet's load from a stack's config; options given on the command line still win for
``--pairs``.

Exit codes: 0 planned; 2 bad options, an unreadable price table, benchmark report or stack file.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from workloads.capacity.bill import Bill, Ingestion, StackShape, assumptions_with, ingestion_for, whole_bill
from workloads.capacity.model import RUNS_PER_DAY, Measured, Plan, PriceTable, Schedule, Workload, plan
from workloads.capacity.sizing import DEFAULT_MARGIN, FleetLoad
from workloads.common.cli_errors import bad_input
from workloads.common.console import console

app = typer.Typer(add_completion=False, help=__doc__)


def _table(plans: list[Plan], currency: str) -> Table:
    table = Table(title="Batch pool per month, three ways")
    for column in ("pairs", "tasks", "nodes", "pool", "run min", "node-hours", "compute", "blob ops", "blobs", "total"):
        table.add_column(column, justify="left" if column == "pool" else "right")
    for p in plans:
        for option in p.options:
            table.add_row(
                f"{p.workload.pairs:,}",
                f"{p.tasks:,}",
                str(option.nodes),
                option.name + ("" if p.fits_deadline or option.name == "warm pool" else " (late)"),
                f"{option.run_minutes:.1f}",
                f"{option.node_hours_per_month:,.0f}",
                f"{option.compute_per_month:,.2f}",
                f"{p.blob_operations_per_month:,.0f}",
                f"{p.blob_cost_per_month:,.2f}",
                f"{option.compute_per_month + p.blob_cost_per_month:,.2f} {currency}",
            )
    return table


def _money(amount: float) -> str:
    """Two decimals, never "-0.00" (a free grant that cancels its lines leaves a float's dust)."""
    return f"{round(amount, 2) + 0.0:,.2f}"


def _bill_table(bill: Bill) -> Table:
    """One fleet size: each service's lines, its subtotal, and the total."""
    parts = f", ingestion split in {bill.ingestion_parts}" if bill.ingestion_parts > 1 else ""
    table = Table(title=f"The whole bill for {bill.pairs:,} pairs, per month{parts}")
    for column in ("service", "item", "quantity", "unit", "cost", "basis"):
        table.add_column(column, justify="right" if column in ("quantity", "cost") else "left")
    for service in bill.services:
        for line in service.lines:
            table.add_row(service.service, line.item, f"{line.quantity:,.2f}", line.unit, _money(line.cost), line.basis)
        table.add_row(
            service.service, "[b]subtotal[/b]", "", "", f"[b]{_money(service.cost)}[/b]", "", end_section=True
        )
    table.add_row("[b]total[/b]", "", "", "", f"[b]{_money(bill.total)} {bill.currency}[/b]", "")
    return table


def _summary(bills: list[Bill]) -> Table:
    """Services by fleet size: the table the README quotes."""
    table = Table(title="The whole bill per month")
    table.add_column("service")
    for bill in bills:
        table.add_column(f"{bill.pairs:,} pairs", justify="right")
    for i, service in enumerate(bills[0].services):
        table.add_row(service.service, *(_money(b.services[i].cost) for b in bills))
    table.add_row("[b]total[/b]", *(f"[b]{_money(b.total)} {b.currency}[/b]" for b in bills))
    return table


def _overrides(values: list[str], option: str) -> dict[str, float]:
    overrides: dict[str, float] = {}
    for value in values:
        key, sep, number = value.partition("=")
        try:
            overrides[key.strip()] = float(number)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise ValueError(f"{option} takes KEY=NUMBER, got {value!r}")
    return overrides


@dataclass(frozen=True)
class _Stack:
    """What a stack file sets for the planner (the pool, the stored data, the fleet), read without Pulumi."""

    pairs: int | None
    load: FleetLoad | None
    ingestion: Ingestion | None
    vm_size: str
    max_nodes: int
    min_nodes: int
    slots: int
    interval: float
    lookback: float
    spot: bool
    fallback: int
    shape: StackShape


def _schedule(frequency: str, interval: int) -> Schedule:
    minutes = {"Minute": 1, "Hour": 60, "Day": 1440}[frequency] * interval
    named: dict[int, Schedule] = {60: "hourly", 30: "every-30-minutes", 15: "every-15-minutes", 1440: "daily"}
    if minutes not in named:
        raise ValueError(
            f"the planner knows schedules of {', '.join(RUNS_PER_DAY)}; the stack runs every {minutes} min"
        )
    return named[minutes]


def _read_stack(path: Path) -> _Stack:
    from infra.stack_file import read_stack_config

    config = read_stack_config(path)
    # The fleet's load and its sizing (with the stack's overrides), where this config declares them.
    load: Any = getattr(config, "fleet_load", None)
    sizing: Any = getattr(config, "sizing", None)
    shape = StackShape(
        shard_count=config.shard_count,
        window_minutes=config.window_minutes,
        aggregates_retention_days=config.aggregates_retention_days,
        predictions_retention_days=config.predictions_retention_days,
        logs_retention_days=config.logs_retention_days,
        log_retention_days=config.log_retention_days,
        storage_redundancy=config.storage_redundancy,
        registry_sku=config.registry_sku,
        telemetry=config.telemetry,
        spot_nodes=config.spot_nodes,
        schedule=_schedule(config.schedule_frequency, config.schedule_interval),
    )
    return _Stack(
        pairs=load.pairs if load is not None else None,
        load=load,
        ingestion=Ingestion.of(sizing) if sizing is not None else None,
        vm_size=config.vm_size,
        max_nodes=config.max_nodes,
        min_nodes=config.min_nodes,
        slots=config.task_slots_per_node,
        interval=config.autoscale_interval_minutes,
        lookback=config.autoscale.lookback_minutes,
        spot=config.spot_nodes,
        fallback=config.dedicated_fallback_nodes,
        shape=shape,
    )


@app.command()
def main(
    pairs: Annotated[
        list[int] | None, typer.Option(min=1, help="Device/sensor pairs per run (repeatable; default: the stack's).")
    ] = None,
    vm_size: Annotated[str, typer.Option(help="Batch node size, as in the price table.")] = "Standard_D8s_v5",
    schedule: Annotated[str, typer.Option(help=f"One of {', '.join(RUNS_PER_DAY)}.")] = "hourly",
    pairs_per_task: Annotated[
        int, typer.Option(min=1, help="Pairs per task: pairs / shardCount (a task per shard folder).")
    ] = 2500,
    max_nodes: Annotated[int, typer.Option(min=1, help="The pool's maxNodes.")] = 100,
    deadline_minutes: Annotated[float, typer.Option(min=1, help="A run should end this long after it starts.")] = 20,
    node_start_minutes: Annotated[float, typer.Option(min=0, help="Node allocation, boot and image pull.")] = 4,
    stack: Annotated[
        Path | None, typer.Option(help="A Pulumi.<stack>.yaml: pool, shards, retention, SKUs, fleet from its config.")
    ] = None,
    sensors_per_device: Annotated[int, typer.Option(min=1, help="Sensors per device (ingestion sizing).")] = 1,
    reading_interval_seconds: Annotated[float, typer.Option(min=0.1, help="Seconds between readings.")] = 10,
    readings_per_message: Annotated[int, typer.Option(min=1, help="1, or sensors per device.")] = 1,
    margin: Annotated[float, typer.Option(min=1, help="Headroom of the ingestion sizing.")] = DEFAULT_MARGIN,
    telemetry: Annotated[bool, typer.Option(help="Price Application Insights (the stack's telemetry key).")] = False,
    storage_redundancy: Annotated[str, typer.Option(help="LRS, ZRS, GRS, GZRS, RAGRS or RAGZRS.")] = "LRS",
    registry_sku: Annotated[str, typer.Option(help="Basic, Standard or Premium.")] = "Standard",
    spot: Annotated[bool, typer.Option(help="The stack's pool is Spot (spotNodes).")] = False,
    prices: Annotated[Path | None, typer.Option(help="Price table JSON (default: the shipped, dated one).")] = None,
    price: Annotated[
        list[str] | None,
        typer.Option(help="Override one price: KEY=NUMBER (repeatable), e.g. stream_analytics.su_hour=0.12."),
    ] = None,
    assume: Annotated[
        list[str] | None,
        typer.Option(help="Override one stated assumption: KEY=NUMBER (repeatable), e.g. blob_log_record_bytes=700."),
    ] = None,
    bench: Annotated[
        Path | None, typer.Option(help="A `make bench-fleet` report to take per-pair costs from (default: shipped).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Plan every ``--pairs`` value: the pool three ways, then the whole bill of the stack and its core quota."""
    with bad_input():
        if schedule not in RUNS_PER_DAY:
            raise ValueError(f"--schedule must be one of {', '.join(RUNS_PER_DAY)}, got {schedule!r}")
        table = PriceTable.load(prices).with_overrides(_overrides(price or [], "--price"))
        measured = Measured.load(bench)
        assumptions = assumptions_with(_overrides(assume or [], "--assume"))
        from_stack = _read_stack(stack) if stack else None
        sizes = pairs or ([from_stack.pairs] if from_stack and from_stack.pairs else [])
        if not sizes:
            raise ValueError("give --pairs, or a --stack whose config declares its fleet (pairs or devices)")
        plans, bills = [], []
        for n in sizes:
            if from_stack:
                s = from_stack
                workload = Workload(
                    n,
                    s.vm_size,
                    s.shape.schedule,
                    math.ceil(n / s.shape.shard_count),
                    s.max_nodes,
                    deadline_minutes,
                    node_start_minutes,
                    s.interval,
                    s.lookback,
                    s.slots,
                    s.min_nodes,
                )
                shape, fallback = s.shape, s.fallback
                load = s.load if s.load is not None and s.load.pairs == n else FleetLoad(n)
                ingestion = s.ingestion if s.ingestion and load is s.load else ingestion_for(load, margin)
            else:
                workload = Workload(
                    n,
                    vm_size,
                    schedule,  # type: ignore[arg-type]
                    pairs_per_task,
                    max_nodes,
                    deadline_minutes,
                    node_start_minutes,
                )
                shape = StackShape(
                    shard_count=math.ceil(n / pairs_per_task),
                    storage_redundancy=storage_redundancy,
                    registry_sku=registry_sku,
                    telemetry=telemetry,
                    spot_nodes=spot,
                    schedule=workload.schedule,
                )
                fallback = 0
                load = FleetLoad(n, sensors_per_device, reading_interval_seconds, readings_per_message)
                ingestion = ingestion_for(load, margin)
            planned = plan(workload, table, measured)
            plans.append(planned)
            bills.append(whole_bill(planned, load, ingestion, shape, measured, table, assumptions, fallback))
    if as_json:
        typer.echo(
            json.dumps(
                [{"plan": asdict(p), "bill": _bill_json(b)} for p, b in zip(plans, bills, strict=True)], indent=2
            )
        )
        return
    out = console()
    out.print(_table(plans, table.currency))
    for bill in bills:
        out.print(_bill_table(bill))
        if bill.ingestion_refusal:
            out.print(
                f"one namespace and job refused: {bill.ingestion_refusal}; priced as {bill.ingestion_parts} parts"
            )
        for note in bill.sizing.notes:
            out.print(f"  sizing{' (each part)' if bill.ingestion_parts > 1 else ''}: {note}", style="dim")
    out.print(_summary(bills))
    q = bills[0].quota
    out.print(
        f"core quota at maxNodes: {q.dedicated_cores} dedicated ({q.family}) and {q.spot_cores} Spot "
        f"({q.vcpus_per_node} vCPUs per {q.vm_size}); `python -m infra.quota Pulumi.<stack>.yaml` for a stack"
    )
    out.print(f"prices: {table.region}, {table.currency}, as of {table.as_of}: {table.source}")
    assumed = sorted(k for k, v in table.services.items() if v.assumption)
    if assumed:
        out.print(f"prices not confirmed (assumptions, check them): {', '.join(assumed)}")
    out.print(f"per-pair costs: {measured.source}")
    out.print(f"assumptions (--assume KEY=NUMBER): {', '.join(f'{k}={v:g}' for k, v in asdict(assumptions).items())}")
    late = [f"{p.workload.pairs:,}" for p in plans if not p.fits_deadline]
    if late:
        out.print(f"(late): {', '.join(late)} pairs do not finish within {deadline_minutes:g} min on their nodes")


def _bill_json(bill: Bill) -> dict[str, Any]:
    return {
        "pairs": bill.pairs,
        "total": bill.total,
        "currency": bill.currency,
        "ingestion_parts": bill.ingestion_parts,
        "ingestion_refusal": bill.ingestion_refusal,
        "sizing": asdict(bill.sizing),
        "quota": asdict(bill.quota),
        "services": [
            {"service": s.service, "cost": s.cost, "lines": [asdict(x) for x in s.lines]} for s in bill.services
        ],
    }


if __name__ == "__main__":
    app()
