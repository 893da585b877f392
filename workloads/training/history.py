"""A training window's history by shard: which shards have any (a listing), and one shard's rows (its folders).

The stream job files every aggregate row under the hour of its window end and its device's shard
(``shards.partition_of``), so a shard's history is its folder of each hour, and planning a training job is a
listing of the window's days: nothing about it grows with rows or pairs.

A task reads its shard's folders with the same validated readers as scoring (``hour_inputs``: a blob that
cannot be downloaded fails the read, one that cannot be decoded is listed as corrupt, malformed rows are
quarantined, duplicates resolved by the documented rule). A row found in the shard's folder of an hour that is
not its own, or of a device of another shard, is counted and not trained on: the scoring task of that hour
refiles it to its own folder, where the next training finds it. Training writes no aggregates.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from azure.storage.blob import BlobServiceClient

from workloads.common.blob_listing import list_blobs_with_metadata
from workloads.common.hour_inputs import ORDER, decode_blobs, deduplicate, download_blobs
from workloads.common.layout import Container, day_prefix, hour_prefix, parse_aggregate_blob
from workloads.common.shards import is_shard_folder, shard_of
from workloads.common.windows import floor_hour, hours

LISTING_THREADS = 8


@dataclass
class WindowListing:
    """The window's aggregate blobs by shard folder, from one listing per day."""

    shards: dict[str, int] = field(default_factory=dict)  # shard folder -> blobs in the window
    outside_shard_folders: int = 0  # blobs of the window's hours in no shard folder of this count


def _days(start: datetime, end: datetime) -> Iterator[datetime]:
    day = floor_hour(start).replace(hour=0)
    while day < end:
        yield day
        day += timedelta(days=1)


def list_window(service: BlobServiceClient, start: datetime, end: datetime, shard_count: int) -> WindowListing:
    """Which shard folders hold aggregates in ``[start, end)``; listings only (a failed listing raises)."""
    container = service.get_container_client(str(Container.AGGREGATES))
    first, stop = floor_hour(start), floor_hour(end)

    def one_day(day: datetime) -> list[str | None]:
        found = []
        for blob in list_blobs_with_metadata(container, day_prefix(day)):
            place = parse_aggregate_blob(blob.name)
            if place is not None and first <= place.hour < stop:
                found.append(place.folder)
        return found

    listing = WindowListing()
    with ThreadPoolExecutor(max_workers=LISTING_THREADS) as pool:
        for day in pool.map(one_day, list(_days(first, stop))):
            for folder in day:
                if folder is not None and is_shard_folder(folder, shard_count):
                    listing.shards[folder] = listing.shards.get(folder, 0) + 1
                else:
                    listing.outside_shard_folders += 1
    listing.shards = dict(sorted(listing.shards.items()))
    return listing


@dataclass
class ShardHistory:
    """A shard's rows of the window, deduplicated, and an account of every other row of its blobs."""

    frame: pd.DataFrame
    hours_listed: int = 0
    blobs: int = 0
    rows_read: int = 0
    rows: int = 0
    rows_of_other_shards: int = 0
    rows_outside_their_hour: int = 0
    corrupt: dict[str, str] = field(default_factory=dict)
    quarantined: dict[str, dict[str, int]] = field(default_factory=dict)
    duplicates: int = 0
    conflicts: int = 0


def list_shard_blobs(service: BlobServiceClient, shard: str, start: datetime, end: datetime) -> list[str]:
    """The shard folder's aggregate blobs of every hour in the window (one small listing per hour)."""
    container = service.get_container_client(str(Container.AGGREGATES))

    def one_hour(hour: datetime) -> list[str]:
        names = []
        for blob in list_blobs_with_metadata(container, f"{hour_prefix(hour)}{shard}/"):
            place = parse_aggregate_blob(blob.name)
            if place is not None and place.hour == hour and place.folder == shard:
                names.append(blob.name)
        return names

    with ThreadPoolExecutor(max_workers=LISTING_THREADS) as pool:
        return [name for names in pool.map(one_hour, list(hours(start, end))) for name in names]


def _hour_of(name: str) -> datetime:
    place = parse_aggregate_blob(name)
    if place is None:  # listed by list_shard_blobs, which keeps aggregate blobs only
        raise ValueError(f"{name!r} is not an aggregate blob")
    return place.hour


def read_shard_history(
    service: BlobServiceClient, shard: str, shard_index: int, shard_count: int, start: datetime, end: datetime
) -> ShardHistory:
    """The shard's history of ``[start, end)``. Raises InputReadError when a blob cannot be downloaded and
    AzureError when a listing fails: never "no history"."""
    names = list_shard_blobs(service, shard, start, end)
    decoded = decode_blobs(download_blobs(service, names))
    frame = decoded.frame
    result = ShardHistory(
        frame=frame.iloc[:0].drop(columns=ORDER),
        hours_listed=len(list(hours(start, end))),
        blobs=len(names),
        rows_read=decoded.rows,
        corrupt=decoded.corrupt,
        quarantined=decoded.quarantined,
    )
    if frame.empty:
        return result
    blob_hours = np.array([np.datetime64(_hour_of(name).replace(tzinfo=None), "ns") for name in decoded.order])
    row_hours = frame["window_end"].dt.floor("h").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    in_hour = row_hours == blob_hours[frame[ORDER].to_numpy()]
    codes, devices = pd.factorize(frame["device_id"])
    in_shard = np.array([shard_of(str(d), shard_count) == shard_index for d in devices], dtype=bool)[codes]
    result.rows_outside_their_hour = int((~in_hour).sum())
    result.rows_of_other_shards = int((in_hour & ~in_shard).sum())
    mine = frame.loc[in_hour & in_shard]
    result.rows = len(mine)
    result.frame, result.duplicates, result.conflicts = deduplicate(mine)
    return result
