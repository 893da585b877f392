"""Blob layout: the names of containers and blobs, in one place.

Every time-partitioned path starts with ``{yyyy}/{MM}/{dd}/{HH}/`` of the scoring hour, so an hour is
one prefix to list, to expire with a lifecycle rule, or to delete.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

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


def prediction_blob(hour: datetime, pair: Pair) -> str:
    """One blob per pair and hour: a re-run overwrites it, whatever the chunking was."""
    return f"{hour_prefix(hour)}{pair.device_id}/{pair.sensor}.parquet"


def job_prefix(hour: datetime, job_id: str) -> str:
    return f"{hour_prefix(hour)}{job_id}/"


def job_record_blob(hour: datetime, job_id: str) -> str:
    return f"{job_prefix(hour, job_id)}job.json"


def manifest_blob(hour: datetime, job_id: str, task_id: str) -> str:
    return f"{job_prefix(hour, job_id)}manifests/{task_id}.json"


def run_log_blob(hour: datetime, job_id: str, task_id: str) -> str:
    return f"{job_prefix(hour, job_id)}tasks/{task_id}.jsonl"
