"""The local stand-in for the Stream Analytics job: aggregate readings and write them per hour.

It writes the same schema under the same hour prefixes as the ASA blob output, so the submitter and
scorer cannot tell the two apart. Each call recomputes whole hours from the readings it is given and
replaces those hours' blob, which is how a late batch of readings is folded in.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pandas as pd
from azure.storage.blob import BlobServiceClient

from workloads.common.aggregates import WINDOW_END, AggregationSpec, aggregate_readings
from workloads.common.frames import to_parquet
from workloads.common.layout import Container, local_aggregate_blob


def split_by_hour(aggregates: pd.DataFrame) -> dict[datetime, pd.DataFrame]:
    """Rows per scoring hour, i.e. per hour of the window end (the ASA output's path time)."""
    hour_of = aggregates[WINDOW_END].dt.floor("h")
    return {pd.Timestamp(h).to_pydatetime(): rows.reset_index(drop=True) for h, rows in aggregates.groupby(hour_of)}


def publish_aggregates(service: BlobServiceClient, aggregates: pd.DataFrame) -> list[str]:
    container = service.get_container_client(str(Container.AGGREGATES))

    def upload(item: tuple[datetime, pd.DataFrame]) -> str:
        name = local_aggregate_blob(item[0])
        container.upload_blob(name, to_parquet(item[1]), overwrite=True)
        return name

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(upload, split_by_hour(aggregates).items()))


def aggregate_and_publish(service: BlobServiceClient, readings: pd.DataFrame, spec: AggregationSpec) -> list[str]:
    return publish_aggregates(service, aggregate_readings(readings, spec))
