"""Test fixtures: one real Azurite for the session, emptied between tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from tests.faults import FaultProxy
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


@pytest.fixture(scope="session")
def _fault_proxy_server(azurite: tuple[int, str]) -> Iterator[FaultProxy]:
    with FaultProxy(azurite[0]) as proxy:
        yield proxy


@pytest.fixture
def fault_proxy(_fault_proxy_server: FaultProxy) -> Iterator[FaultProxy]:
    """The session's fault-injecting proxy in front of Azurite, with no rules and an empty log.

    ``fault_proxy.connection_string(azurite[1])`` reaches Azurite through it; ``faulty_settings``
    puts that in the environment, for this process and the workers and CLIs it starts.
    """
    _fault_proxy_server.clear()
    yield _fault_proxy_server
    _fault_proxy_server.clear()


@pytest.fixture
def faulty_settings(
    fault_proxy: FaultProxy, azurite: tuple[int, str], monkeypatch: pytest.MonkeyPatch
) -> StorageSettings:
    """Storage settings through ``fault_proxy``, with fast retries (2, 50 ms backoff) and 2 s timeouts."""
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", fault_proxy.connection_string(azurite[1]))
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_URL", raising=False)
    monkeypatch.setenv("AZURE_STORAGE_RETRY_TOTAL", "2")
    monkeypatch.setenv("AZURE_STORAGE_RETRY_BACKOFF_SECONDS", "0.05")
    monkeypatch.setenv("AZURE_STORAGE_TIMEOUT_SECONDS", "2")
    return StorageSettings.from_env()
