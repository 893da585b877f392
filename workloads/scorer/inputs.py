"""A task's inputs: one folder of an hour's aggregates, read, validated, refiled where it must be, deduplicated.

The data decides where a row belongs: the hour of its window end and the shard of its device
(``shards.partition_of``, the same function the stream job's query calls). A row found in any other folder
(a writer that filed by processing time, the old layout, a shard count since changed) is *refiled*: written,
with the other strays of its blob for the same place, to ``<its partition>/refiled-<key>.parquet``. That
changes its own hour's fingerprint, so the hour is (re-)scored with it: it is scored exactly once, in its
own hour, and counted here as refiled, never dropped. The refiled blob's name comes from the source blob's
name and ETag and is written only if absent, so retries, slices and re-scores of this hour add no copies.

Every slice of a shard reads the same blobs; only the first speaks for them (corrupt blobs, quarantined
rows, refiled rows), so that the hour's totals count each once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient

from workloads.common.aggregates import AGGREGATE_COLUMNS, KEYS, WINDOW_END
from workloads.common.frames import to_parquet
from workloads.common.hour_inputs import (
    ORDER,
    DecodedBlobs,
    Downloaded,
    InputReadError,
    decode_blobs,
    deduplicate,
    download_blobs,
)
from workloads.common.layout import Container, refiled_blob
from workloads.common.manifest import TaskManifest
from workloads.common.runlog import error_line
from workloads.common.shards import parse_shard_name, partitions_of, shard_of, slice_of


@dataclass
class TaskInputs:
    """The rows the task scores and an account of every other row of its blobs."""

    frame: pd.DataFrame  # its folder's rows of its slice, deduplicated, sorted by pair and window
    rows_read: int = 0  # rows decoded from its blobs (counted by the first slice only)
    rows: int = 0  # rows of its own folder and slice, before deduplication
    corrupt: dict[str, str] = field(default_factory=dict)
    quarantined: dict[str, dict[str, int]] = field(default_factory=dict)  # blob -> reason -> rows
    refiled: dict[str, int] = field(default_factory=dict)  # partition -> rows moved there
    duplicates: int = 0
    conflicts: int = 0

    @property
    def quarantined_rows(self) -> int:
        return sum(sum(reasons.values()) for reasons in self.quarantined.values())


def _device_codes(frame: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    codes, devices = pd.factorize(frame["device_id"])
    return codes, [str(d) for d in devices]


def _in_own_folder(frame: pd.DataFrame, manifest: TaskManifest) -> np.ndarray:
    """Rows whose partition is the task's folder: window end in the hour and device in the shard."""
    if manifest.shard is None or frame.empty:
        return np.zeros(len(frame), dtype=bool)
    start = pd.Timestamp(manifest.hour)
    in_hour = ((frame[WINDOW_END] >= start) & (frame[WINDOW_END] < start + pd.Timedelta(hours=1))).to_numpy()
    codes, devices = _device_codes(frame)
    shard = parse_shard_name(manifest.shard)[0]
    in_shard = np.array([shard_of(d, manifest.shard_count) == shard for d in devices], dtype=bool)
    return np.asarray(in_hour & in_shard[codes], dtype=bool)


def _in_slice(frame: pd.DataFrame, manifest: TaskManifest) -> np.ndarray:
    if manifest.slices == 1:
        return np.ones(len(frame), dtype=bool)
    codes, devices = _device_codes(frame)
    slices = np.array([slice_of(d, manifest.shard_count, manifest.slices) for d in devices], dtype=np.int64)
    return np.asarray(slices[codes] == manifest.slice_index, dtype=bool)


def refile(
    service: BlobServiceClient,
    decoded: DecodedBlobs,
    downloads: dict[str, Downloaded],
    strays: pd.DataFrame,
    count: int,
) -> dict[str, int]:
    """Write each source blob's strays to their own partitions; partition -> rows. Raises InputReadError
    (the task fails and is retried) when one cannot be written: the rows must not be left behind."""
    if strays.empty:
        return {}
    hours = strays[WINDOW_END].dt.floor("h").dt.to_pydatetime().tolist()
    targets = pd.Series(partitions_of(strays["device_id"].tolist(), hours, count), index=strays.index)
    container = service.get_container_client(str(Container.AGGREGATES))
    moved: dict[str, int] = {}
    errors: dict[str, str] = {}
    for (order, target), rows in strays.groupby([strays[ORDER], targets], sort=True):
        source = decoded.order[int(order)]
        name = refiled_blob(str(target), source, downloads[source].etag)
        data = to_parquet(rows[list(AGGREGATE_COLUMNS)].sort_values([*KEYS, WINDOW_END]).reset_index(drop=True))
        try:
            container.upload_blob(name, data, overwrite=False)
        except ResourceExistsError:
            pass  # an earlier attempt, another slice or revision refiled these rows already
        except Exception as exc:
            errors[name] = error_line(exc)
            continue
        moved[str(target)] = moved.get(str(target), 0) + len(rows)
    if errors:
        raise InputReadError(errors, kind="refiled", action="write")
    return dict(sorted(moved.items()))


def read_task_inputs(service: BlobServiceClient, manifest: TaskManifest) -> TaskInputs:
    """Raises InputReadError when a blob cannot be read or strays cannot be refiled: never "no data"."""
    downloads = download_blobs(service, manifest.inputs)
    decoded = decode_blobs(downloads)
    frame = decoded.frame
    own = _in_own_folder(frame, manifest)
    result = TaskInputs(frame=frame.iloc[:0].drop(columns=ORDER))
    if manifest.accounts_for_blobs:
        result.rows_read = decoded.rows
        result.corrupt = decoded.corrupt
        result.quarantined = decoded.quarantined
        result.refiled = refile(service, decoded, downloads, frame.loc[~own], manifest.shard_count)
    mine = frame.loc[own]
    mine = mine.loc[_in_slice(mine, manifest)]
    result.rows = len(mine)
    result.frame, result.duplicates, result.conflicts = deduplicate(mine)
    return result
