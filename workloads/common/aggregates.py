"""The aggregate definition: features per tumbling window, and both of its implementations.

``FEATURES`` is the single definition. ``aggregate_readings`` (pandas, used locally) and
``asa_query`` (the Stream Analytics query deployed by Pulumi) are both generated from it, so adding a
feature here changes the local pipeline and the cloud job together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd
from pandas.core.groupby import SeriesGroupBy

from workloads.common.shards import MAX_SHARD_COUNT
from workloads.common.windows import validate_window, window_ends

KEYS = ("device_id", "sensor")
WINDOW_END = "window_end"
READING_COLUMNS = ("device_id", "sensor", "timestamp", "value")


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
    """Tumbling-window features per pair; windows without readings produce no row, as in ASA."""
    frame = drop_late(clean_readings(readings), spec.late_tolerance)
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


def asa_query(spec: AggregationSpec, input_alias: str, output_alias: str, shard_count: int) -> str:
    """The Stream Analytics query equivalent to ``aggregate_readings``, each row with its partition column.

    ``shard_count`` is the stack's ``shardCount``: it is part of the query text, so changing it changes the
    transformation that ``pulumi up`` deploys.
    """
    if isinstance(shard_count, bool) or not isinstance(shard_count, int) or not 1 <= shard_count <= MAX_SHARD_COUNT:
        raise ValueError(f"invalid shard count {shard_count!r}: use an integer from 1 to {MAX_SHARD_COUNT}")
    seconds = int(spec.window.total_seconds())
    features = ",\n".join(f"    {f.asa} AS [{f.name}]" for f in FEATURES)
    keys = ", ".join(f"[{k}]" for k in KEYS)
    partition = f"udf.{PARTITION_UDF_NAME}([device_id], System.Timestamp(), {shard_count}) AS [{PARTITION_COLUMN}]"
    return (
        f"SELECT\n    {keys},\n    System.Timestamp() AS [{WINDOW_END}],\n{features},\n    {partition}\n"
        f"INTO [{output_alias}]\n"
        f"FROM [{input_alias}] TIMESTAMP BY [timestamp]\n"
        f"WHERE [value] IS NOT NULL\n"
        f"GROUP BY {keys}, TumblingWindow(second, {seconds})\n"
    )
