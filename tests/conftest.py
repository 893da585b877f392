"""Test fixtures: one real Azurite for the session, emptied between tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from workloads.common.layout import Container
from workloads.common.storage import StorageSettings, ensure_containers
from workloads.demo.azurite import free_port, running_azurite


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    """(port, connection string) of an Azurite started for this test session on a free port."""
    port = free_port()
    with running_azurite(port, Path(tmp_path_factory.mktemp("azurite"))) as conn:
        yield port, conn


@pytest.fixture
def settings(azurite: tuple[int, str], monkeypatch: pytest.MonkeyPatch) -> StorageSettings:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite[1])
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_URL", raising=False)
    return StorageSettings.from_env()


@pytest.fixture
def service(settings: StorageSettings) -> BlobServiceClient:
    """A client on empty platform containers."""
    client = settings.client()
    ensure_containers(client)
    for name in Container:
        container = client.get_container_client(str(name))
        for blob in container.list_blobs():
            container.delete_blob(blob.name)
    return client
