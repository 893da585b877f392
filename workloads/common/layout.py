"""Blob layout: the names of containers and blobs, in one place.

Every time-partitioned path starts with ``{yyyy}/{MM}/{dd}/{HH}/`` of the scoring hour, so an hour is
one prefix to list, to expire with a lifecycle rule, or to delete.
"""

from __future__ import annotations

import re
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


# Stream Analytics writes aggregates under the same hour prefix (its output path pattern), which is
# why the local aggregator and ASA cannot disagree on where an hour lives.
ASA_PATH_PATTERN = "{datetime:yyyy}/{datetime:MM}/{datetime:dd}/{datetime:HH}"
MODEL_BLOB_NAME = "model.skops"


def hour_prefix(hour: datetime) -> str:
    return f"{floor_hour(hour):%Y/%m/%d/%H}/"


def local_aggregate_blob(hour: datetime) -> str:
    """The blob the local aggregator writes for an hour (ASA writes its own file names beside it)."""
    return f"{hour_prefix(hour)}local-aggregator.parquet"


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


def task_input_blob(hour: datetime, job_id: str, task_id: str) -> str:
    """The rows one task scores (``logs`` container), cut from the hour by the submitter, so a task
    reads its own pairs' share whatever the fleet's size."""
    return f"{job_prefix(hour, job_id)}inputs/{validate_task_id(task_id)}.parquet"


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
