"""The scorer entry point shared by the CLI (a Batch task) and the local backend's worker processes.

A worker process keeps its storage client and model cache between tasks, so a local pool or a
long-lived node amortises connection set-up and model loading across chunks and hours.
"""

from __future__ import annotations

from functools import lru_cache

from azure.storage.blob import BlobServiceClient

from workloads.common.layout import Container
from workloads.common.manifest import TaskManifest
from workloads.common.modelstore import ModelCache
from workloads.common.storage import StorageSettings
from workloads.scorer.task import ScorerOptions, TaskReport, score_task

_CACHE = ModelCache()


@lru_cache(maxsize=4)
def _client(settings: StorageSettings) -> BlobServiceClient:
    return settings.client()


def read_manifest(service: BlobServiceClient, blob_name: str) -> TaskManifest:
    data = service.get_container_client(str(Container.LOGS)).download_blob(blob_name).readall()
    return TaskManifest.model_validate_json(data)


def run_manifest(settings: StorageSettings, manifest: TaskManifest | str, options: ScorerOptions) -> TaskReport:
    """Score a manifest given inline or as a blob name in the ``logs`` container."""
    service = _client(settings)
    if isinstance(manifest, str):
        manifest = read_manifest(service, manifest)
    return score_task(service, manifest, options, _CACHE)
