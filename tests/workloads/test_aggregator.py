from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from azure.storage.blob import BlobServiceClient

from tests.workloads.helpers import HOUR
from workloads.aggregator.publish import aggregate_and_publish
from workloads.common.aggregates import (
    AGGREGATE_COLUMNS,
    AggregationSpec,
    ReadingAccount,
    aggregate_readings,
    aggregate_with_account,
    flatten_messages,
)
from workloads.common.frames import from_parquet
from workloads.common.hour_inputs import read_hour_aggregates
from workloads.common.layout import Container, local_aggregate_blob
from workloads.common.shards import DEFAULT_SHARD_COUNT, parse_shard_name, partition_of, shard_name, shard_of

SPEC = AggregationSpec(window=timedelta(minutes=5), late_tolerance=timedelta(minutes=2))


def readings(*rows: tuple[str, str, str, float]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["device_id", "sensor", "timestamp", "value"])


def test_features_match_numpy_per_window() -> None:
    values = [1.0, 2.0, 4.0, 8.0]
    frame = readings(*[("d", "s", f"2026-11-25T10:0{i + 1}:00Z", v) for i, v in enumerate(values)])
    result = aggregate_readings(frame, SPEC)
    assert list(result.columns) == list(AGGREGATE_COLUMNS)
    assert len(result) == 1
    row = result.iloc[0]
    assert row["window_end"] == pd.Timestamp("2026-11-25T10:05:00Z")
    assert row["avg"] == pytest.approx(np.mean(values))
    assert (row["min"], row["max"], row["count"]) == (1.0, 8.0, 4)
    assert row["stdev"] == pytest.approx(np.std(values))  # population stdev, as ASA's STDEVP


def test_window_boundaries_are_exclusive_at_start_inclusive_at_end() -> None:
    frame = readings(
        ("d", "s", "2026-11-25T10:00:00Z", 1.0),  # belongs to (09:55, 10:00]
        ("d", "s", "2026-11-25T10:05:00Z", 2.0),  # end of (10:00, 10:05]
        ("d", "s", "2026-11-25T10:05:00.001Z", 3.0),  # start of (10:05, 10:10]
    )
    result = aggregate_readings(frame, SPEC)
    assert [str(t) for t in result["window_end"]] == [
        "2026-11-25 10:00:00+00:00",
        "2026-11-25 10:05:00+00:00",
        "2026-11-25 10:10:00+00:00",
    ]
    assert list(result["count"]) == [1, 1, 1]
    assert list(result["stdev"]) == [0.0, 0.0, 0.0]  # defined for one reading: never NaN


def test_empty_windows_produce_no_rows() -> None:
    frame = readings(("d", "s", "2026-11-25T10:01:00Z", 1.0), ("d", "s", "2026-11-25T10:31:00Z", 2.0))
    result = aggregate_readings(frame, SPEC)
    assert len(result) == 2
    assert aggregate_readings(readings(), SPEC).empty


def test_out_of_order_readings_give_the_same_result() -> None:
    rng = np.random.default_rng(3)
    times = pd.date_range("2026-11-25T10:00:10Z", periods=360, freq="10s")
    frame = pd.DataFrame({"device_id": "d", "sensor": "s", "timestamp": times, "value": rng.normal(size=360)})
    shuffled = frame.sample(frac=1.0, random_state=1)
    pd.testing.assert_frame_equal(aggregate_readings(frame, SPEC), aggregate_readings(shuffled, SPEC))


def test_late_readings_beyond_tolerance_are_dropped() -> None:
    frame = readings(("d", "s", "2026-11-25T10:01:00Z", 1.0), ("d", "s", "2026-11-25T10:02:00Z", 100.0))
    frame["enqueued_time"] = pd.to_datetime(["2026-11-25T10:01:30Z", "2026-11-25T10:09:00Z"])  # 7 min late
    result = aggregate_readings(frame, SPEC)
    assert list(result["max"]) == [1.0]


def test_invalid_readings_are_dropped_not_fatal() -> None:
    frame = readings(
        ("d", "s", "2026-11-25T10:01:00Z", 1.0),
        ("d", "s", "not a time", 2.0),
        ("d", "s", "2026-11-25T10:02:00Z", float("nan")),
        (None, "s", "2026-11-25T10:02:00Z", 5.0),  # type: ignore[arg-type]
        ("d", "s", "2026-11-25T10:03:00Z", "abc"),  # type: ignore[arg-type]
    )
    result = aggregate_readings(frame, SPEC)
    assert list(result["count"]) == [1]


def test_missing_columns_are_named() -> None:
    with pytest.raises(ValueError, match=r"lack column\(s\) \['value'\]"):
        aggregate_readings(pd.DataFrame({"device_id": [], "sensor": [], "timestamp": []}), SPEC)


def test_publish_writes_one_blob_per_hour_of_window_end(service: BlobServiceClient) -> None:
    frame = readings(
        ("d", "s", "2026-11-25T10:58:00Z", 1.0),  # window ends 11:00 -> scoring hour 11
        ("d", "s", "2026-11-25T10:54:00Z", 2.0),  # window ends 10:55 -> scoring hour 10
    )
    names = aggregate_and_publish(service, frame, SPEC)
    shard = shard_name(shard_of("d", DEFAULT_SHARD_COUNT), DEFAULT_SHARD_COUNT)
    assert sorted(names) == [
        f"2026/11/25/10/{shard}/local-aggregator.parquet",
        f"2026/11/25/11/{shard}/local-aggregator.parquet",
    ]
    assert list(read_hour_aggregates(service, HOUR).frame["avg"]) == [2.0]
    assert list(read_hour_aggregates(service, HOUR + timedelta(hours=1)).frame["avg"]) == [1.0]
    # Re-aggregating an hour (e.g. with late readings folded in) replaces its blob.
    aggregate_and_publish(service, readings(("d", "s", "2026-11-25T10:54:00Z", 7.0)), SPEC)
    container = service.get_container_client(str(Container.AGGREGATES))
    assert len(list(container.list_blobs(name_starts_with="2026/11/25/10/"))) == 1
    assert list(read_hour_aggregates(service, HOUR).frame["avg"]) == [7.0]


@pytest.mark.parametrize("shard_count", [DEFAULT_SHARD_COUNT, 4])
def test_publish_files_each_row_under_the_partition_its_data_decides(
    service: BlobServiceClient, shard_count: int
) -> None:
    devices = [f"dev-{i:02d}" for i in range(12)]
    times = ["2026-11-25T10:54:00Z", "2026-11-25T10:58:00Z", "2026-11-25T11:03:00Z"]  # ends 10:55, 11:00, 11:05
    frame = readings(*[(device, sensor, t, 1.0) for device in devices for sensor in ("s", "t") for t in times])
    aggregates = aggregate_readings(frame, SPEC)
    places = [
        partition_of(device, end.to_pydatetime(), shard_count)
        for device, end in zip(aggregates["device_id"], aggregates["window_end"], strict=True)
    ]
    assert len(set(places)) > 3  # several shards and both hours, so a misfiled row would show

    names = aggregate_and_publish(service, frame, SPEC, shard_count)
    container = service.get_container_client(str(Container.AGGREGATES))
    listed = sorted(b.name for b in container.list_blobs())
    assert sorted(names) == listed == sorted(local_aggregate_blob(p) for p in set(places))  # one blob per partition
    expected = aggregates.assign(partition=places)
    for name in listed:
        rows = from_parquet(container.download_blob(name).readall())
        folder = name.rsplit("/", 1)[0]
        mine = expected[expected.partition == folder]
        assert len(rows) == len(mine) > 0
        assert sorted(zip(rows.device_id, rows.sensor, rows.window_end, strict=True)) == sorted(
            zip(mine.device_id, mine.sensor, mine.window_end, strict=True)
        )
        shard = shard_name(shard_of(str(rows.device_id.iloc[0]), shard_count), shard_count)
        assert {shard_of(d, shard_count) for d in rows.device_id} == {parse_shard_name(shard)[0]}
        assert folder.endswith(f"/{shard}")
        # The hour folder is the hour of the window end; a window ending on the hour is the next hour's.
        assert {f"{t:%Y/%m/%d/%H}" for t in rows.window_end} == {folder.rsplit("/", 1)[0]}
        if folder.startswith("2026/11/25/11/"):
            assert pd.Timestamp("2026-11-25T11:00:00Z") in set(rows.window_end)
        else:
            assert set(rows.window_end) == {pd.Timestamp("2026-11-25T10:55:00Z")}


def test_asa_query_is_generated_from_the_same_features() -> None:
    from workloads.common.aggregates import asa_query

    query = asa_query(SPEC, "readings", "aggregates", 64)
    assert "TumblingWindow(second, 300)" in query
    # The row's folder comes from its own device and window end, through the UDF twin of partition_of.
    assert "udf.partitionOf([device_id], System.Timestamp(), 64) AS [partition_path]" in query
    for expression in (
        "AVG([value]) AS [avg]",
        "MIN([value]) AS [min]",
        "MAX([value]) AS [max]",
        "STDEVP([value]) AS [stdev]",
        "COUNT(*) AS [count]",
        "System.Timestamp() AS [window_end]",
    ):
        assert expression in query
    assert "GROUP BY [device_id], [sensor], PartitionId, TumblingWindow" in query
    assert "FROM [readings] AS [message] TIMESTAMP BY [timestamp] OVER [device_id], PartitionId" in query
    # Both shapes: the device messages' readings flattened, non-numeric values dropped as clean_readings drops them.
    assert "CROSS APPLY GetRecordProperties([device_messages].[readings]) AS [reading]" in query
    assert "TRY_CAST([reading].PropertyValue AS float) AS [value]" in query


def device_messages(*rows: tuple[str, str, dict[str, object]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["device_id", "timestamp", "readings"])


def test_mixed_shapes_aggregate_as_the_equivalent_one_reading_messages() -> None:
    """Device messages are flattened (one reading per entry, the message's device and timestamp) and aggregated
    together with one-reading messages: the same aggregates as sending every reading on its own."""
    rng = np.random.default_rng(5)
    times = pd.date_range("2026-11-25T10:00:10Z", periods=60, freq="10s")
    sensors = ("temperature", "humidity", "vibration")
    singles = pd.DataFrame(
        [(d, s, t, float(rng.normal())) for d in ("d1", "d2", "d3") for t in times for s in sensors],
        columns=["device_id", "sensor", "timestamp", "value"],
    )
    # d1 and d2 send device messages, d3 one-reading messages: one frame of both shapes.
    as_devices = singles[singles.device_id != "d3"]
    grouped = as_devices.groupby(["device_id", "timestamp"], sort=False)
    devices = pd.DataFrame(
        [(d, t, dict(zip(g.sensor, g.value, strict=True))) for (d, t), g in grouped],
        columns=["device_id", "timestamp", "readings"],
    )
    mixed = pd.concat([singles[singles.device_id == "d3"], devices], ignore_index=True).sample(frac=1.0, random_state=2)
    assert mixed["readings"].notna().sum() == len(devices) and mixed["sensor"].notna().sum() == len(times) * 3

    expected = aggregate_readings(singles, SPEC)
    result, account = aggregate_with_account(mixed, SPEC)
    pd.testing.assert_frame_equal(result, expected)
    assert len(expected) == 3 * 3 * 2  # devices x sensors x windows
    assert account == ReadingAccount(
        messages=len(mixed), readings=len(singles), invalid=0, late=0, aggregated=len(singles)
    )


def test_invalid_readings_of_a_device_message_are_dropped_and_counted() -> None:
    """As the query does: a value TRY_CAST cannot make a float is dropped (a numeric string is a number); a message
    whose readings is no object yields nothing; the message's other readings are kept. Locally each is counted."""
    frame = pd.concat(
        [
            readings(("d", "temp", "2026-11-25T10:01:00Z", 1.0), ("d", "temp", "2026-11-25T10:01:10Z", "abc")),  # type: ignore[arg-type]
            device_messages(
                ("d", "2026-11-25T10:02:00Z", {"temp": 3.0, "vib": "0.5", "hum": "n/a", "rpm": None}),
                ("d", "2026-11-25T10:03:00Z", {"temp": {"nested": 1}, "vib": float("nan"), 7: 2.0}),
                ("d", "2026-11-25T10:04:00Z", [1.0, 2.0]),  # type: ignore[arg-type]
                ("d", "not a time", {"temp": 9.0}),
            ),
        ],
        ignore_index=True,
    )
    result, account = aggregate_with_account(frame, SPEC)
    rows = {(r.sensor, r["count"], r["avg"]) for _, r in result.iterrows()}
    assert rows == {("temp", 2, 2.0), ("vib", 1, 0.5)}
    # readings: 2 one-reading + 4 + 3 entries (the int-named one counted invalid) + 1 non-object + 1 = 11
    assert account == ReadingAccount(messages=6, readings=11, invalid=8, late=0, aggregated=3)
    assert account.dropped == 8


def test_device_messages_obey_the_late_arrival_tolerance() -> None:
    frame = device_messages(
        ("d", "2026-11-25T10:01:00Z", {"a": 1.0, "b": 2.0}), ("d", "2026-11-25T10:02:00Z", {"a": 50.0, "b": 60.0})
    )
    frame["enqueued_time"] = pd.to_datetime(["2026-11-25T10:01:30Z", "2026-11-25T10:09:00Z"])  # 7 min late
    result, account = aggregate_with_account(frame, SPEC)
    assert list(zip(result.sensor, result["max"], strict=True)) == [("a", 1.0), ("b", 2.0)]
    assert (account.late, account.invalid, account.aggregated) == (2, 0, 2)


def test_one_reading_messages_alone_are_accounted() -> None:
    frame = readings(("d", "s", "2026-11-25T10:01:00Z", 1.0), (None, "s", "2026-11-25T10:02:00Z", 5.0))  # type: ignore[arg-type]
    assert flatten_messages(frame) == (frame, 0)
    _, account = aggregate_with_account(frame, SPEC)
    assert account == ReadingAccount(messages=2, readings=2, invalid=1, late=0, aggregated=1)
