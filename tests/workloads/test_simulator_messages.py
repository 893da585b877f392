"""The simulator's message shapes: one reading per message, or one message per device and timestamp."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from workloads.common.aggregates import AggregationSpec, MessageShape, aggregate_readings
from workloads.simulator.cli import app, fleet_messages, send_grouped
from workloads.simulator.fleet import FleetSpec, message_json, simulate, to_messages

START = datetime(2026, 11, 25, 10, tzinfo=UTC)


def test_device_messages_carry_every_sensor_of_a_device_at_one_timestamp() -> None:
    spec = FleetSpec(devices=3, sensors=5)
    readings, _ = simulate(spec, START, datetime(2026, 11, 25, 11, tzinfo=UTC))
    messages = to_messages(readings, MessageShape.DEVICE)
    assert list(messages.columns) == ["device_id", "timestamp", "readings"]
    assert len(messages) == len(readings) // spec.sensors == 3 * 360
    names = [name for name, _ in spec.sensor_profiles()]
    assert all(list(r) == names for r in messages["readings"])
    first = readings[(readings.device_id == "dev-00001") & (readings.timestamp == readings.timestamp.min())]
    row = messages[(messages.device_id == "dev-00001") & (messages.timestamp == readings.timestamp.min())].iloc[0]
    assert row["readings"] == dict(zip(first.sensor, first.value, strict=True))


def test_both_shapes_aggregate_alike() -> None:
    readings, _ = simulate(FleetSpec(devices=2, sensors=3), START, datetime(2026, 11, 25, 12, tzinfo=UTC))
    assert to_messages(readings, MessageShape.READING) is readings
    spec = AggregationSpec()
    pd.testing.assert_frame_equal(
        aggregate_readings(to_messages(readings, MessageShape.DEVICE), spec), aggregate_readings(readings, spec)
    )


def test_a_message_is_the_json_event_the_stream_job_reads() -> None:
    readings, _ = simulate(FleetSpec(devices=1, sensors=2), START, datetime(2026, 11, 25, 11, tzinfo=UTC))
    device = json.loads(message_json(to_messages(readings, MessageShape.DEVICE).iloc[0].to_dict()))
    assert device == {
        "device_id": "dev-00000",
        "timestamp": "2026-11-25T10:00:10+00:00",
        "readings": {"temperature": device["readings"]["temperature"], "humidity": device["readings"]["humidity"]},
    }
    single = json.loads(message_json(readings.iloc[0].to_dict()))
    assert set(single) == {"device_id", "sensor", "timestamp", "value"} and single["sensor"] == "temperature"


def test_an_empty_range_has_no_messages() -> None:
    empty = pd.DataFrame(columns=["device_id", "sensor", "timestamp", "value"])
    assert to_messages(empty, MessageShape.DEVICE).empty


def test_the_simulator_writes_either_shape(tmp_path: Path) -> None:
    """`--message-shape`: the same readings, as one message each or one per device and timestamp; the file's
    messages aggregate like the simulated readings."""
    out = {shape: tmp_path / f"{shape}.jsonl" for shape in ("reading", "device")}
    for shape, path in out.items():
        args = ["--from", "2026-11-25T10", "--to", "2026-11-25T11", "--devices", "2", "--sensors", "3", "--out"]
        result = CliRunner().invoke(app, [*args, str(path), "--message-shape", shape])
        assert result.exit_code == 0, result.output
    lines = {shape: [json.loads(line) for line in path.read_text().splitlines()] for shape, path in out.items()}
    assert len(lines["reading"]) == 2 * 3 * 360 == 3 * len(lines["device"])
    assert set(lines["device"][0]) == {"device_id", "timestamp", "readings"}
    readings, _ = simulate(FleetSpec(devices=2, sensors=3), START, datetime(2026, 11, 25, 11, tzinfo=UTC))
    spec = AggregationSpec()
    for shape in out:
        pd.testing.assert_frame_equal(
            aggregate_readings(pd.DataFrame(lines[shape]), spec), aggregate_readings(readings, spec)
        )


def test_messages_are_sent_with_the_device_as_partition_key() -> None:
    """The query aggregates per Event Hubs partition (substreams need a fully parallel job), so a device's messages
    must share one partition: each send carries one device's messages under its id."""
    calls: list[tuple[str, list[str]]] = []

    class Recorder:
        def send(self, partition_key: str, bodies: list[str]) -> None:
            calls.append((partition_key, bodies))

    messages = fleet_messages(
        FleetSpec(devices=3, sensors=2), START, datetime(2026, 11, 25, 11, tzinfo=UTC), MessageShape.DEVICE
    )
    assert send_grouped(messages, Recorder(), group=100) == 3 * 360
    assert all(json.loads(body)["device_id"] == key for key, bodies in calls for body in bodies)
    assert all(len(bodies) <= 100 for _, bodies in calls) and {key for key, _ in calls} == {
        "dev-00000",
        "dev-00001",
        "dev-00002",
    }


def test_the_simulator_needs_one_destination() -> None:
    result = CliRunner().invoke(app, ["--from", "2026-11-25T10", "--to", "2026-11-25T11"])
    assert result.exit_code != 0 and "exactly one of --out or --namespace" in result.output
