"""The job record, ``logs/{hour}/{job}/job.json``: one revision of an hour, what it read and how it ended."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient
from pydantic import BaseModel, Field

from workloads.common.hour_state import AttemptStatus as JobStatus
from workloads.common.hour_state import Reason
from workloads.common.ids import JobId
from workloads.common.layout import Container, job_record_blob

__all__ = ["JobRecord", "JobStatus", "read_record", "write_record"]


class JobRecord(BaseModel):
    job_id: JobId
    stack: str
    hour: datetime
    revision: int = 1
    reason: Reason = Reason.NEVER_SCORED
    backend: str
    status: JobStatus
    submitted_at: datetime
    finished_at: datetime | None = None
    fingerprint: str = ""
    inputs: list[str] = Field(default_factory=list)  # aggregate blobs the revision was planned on
    # Blobs under the hour that are no input (``layout.parse_aggregate_blob``): read by no task, named so that
    # none goes unseen; the first ``hour_inputs.MAX_NAMES_SHOWN`` of them, and how many there were.
    ignored_blobs: list[str] = Field(default_factory=list)
    ignored_blobs_total: int = 0
    tasks: int
    shards: int = 0  # shard folders with data
    manifests: list[str] = Field(default_factory=list)
    # The rest is summed from the tasks' run logs when the revision is finalised.
    pairs: int = 0  # pairs found in the hour's rows
    input_issues: dict[str, Any] = Field(default_factory=dict)  # corrupt blobs, quarantined/refiled/duplicate rows
    rows: dict[str, int] = Field(default_factory=dict)  # where every row read went (``finalise.row_account``)
    task_errors: dict[str, str] = Field(default_factory=dict)  # tasks that did not finish their work
    ok: int = 0
    no_data: int = 0  # pairs with a model but no rows this hour (in shards with data)
    failed: int = 0
    unaccounted: int = 0  # pairs a task found without a run-log line: never silently dropped
    unaccounted_rows: int = 0  # rows the tasks' accounts do not place: never silently dropped
    anomalies: int = 0


def read_record(service: BlobServiceClient, hour: datetime, job_id: str) -> JobRecord | None:
    logs = service.get_container_client(str(Container.LOGS))
    try:
        return JobRecord.model_validate_json(logs.download_blob(job_record_blob(hour, job_id)).readall())
    except ResourceNotFoundError:
        return None


def write_record(service: BlobServiceClient, record: JobRecord) -> str:
    name = job_record_blob(record.hour, record.job_id)
    logs = service.get_container_client(str(Container.LOGS))
    logs.upload_blob(name, record.model_dump_json(indent=2), overwrite=True)
    return name
