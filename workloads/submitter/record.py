"""The job record, ``logs/{hour}/{job}/job.json``: what was submitted, where, and how it ended."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient
from pydantic import BaseModel, Field

from workloads.common.layout import Container, job_record_blob


class JobStatus(StrEnum):
    SUBMITTED = "submitted"  # handed to a backend that runs it asynchronously (Batch)
    COMPLETED = "completed"  # every task ran (pairs may still have failed: see the run log)
    FAILED = "failed"  # at least one task did not run to the end


class JobRecord(BaseModel):
    job_id: str
    stack: str
    hour: datetime
    backend: str
    status: JobStatus
    submitted_at: datetime
    finished_at: datetime | None = None
    tasks: int
    pairs: int
    manifests: list[str] = Field(default_factory=list)
    silent_pairs: list[str] = Field(default_factory=list)
    aggregate_errors: dict[str, str] = Field(default_factory=dict)
    task_errors: dict[str, str] = Field(default_factory=dict)
    ok: int = 0
    no_data: int = 0
    failed: int = 0
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
