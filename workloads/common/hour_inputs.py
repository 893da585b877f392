"""An hour's aggregate inputs: listing them, fingerprinting them, reading them without losing data silently.

Three kinds of trouble are kept apart, because they call for different answers:

- a blob that cannot be *downloaded* (5xx after the SDK's retries, a timeout, a dropped connection,
  a 404 for a blob the plan listed) is a failed read: ``InputReadError`` is raised, the task fails
  and Batch retries it, and the hour stays due. It is never taken for "no data".
- a blob that downloads but cannot be *decoded* (not Parquet, columns missing) is corrupt: retrying
  cannot help, so its rows are lost *visibly*: it is listed in ``corrupt`` and in every report, and
  the hour is scored from the other blobs. A replaced blob changes the fingerprint, so the hour is
  re-scored then.
- a *row* with a malformed id, window end or value is quarantined (counted per blob and reason)
  and the rest of the blob is used.

Duplicates are resolved by one documented rule: exact duplicate rows (a Stream Analytics restart
replays its output at least once) are dropped; rows that disagree for one pair and window are
resolved in favour of the most recently written blob (a replay with late readings has the newer,
more complete aggregate), ties broken by blob name, and counted as conflicts.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from azure.storage.blob import BlobServiceClient

from workloads.common.aggregates import AGGREGATE_COLUMNS, FEATURES, KEYS, WINDOW_END, empty_aggregates
from workloads.common.blob_listing import list_blobs_with_metadata
from workloads.common.layout import Container, day_prefix, hour_prefix, is_hour_folder, parse_aggregate_blob
from workloads.common.pairs import PART_PATTERN
from workloads.common.runlog import error_line
from workloads.common.windows import HOUR, floor_hour


@dataclass(frozen=True)
class InputBlob:
    """One aggregate blob as listed: its etag and size are what the hour's fingerprint is made of."""

    name: str
    etag: str
    size: int


MAX_NAMES_SHOWN = 100  # ignored blobs and misnamed folders a record or report names; the rest are counted


class HourInputs(list[InputBlob]):
    """An hour's inputs, sorted by name, and ``ignored``: every other blob listed under the hour (not an input
    by ``layout.parse_aggregate_blob``'s rule: ``.PARQUET``, ``.parquet.tmp``, a deeper folder), which no task
    reads. A list, so every caller of ``list_hour_inputs`` keeps working; the names travel with it (the
    reconciler hands this very object to ``plan_hour``), so the plan, the record and the report can name
    what was not read without listing the hour again."""

    def __init__(self, inputs: Iterable[InputBlob] = (), ignored: Iterable[str] = ()) -> None:
        super().__init__(sorted(inputs, key=lambda b: b.name))
        self.ignored: tuple[str, ...] = tuple(sorted(ignored))


def list_hour_inputs(service: BlobServiceClient, hour: datetime) -> HourInputs:
    """The hour's inputs and the blobs ignored under it, from one listing (a failed listing raises). Through
    the lean listing (``blob_listing``): the SDK's deserialiser costs ~0.2 ms of CPU per blob listed."""
    hour = floor_hour(hour)
    container = service.get_container_client(str(Container.AGGREGATES))
    inputs: list[InputBlob] = []
    ignored: list[str] = []
    for b in list_blobs_with_metadata(container, hour_prefix(hour)):
        place = parse_aggregate_blob(b.name)
        if place is not None and place.hour == hour:
            inputs.append(InputBlob(b.name, b.etag, b.size))
        else:
            ignored.append(b.name)
    return HourInputs(inputs, ignored)


def list_misnamed_under_day(service: BlobServiceClient, hour: datetime) -> list[str]:
    """What sits directly under the hour's day (``YYYY/MM/DD/``) but in no hour folder, so no hour ever reads
    it: folders whose name is not a two-digit hour 00-23 (``7/``, ``16x/``; with their trailing '/') and blobs
    directly in the day. One listing with delimiter '/' (some 24 prefixes: the SDK's parser is cheap here). A blob
    named like an hour folder without its '/' (``YYYY/MM/DD/07``) is that folder's directory marker on an account
    with a hierarchical namespace, not a misplaced blob."""
    container = service.get_container_client(str(Container.AGGREGATES))
    day = day_prefix(hour)
    names = (item.name[len(day) :] for item in container.walk_blobs(name_starts_with=day, delimiter="/"))
    return sorted(day + name for name in names if not (is_hour_folder(name) or is_hour_folder(f"{name}/")))


def fingerprint(blobs: Sequence[InputBlob]) -> str:
    """Changes whenever a blob of the hour is added, replaced, appended to or removed. Made of the inputs only:
    an ignored blob is never read, so it cannot change what the hour's scores are and must not re-score it."""
    text = "\n".join(f"{b.name}\t{b.etag}\t{b.size}" for b in sorted(blobs, key=lambda b: b.name))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class InputReadError(Exception):
    """Blobs that could not be downloaded (or, for refiled rows, written): the task's inputs are incomplete."""

    def __init__(
        self, errors: dict[str, str], container: str = "aggregates", kind: str = "aggregate", action: str = "read"
    ) -> None:
        self.errors = dict(sorted(errors.items()))
        shown = "; ".join(f"{container}/{name}: {error}" for name, error in list(self.errors.items())[:3])
        more = f" (and {len(self.errors) - 3} more)" if len(self.errors) > 3 else ""
        super().__init__(f"could not {action} {len(self.errors)} {kind} blob(s): {shown}{more}")


@dataclass
class HourAggregates:
    """The aggregates of one hour, deduplicated, with everything that was left out and why."""

    frame: pd.DataFrame
    blobs: list[str] = field(default_factory=list)
    corrupt: dict[str, str] = field(default_factory=dict)  # blob -> why it could not be decoded
    quarantined: dict[str, dict[str, int]] = field(default_factory=dict)  # blob -> reason -> rows
    duplicates: int = 0  # exact duplicate rows dropped
    conflicts: int = 0  # (pair, window) keys whose rows disagreed: the newest blob's row was kept
    outside_hour: int = 0  # rows whose window ends in another hour: left to that hour (a scoring task refiles them)


def _valid_ids(column: pd.Series) -> pd.Series:
    text = column.astype("string")
    return text.str.fullmatch(PART_PATTERN).fillna(False).astype(bool)


def _booleans(column: pd.Series) -> pd.Series:
    """Where a feature holds a boolean: True/False is no measurement (a writer's or schema's mistake), yet
    pandas would read it as 1.0/0.0 and the model would score it as one. A boolean column (numpy, nullable
    or Arrow) is bad in every non-null row; an object column (Parquet booleans with nulls) where a value is one."""
    if pd.api.types.is_bool_dtype(column.dtype):
        return column.notna().astype(bool)
    if column.dtype == object:
        return column.map(lambda value: isinstance(value, bool | np.bool_)).astype(bool)
    return pd.Series(False, index=column.index)


def validate_rows(raw: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Coerce a blob's rows to the aggregate schema; quarantine rows that cannot be trusted.

    Raises ValueError (the blob is corrupt) only when columns are missing altogether. Null feature
    values are kept: the scorer drops non-finite windows per pair, for the model's own features.
    """
    missing = [c for c in AGGREGATE_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"aggregate blob lacks column(s) {missing}")
    frame = raw[list(AGGREGATE_COLUMNS)].copy()
    reasons = pd.Series(pd.NA, index=frame.index, dtype="string")

    def flag(bad: pd.Series, reason: str) -> None:
        reasons[bad & reasons.isna()] = reason

    flag(~_valid_ids(frame["device_id"]), "bad_device_id")
    flag(~_valid_ids(frame["sensor"]), "bad_sensor")
    ends = pd.to_datetime(frame[WINDOW_END], utc=True, errors="coerce", format="ISO8601")
    flag(ends.isna(), "bad_window_end")
    for feature in FEATURES:
        values = pd.to_numeric(frame[feature.name], errors="coerce")
        flag((values.isna() & frame[feature.name].notna()) | _booleans(frame[feature.name]), "bad_value")
        frame[feature.name] = values.astype("float64")
    frame[WINDOW_END] = ends
    frame = frame.astype(dict.fromkeys(KEYS, "string"))
    counts = {str(k): int(v) for k, v in reasons.value_counts().items()}
    return frame.loc[reasons.isna()], counts


@dataclass(frozen=True)
class Downloaded:
    data: bytes
    last_modified: datetime
    etag: str


def download_blobs(service: BlobServiceClient, names: Sequence[str], max_workers: int = 8) -> dict[str, Downloaded]:
    """Every named aggregate blob, or InputReadError naming each one that could not be downloaded."""
    container = service.get_container_client(str(Container.AGGREGATES))

    def download(name: str) -> Downloaded:
        downloader = container.download_blob(name)
        data = downloader.readall()
        return Downloaded(data, downloader.properties.last_modified, str(downloader.properties.etag))

    downloads: dict[str, Downloaded] = {}
    errors: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        futures = {name: pool.submit(download, name) for name in names}
        for name, future in futures.items():
            try:
                downloads[name] = future.result()
            except Exception as exc:  # any failure to fetch is a failed read, never "no data"
                errors[name] = error_line(exc)
    if errors:
        raise InputReadError(errors)
    return downloads


@dataclass
class DecodedBlobs:
    """The valid rows of every decodable blob, each row tagged with its blob's position in ``order``
    (oldest blob first, so that "keep last" keeps the newest blob's row), and what was left out."""

    frame: pd.DataFrame
    order: list[str]
    corrupt: dict[str, str] = field(default_factory=dict)
    quarantined: dict[str, dict[str, int]] = field(default_factory=dict)
    rows: int = 0  # every row decoded, quarantined ones included


ORDER = "_blob_order"


def decode_blobs(downloads: dict[str, Downloaded]) -> DecodedBlobs:
    ordered = sorted(downloads.items(), key=lambda item: (item[1].last_modified, item[0]))
    result = DecodedBlobs(frame=empty_aggregates().assign(**{ORDER: pd.Series(dtype="int64")}), order=[])
    frames: list[pd.DataFrame] = []
    for order, (name, blob) in enumerate(ordered):
        result.order.append(name)
        try:
            raw = pq.read_table(io.BytesIO(blob.data)).to_pandas()
            rows, quarantined = validate_rows(raw)
        except Exception as exc:  # undecodable: its rows are lost, visibly
            result.corrupt[name] = f"{type(exc).__name__}: {exc}"
            continue
        result.rows += len(raw)
        if quarantined:
            result.quarantined[name] = quarantined
        frames.append(rows.assign(**{ORDER: order}))
    if frames:
        result.frame = pd.concat(frames, ignore_index=True)
    return result


def deduplicate(frame: pd.DataFrame) -> tuple[pd.DataFrame, int, int]:
    """(rows without duplicates, exact duplicates dropped, conflicting rows dropped), by the module's rule;
    ``frame`` carries ``ORDER``, which is dropped."""
    exact = frame.duplicated(subset=list(AGGREGATE_COLUMNS), keep="last")
    frame = frame.loc[~exact]
    clash = frame.duplicated(subset=[*KEYS, WINDOW_END], keep="last")
    frame = frame.loc[~clash].drop(columns=ORDER)
    return frame.sort_values([*KEYS, WINDOW_END]).reset_index(drop=True), int(exact.sum()), int(clash.sum())


def read_hour_aggregates(service: BlobServiceClient, hour: datetime, max_workers: int = 8) -> HourAggregates:
    """Every row of the hour's folders whose window ends inside the hour (for training, which reads history
    hour by hour; scoring tasks read one shard's folder and refile strays instead, see ``scorer.inputs``).

    Raises InputReadError when any blob could not be downloaded.
    """
    hour = floor_hour(hour)
    names = [b.name for b in list_hour_inputs(service, hour)]
    decoded = decode_blobs(download_blobs(service, names, max_workers))
    result = HourAggregates(frame=empty_aggregates(), blobs=names, corrupt=decoded.corrupt)
    result.quarantined = decoded.quarantined
    frame = decoded.frame
    inside = (frame[WINDOW_END] >= pd.Timestamp(hour)) & (frame[WINDOW_END] < pd.Timestamp(hour + HOUR))
    result.outside_hour = int((~inside).sum())
    result.frame, result.duplicates, result.conflicts = deduplicate(frame.loc[inside])
    return result
