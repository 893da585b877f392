"""The local stand-in for the Stream Analytics job: aggregate readings and write them per partition.

It writes the same schema into the same folders as the ASA blob output: each row under the partition its
own data decides (``shards.partition_of``: the hour of its window end and its device's shard, the function
the stream job's query calls as a UDF), so the submitter and scorer cannot tell the two apart. Each call
recomputes whole partitions from the readings it is given and replaces their blobs, which is how a late
batch of readings is folded in.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pandas as pd
from azure.storage.blob import BlobServiceClient

from workloads.common.aggregates import WINDOW_END, AggregationSpec, aggregate_readings
from workloads.common.frames import to_parquet
from workloads.common.layout import Container, local_aggregate_blob
from workloads.common.shards import DEFAULT_SHARD_COUNT, partitions_of


def split_by_partition(aggregates: pd.DataFrame, shard_count: int) -> dict[str, pd.DataFrame]:
    """Rows per partition (``yyyy/MM/dd/HH/<shard>``), computed per device and hour, not per row."""
    if aggregates.empty:
        return {}
    hours = aggregates[WINDOW_END].dt.floor("h")
    # A missing id (pandas' NA, which ``partition_of`` cannot test for truth) is filed as None, like the stream
    # job's UDF files a null: under the shard of "", where the scoring task quarantines it.
    devices = aggregates["device_id"].astype(object).where(aggregates["device_id"].notna(), None)
    partition = pd.Series(
        partitions_of(devices.tolist(), hours.dt.to_pydatetime().tolist(), shard_count), index=aggregates.index
    )
    return {str(name): rows.reset_index(drop=True) for name, rows in aggregates.groupby(partition, sort=True)}


def publish_aggregates(
    service: BlobServiceClient, aggregates: pd.DataFrame, shard_count: int = DEFAULT_SHARD_COUNT
) -> list[str]:
    container = service.get_container_client(str(Container.AGGREGATES))

    def upload(item: tuple[str, pd.DataFrame]) -> str:
        name = local_aggregate_blob(item[0])
        container.upload_blob(name, to_parquet(item[1]), overwrite=True)
        return name

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(upload, split_by_partition(aggregates, shard_count).items()))


def aggregate_and_publish(
    service: BlobServiceClient, readings: pd.DataFrame, spec: AggregationSpec, shard_count: int = DEFAULT_SHARD_COUNT
) -> list[str]:
    return publish_aggregates(service, aggregate_readings(readings, spec), shard_count)
