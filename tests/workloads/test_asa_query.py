"""The Stream Analytics query text: generated from the feature definition, each row with its partition column."""

from __future__ import annotations

from datetime import timedelta

import pytest

from workloads.common.aggregates import (
    ASA_PATH_PATTERN,
    PARTITION_COLUMN,
    PARTITION_UDF_INPUTS,
    PARTITION_UDF_NAME,
    PARTITION_UDF_OUTPUT,
    AggregationSpec,
    asa_query,
)
from workloads.common.shards import partition_udf


def test_the_query_is_the_features_per_window_with_each_rows_folder() -> None:
    """Both message shapes flattened into one stream, per-device substreams, then the features per window."""
    assert asa_query(AggregationSpec(), "readings", "aggregates", 16) == (
        "WITH [device_messages] AS (\n"
        "    SELECT [message].[device_id], [message].[readings], PartitionId\n"
        "    FROM [readings] AS [message] TIMESTAMP BY [timestamp] OVER [device_id], PartitionId"
        " PARTITION BY PartitionId\n"
        "    WHERE GetType([message].[readings]) = 'record'\n"
        "),\n"
        "[flat_readings] AS (\n"
        "    SELECT [message].[device_id], [message].[sensor], TRY_CAST([message].[value] AS float) AS [value],"
        " PartitionId\n"
        "    FROM [readings] AS [message] TIMESTAMP BY [timestamp] OVER [device_id], PartitionId"
        " PARTITION BY PartitionId\n"
        "    WHERE [message].[readings] IS NULL\n"
        "    UNION\n"
        "    SELECT [device_messages].[device_id], [reading].PropertyName AS [sensor],"
        " TRY_CAST([reading].PropertyValue AS float) AS [value], [device_messages].PartitionId\n"
        "    FROM [device_messages] PARTITION BY PartitionId\n"
        "    CROSS APPLY GetRecordProperties([device_messages].[readings]) AS [reading]\n"
        ")\n"
        "SELECT\n"
        "    [device_id], [sensor],\n"
        "    System.Timestamp() AS [window_end],\n"
        "    AVG([value]) AS [avg],\n"
        "    MIN([value]) AS [min],\n"
        "    MAX([value]) AS [max],\n"
        "    STDEVP([value]) AS [stdev],\n"
        "    COUNT(*) AS [count],\n"
        "    udf.partitionOf([device_id], System.Timestamp(), 16) AS [partition_path]\n"
        "INTO [aggregates]\n"
        "FROM [flat_readings] PARTITION BY PartitionId\n"
        "WHERE [value] IS NOT NULL\n"
        "GROUP BY [device_id], [sensor], PartitionId, TumblingWindow(second, 300)\n"
    )


def test_substreams_follow_the_documented_rules() -> None:
    """TIMESTAMP BY ... OVER (https://learn.microsoft.com/en-us/stream-analytics-query/timestamp-by-azure-stream-analytics,
    "Limitations and Restrictions"): the same OVER on every read of the input; with a partitioned input, PARTITION BY
    and PartitionId among the OVER columns; the OVER columns are GROUP BY keys; every step partitioned by the same key
    (a fully parallel job); the timestamp is the payload's field, never a CROSS APPLY result or System.Timestamp()."""
    query = asa_query(AggregationSpec(), "in", "out", 4)
    over = "TIMESTAMP BY [timestamp] OVER [device_id], PartitionId PARTITION BY PartitionId"
    assert query.count("FROM [in] ") == query.count(over) == 2
    assert query.count("TIMESTAMP BY") == 2
    froms = [line.strip() for line in query.splitlines() if line.strip().startswith("FROM ")]
    assert len(froms) == 4 and all("PARTITION BY PartitionId" in line for line in froms)
    group_by = next(line for line in query.splitlines() if line.startswith("GROUP BY "))
    assert "[device_id]" in group_by and "PartitionId" in group_by
    assert "System.Timestamp()" not in "".join(line for line in query.splitlines() if "TIMESTAMP BY" in line)
    # The output rows keep today's columns: PartitionId is a grouping key, not a column of the aggregates.
    select = query[query.index("\nSELECT\n") : query.index("INTO [out]")]
    assert "PartitionId" not in select


def test_the_shard_count_and_window_are_part_of_the_text() -> None:
    """So a changed shardCount or windowMinutes is a changed transformation for `pulumi up`."""
    query = asa_query(AggregationSpec(window=timedelta(minutes=10)), "in", "out", 64)
    assert f"udf.{PARTITION_UDF_NAME}([device_id], System.Timestamp(), 64) AS [{PARTITION_COLUMN}]" in query
    assert "TumblingWindow(second, 600)" in query
    assert query != asa_query(AggregationSpec(window=timedelta(minutes=10)), "in", "out", 32)


@pytest.mark.parametrize("count", [0, -1, 65537, True, 1.5, "16"])
def test_an_invalid_shard_count_is_refused(count: object) -> None:
    with pytest.raises(ValueError, match="invalid shard count"):
        asa_query(AggregationSpec(), "readings", "aggregates", count)  # type: ignore[arg-type]


def test_the_output_path_is_the_partition_column_alone() -> None:
    """Custom field partitioning: one {field}, no {date}/{time} tokens (those follow the time the job writes). A
    field name may hold letters, digits, spaces, hyphens and underscores; PARTITION is a query keyword."""
    assert ASA_PATH_PATTERN == "{partition_path}" == f"{{{PARTITION_COLUMN}}}"
    assert PARTITION_COLUMN.replace("_", "").isalnum() and PARTITION_COLUMN.lower() != "partition"


def test_the_udf_signature_matches_the_script_and_the_call() -> None:
    """ASA passes the device id (nvarchar(max) -> String), System.Timestamp() (datetime -> Date) and the shard count
    (bigint -> Number), in the order of the script's parameters; the String it returns is nvarchar(max), a type a
    partition key may have."""
    assert PARTITION_UDF_INPUTS == ("nvarchar(max)", "datetime", "bigint")
    assert PARTITION_UDF_OUTPUT == "nvarchar(max)"
    assert partition_udf().startswith("function (deviceId, windowEnd, shardCount) {")
    assert PARTITION_UDF_NAME.isidentifier()
