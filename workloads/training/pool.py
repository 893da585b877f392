"""Submitting a training job: one task per shard with history in the window, on the local backend or on Batch.

``trainer submit`` plans from listings only (``history.list_window``: one listing per day of the window),
writes ``job.json`` and one manifest per shard under ``logs/training/<job id>/``, hands the tasks to a backend
(``TaskBackend.submit_tasks``: the local workers, or a Batch job on the stack's pool running the task image
with the trainer as entry point), waits for them, and sums the tasks' run logs into one summary. The job id is
deterministic (``jobs.training_job_id``), so submitting the same training again finds the same job (on Batch:
resumed while active, refused once completed, ``pool_batch``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from workloads.common.layout import Container
from workloads.common.shards import parse_shard_name
from workloads.submitter.backend import JobOutcome, JobSpec, TaskBackend, TaskCommand
from workloads.submitter.plan import validate_stack
from workloads.training.families import ModelSpec
from workloads.training.history import list_window
from workloads.training.jobs import (
    TrainingJob,
    TrainingManifest,
    TrainingTaskLine,
    job_blob,
    manifest_blob,
    output_prefix,
    parse_jsonl,
    run_log_blob,
    spec_hash,
    training_job_id,
    training_task_id,
)

if TYPE_CHECKING:
    from workloads.submitter.batch import BatchBackend

MANIFEST_THREADS = 16


@dataclass(frozen=True)
class TrainingRequest:
    """What to train: the window, the model and the fleet's shard count (everything a manifest carries)."""

    stack: str
    start: datetime
    end: datetime
    shard_count: int
    features: tuple[str, ...]
    model: ModelSpec
    min_rows: int
    trusted_types: tuple[str, ...] = ()

    @property
    def job_id(self) -> str:
        digest = spec_hash(
            self.start,
            self.end,
            shard_count=self.shard_count,
            features=self.features,
            model=self.model,
            min_rows=self.min_rows,
            trusted_types=self.trusted_types,
        )
        return training_job_id(validate_stack(self.stack), self.start, self.end, digest)


@dataclass(frozen=True)
class TrainingPlan:
    request: TrainingRequest
    job_id: str
    manifests: tuple[TrainingManifest, ...]
    blobs_outside_shard_folders: int = 0

    @property
    def tasks(self) -> dict[str, str]:
        return {m.task_id: m.shard for m in self.manifests}


def plan_training(service: BlobServiceClient, request: TrainingRequest) -> TrainingPlan:
    """One task per shard folder with aggregates in the window; listings only, no rows read."""
    job_id = request.job_id
    listing = list_window(service, request.start, request.end, request.shard_count)
    manifests = tuple(
        TrainingManifest(
            job_id=job_id,
            task_id=training_task_id(parse_shard_name(shard)[0], request.shard_count),
            shard_count=request.shard_count,
            shard=shard,
            start=request.start,
            end=request.end,
            features=request.features,
            model=request.model,
            min_rows=request.min_rows,
            trusted_types=request.trusted_types,
        )
        for shard in listing.shards
    )
    return TrainingPlan(request, job_id, manifests, listing.outside_shard_folders)


def write_training_job(service: BlobServiceClient, plan: TrainingPlan, backend: str) -> dict[str, str]:
    """``job.json`` and one manifest per task (overwritten with the same contents on a resubmission)."""
    logs = service.get_container_client(str(Container.LOGS))
    request = plan.request
    job = TrainingJob(
        job_id=plan.job_id,
        stack=request.stack,
        start=request.start,
        end=request.end,
        shard_count=request.shard_count,
        features=request.features,
        model=request.model,
        min_rows=request.min_rows,
        trusted_types=request.trusted_types,
        tasks=plan.tasks,
        backend=backend,
        submitted_at=datetime.now(UTC),
        blobs_outside_shard_folders=plan.blobs_outside_shard_folders,
    )

    def upload(manifest: TrainingManifest) -> tuple[str, str]:
        name = manifest_blob(plan.job_id, manifest.task_id)
        logs.upload_blob(name, manifest.model_dump_json(), overwrite=True)
        return manifest.task_id, name

    with ThreadPoolExecutor(max_workers=MANIFEST_THREADS) as pool:
        manifests = dict(pool.map(upload, plan.manifests))
    logs.upload_blob(job_blob(plan.job_id), job.model_dump_json(indent=2), overwrite=True)
    return manifests


def submit_training(
    service: BlobServiceClient,
    plan: TrainingPlan,
    backend: TaskBackend,
    task_max_wall: timedelta | None = None,
) -> JobOutcome:
    """Write the job's blobs and hand its tasks to the backend (local: runs them; Batch: enqueues them)."""
    manifests = write_training_job(service, plan, backend.name)
    if not manifests:
        return JobOutcome(finished=True)
    job = JobSpec(
        job_id=plan.job_id,
        display_name=f"training {plan.request.stack} {len(manifests)} shard(s) "
        f"{plan.request.start:%Y-%m-%dT%H}..{plan.request.end:%Y-%m-%dT%H}",
        output_prefix=output_prefix(plan.job_id),
        task_max_wall=task_max_wall,
        bounded=False,  # each task is bounded (wall clock x retries); the job may queue on a small pool
    )
    return backend.submit_tasks(job, {task_id: TaskCommand("trainer", blob) for task_id, blob in manifests.items()})


def read_training_job(service: BlobServiceClient, job_id: str) -> TrainingJob:
    try:
        data = service.get_container_client(str(Container.LOGS)).download_blob(job_blob(job_id)).readall()
    except ResourceNotFoundError:
        raise ValueError(f"no training job {job_id!r}: logs/{job_blob(job_id)} does not exist") from None
    return TrainingJob.model_validate_json(data)


@dataclass
class TrainingSummary:
    """A training job's outcome, summed from its tasks' run logs (their size grows with problems, not pairs)."""

    job_id: str
    tasks: int
    finished: bool = True
    tasks_ok: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # task id -> why (its log's error, the backend's)
    missing_logs: list[str] = field(default_factory=list)  # tasks that wrote no run log
    pairs: int = 0
    trained: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> pairs
    skipped_pairs: dict[str, str] = field(default_factory=dict)  # "device/sensor" -> reason (the first 100)
    rows_read: int = 0
    rows: int = 0
    quarantined_rows: int = 0
    duplicate_rows: int = 0
    conflicting_rows: int = 0
    rows_of_other_shards: int = 0
    rows_outside_their_hour: int = 0
    windows_not_finite: int = 0  # windows of trained pairs left out of their fit
    corrupt_blobs: dict[str, str] = field(default_factory=dict)
    blobs_outside_shard_folders: int = 0
    packs_written: int = 0
    pack_left_out: dict[str, int] = field(default_factory=dict)  # reason -> trained pairs given no pack entry
    task_seconds_max: float = 0.0
    read_seconds: float = 0.0  # summed over tasks: listing, downloading and validating their history
    train_publish_seconds: float = 0.0  # summed over tasks: fitting, serialising, publishing, packs

    @property
    def ok(self) -> bool:
        return self.finished and not self.failed and not self.missing_logs

    @property
    def notes(self) -> list[str]:
        """What the job did not train on and why, in words (the counts are beside them in the summary)."""
        if not self.blobs_outside_shard_folders:
            return []
        return [
            f"{self.blobs_outside_shard_folders} aggregate blob(s) of the window lie in no shard folder of this "
            "shard count (the old layout, directly under the hour, or another shard count's folders): no task "
            "reads them, so their rows were not trained on. The scoring run of each of those hours refiles their "
            "rows into shard folders, after which a new training finds them; or train with `trainer train`, "
            "which reads every folder of every hour."
        ]

    def as_json(self) -> dict[str, object]:
        return {
            "job_id": self.job_id,
            "ok": self.ok,
            "finished": self.finished,
            "tasks": self.tasks,
            "tasks_ok": self.tasks_ok,
            "tasks_failed": len(self.failed),
            "failed": self.failed,
            "missing_logs": self.missing_logs,
            "pairs": self.pairs,
            "trained": self.trained,
            "skipped": self.skipped,
            "skipped_pairs": self.skipped_pairs,
            "rows_read": self.rows_read,
            "rows": self.rows,
            "quarantined_rows": self.quarantined_rows,
            "duplicate_rows": self.duplicate_rows,
            "conflicting_rows": self.conflicting_rows,
            "rows_of_other_shards": self.rows_of_other_shards,
            "rows_outside_their_hour": self.rows_outside_their_hour,
            "windows_not_finite": self.windows_not_finite,
            "corrupt_blobs": self.corrupt_blobs,
            "blobs_outside_shard_folders": self.blobs_outside_shard_folders,  # not trained on: see notes
            "notes": self.notes,
            "packs_written": self.packs_written,
            "pack_left_out": self.pack_left_out,  # scored from their own models until `trainer pack`
            "task_seconds_max": self.task_seconds_max,
            "read_seconds": round(self.read_seconds, 2),
            "train_publish_seconds": round(self.train_publish_seconds, 2),
        }


MAX_SKIPPED_SHOWN = 100


def summarise(
    service: BlobServiceClient,
    job_id: str,
    task_ids: Mapping[str, str],
    outcome: JobOutcome,
    blobs_outside_shard_folders: int = 0,
) -> TrainingSummary:
    """Sum the tasks' run logs. A task counts as ok only with a log without error and no error from the backend;
    a task without a log (never ran, or died before writing it) counts as missing."""
    logs = service.get_container_client(str(Container.LOGS))

    def read(task_id: str) -> tuple[str, bytes | None]:
        try:
            return task_id, logs.download_blob(run_log_blob(job_id, task_id)).readall()
        except ResourceNotFoundError:
            return task_id, None

    summary = TrainingSummary(
        job_id, len(task_ids), outcome.finished, blobs_outside_shard_folders=blobs_outside_shard_folders
    )
    with ThreadPoolExecutor(max_workers=MANIFEST_THREADS) as pool:
        found = dict(pool.map(read, sorted(task_ids)))
    for task_id, data in found.items():
        if data is None:
            summary.missing_logs.append(task_id)
            if task_id in outcome.task_errors:
                summary.failed[task_id] = outcome.task_errors[task_id]
            continue
        task, skipped = parse_jsonl(data)
        if task is None:
            summary.missing_logs.append(task_id)
            continue
        _add(summary, task)
        for line in skipped:
            if len(summary.skipped_pairs) < MAX_SKIPPED_SHOWN:
                summary.skipped_pairs[f"{line.device_id}/{line.sensor}"] = line.reason
        error = task.error or outcome.task_errors.get(task_id)
        if error:
            summary.failed[task_id] = error
        else:
            summary.tasks_ok += 1
    summary.skipped = dict(sorted(summary.skipped.items()))
    return summary


def _add(summary: TrainingSummary, task: TrainingTaskLine) -> None:
    summary.pairs += task.pairs
    summary.trained += task.trained
    for reason, count in task.skipped.items():
        summary.skipped[reason] = summary.skipped.get(reason, 0) + count
    summary.rows_read += task.rows_read
    summary.rows += task.rows
    summary.quarantined_rows += task.quarantined_rows
    summary.duplicate_rows += task.duplicate_rows
    summary.conflicting_rows += task.conflicting_rows
    summary.rows_of_other_shards += task.rows_of_other_shards
    summary.rows_outside_their_hour += task.rows_outside_their_hour
    summary.windows_not_finite += task.windows_not_finite
    summary.corrupt_blobs.update(task.corrupt_blobs)
    summary.packs_written += task.packs_written
    for reason, count in task.pack_left_out.items():
        summary.pack_left_out[reason] = summary.pack_left_out.get(reason, 0) + count
    summary.task_seconds_max = max(summary.task_seconds_max, round(task.timings_ms.get("total", 0.0) / 1000, 2))
    summary.read_seconds += task.timings_ms.get("read", 0.0) / 1000
    summary.train_publish_seconds += task.timings_ms.get("train_publish", 0.0) / 1000


def run_training(
    service: BlobServiceClient,
    request: TrainingRequest,
    backend: TaskBackend,
    *,
    wait: Callable[[str, int], JobOutcome] | None = None,
    task_max_wall: timedelta | None = None,
) -> TrainingSummary:
    """Plan, submit, wait (``wait(job id, tasks)``: the Batch backend's polling; the local backend has finished
    inside ``submit``) and summarise."""
    plan = plan_training(service, request)
    outcome = submit_training(service, plan, backend, task_max_wall)
    if not outcome.finished and wait is not None:
        submitted = outcome.task_errors  # tasks Batch did not accept: they never finish, so are not waited for
        outcome = wait(plan.job_id, len(plan.manifests) - len(submitted))
        outcome.task_errors = {**submitted, **outcome.task_errors}
    return summarise(service, plan.job_id, plan.tasks, outcome, plan.blobs_outside_shard_folders)


def batch_waiter(runner: BatchBackend, poll_seconds: float, timeout: timedelta) -> Callable[[str, int], JobOutcome]:
    """Waiting for a Batch training job: poll its task counts until every task finished or ``timeout`` passed
    (then not finished: the summary fails), and name the tasks that failed after their retries. The job itself
    ends by ``terminatejob`` once its last task completes; its state is not waited for."""

    def wait(job_id: str, total: int) -> JobOutcome:
        counts = runner.wait(job_id, total, poll_seconds=poll_seconds, timeout=timeout)
        if counts.finished < total:
            return JobOutcome(finished=False)
        return JobOutcome(finished=True, task_errors=runner.failed_tasks(job_id))

    return wait
