"""The scorer entry point shared by the CLI (a Batch task) and the local backend's worker processes.

A worker process keeps its storage client and model cache between tasks, so a local pool or a
long-lived node amortises connection set-up and model loading across tasks and hours.
"""

from __future__ import annotations

from functools import lru_cache

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from workloads.common import telemetry
from workloads.common.layout import Container, parse_manifest_blob
from workloads.common.manifest import TaskManifest
from workloads.common.modelstore import ModelCache
from workloads.common.storage import StorageSettings
from workloads.scorer.task import ScorerOptions, TaskReport, score_task

_CACHE = ModelCache()


class ManifestError(ValueError):
    """A manifest that is missing, outside its job's folder, or inconsistent with where it lives."""


@lru_cache(maxsize=4)
def _client(settings: StorageSettings) -> BlobServiceClient:
    return settings.client()


def read_manifest(service: BlobServiceClient, blob_name: str) -> TaskManifest:
    """A manifest blob, only from a job's ``manifests/`` folder under ``logs/``, and only if its
    contents name the hour, job and task its location does (a copied manifest cannot redirect writes)."""
    hour, job_id, task_id = parse_manifest_blob(blob_name)
    try:
        data = service.get_container_client(str(Container.LOGS)).download_blob(blob_name).readall()
    except ResourceNotFoundError:
        raise ManifestError(f"no manifest at logs/{blob_name}") from None
    try:
        manifest = TaskManifest.model_validate_json(data)
    except ValueError as exc:
        raise ManifestError(f"invalid manifest logs/{blob_name}: {exc}") from None
    if (manifest.hour, manifest.job_id, manifest.task_id) != (hour, job_id, task_id):
        raise ManifestError(
            f"manifest logs/{blob_name} names hour {manifest.hour:%Y-%m-%dT%H}, job {manifest.job_id!r} and "
            f"task {manifest.task_id!r}, which do not match its location"
        )
    return manifest


def load_manifest(settings: StorageSettings, blob_name: str) -> TaskManifest:
    return read_manifest(_client(settings), blob_name)


def run_manifest(settings: StorageSettings, manifest: TaskManifest | str, options: ScorerOptions) -> TaskReport:
    """Score a manifest given inline or as a blob name in the ``logs`` container (with a span and pair
    counts when telemetry is configured)."""
    telemetry.setup("batchscoring-scorer")
    service = _client(settings)
    if isinstance(manifest, str):
        manifest = read_manifest(service, manifest)
    ids = {"job_id": manifest.job_id, "task_id": manifest.task_id, "hour": f"{manifest.hour:%Y-%m-%dT%H}"}
    where = {"folder": manifest.folder or "", "slice": f"{manifest.slice_index}/{manifest.slices}"}
    with telemetry.span("score_task", blobs=len(manifest.inputs), **where, **ids) as current:
        report = score_task(service, manifest, options, _CACHE)
        task = report.task
        if current is not None:
            for key in ("pairs", "ok", "failed", "no_data", "anomalies", "pack_pairs", "model_pairs"):
                current.set_attribute(key, getattr(task, key))
    telemetry.count_pairs({"ok": task.ok, "failed": task.failed, "no_data": task.no_data}, job_id=task.job_id)
    telemetry.task_duration(task.timings_ms.get("total", 0.0) / 1000, job_id=task.job_id)
    telemetry.flush()
    return report
