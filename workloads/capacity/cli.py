"""``batchscoring-plan``: nodes, run time and monthly cost of scoring N pairs, three ways to hold the pool.

Exit codes: 0 planned; 2 bad options or an unreadable price table or benchmark report.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from workloads.capacity.model import RUNS_PER_DAY, Measured, Plan, PriceTable, Workload, plan
from workloads.common.cli_errors import bad_input
from workloads.common.console import console

app = typer.Typer(add_completion=False, help=__doc__)


def _table(plans: list[Plan], currency: str) -> Table:
    table = Table(title="Capacity and cost per month")
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


@app.command()
def main(
    pairs: Annotated[list[int], typer.Option(min=1, help="Device/sensor pairs per run (repeatable).")],
    vm_size: Annotated[str, typer.Option(help="Batch node size, as in the price table.")] = "Standard_D8s_v5",
    schedule: Annotated[str, typer.Option(help=f"One of {', '.join(RUNS_PER_DAY)}.")] = "hourly",
    pairs_per_task: Annotated[
        int, typer.Option(min=1, help="Pairs per task: pairs / shardCount (a task per shard folder).")
    ] = 2500,
    max_nodes: Annotated[int, typer.Option(min=1, help="The pool's maxNodes.")] = 100,
    deadline_minutes: Annotated[float, typer.Option(min=1, help="A run should end this long after it starts.")] = 20,
    node_start_minutes: Annotated[float, typer.Option(min=0, help="Node allocation, boot and image pull.")] = 4,
    prices: Annotated[Path | None, typer.Option(help="Price table JSON (default: the shipped, dated one).")] = None,
    bench: Annotated[
        Path | None, typer.Option(help="A `make bench-fleet` report to take per-pair costs from (default: shipped).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Plan every ``--pairs`` value: nodes to finish within the deadline, run time, cost per month."""
    with bad_input():
        if schedule not in RUNS_PER_DAY:
            raise ValueError(f"--schedule must be one of {', '.join(RUNS_PER_DAY)}, got {schedule!r}")
        table, measured = PriceTable.load(prices), Measured.load(bench)
        plans = [
            plan(
                Workload(
                    n,
                    vm_size,
                    schedule,  # type: ignore[arg-type]
                    pairs_per_task,
                    max_nodes,
                    deadline_minutes,
                    node_start_minutes,
                ),
                table,
                measured,
            )
            for n in pairs
        ]
    if as_json:
        typer.echo(json.dumps([asdict(p) for p in plans], indent=2))
        return
    out = console()
    out.print(_table(plans, table.currency))
    out.print(f"prices: {table.region}, {table.currency}, as of {table.as_of}: {table.source}")
    out.print(f"per-pair costs: {measured.source}")
    late = [f"{p.workload.pairs:,}" for p in plans if not p.fits_deadline]
    if late:
        out.print(f"(late): {', '.join(late)} pairs do not finish within {deadline_minutes:g} min on {max_nodes} nodes")


if __name__ == "__main__":
    app()
