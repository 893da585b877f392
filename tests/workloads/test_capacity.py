"""The capacity and cost planner: its arithmetic on known inputs, its data files and its CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from workloads.capacity.bill import (
    Assumptions,
    Bill,
    Ingestion,
    QuotaNeed,
    StackShape,
    ingestion_for,
    quota_need,
    whole_bill,
)
from workloads.capacity.cli import app
from workloads.capacity.model import (
    HOURS_PER_MONTH,
    Measured,
    PriceTable,
    ServicePrice,
    VmPrice,
    Workload,
    plan,
    scaled_run,
)
from workloads.capacity.sizing import FleetLoad, Sizing, size_for

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
    assert warm.nodes == 1  # the fewest nodes within the deadline
    assert scaled.nodes == spot.nodes == 25  # the formula asks for ceil(100 pending / 4 slots), max_nodes 100
    compute = 25 * 2.0 / 60  # 25 waves of 2 s on one node
    submitter = 100_000 * 0.1 / 60_000
    # Formula, by hand: evaluation at 2.5 min asks 25 nodes, ready at 6.5, one wave ends at 6.5 + 2 s. At 7.5 the
    # 10-min look-back (20 samples, 30 s apart) holds 14 samples of 100 pending (0.0 .. 6.5): avg 70 -> 18 nodes;
    # at 12.5, 8 samples (3.0 .. 6.5): avg 40 -> 10 nodes; at 17.5 none -> 0. Billed from 2.5:
    node_minutes = 7 * (7.5 - 2.5) + 8 * (12.5 - 2.5) + 10 * (17.5 - 2.5)
    assert scaled.run_minutes == pytest.approx(submitter + 6.5 + 2 / 60)
    assert warm.run_minutes == pytest.approx(submitter + compute)
    runs = 24 * HOURS_PER_MONTH / 24
    billed_hours = node_minutes * runs / 60
    assert scaled.node_hours_per_month == pytest.approx(billed_hours)
    assert scaled.compute_per_month == pytest.approx(billed_hours * 0.2)
    assert warm.compute_per_month == pytest.approx(HOURS_PER_MONTH * 0.2)
    assert spot.compute_per_month == pytest.approx(scaled.compute_per_month * 0.25)
    lists = 20 + 2  # 100,000 models in pages of 5,000, plus the hour's aggregates and state
    assert result.blob_operations_per_month == pytest.approx((100 * 2 + 100 * 3 + lists) * runs)
    assert result.blob_cost_per_month == pytest.approx((200 * 0.01 + 300 * 0.1 + lists * 0.1) / 10_000 * runs)
    # 25 nodes for ~15 min each run cost more than one warm node: the formula, not the deadline, sizes the pool.
    assert result.fits_deadline and result.cheapest is warm


def test_node_hours_follow_the_formula_look_back_not_the_task_time() -> None:
    # Two 90-s tasks, 2 slots, evaluations every 5 min (the first 2.5 min after submission), 10-min look-back.
    run = scaled_run(2, 2, 1.5, 4, 5, 10, 4)
    # 2.5: 2 pending -> 1 node, ready 6.5, both tasks 6.5 -> 8.0. 7.5: 2 pending -> 1. 12.5: samples 3.0 .. 12.5,
    # 10 of them (3.0 .. 7.5) with 2 pending: avg 1 -> still 1 node. 17.5: samples 8.0 .. 17.5 all 0 -> released.
    assert (run.nodes, run.last_task_end, run.release) == (1, 8.0, 17.5)
    assert run.node_minutes == pytest.approx(17.5 - 2.5)  # 15 min; start + tasks + half an interval would be 8
    # The first evaluation's wait delays the run, not the bill; min_nodes nodes run at once and are not counted.
    assert scaled_run(2, 2, 1.5, 4, 5, 10, 4, first_evaluation_minutes=0).node_minutes == pytest.approx(15.0)
    warm = scaled_run(2, 2, 1.5, 4, 5, 10, 4, min_nodes=1)
    assert (warm.last_task_end, warm.node_minutes) == (1.5, 0.0)


def test_a_tight_deadline_takes_more_warm_nodes_and_the_formula_caps_at_max_nodes() -> None:
    slow = Measured("test", 100.0, 0.0, 0.0, 0.0, 0.0)  # 100 s per 1,000-pair task
    workload = Workload(1_000_000, "Standard_D4s_v5", pairs_per_task=1000, deadline_minutes=6, node_start_minutes=4)
    result = plan(workload, PRICES, slow)
    # Warm: 120 s of compute budget is one wave of 100 s per slot: 1,000 tasks / 4 slots = 250 nodes, capped at 100.
    assert result.options[1].nodes == 100
    # Scaled: the formula asks ceil(1,000 / 4) = 250, capped at 100: 3 waves of 100 s after the first evaluation
    # (2.5 min) and the node start (4 min): 11.5 min, over the deadline.
    assert result.options[0].nodes == 100 and not result.fits_deadline
    assert result.options[0].run_minutes == pytest.approx(2.5 + 4 + 3 * 100 / 60)
    roomy = plan(
        Workload(1_000_000, "Standard_D4s_v5", pairs_per_task=1000, deadline_minutes=9, max_nodes=300), PRICES, slow
    )
    # 250 nodes, one wave: 2.5 + 4 + 100 s = 8.2 min, within 9; warm: 300 s budget, 3 waves: ceil(1000 / 12) = 84.
    assert (roomy.options[0].nodes, roomy.options[1].nodes) == (250, 84) and roomy.fits_deadline


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
    assert [p["plan"]["workload"]["pairs"] for p in plans] == [10_000, 1_000_000]
    assert [o["name"] for o in plans[0]["plan"]["options"]] == [
        "autoscale to zero",
        "warm pool",
        "Spot, autoscale to zero",
    ]
    services = [s["service"] for s in plans[0]["bill"]["services"]]
    assert services == [
        "Event Hubs",
        "Stream Analytics",
        "Batch",
        "Storage",
        "Log Analytics",
        "Application Insights",
        "Container Registry",
        "Logic App",
        "Container Instances",
    ]
    bill = plans[0]["bill"]
    assert bill["total"] == pytest.approx(sum(s["cost"] for s in bill["services"]))
    assert plans[1]["bill"]["ingestion_parts"] >= 1  # a million one-reading messages every 10 s: split if need be
    table = runner.invoke(app, ["--pairs", "100000"], terminal_width=250)
    assert table.exit_code == 0 and "Spot, autoscale to zero" in table.stdout and "as of 2026-11-26" in table.stdout
    for heading in ("The whole bill for 100,000 pairs", "The whole bill per month", "core quota at maxNodes: 800"):
        assert heading in table.stdout
    assert "prices not confirmed" in table.stdout
    for args in (
        ["--pairs", "10", "--schedule", "weekly"],
        ["--pairs", "10", "--vm-size", "Standard_X1"],
        ["--pairs", "10", "--price", "stream_analytics.su_hour"],
        ["--pairs", "10", "--price", "nothing.here=1"],
        ["--pairs", "10", "--assume", "nothing=1"],
        ["--pairs", "10", "--assume", "blob_log_record_bytes=-1"],
        [],
    ):
        refused = runner.invoke(app, args)
        assert refused.exit_code == 2 and "Traceback" not in refused.output, args


def test_the_cli_takes_a_price_override_and_a_stack_file(tmp_path: Path) -> None:
    runner = CliRunner()
    base = json.loads(runner.invoke(app, ["--pairs", "10000", "--json"]).stdout)[0]["bill"]
    dearer = runner.invoke(app, ["--pairs", "10000", "--json", "--price", "stream_analytics.su_hour=1"])
    assert dearer.exit_code == 0, dearer.output
    bill = json.loads(dearer.stdout)[0]["bill"]
    streaming = next(s for s in bill["services"] if s["service"] == "Stream Analytics")
    assert streaming["cost"] == pytest.approx(bill["sizing"]["streaming_units"] * HOURS_PER_MONTH * 1.0)
    assert bill["total"] > base["total"]
    # An assumption overridden: blob log records of 2,000 bytes double the blob logs' GB.
    heavier = json.loads(
        runner.invoke(app, ["--pairs", "10000", "--json", "--assume", "blob_log_record_bytes=2000"]).stdout
    )
    logs = {x["item"]: x for s in heavier[0]["bill"]["services"] for x in s["lines"]}
    base_logs = {x["item"]: x for s in base["services"] for x in s["lines"]}
    assert logs["blob logs"]["quantity"] == pytest.approx(2 * base_logs["blob logs"]["quantity"])
    stack = tmp_path / "Pulumi.test.yaml"
    stack.write_text(
        "config:\n"
        "  batchscoring:vmSize: Standard_D4s_v5\n"
        "  batchscoring:maxNodes: 10\n"
        "  batchscoring:taskSlotsPerNode: 4\n"
        "  batchscoring:shardCount: 10\n"
        "  batchscoring:registrySku: Premium\n"
        "  batchscoring:storageRedundancy: ZRS\n"
    )
    done = runner.invoke(app, ["--pairs", "10000", "--stack", str(stack), "--json"])
    assert done.exit_code == 0, done.output
    planned = json.loads(done.stdout)[0]
    assert planned["plan"]["workload"]["pairs_per_task"] == 1000 and planned["plan"]["tasks"] == 10
    lines = {line["item"]: line for s in planned["bill"]["services"] for line in s["lines"]}
    assert lines["Premium registry"]["price_key"] == "registry.day.Premium"
    assert lines["capacity, hot ZRS"]["price_key"] == "storage.gb_month.ZRS"
    assert planned["bill"]["quota"]["dedicated_cores"] == 10 * 4
    broken = tmp_path / "Pulumi.bad.yaml"
    broken.write_text("config:\n  batchscoring:maxNodes: 0\n")
    refused = runner.invoke(app, ["--pairs", "10", "--stack", str(broken)])
    assert refused.exit_code == 2 and "Traceback" not in refused.output


# The whole bill: round prices so each expectation below is worked out by hand.
SERVICE_PRICES = {
    "event_hubs.standard_tu_hour": 0.1,
    "event_hubs.standard_ingress_per_million": 0.5,
    "event_hubs.premium_pu_hour": 2.0,
    "stream_analytics.su_hour": 0.2,
    "storage.gb_month.LRS": 0.02,
    "log_analytics.ingestion_gb": 2.0,
    "log_analytics.free_gb_month": 0.5,
    "log_analytics.retention_gb_month": 0.1,
    "registry.day.Standard": 1.0,
    "logic_apps.builtin_action": 0.0001,
    "container_instances.vcpu_second": 0.00001,
    "container_instances.gb_second": 0.000001,
}
BILL_PRICES = replace(
    PRICES,
    services={k: ServicePrice(v, "unit", "https://example.test/", "2026-12-02") for k, v in SERVICE_PRICES.items()},
)
STANDARD = Sizing("Standard", 3, 6, 0, 4, 6, 1.5, ())
ASSUME = Assumptions(
    aggregate_row_bytes=100, prediction_bytes_per_pair=500, model_bytes_per_pair=1000, run_log_bytes_per_task=1000
)
SHAPE = StackShape(shard_count=10)


def _bill(shape: StackShape = SHAPE, sizing: Sizing = STANDARD) -> Bill:
    # 10,000 pairs, 10 tasks of 1,000 pairs (2 s each), 4 slots per node, hourly: 730 runs.
    planned = plan(Workload(10_000, "Standard_D4s_v5", pairs_per_task=1000), BILL_PRICES, MEASURED)
    return whole_bill(planned, FleetLoad(10_000), Ingestion.of(sizing), shape, MEASURED, BILL_PRICES, ASSUME)


def _costs(bill: Bill, service: str) -> dict[str, float]:
    return {line.item: line.cost for line in bill.service(service).lines}


def test_ingestion_is_priced_from_the_sizing_around_the_clock() -> None:
    bill = _bill()
    # 10,000 pairs every 10 s: 1,000 events/s x 3,600 x 730 = 2,628 million events a month.
    assert _costs(bill, "Event Hubs") == pytest.approx(
        {"throughput units": 3 * 730 * 0.1, "ingress events": 2628 * 0.5}
    )
    assert _costs(bill, "Stream Analytics") == pytest.approx({"streaming units": 6 * 730 * 0.2})
    premium = _bill(sizing=Sizing("Premium", 0, 0, 2, 8, 6, 1.5, ()))
    assert _costs(premium, "Event Hubs") == pytest.approx({"processing units": 2 * 730 * 2.0})  # ingress included


def test_batch_storage_and_the_small_services_for_known_inputs() -> None:
    bill = _bill()
    # Formula: 10 pending -> 3 nodes at 2.5 (ready 6.5, one wave to 6.5 + 2 s); at 7.5, 14 of 20 samples hold 10:
    # avg 7 -> 2 nodes; at 12.5, 8 samples: avg 4 -> 1; at 17.5: 0. Node-minutes: 5 + 10 + 15 = 30 a run.
    assert _costs(bill, "Batch") == pytest.approx({"Standard_D4s_v5 node-hours": 30 / 60 * 730 * 0.2})
    spot = _bill(shape=replace(SHAPE, spot_nodes=True))
    assert _costs(spot, "Batch") == pytest.approx({"Spot Standard_D4s_v5 node-hours": 30 / 60 * 730 * 0.2 * 0.25})
    # Scoring: 2 reads and 3 writes per task, 2 model pages + 2 lists per run; stream: 12 windows x 10 shards x 2,
    # from each of the 4 partitions' writers (the query is partitioned by PartitionId).
    # Capacity at steady state: aggregates 10,000 x 12 x 100 B x 24 h x 30 d = 8.64 GB, predictions
    # 10,000 x 500 B x 24 x 365 = 43.8 GB, run logs 10 tasks x 1,000 B x 24 x 90 = 0.0216 GB, models 0.01 GB.
    assert _costs(bill, "Storage") == pytest.approx(
        {
            "blob operations, scoring": (20 * 0.01 + 30 * 0.1 + 4 * 0.1) / 10_000 * 730,
            "blob writes, stream output": 12 * 10 * 4 * 2 * 730 * 0.1 / 10_000,
            "capacity, hot LRS": (8.64 + 43.8 + 0.0216 + 0.01) * 0.02,
        }
    )
    assert _costs(bill, "Container Registry") == pytest.approx({"Standard registry": 730 / 24 * 1.0})
    assert _costs(bill, "Logic App") == pytest.approx({"trigger and actions": 3 * 730 * 0.0001})
    # A run: 60 s start + 30 s reconcile + 10,000 pairs x 0.1 ms planning = 91 s; 1 vCPU and the sizing's 1.5 GB.
    assert _costs(bill, "Container Instances") == pytest.approx(
        {"vCPU": 91 * 730 * 0.00001, "memory": 1.5 * 91 * 730 * 0.000001}
    )
    assert _costs(bill, "Application Insights") == {}  # telemetry off: nothing declared, nothing billed
    assert bill.total == pytest.approx(sum(s.cost for s in bill.services))


def test_log_analytics_is_estimated_from_the_enabled_diagnostics() -> None:
    bill = _bill()
    blob_ops = (20 + 30 + 4) * 730 + 12 * 10 * 4 * 2 * 730  # every scoring and stream operation logs a record
    blob_gb = blob_ops * 1000 / 1e9
    batch_gb = (10 * 2 + 6) * 730 * 1000 / 1e9  # task start/complete + pool and job events per run
    logic_gb = 8 * 730 * 1500 / 1e9
    metrics_gb = 60 * 730 * 60 * 250 / 1e9
    total = blob_gb + batch_gb + logic_gb + metrics_gb
    costs = _costs(bill, "Log Analytics")
    assert costs["blob logs"] == pytest.approx(blob_gb * 2.0)
    assert costs["free grant"] == pytest.approx(-0.5 * 2.0)
    assert bill.service("Log Analytics").cost == pytest.approx((total - 0.5) * 2.0)
    kept = _bill(shape=replace(SHAPE, log_retention_days=92))  # 61 days past the free 31
    assert _costs(kept, "Log Analytics")["retention past 31 days"] == pytest.approx(total * 61 / (730 / 24) * 0.1)
    traced = _bill(shape=replace(SHAPE, telemetry=True))
    # 1 span per task + its 5 blob calls, and 24 reconciled hours, per run, 1,000 B each.
    assert _costs(traced, "Application Insights") == pytest.approx({"traces": (10 * 6 + 24) * 730 * 1000 / 1e9 * 2.0})


def test_a_price_is_overridden_and_an_unknown_one_is_refused() -> None:
    table = PriceTable.load()
    assert all(s.url.startswith("https://") and s.as_of for s in table.services.values())  # dated, with a source
    assert table.services["event_hubs.premium_pu_hour"].assumption  # unconfirmed prices say so
    dearer = table.with_overrides({"stream_analytics.su_hour": 1.0})
    assert dearer.price("stream_analytics.su_hour") == 1.0 and table.price("stream_analytics.su_hour") == 0.11
    assert dearer.services["stream_analytics.su_hour"].assumption == "given on the command line"
    with pytest.raises(ValueError, match="not in the price table"):
        table.with_overrides({"stream_analytics.su_hours": 1.0})
    with pytest.raises(ValueError, match="not negative"):
        table.with_overrides({"stream_analytics.su_hour": -1.0})
    with pytest.raises(ValueError, match=r"no price 'x\.y'"):
        table.price("x.y")


def test_a_fleet_no_single_namespace_carries_is_split_and_the_quota_counted() -> None:
    ingestion = ingestion_for(FleetLoad(1_000_000))
    # size_for refuses one namespace for 100,000 events/s x 1.5 (over 16 PUs); halves fit.
    assert ingestion.parts > 1 and ingestion.sizing == size_for(FleetLoad(-(-1_000_000 // ingestion.parts)))
    assert ingestion_for(FleetLoad(10_000)) == Ingestion.of(size_for(FleetLoad(10_000)))
    assert "16 PUs a namespace can have" in ingestion.refusal  # size_for's reason, printed with the bill
    assert quota_need("Standard_D8s_v5", 40, True, 8, PRICES) == QuotaNeed(
        "Standard_D8s_v5", "standardDSv5Family", 8, 64, 320
    )
    assert quota_need("Standard_D4s_v5", 10, False, 0, PRICES).dedicated_cores == 40
