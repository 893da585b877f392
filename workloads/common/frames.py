"""Parquet (de)serialisation of frames and the hour-wise reading of aggregates."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from azure.storage.blob import BlobServiceClient, ContainerClient

from workloads.common.aggregates import AGGREGATE_COLUMNS, FEATURES, KEYS, WINDOW_END, empty_aggregates
from workloads.common.layout import Container, hour_prefix
from workloads.common.windows import HOUR, floor_hour


def to_parquet(data: pd.DataFrame | pa.Table) -> bytes:
    table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def from_parquet(data: bytes) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(data)).to_pandas()


@dataclass
class HourAggregates:
    """The aggregates of one hour, plus the blobs that could not be read (reported, not fatal)."""

    frame: pd.DataFrame
    blobs: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def normalise_aggregates(frame: pd.DataFrame) -> pd.DataFrame:
    """Coerce a blob's rows to the aggregate schema; raise with the missing columns named."""
    missing = [c for c in AGGREGATE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"aggregate blob lacks column(s) {missing}")
    out = frame[list(AGGREGATE_COLUMNS)].astype(dict.fromkeys(KEYS, "string"))
    out[WINDOW_END] = pd.to_datetime(out[WINDOW_END], utc=True)
    for feature in FEATURES:
        out[feature.name] = pd.to_numeric(out[feature.name], errors="coerce").astype("float64")
    return out


def hour_parquet_blobs(container: ContainerClient, hour: datetime) -> list[str]:
    """The Parquet blobs under an hour's prefix of a time-partitioned container."""
    return [b.name for b in container.list_blobs(name_starts_with=hour_prefix(hour)) if b.name.endswith(".parquet")]


def read_hour_aggregates(service: BlobServiceClient, hour: datetime, max_workers: int = 8) -> HourAggregates:
    """All aggregate blobs under the hour's prefix, keeping only windows that end inside the hour."""
    hour = floor_hour(hour)
    client = service.get_container_client(str(Container.AGGREGATES))
    names = hour_parquet_blobs(client, hour)
    result = HourAggregates(frame=empty_aggregates(), blobs=names)

    def load(name: str) -> pd.DataFrame:
        return normalise_aggregates(from_parquet(client.download_blob(name).readall()))

    frames: list[pd.DataFrame] = []
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        futures = {name: pool.submit(load, name) for name in names}
        for name, future in futures.items():
            try:
                frames.append(future.result())
            except Exception as exc:  # a corrupt blob costs its rows, not the hour
                result.errors[name] = f"{type(exc).__name__}: {exc}"
    if frames:
        frame = pd.concat(frames, ignore_index=True)
        inside = (frame[WINDOW_END] >= pd.Timestamp(hour)) & (frame[WINDOW_END] < pd.Timestamp(hour + HOUR))
        result.frame = frame.loc[inside].reset_index(drop=True)
    return result


def read_hour_predictions(service: BlobServiceClient, hour: datetime, max_workers: int = 16) -> pd.DataFrame:
    """All predictions of an hour (one blob per pair), for reports and evaluation."""
    client = service.get_container_client(str(Container.PREDICTIONS))
    names = hour_parquet_blobs(client, hour)
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        frames = list(pool.map(lambda n: from_parquet(client.download_blob(n).readall()), names))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
