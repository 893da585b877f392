"""One training task: train one shard's pairs on its history and write the task's run log.

What a Batch task of a training job runs (``trainer task --manifest <blob>``) and what the local backend's
workers run. The task reads only its shard's folders (``history.read_shard_history``), hands the rows to
``train_and_publish`` (so only its shard's model pack is touched: every pair it trains is of its shard), and
writes ``training/<job>/tasks/<task>.jsonl``: one line per skipped pair with its reason, then the task line.

A pair that cannot be trained is skipped, never a failure of the task. History that cannot be read, or packs
that cannot be updated, fail the task: the log says why, then the error is raised (the CLI exits 1), so Batch
retries it ("The Batch service retries a Task if its exit code is nonzero", BatchJobConstraints.maxTaskRetryCount);
a retry overwrites the log. Retrying is safe: every model and pack entry it writes is a
replacement of the same pair's.

A manifest naming a ``module:function`` model factory is refused (exit 2, before anything is imported) unless
the task's environment allows exactly that factory (``SCORING_TRAINING_FACTORY``): see ``check_factory_allowed``.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime
from functools import lru_cache

import pandas as pd
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from workloads.common import envvars
from workloads.common.layout import Container
from workloads.common.runlog import error_line
from workloads.common.storage import StorageSettings
from workloads.training.history import ShardHistory, read_shard_history
from workloads.training.jobs import (
    SkippedPairLine,
    TrainingManifest,
    TrainingTaskLine,
    parse_manifest_blob,
    run_log_blob,
    to_jsonl,
)
from workloads.training.train import TrainingReport, skip_counts, train_and_publish


class TrainingManifestError(ValueError):
    """A manifest that is missing, outside a training job's folder, or inconsistent with where it lives."""


class TrainingTaskError(RuntimeError):
    """The task could not do its work (its log, already written, says why): the task fails and is retried."""


def read_training_manifest(service: BlobServiceClient, blob_name: str) -> TrainingManifest:
    """A manifest only from a training job's ``manifests/`` folder, naming the job and task its location does."""
    job_id, task_id = parse_manifest_blob(blob_name)
    try:
        data = service.get_container_client(str(Container.LOGS)).download_blob(blob_name).readall()
    except ResourceNotFoundError:
        raise TrainingManifestError(f"no training manifest at logs/{blob_name}") from None
    try:
        manifest = TrainingManifest.model_validate_json(data)
    except ValueError as exc:
        raise TrainingManifestError(f"invalid training manifest logs/{blob_name}: {exc}") from None
    if (manifest.job_id, manifest.task_id) != (job_id, task_id):
        raise TrainingManifestError(
            f"manifest logs/{blob_name} names job {manifest.job_id!r} and task {manifest.task_id!r}, "
            "which do not match its location"
        )
    return manifest


def _skipped_lines(manifest: TrainingManifest, report: TrainingReport) -> list[SkippedPairLine]:
    return [
        SkippedPairLine(
            job_id=manifest.job_id,
            task_id=manifest.task_id,
            device_id=pair.device_id,
            sensor=pair.sensor,
            reason=skip.reason,
            error=skip.message,
        )
        for pair, skip in sorted(report.skipped.items(), key=lambda item: (item[0].device_id, item[0].sensor))
    ]


def run_training_task(service: BlobServiceClient, manifest: TrainingManifest) -> TrainingTaskLine:
    """Train the manifest's shard and write its run log; raises (after the log is written) when it failed."""
    started, clock = datetime.now(UTC), time.perf_counter()
    timings: dict[str, float] = {}
    history: ShardHistory | None = None
    report: TrainingReport | None = None
    error: Exception | None = None
    try:
        history = read_shard_history(
            service, manifest.shard, manifest.shard_index, manifest.shard_count, manifest.start, manifest.end
        )
        timings["read"] = round((time.perf_counter() - clock) * 1000, 1)
        report = train_and_publish(
            service,
            manifest.start,
            manifest.end,
            features=manifest.features,
            model=manifest.model,
            trusted_types=manifest.trusted_types,
            min_rows=manifest.min_rows,
            pairs=None,
            shard_count=manifest.shard_count,
            history=history.frame,
        )
        timings["train_publish"] = round((time.perf_counter() - clock) * 1000 - timings["read"], 1)
    except Exception as exc:  # written to the log first, then raised: the task fails and is retried
        error = exc
    timings["total"] = round((time.perf_counter() - clock) * 1000, 1)
    skipped = _skipped_lines(manifest, report) if report is not None else []
    read = history if history is not None else ShardHistory(frame=pd.DataFrame())
    line = TrainingTaskLine(
        job_id=manifest.job_id,
        task_id=manifest.task_id,
        shard=manifest.shard,
        start=manifest.start,
        end=manifest.end,
        host=socket.gethostname(),
        started_at=started,
        finished_at=datetime.now(UTC),
        error=error_line(error) if error is not None else None,
        pairs=len(report.published) + len(report.skipped) if report is not None else 0,
        trained=len(report.published) if report is not None else 0,
        skipped=skip_counts(report.skipped) if report is not None else {},
        packs_written=len(report.packs.written) if report is not None and report.packs is not None else 0,
        pack_entries=sum(report.packs.written.values()) if report is not None and report.packs is not None else 0,
        pack_left_out=report.packs.left_out() if report is not None and report.packs is not None else {},
        timings_ms=timings,
        hours_listed=read.hours_listed,
        aggregate_blobs=read.blobs,
        rows_read=read.rows_read,
        rows=read.rows,
        rows_of_other_shards=read.rows_of_other_shards,
        rows_outside_their_hour=read.rows_outside_their_hour,
        windows_not_finite=report.windows_not_finite if report is not None else 0,
        quarantined=read.quarantined,
        corrupt_blobs=read.corrupt,
        duplicate_rows=read.duplicates,
        conflicting_rows=read.conflicts,
    )
    logs = service.get_container_client(str(Container.LOGS))
    try:
        logs.upload_blob(run_log_blob(manifest.job_id, manifest.task_id), to_jsonl(line, skipped), overwrite=True)
    except Exception:
        if error is None:
            raise  # the models are published, but without its log the task must count as failed: retried
    if error is not None:
        raise TrainingTaskError(f"training task {manifest.task_id} ({manifest.shard}) failed: {line.error}") from error
    return line


@lru_cache(maxsize=4)
def _client(settings: StorageSettings) -> BlobServiceClient:
    return settings.client()


def check_factory_allowed(manifest: TrainingManifest, allowed: str | None) -> None:
    """Refuse a manifest whose model is a ``module:function`` factory unless the task's own environment allows
    exactly that factory (``SCORING_TRAINING_FACTORY``, set by ``trainer submit`` when its user chose one).

    A manifest is a blob in ``logs``, which the scorer identity can write too; a Batch task's environment settings
    cannot be changed once the task is added. Without this, rewriting a manifest's ``model.family`` to, say,
    ``os:system`` would have the task import and call it. The named families are plain scikit-learn estimators."""
    family = manifest.model.family
    if manifest.model.is_custom and family != allowed:
        granted = f"it allows only {allowed!r}" if allowed else "it allows none"
        raise TrainingManifestError(
            f"training manifest of task {manifest.task_id} names the model factory {family!r}, which this task's "
            f"environment does not allow ({envvars.TRAINING_FACTORY}: {granted}); submit the training again with "
            f"`trainer submit --model {family}` to run it"
        )


def run_training_manifest(settings: StorageSettings, blob_name: str) -> TrainingTaskLine:
    """The entry point of ``trainer task`` and of the local backend's workers (a client kept per process)."""
    service = _client(settings)
    manifest = read_training_manifest(service, blob_name)
    check_factory_allowed(manifest, os.environ.get(envvars.TRAINING_FACTORY) or None)
    return run_training_task(service, manifest)
