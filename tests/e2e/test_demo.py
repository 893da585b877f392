"""The whole local pipeline, at a small size, through the same command a new user runs."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import BlobServiceClient
from rich.progress import Progress
from typer.testing import CliRunner

from workloads.common.aggregates import AggregationSpec
from workloads.common.shards import shard_of
from workloads.common.storage import StorageSettings
from workloads.demo.cli import app
from workloads.demo.pipeline import DemoConfig, run_demo
from workloads.simulator.fleet import FleetSpec

pytestmark = pytest.mark.e2e
LAST_HOUR = datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_demo_finds_injected_anomalies(service: BlobServiceClient, settings: StorageSettings) -> None:
    config = DemoConfig(
        fleet=FleetSpec(devices=8, sensors=3, anomaly_rate=0.15, seed=11),
        aggregation=AggregationSpec(window=timedelta(minutes=5)),
        last_hour=LAST_HOUR,
        score_hours=2,
        history_hours=24,
        shard_count=4,
        workers=0,
    )
    result = run_demo(settings, config, Progress(disable=True))
    assert [r.record.status.value for r in result.hours] == ["completed", "completed"]
    # A task per shard folder: the shards the 8 devices hash to under the demo's count.
    shards = {shard_of(device, 4) for device in {p.device_id for p in config.fleet.pairs()}}
    assert all(
        (r.record.tasks, r.record.shards, r.record.pairs) == (len(shards), len(shards), 24) for r in result.hours
    )
    assert all(r.record.unaccounted_rows == 0 and r.record.rows["scored"] > 0 for r in result.hours)
    assert all((r.record.ok, r.record.failed) == (22, 2) for r in result.hours)
    assert sorted(reason.split(":")[0] for reason in result.failures.values()) == [
        "corrupt_model",
        "missing_model",
    ]
    assert result.injected >= 10
    # Chance level would flag windows at the base rate (a few percent); the models find most anomalies.
    assert result.recall >= 0.8
    assert result.precision >= 0.5


@pytest.mark.parametrize(("shape", "model"), [("reading", "ocsvm"), ("device", "iforest")])
def test_demo_command_prints_the_summary(
    service: BlobServiceClient, azurite: tuple[int, str], shape: str, model: str
) -> None:
    """Either message shape (the device messages carry the same readings, so the same hours are scored), and
    a family other than the default."""
    port = azurite[0]
    result = CliRunner().invoke(
        app,
        [
            "--devices",
            "4",
            "--sensors",
            "2",
            "--history-hours",
            "6",
            "--score-hours",
            "1",
            "--workers",
            "0",
            "--last-hour",
            "2026-03-02T06",
            "--port",
            str(port),
            "--anomaly-rate",
            "0.3",
            "--message-shape",
            shape,
            "--model",
            model,
        ],
    )
    assert result.exit_code == 0, result.output
    # 4 devices x 2 sensors, a reading every 10 s, over the 6 + 1 hours and the hours around them (9 in all).
    readings = 4 * 2 * 360 * 9
    messages = readings if shape == "reading" else readings // 2
    assert f"readings simulated: {readings:,} in {messages:,} {shape} messages" in result.output
    assert "dropped by the aggregator: 0 invalid, 0 late" in result.output
    assert "score-local-2026030206" in result.output
    assert re.search(r"precision \d\.\d\d, recall \d\.\d\d", result.output)
    assert "missing_model" in result.output and "corrupt_model" in result.output
    assert "models published: 8" in result.output
