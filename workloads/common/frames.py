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
    folder only, then the pointer again. If it moved meanwhile (a newer revision's switch deletes the old
    folder, so a listing or download may have caught it half-deleted: a 404, or silently fewer blobs), the
    whole read is repeated."""
    for _ in range(attempts):
        job_id = _current_job_id(service, hour)
        if job_id is None:
            return pd.DataFrame()
        try:
            frame = read_predictions(service, hour, job_id)
        except ResourceNotFoundError:
            continue
        if _current_job_id(service, hour) == job_id:
            return frame
    raise RuntimeError(f"the predictions of {hour:%Y-%m-%dT%H} kept switching revisions while being read")


def _current_job_id(service: BlobServiceClient, hour: datetime) -> str | None:
    state = read_state(service, hour).state
    return state.current_job_id if state else None
