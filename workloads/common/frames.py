"""Parquet (de)serialisation of frames, and reading an hour's current predictions."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from workloads.common.hour_state import read_state
from workloads.common.layout import Container, prediction_prefix


def to_parquet(data: pd.DataFrame | pa.Table) -> bytes:
    table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def from_parquet(data: bytes) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(data)).to_pandas()


def read_predictions(service: BlobServiceClient, hour: datetime, job_id: str, max_workers: int = 16) -> pd.DataFrame:
    """The predictions one job (hour revision) wrote."""
    client = service.get_container_client(str(Container.PREDICTIONS))
    names = [b.name for b in client.list_blobs(name_starts_with=prediction_prefix(hour, job_id))]
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        frames = list(pool.map(lambda n: from_parquet(client.download_blob(n).readall()), names))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_hour_predictions(service: BlobServiceClient, hour: datetime, attempts: int = 3) -> pd.DataFrame:
    """The hour's current predictions: those of the revision its state names (none before one completed).

    This is the reader's contract (README, *Reading predictions*): the pointer first, then that revision's
    folder only. A blob that vanished between listing and download means the hour switched to a newer
    revision meanwhile (its switch deletes the old one): the pointer is read again."""
    for attempt in range(attempts):
        state = read_state(service, hour).state
        if state is None or state.current_job_id is None:
            return pd.DataFrame()
        try:
            return read_predictions(service, hour, state.current_job_id)
        except ResourceNotFoundError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")
