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
    tasks: int
    pairs: int
    manifests: list[str] = Field(default_factory=list)
    silent_pairs: list[str] = Field(default_factory=list)
    read_errors: dict[str, str] = Field(default_factory=dict)  # blobs that could not be downloaded
    input_issues: dict[str, Any] = Field(default_factory=dict)  # corrupt blobs, quarantined rows, duplicates
    task_errors: dict[str, str] = Field(default_factory=dict)  # tasks that did not finish their work
    ok: int = 0
    no_data: int = 0
    failed: int = 0
    unaccounted: int = 0  # planned pairs without a run-log line: never silently dropped
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
