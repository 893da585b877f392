"""The aggregate definition: features per tumbling window, and both of its implementations.

``FEATURES`` is the single definition. ``aggregate_readings`` (pandas, used locally) and
``asa_query`` (the Stream Analytics query deployed by Pulumi) are both generated from it, so adding a
feature here changes the local pipeline and the cloud job together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

import numpy as np
import pandas as pd
from pandas.core.groupby import SeriesGroupBy

from workloads.common.shards import MAX_SHARD_COUNT
from workloads.common.windows import validate_window, window_ends

KEYS = ("device_id", "sensor")
WINDOW_END = "window_end"
READING_COLUMNS = ("device_id", "sensor", "timestamp", "value")
# A device message carries all of a device's sensors at one timestamp under this field, a JSON object
# {sensor: value}; a message without it is a one-reading message ({device_id, sensor, timestamp, value}).
MESSAGE_READINGS = "readings"


class MessageShape(StrEnum):
    """The two message shapes the stream job and the local aggregator accept, mixed freely."""

    READING = "reading"  # {"device_id", "sensor", "timestamp", "value"}: one reading per message
    DEVICE = "device"  # {"device_id", "timestamp", "readings": {sensor: value, ...}}: one message per device and time


@dataclass(frozen=True)
class Feature:
    name: str
    asa: str  # Stream Analytics expression over the event's ``value``
    local: Callable[[SeriesGroupBy], pd.Series]
    dtype: str


# Population stdev (STDEVP) rather than sample stdev: it is defined (0) for single-reading windows,
# so neither implementation produces NaN for a sparse window.
FEATURES: tuple[Feature, ...] = (
    Feature("avg", "AVG([value])", lambda g: g.mean(), "float64"),
    Feature("min", "MIN([value])", lambda g: g.min(), "float64"),
    Feature("max", "MAX([value])", lambda g: g.max(), "float64"),
    Feature("stdev", "STDEVP([value])", lambda g: g.std(ddof=0), "float64"),
    Feature("count", "COUNT(*)", lambda g: g.count(), "int64"),
)
FEATURE_NAMES = tuple(f.name for f in FEATURES)
AGGREGATE_COLUMNS = (*KEYS, WINDOW_END, *FEATURE_NAMES)
# What a model sees by default; ``count`` depends on the sampling rate, not on the device's health.
DEFAULT_MODEL_FEATURES = ("avg", "min", "max", "stdev")


@dataclass(frozen=True)
class AggregationSpec:
    """Window length and late-arrival tolerance: the two knobs shared with the ASA job."""

    window: timedelta = timedelta(minutes=5)
    late_tolerance: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        validate_window(self.window)
        if self.late_tolerance < timedelta(0):
            raise ValueError("late_tolerance must not be negative")


@dataclass
class ReadingAccount:
    """What the local aggregator did with its input, so a dropped reading is counted, never silent.

    ``messages`` rows came in; they held ``readings`` readings once device messages were flattened (a device
    message whose ``readings`` is not an object, or an entry whose name is not a string, counts one invalid
    reading); ``invalid`` were dropped as Stream Analytics drops them (no device or sensor, no UTC timestamp, a value
    that is not a finite number), ``late`` for the late-arrival tolerance; ``aggregated`` went into windows.
    """

    messages: int = 0
    readings: int = 0
    invalid: int = 0
    late: int = 0
    aggregated: int = 0

    @property
    def dropped(self) -> int:
        return self.invalid + self.late


def flatten_messages(messages: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """One row per reading from both message shapes, and the number of readings that could not be one.

    The pandas twin of the query's first steps: a row whose ``readings`` is missing is a one-reading message and
    kept as it is (like the query's branch ``WHERE [readings] IS NULL``); a row with ``readings`` is a device
    message and becomes one row per entry, sensor = the entry's name, value = its value, the message's device,
    timestamp and any other column (``enqueued_time``) repeated (``CROSS APPLY GetRecordProperties``, whose
    PropertyName is always a string). Its values are checked later, with the one-reading rows, by
    ``clean_readings``: a non-numeric value is dropped there as the query's ``TRY_CAST`` drops it. A device message
    whose ``readings`` is not an object (the query's ``GetType(...) = 'record'`` skips it) yields no reading and
    counts one invalid reading, as does an entry whose name is not a string (impossible in JSON, possible in a
    frame built in Python); a top-level ``sensor``/``value`` beside ``readings`` is ignored, as the query's
    one-reading branch skips the message.
    """
    if MESSAGE_READINGS not in messages.columns:
        return messages, 0
    carried = [c for c in messages.columns if c not in (MESSAGE_READINGS, "sensor", "value")]
    is_device = messages[MESSAGE_READINGS].notna()
    columns = [*carried, "sensor", "value"]
    single = messages.loc[~is_device].reindex(columns=columns)
    rows: list[tuple[object, ...]] = []
    invalid = 0
    for values, record in zip(
        messages.loc[is_device, carried].itertuples(index=False, name=None),
        messages.loc[is_device, MESSAGE_READINGS],
        strict=True,
    ):
        if not isinstance(record, dict):
            invalid += 1
            continue
        for sensor, value in record.items():
            if isinstance(sensor, str):
                rows.append((*values, sensor, value))
            else:
                invalid += 1
    flat = pd.DataFrame(rows, columns=columns)
    if flat.empty:
        return single, invalid
    if single.empty:
        return flat, invalid
    return pd.concat([single, flat], ignore_index=True), invalid


def clean_readings(readings: pd.DataFrame) -> pd.DataFrame:
    """Keep the rows Stream Analytics would aggregate: known ids, a UTC timestamp, a finite value."""
    missing = [c for c in READING_COLUMNS if c not in readings.columns]
    if missing:
        raise ValueError(f"readings lack column(s) {missing}; expected {list(READING_COLUMNS)}")
    frame = readings.copy()
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, errors="coerce", format="ISO8601")
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
    valid = frame["device_id"].notna() & frame["sensor"].notna() & frame["timestamp"].notna()
    valid &= np.isfinite(frame["value"].to_numpy(dtype="float64", na_value=np.nan))
    return frame.loc[valid]


def drop_late(readings: pd.DataFrame, late_tolerance: timedelta) -> pd.DataFrame:
    """Drop readings that reached the hub later than the tolerance (ASA's late-arrival 'Drop' policy).

    Only applies when the readings carry ``enqueued_time`` (the Event Hubs arrival time).
    """
    if "enqueued_time" not in readings.columns:
        return readings
    enqueued = pd.to_datetime(readings["enqueued_time"], utc=True)
    return readings.loc[enqueued - readings["timestamp"] <= pd.Timedelta(late_tolerance)]


def aggregate_readings(readings: pd.DataFrame, spec: AggregationSpec) -> pd.DataFrame:
    """Tumbling-window features per pair; windows without readings produce no row, as in ASA.

    ``readings`` may mix one-reading messages and device messages (``MESSAGE_READINGS``); see
    ``aggregate_with_account`` for what was dropped.
    """
    return aggregate_with_account(readings, spec)[0]


def aggregate_with_account(readings: pd.DataFrame, spec: AggregationSpec) -> tuple[pd.DataFrame, ReadingAccount]:
    """``aggregate_readings`` and the account of its input: flatten, drop invalid and late readings, aggregate."""
    flat, unflattenable = flatten_messages(readings)
    cleaned = clean_readings(flat)
    frame = drop_late(cleaned, spec.late_tolerance)
    account = ReadingAccount(
        messages=len(readings),
        readings=len(flat) + unflattenable,
        invalid=len(flat) - len(cleaned) + unflattenable,
        late=len(cleaned) - len(frame),
        aggregated=len(frame),
    )
    return _aggregate_clean(frame, spec), account


def _aggregate_clean(frame: pd.DataFrame, spec: AggregationSpec) -> pd.DataFrame:
    if frame.empty:
        return empty_aggregates()
    frame = frame.assign(**{WINDOW_END: window_ends(frame["timestamp"], spec.window)})
    grouped = frame.groupby([*KEYS, WINDOW_END], sort=True)["value"]
    result = pd.DataFrame({f.name: f.local(grouped).astype(f.dtype) for f in FEATURES}).reset_index()
    return result.astype({"device_id": "string", "sensor": "string"})[list(AGGREGATE_COLUMNS)]


def empty_aggregates() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="string") for c in KEYS})
    frame[WINDOW_END] = pd.Series(dtype="datetime64[us, UTC]")
    for feature in FEATURES:
        frame[feature.name] = pd.Series(dtype=feature.dtype)
    return frame


# The Stream Analytics side of the partition contract (``shards.partition_of``): the query computes one column per
# output row with the JavaScript twin of ``partition_of`` (``shards.partition_udf()``, deployed as a function of the job
# under PARTITION_UDF_NAME), and the blob output's path pattern is that one column, so each row lands in the folder its
# data decides (``yyyy/MM/dd/HH/sNNNNN-of-NNNNN``: the hour of its window end, its device's shard), never one named by
# the time the job wrote it. The Azure rules this relies on are cited in infra/stream_job.py.
# Not "partition": PARTITION is a keyword of the query language (PARTITION BY); a path-pattern field name may hold
# letters, digits, spaces, hyphens and underscores.
PARTITION_COLUMN = "partition_path"
PARTITION_UDF_NAME = "partitionOf"
# The UDF's signature as Stream Analytics declares it, in the order ``asa_query`` passes the arguments: the device id,
# the window end (System.Timestamp(), a JavaScript Date in the UDF) and the shard count; it returns the folder.
PARTITION_UDF_INPUTS = ("nvarchar(max)", "datetime", "bigint")
PARTITION_UDF_OUTPUT = "nvarchar(max)"
# The blob output's path pattern: custom field partitioning on that one column (the `/` inside its values make the
# folders). Replaces the old ``{datetime:yyyy}/{datetime:MM}/{datetime:dd}/{datetime:HH}``, whose tokens follow the time
# the job writes, which filed the window ending at HH:55 under the next hour.
ASA_PATH_PATTERN = f"{{{PARTITION_COLUMN}}}"


# Step names of the query's WITH clause.
DEVICE_MESSAGES_STEP = "device_messages"
FLAT_READINGS_STEP = "flat_readings"
# The Event Hubs input's partition column: the job's only partitioning key (see ``asa_query``).
ASA_PARTITION_ID = "PartitionId"


def asa_query(spec: AggregationSpec, input_alias: str, output_alias: str, shard_count: int) -> str:
    """The Stream Analytics query equivalent to ``aggregate_readings``, each row with its partition column.

    ``shard_count`` is the stack's ``shardCount``: it is part of the query text, so changing it changes the
    transformation that ``pulumi up`` deploys.

    Both message shapes, flattened then aggregated together. ``flat_readings`` is the UNION of the one-reading
    messages (those without ``readings``) and one row per entry of each device message's ``readings`` object:
    ``CROSS APPLY GetRecordProperties(<record>) AS r`` gives one row per property with ``r.PropertyName`` and
    ``r.PropertyValue``; "the result of the GetRecordProperties function must be used with the CROSS APPLY
    operator" and its argument "must be of type Record"
    (https://learn.microsoft.com/en-us/stream-analytics-query/getrecordproperties-azure-stream-analytics), so the
    ``device_messages`` step first keeps the messages whose ``readings`` is a record
    (``GetType(...) = 'record'``, https://learn.microsoft.com/en-us/stream-analytics-query/gettype-azure-stream-analytics;
    ``record`` is the type name in https://learn.microsoft.com/en-us/stream-analytics-query/data-types-azure-stream-analytics).
    ``TRY_CAST(... AS float)`` "returns NULL" when the cast fails
    (https://learn.microsoft.com/en-us/stream-analytics-query/try-cast-azure-stream-analytics), so a non-numeric
    value, in either shape, is dropped by ``WHERE [value] IS NOT NULL`` as ``clean_readings`` drops it, instead of
    reaching AVG as a string. UNION needs "the same partition key and partition count" and the same columns in the
    same order (https://learn.microsoft.com/en-us/stream-analytics-query/union-azure-stream-analytics): both branches
    come from the one input, partitioned by PartitionId.

    Per-device substreams: ``TIMESTAMP BY [timestamp] OVER [device_id], PartitionId`` applies the out-of-order
    tolerance per device, so one device's skewed clock no longer makes the job drop other devices' readings
    (https://learn.microsoft.com/en-us/stream-analytics-query/timestamp-by-azure-stream-analytics, "OVER clause
    interacts with event ordering" and "Limitations and Restrictions"). The page's rules and how the query meets them:
    (1) OVER on all inputs or none: both reads of the one input use the same clause; (2) only fully parallel or
    single-partition jobs, and (3) with more than one input partition, OVER together with ``PARTITION BY`` and
    ``PartitionId`` among the OVER columns: every step is ``PARTITION BY PartitionId``, the key the UNION and the
    GROUP BY share; (4) the OVER columns must be GROUP BY keys: ``[device_id]`` and ``PartitionId`` are; (5) the
    TIMESTAMP BY value must be a payload field, not a CROSS APPLY result: ``[timestamp]`` is the message's field,
    read before the flattening, so a device message's readings share its timestamp; (6) no System.Timestamp() in
    TIMESTAMP BY. The late-arrival tolerance stays global ("as if OVER was not used"); output rows of different
    devices may leave out of time order, which the blob output's per-row folder does not mind.
    Grouping by PartitionId is exact only because every reading of a device lands in one Event Hubs partition:
    senders must use the device id as the partition key (the simulator does; README "Sending test readings");
    otherwise a device's window is split into one partial row per partition (the parallelization guide,
    https://learn.microsoft.com/en-us/azure/stream-analytics/stream-analytics-parallelization, "Query with a
    grouping key"). The output rows do not carry PartitionId.
    """
    if isinstance(shard_count, bool) or not isinstance(shard_count, int) or not 1 <= shard_count <= MAX_SHARD_COUNT:
        raise ValueError(f"invalid shard count {shard_count!r}: use an integer from 1 to {MAX_SHARD_COUNT}")
    seconds = int(spec.window.total_seconds())
    features = ",\n".join(f"    {f.asa} AS [{f.name}]" for f in FEATURES)
    keys = ", ".join(f"[{k}]" for k in KEYS)
    partition = f"udf.{PARTITION_UDF_NAME}([device_id], System.Timestamp(), {shard_count}) AS [{PARTITION_COLUMN}]"
    pid = ASA_PARTITION_ID
    source = f"FROM [{input_alias}] AS [message] TIMESTAMP BY [timestamp] OVER [device_id], {pid} PARTITION BY {pid}\n"
    return (
        f"WITH [{DEVICE_MESSAGES_STEP}] AS (\n"
        f"    SELECT [message].[device_id], [message].[{MESSAGE_READINGS}], {pid}\n"
        f"    {source}"
        f"    WHERE GetType([message].[{MESSAGE_READINGS}]) = 'record'\n"
        f"),\n"
        f"[{FLAT_READINGS_STEP}] AS (\n"
        f"    SELECT [message].[device_id], [message].[sensor],"
        f" TRY_CAST([message].[value] AS float) AS [value], {pid}\n"
        f"    {source}"
        f"    WHERE [message].[{MESSAGE_READINGS}] IS NULL\n"
        f"    UNION\n"
        f"    SELECT [{DEVICE_MESSAGES_STEP}].[device_id], [reading].PropertyName AS [sensor],"
        f" TRY_CAST([reading].PropertyValue AS float) AS [value], [{DEVICE_MESSAGES_STEP}].{pid}\n"
        f"    FROM [{DEVICE_MESSAGES_STEP}] PARTITION BY {pid}\n"
        f"    CROSS APPLY GetRecordProperties([{DEVICE_MESSAGES_STEP}].[{MESSAGE_READINGS}]) AS [reading]\n"
        f")\n"
        f"SELECT\n    {keys},\n    System.Timestamp() AS [{WINDOW_END}],\n{features},\n    {partition}\n"
        f"INTO [{output_alias}]\n"
        f"FROM [{FLAT_READINGS_STEP}] PARTITION BY {pid}\n"
        f"WHERE [value] IS NOT NULL\n"
        f"GROUP BY {keys}, {pid}, TumblingWindow(second, {seconds})\n"
    )
