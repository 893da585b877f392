"""The capacity and cost planner: its arithmetic on known inputs, its data files and its CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from workloads.capacity.cli import app
from workloads.capacity.model import HOURS_PER_MONTH, Measured, PriceTable, VmPrice, Workload, plan

PRICES = PriceTable(
    source="test",
    as_of="2026-11-26",
    currency="USD",
    region="test",
    spot_price_factor=0.25,
    vms={"Standard_D4s_v5": VmPrice(4, 0.2)},
    write_per_10k=0.1,
    read_per_10k=0.01,
    list_per_10k=0.1,
)
# 1 s to start a task, 1 ms of CPU per pair, 2 reads and 3 writes per task, 0.1 ms per pair in the submitter.
MEASURED = Measured("test", 1.0, 0.1, 1.0, 2.0, 3.0)


def test_a_run_fits_the_deadline_on_the_fewest_nodes_and_each_pool_is_priced() -> None:
    # 100 tasks of 1,000 pairs: 2 s each; 4 slots per node; 10 min deadline - 4 min start = 180 waves allowed.
    result = plan(Workload(100_000, "Standard_D4s_v5", pairs_per_task=1000, deadline_minutes=10), PRICES, MEASURED)
    assert (result.tasks, result.task_seconds, result.slots_per_node) == (100, 2.0, 4)
    scaled, warm, spot = result.options
    assert scaled.nodes == warm.nodes == spot.nodes == 1
    compute = 25 * 2.0 / 60  # 25 waves of 2 s on one node
    submitter = 100_000 * 0.1 / 60_000
    assert scaled.run_minutes == pytest.approx(submitter + 4 + compute)
    assert warm.run_minutes == pytest.approx(submitter + compute)
    runs = 24 * HOURS_PER_MONTH / 24
    billed_hours = (4 + compute + 2.5) * runs / 60  # start, work, half an autoscale interval
    assert scaled.node_hours_per_month == pytest.approx(billed_hours)
    assert scaled.compute_per_month == pytest.approx(billed_hours * 0.2)
    assert warm.compute_per_month == pytest.approx(HOURS_PER_MONTH * 0.2)
    assert spot.compute_per_month == pytest.approx(scaled.compute_per_month * 0.25)
    lists = 20 + 2  # 100,000 models in pages of 5,000, plus the hour's aggregates and state
    assert result.blob_operations_per_month == pytest.approx((100 * 2 + 100 * 3 + lists) * runs)
    assert result.blob_cost_per_month == pytest.approx((200 * 0.01 + 300 * 0.1 + lists * 0.1) / 10_000 * runs)
    assert result.fits_deadline and result.cheapest is spot


def test_a_tight_deadline_takes_more_nodes_until_max_nodes() -> None:
    slow = Measured("test", 100.0, 0.0, 0.0, 0.0, 0.0)  # 100 s per 1,000-pair task
    workload = Workload(1_000_000, "Standard_D4s_v5", pairs_per_task=1000, deadline_minutes=6, node_start_minutes=4)
    result = plan(workload, PRICES, slow)
    # 120 s of compute budget: one wave of 100 s per slot, 1,000 tasks / 4 slots = 250 nodes.
    assert result.options[0].nodes == 100 and not result.fits_deadline  # capped by max_nodes (100)
    roomy = plan(
        Workload(1_000_000, "Standard_D4s_v5", pairs_per_task=1000, deadline_minutes=6, max_nodes=300), PRICES, slow
    )
    assert roomy.options[0].nodes == 250 and roomy.fits_deadline


def test_runs_closer_than_a_scaled_pools_life_cost_no_more_than_a_warm_pool() -> None:
    every_15 = plan(
        Workload(10_000, "Standard_D4s_v5", schedule="every-15-minutes", node_start_minutes=14), PRICES, MEASURED
    )
    scaled, warm, _ = every_15.options
    assert scaled.node_hours_per_month == pytest.approx(warm.node_hours_per_month)


def test_unknown_sizes_and_broken_tables_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no price for Standard_X1"):
        plan(Workload(10, "Standard_X1"), PRICES, MEASURED)
    broken = tmp_path / "prices.json"
    broken.write_text(json.dumps({"source": "x"}))
    with pytest.raises(ValueError, match="invalid price table"):
        PriceTable.load(broken)
    assert "Standard_D8s_v5" in PriceTable.load().vms and PriceTable.load().as_of  # the shipped table is dated


def test_per_pair_costs_come_from_a_fleet_benchmark_report(tmp_path: Path) -> None:
    scorer = {"status": "ok", "pairs": 1000, "tasks": 4, "workers_cpu_s": 0.5, "driver_cpu_s": 0.2}
    scorer |= {"scorer_start_s": 0.9, "blob_ops": {"GET": 8, "PUT": 12, "LIST": 3}}
    small = {"status": "ok", "pairs": 10, "tasks": 1, "workers_cpu_s": 1, "driver_cpu_s": 1, "blob_ops": {}}
    report = {
        "machine": {"git_commit": "abc"},
        "sizes": [{"measurements": {"scorer": small}}, {"measurements": {"scorer": scorer}}],
    }
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps(report))
    measured = Measured.load(path)
    assert (measured.task_cpu_ms_per_pair, measured.submitter_cpu_ms_per_pair) == (0.5, 0.2)
    assert (measured.scorer_start_s, measured.reads_per_task, measured.writes_per_task) == (0.9, 2.0, 3.0)
    assert "1,000 pairs, commit abc" in measured.source
    path.write_text(json.dumps({"sizes": []}))
    with pytest.raises(ValueError, match="no scorer measurement"):
        Measured.load(path)


def test_the_cli_prints_every_size_and_refuses_bad_options() -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["--pairs", "10000", "--pairs", "1000000", "--json"])
    assert done.exit_code == 0, done.output
    plans = json.loads(done.stdout)
    assert [p["workload"]["pairs"] for p in plans] == [10_000, 1_000_000]
    assert [o["name"] for o in plans[0]["options"]] == ["autoscale to zero", "warm pool", "Spot, autoscale to zero"]
    table = runner.invoke(app, ["--pairs", "100000"])
    assert table.exit_code == 0 and "Spot, autoscale to zero" in table.stdout and "as of 2026-11-26" in table.stdout
    for args in (["--pairs", "10", "--schedule", "weekly"], ["--pairs", "10", "--vm-size", "Standard_X1"]):
        refused = runner.invoke(app, args)
        assert refused.exit_code == 2 and "Traceback" not in refused.output
