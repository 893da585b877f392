"""Submitting a planned hour: idempotency check, manifests, hand-off, job record."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from azure.storage.blob import BlobServiceClient

from workloads.common.layout import Container, manifest_blob
from workloads.common.manifest import TaskManifest
from workloads.submitter.backend import Backend
from workloads.submitter.plan import JobPlan
from workloads.submitter.record import JobRecord, read_record, write_record


@dataclass(frozen=True)
class SubmitResult:
    record: JobRecord | None  # None only when a backend knows the job but no record was written
    skipped: bool  # the job existed already: nothing was submitted again
    record_blob: str | None = None


def write_manifests(service: BlobServiceClient, plan: JobPlan) -> dict[str, str]:
    """One manifest blob per task, so a Batch command line carries a blob name, not thousands of pairs."""
    logs = service.get_container_client(str(Container.LOGS))

    def upload(task: TaskManifest) -> tuple[str, str]:
        name = manifest_blob(plan.hour, plan.job_id, task.task_id)
        logs.upload_blob(name, task.model_dump_json(), overwrite=True)
        return task.task_id, name

    with ThreadPoolExecutor(max_workers=16) as pool:
        return dict(pool.map(upload, plan.tasks))


def submit_plan(service: BlobServiceClient, plan: JobPlan, backend: Backend, *, force: bool = False) -> SubmitResult:
    """Submit the plan unless the backend already has this job (a double trigger); ``force`` re-runs it.

    A re-run overwrites the hour's predictions and logs blob by blob, so it never duplicates them.
    """
    if not force and backend.already_submitted(plan):
        return SubmitResult(record=read_record(service, plan.hour, plan.job_id), skipped=True)
    submitted_at = datetime.now(UTC)
    manifests = write_manifests(service, plan)
    outcome = backend.submit(plan, manifests)
    tasks = outcome.tasks
    record = JobRecord(
        job_id=plan.job_id,
        stack=plan.stack,
        hour=plan.hour,
        backend=backend.name,
        status=outcome.status,
        submitted_at=submitted_at,
        finished_at=datetime.now(UTC) if tasks or outcome.task_errors else None,
        tasks=len(plan.tasks),
        pairs=plan.pairs,
        manifests=sorted(manifests.values()),
        silent_pairs=[str(p) for p in plan.silent_pairs],
        aggregate_errors=plan.aggregate_errors,
        task_errors=outcome.task_errors,
        ok=sum(t.ok for t in tasks),
        no_data=sum(t.no_data for t in tasks),
        failed=sum(t.failed for t in tasks),
        anomalies=sum(t.anomalies for t in tasks),
    )
    return SubmitResult(record=record, skipped=False, record_blob=write_record(service, record))
