"""Submitting one planned revision: manifests, hand-off to the backend, the job record."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from azure.storage.blob import BlobServiceClient

from workloads.common.hour_inputs import MAX_NAMES_SHOWN
from workloads.common.hour_state import Reason
from workloads.common.layout import Container, manifest_blob
from workloads.common.manifest import TaskManifest
from workloads.submitter.backend import Backend, JobOutcome
from workloads.submitter.plan import JobPlan
from workloads.submitter.record import JobRecord, JobStatus, write_record


def write_manifests(service: BlobServiceClient, plan: JobPlan) -> dict[str, str]:
    """One manifest blob per task, so a Batch command line carries a blob name, not a list of blobs."""
    logs = service.get_container_client(str(Container.LOGS))

    def upload(task: TaskManifest) -> tuple[str, str]:
        name = manifest_blob(plan.hour, plan.job_id, task.task_id)
        logs.upload_blob(name, task.model_dump_json(), overwrite=True)
        return task.task_id, name

    with ThreadPoolExecutor(max_workers=16) as pool:
        return dict(pool.map(upload, plan.tasks))


def new_record(plan: JobPlan, backend: str, revision: int, reason: Reason) -> JobRecord:
    return JobRecord(
        job_id=plan.job_id,
        stack=plan.stack,
        hour=plan.hour,
        revision=revision,
        reason=reason,
        backend=backend,
        status=JobStatus.SUBMITTED,
        submitted_at=datetime.now(UTC),
        fingerprint=plan.fingerprint,
        inputs=[b.name for b in plan.inputs],
        ignored_blobs=list(plan.ignored[:MAX_NAMES_SHOWN]),
        ignored_blobs_total=len(plan.ignored),
        tasks=len(plan.tasks),
        shards=plan.shards,
    )


def submit_plan(
    service: BlobServiceClient, plan: JobPlan, backend: Backend, revision: int, reason: Reason
) -> tuple[JobRecord, JobOutcome]:
    """Write the manifests and the record, then hand the tasks over; the record is finalised later
    (``finalise``), from the run logs, once the backend says the job has finished."""
    record = new_record(plan, backend.name, revision, reason)
    manifests = write_manifests(service, plan)
    record.manifests = sorted(manifests.values())
    write_record(service, record)
    return record, backend.submit(plan, manifests)
