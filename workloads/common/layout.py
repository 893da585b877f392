"""Blob layout: the names of containers and blobs, in one place.

Every time-partitioned path starts with ``{yyyy}/{MM}/{dd}/{HH}/`` of the scoring hour, so an hour is
one prefix to list, to expire with a lifecycle rule, or to delete.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from workloads.common.ids import validate_job_id, validate_task_id
from workloads.common.pairs import Pair
from workloads.common.windows import floor_hour


class Container(StrEnum):
    MODELS = "models"
    AGGREGATES = "aggregates"
    PREDICTIONS = "predictions"
    LOGS = "logs"


# Stream Analytics' output path pattern is not a time pattern any more (its {datetime:...} tokens follow the time the
# job writes): it is the partition column of the query, ``workloads.common.aggregates.ASA_PATH_PATTERN``, whose value
# is the folder ``shards.partition_of`` names for the row.
MODEL_BLOB_NAME = "model.skops"


def hour_prefix(hour: datetime) -> str:
    return f"{floor_hour(hour):%Y/%m/%d/%H}/"


def aggregate_folder(partition: str) -> str:
    """The folder of a partition (``yyyy/MM/dd/HH/<shard>``, ``shards.partition_of``) in ``aggregates``."""
    return f"{partition}/"


def local_aggregate_blob(partition: str) -> str:
    """The blob the local aggregator writes for a partition (ASA writes its own file names beside it)."""
    return f"{aggregate_folder(partition)}local-aggregator.parquet"


def refiled_blob(partition: str, source: str, etag: str) -> str:
    """Where rows found in another folder are refiled to their own partition: one blob per source blob
    version and target, so a retried or re-scored task finds it already written instead of adding copies."""
    key = hashlib.sha256(f"{source}\n{etag}".encode()).hexdigest()[:24]
    return f"{aggregate_folder(partition)}refiled-{key}.parquet"


# What is an input, the one rule: a name ending exactly in ``.parquet`` (case-sensitive, as Stream Analytics
# and the local aggregator write) directly in an hour folder or directly in one folder under it. Anything else
# under an hour (``.PARQUET``, ``.parquet.tmp``, a deeper folder) is never read, and is reported as ignored
# (``hour_inputs.list_hour_inputs``), so that no writer's mistake loses rows without a word.
_AGGREGATE = re.compile(r"(?P<hour>\d{4}/\d{2}/\d{2}/\d{2})/(?:(?P<folder>[^/]+)/)?[^/]*\.parquet")
_HOUR_FOLDER = re.compile(r"(?:[01]\d|2[0-3])/")


@dataclass(frozen=True)
class AggregateBlobPlace:
    """Where a listed aggregate blob sits: its hour folder and the folder under it (a shard's name as the
    stream job writes; None: directly in the hour, as the old processing-time layout wrote; anything else
    a writer chose)."""

    hour: datetime
    folder: str | None


def parse_aggregate_blob(name: str) -> AggregateBlobPlace | None:
    """The place of an aggregate blob, or None for a name that is no input by the rule above (a task's
    manifest enforces the same rule, so a blob this refuses is never read by any task)."""
    match = _AGGREGATE.fullmatch(name)
    if match is None or match["folder"] in {".", ".."}:
        return None
    try:
        hour = datetime.strptime(match["hour"], "%Y/%m/%d/%H").replace(tzinfo=UTC)
    except ValueError:
        return None
    return AggregateBlobPlace(hour, match["folder"])


def day_prefix(hour: datetime) -> str:
    return f"{floor_hour(hour):%Y/%m/%d}/"


def is_hour_folder(name: str) -> bool:
    """Whether ``name`` (a folder directly under a day, ``YYYY/MM/DD/<name>``, with its trailing '/') is an hour
    folder: two digits, 00 to 23. Any other folder there (``7/``, ``16x/``) is never any hour's input."""
    return _HOUR_FOLDER.fullmatch(name) is not None


def model_blob(pair: Pair) -> str:
    return f"{pair.device_id}/{pair.sensor}/{MODEL_BLOB_NAME}"


def pair_from_model_blob(name: str) -> Pair | None:
    parts = name.split("/")
    if len(parts) != 3 or parts[2] != MODEL_BLOB_NAME:
        return None
    try:
        return Pair(parts[0], parts[1])
    except ValueError:
        return None


def prediction_prefix(hour: datetime, job_id: str) -> str:
    """Each job (hour revision) writes its predictions under its own folder; the hour's state names
    the folder readers use, so a re-run replaces the hour's outputs at once, never pair by pair."""
    return f"{hour_prefix(hour)}{validate_job_id(job_id)}/"


def prediction_blob(hour: datetime, job_id: str, task_id: str) -> str:
    """One blob per task, all its pairs' rows: blob operations grow with tasks, not pairs. A retried
    task replaces it in one Put Blob, so readers see all of a task's rows or none."""
    return f"{prediction_prefix(hour, job_id)}{validate_task_id(task_id)}.parquet"


PACK_FOLDER = "packs"


def pack_blob(shard: str) -> str:
    """A shard's model pack (``models`` container), beside the per-pair models it is compiled from.

    ``shard`` is a name such as ``s00007-of-00064``; a device id is never ``packs`` with a two-part
    path, so packs and ``{device}/{sensor}/model.skops`` cannot collide.
    """
    return f"{PACK_FOLDER}/{shard}.npz"


def hour_state_blob(hour: datetime) -> str:
    """The hour's life cycle document (``logs`` container): revisions, inputs, outcome."""
    return f"{hour_prefix(hour)}hour.json"


def scored_marker_blob(hour: datetime) -> str:
    """Written (``logs`` container) each time a revision of the hour completes: one Put Blob of a known
    name that Azure Monitor sees in the storage account's ``StorageBlobLogs``, so an alert can tell a
    scored hour from a missed one without reading blobs or holding a key."""
    return f"{hour_prefix(hour)}scored.json"


def job_prefix(hour: datetime, job_id: str) -> str:
    return f"{hour_prefix(hour)}{validate_job_id(job_id)}/"


def job_record_blob(hour: datetime, job_id: str) -> str:
    return f"{job_prefix(hour, job_id)}job.json"


def manifest_blob(hour: datetime, job_id: str, task_id: str) -> str:
    return f"{job_prefix(hour, job_id)}manifests/{validate_task_id(task_id)}.json"


def run_log_blob(hour: datetime, job_id: str, task_id: str) -> str:
    return f"{job_prefix(hour, job_id)}tasks/{validate_task_id(task_id)}.jsonl"


_MANIFEST = re.compile(
    r"(?P<hour>\d{4}/\d{2}/\d{2}/\d{2})/(?P<job>[A-Za-z0-9_-]{1,64})/manifests/(?P<task>[A-Za-z0-9_-]{1,64})\.json"
)


def parse_manifest_blob(name: str) -> tuple[datetime, str, str]:
    """(hour, job id, task id) of a manifest blob name; anything outside a job's folder is refused."""
    match = _MANIFEST.fullmatch(name)
    if match is None:
        raise ValueError(
            f"invalid manifest location {name!r}: expected YYYY/MM/DD/HH/<job id>/manifests/<task id>.json "
            "in the 'logs' container"
        )
    try:
        hour = datetime.strptime(match["hour"], "%Y/%m/%d/%H").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"invalid manifest location {name!r}: {match['hour']!r} is not an hour") from None
    return hour, match["job"], match["task"]
