"""Storage settings and the client factory: a connection string for Azurite, identity for Azure."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable

import requests
from azure.core.exceptions import ResourceExistsError
from azure.core.pipeline.transport import RequestsTransport
from azure.identity import DefaultAzureCredential
from azure.storage.blob import BlobServiceClient
from pydantic import BaseModel, ConfigDict, SecretStr, model_validator
from requests.adapters import HTTPAdapter

from workloads.common.layout import Container

CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"
ACCOUNT_URL_ENV = "AZURE_STORAGE_ACCOUNT_URL"


class StorageSettings(BaseModel):
    """Where the blobs are. Exactly one of the two must be set.

    ``account_url`` (``https://<account>.blob.core.windows.net``) authenticates with
    DefaultAzureCredential, i.e. the managed identity of a Batch node or container group; the
    connection string is for Azurite, whose well-known development key is public.
    """

    model_config = ConfigDict(frozen=True)

    connection_string: SecretStr | None = None
    account_url: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> StorageSettings:
        if (self.connection_string is None) == (self.account_url is None):
            raise ValueError(
                f"set exactly one of {CONNECTION_STRING_ENV} (Azurite) or {ACCOUNT_URL_ENV} (Azure, with identity)"
            )
        return self

    @classmethod
    def from_env(cls) -> StorageSettings:
        conn = os.environ.get(CONNECTION_STRING_ENV)
        return cls(
            connection_string=SecretStr(conn) if conn else None,
            account_url=os.environ.get(ACCOUNT_URL_ENV) or None,
        )

    def client(self, max_connections: int = 32) -> BlobServiceClient:
        # A connection pool as large as the thread pools that share the client, so parallel
        # downloads do not queue on urllib3's default of 10 connections.
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max_connections)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        transport = RequestsTransport(session=session, session_owner=True)
        if self.connection_string is not None:
            return BlobServiceClient.from_connection_string(
                self.connection_string.get_secret_value(), transport=transport
            )
        assert self.account_url is not None  # guaranteed by the validator
        return BlobServiceClient(self.account_url, credential=DefaultAzureCredential(), transport=transport)


def ensure_containers(service: BlobServiceClient, names: Iterable[str] = tuple(Container)) -> None:
    """Create the platform's containers if missing (Pulumi creates them in Azure; this serves Azurite)."""
    for name in names:
        with contextlib.suppress(ResourceExistsError):
            service.create_container(name)
