"""Storage settings and the client factory: a connection string for Azurite, identity for Azure.

Retries and timeouts come from the environment so that production keeps patient retries and the
tests (which inject 503s, dropped connections and stalls through a local proxy) can make them fast:

``AZURE_STORAGE_RETRY_TOTAL``
    retries after the first attempt, 0..20 (default 5). It bounds connection errors, read errors
    and retryable statuses (408, 500, 503...) alike, so ``n`` means at most ``n + 1`` attempts.
``AZURE_STORAGE_RETRY_BACKOFF_SECONDS``
    the first backoff, doubled on every further retry (default 2.0: 2, 4, 8, 16, 32 s, each
    +-20 % jitter and capped at 60 s).
``AZURE_STORAGE_TIMEOUT_SECONDS``
    connect timeout and read timeout of one request, i.e. the longest silence tolerated while
    connecting or between two reads of a response (default 60).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import math
import os
import random
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import requests
from azure.core.exceptions import ResourceExistsError
from azure.core.pipeline.transport import RequestsTransport
from azure.identity import DefaultAzureCredential
from azure.storage.blob import BlobServiceClient, ExponentialRetry
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from requests.adapters import HTTPAdapter

from workloads.common.layout import Container

CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"
ACCOUNT_URL_ENV = "AZURE_STORAGE_ACCOUNT_URL"
RETRY_TOTAL_ENV = "AZURE_STORAGE_RETRY_TOTAL"
RETRY_BACKOFF_ENV = "AZURE_STORAGE_RETRY_BACKOFF_SECONDS"
TIMEOUT_ENV = "AZURE_STORAGE_TIMEOUT_SECONDS"

MAX_RETRY_TOTAL = 20
MAX_BACKOFF_SECONDS = 60.0
MAX_TIMEOUT_SECONDS = 3600.0

# Field name -> environment variable, for error messages that name what the operator sets.
_ENV_OF_FIELD = {
    "connection_string": CONNECTION_STRING_ENV,
    "account_url": ACCOUNT_URL_ENV,
    "retry_total": RETRY_TOTAL_ENV,
    "retry_backoff_seconds": RETRY_BACKOFF_ENV,
    "timeout_seconds": TIMEOUT_ENV,
}


class StorageRetry(ExponentialRetry):
    """The SDK's storage retry policy with a plain doubling backoff.

    ``ExponentialRetry(initial_backoff, increment_base=2)`` waits ``initial + 2**n`` seconds with
    +-3 s of jitter, i.e. never less than about 2 s whatever the initial backoff. This subclass keeps
    everything else of it (which errors and statuses are retried, body rewinding, secondary hosts)
    and waits ``initial * 2**(n-1)`` (n = 1 for the first retry), +-20 %, at most 60 s.
    """

    def __init__(self, initial_backoff: float, retry_total: int) -> None:
        super().__init__(
            initial_backoff=0,
            increment_base=2,
            retry_total=retry_total,
            # One budget for every kind of failure: the SDK's defaults cap each kind at 3 retries.
            retry_connect=retry_total,
            retry_read=retry_total,
            retry_status=retry_total,
        )
        self.backoff_seconds = initial_backoff

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        retry = max(1, int(settings["count"]))
        backoff = min(MAX_BACKOFF_SECONDS, self.backoff_seconds * 2 ** (retry - 1))
        return float(backoff * random.uniform(0.8, 1.2))


def _connection_string_parts(value: str) -> dict[str, str] | str:
    """The Key=Value parts of a connection string (keys lower-cased), or what is wrong with its shape."""
    segments = [s for s in value.strip().split(";") if s.strip()]
    if not segments:
        return "it is empty"
    parts: dict[str, str] = {}
    for index, segment in enumerate(segments, start=1):
        key, sep, val = segment.partition("=")
        if not sep or not key.strip():
            return f"part {index} is not Key=Value (expected e.g. AccountName=...;AccountKey=...;BlobEndpoint=...)"
        parts[key.strip().lower()] = val.strip()
    return parts


def _credential_problem(parts: dict[str, str]) -> str | None:
    if parts.get("sharedaccesssignature"):
        return None
    if not parts.get("accountname"):
        return "AccountName is missing (or give SharedAccessSignature)"
    if not parts.get("accountkey"):
        return "AccountKey is missing (or give SharedAccessSignature)"
    try:
        base64.b64decode(parts["accountkey"], validate=True)
    except (binascii.Error, ValueError):
        return "AccountKey is not valid base64"
    return None


def _endpoint_problem(parts: dict[str, str]) -> str | None:
    endpoint = parts.get("blobendpoint")
    if endpoint is not None:
        url = urlsplit(endpoint)
        if url.scheme not in {"http", "https"} or not url.netloc:
            return "BlobEndpoint is not an http(s) URL"
    elif not parts.get("accountname"):
        return "BlobEndpoint is missing (needed with SharedAccessSignature and no AccountName)"
    protocol = parts.get("defaultendpointsprotocol")
    if protocol is not None and protocol.lower() not in {"http", "https"}:
        return "DefaultEndpointsProtocol must be http or https"
    return None


def _connection_string_problem(value: str) -> str | None:
    """What is wrong with a storage connection string, in words that never repeat its secrets."""
    parts = _connection_string_parts(value)
    if isinstance(parts, str):
        return parts
    if parts.get("usedevelopmentstorage", "").lower() == "true":
        return None
    problem = _credential_problem(parts) or _endpoint_problem(parts)
    if problem:
        return problem
    # Last guard: whatever the SDK's own parser still refuses (its messages name no setting and no secret).
    try:
        BlobServiceClient.from_connection_string(value)
    except (ValueError, TypeError) as exc:
        return str(exc).rstrip(".")
    return None


class StorageSettings(BaseModel):
    """Where the blobs are, and how patiently to talk to them. Exactly one source must be set.

    ``account_url`` (``https://<account>.blob.core.windows.net``) authenticates with
    DefaultAzureCredential, i.e. the managed identity of a Batch node or container group; the
    connection string is for Azurite, whose well-known development key is public.

    The settings are pickled into worker processes, so retries and timeouts travel with them.
    """

    model_config = ConfigDict(frozen=True)

    connection_string: SecretStr | None = None
    account_url: str | None = None
    retry_total: int = Field(5, ge=0, le=MAX_RETRY_TOTAL)
    retry_backoff_seconds: float = Field(2.0, ge=0, le=MAX_BACKOFF_SECONDS)
    timeout_seconds: float = Field(60.0, gt=0, le=MAX_TIMEOUT_SECONDS)

    @field_validator("connection_string")
    @classmethod
    def _well_formed(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and (problem := _connection_string_problem(value.get_secret_value())):
            raise ValueError(f"{CONNECTION_STRING_ENV} is malformed: {problem}")
        return value

    @field_validator("account_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            url = urlsplit(value)
            if url.scheme not in {"http", "https"} or not url.netloc:
                raise ValueError(
                    f"{ACCOUNT_URL_ENV} must be an http(s) URL like https://<account>.blob.core.windows.net"
                )
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> StorageSettings:
        if (self.connection_string is None) == (self.account_url is None):
            raise ValueError(
                f"set exactly one of {CONNECTION_STRING_ENV} (Azurite) or {ACCOUNT_URL_ENV} (Azure, with identity)"
            )
        return self

    @classmethod
    def from_env(cls) -> StorageSettings:
        """Read the settings from the environment; bad values raise one ValueError, one line naming each.

        Every problem is collected before raising, so an operator with three bad variables fixes them
        in one go instead of meeting them one failed start at a time: the source (connection string or
        account URL) first, then the numbers in the order they are documented, "; "-separated.
        """
        conn = os.environ.get(CONNECTION_STRING_ENV)
        values: dict[str, object] = {
            "connection_string": SecretStr(conn) if conn else None,
            "account_url": os.environ.get(ACCOUNT_URL_ENV) or None,
        }
        numbers: dict[str, Callable[[], float | None]] = {
            "retry_total": lambda: _env_int(RETRY_TOTAL_ENV, 0, MAX_RETRY_TOTAL),
            "retry_backoff_seconds": lambda: _env_seconds(RETRY_BACKOFF_ENV, 0, MAX_BACKOFF_SECONDS),
            "timeout_seconds": lambda: _env_seconds(TIMEOUT_ENV, 0, MAX_TIMEOUT_SECONDS, low_inclusive=False),
        }
        number_problems = []
        for field, read in numbers.items():
            try:
                value = read()
            except ValueError as exc:
                number_problems.append(str(exc))  # the field keeps its default, so the rest is still checked
                continue
            if value is not None:
                values[field] = value
        try:
            settings = cls.model_validate(values)
        except ValidationError as exc:
            raise ValueError("; ".join([_one_line(exc), *number_problems])) from None
        if number_problems:
            raise ValueError("; ".join(number_problems))
        return settings

    def retry_policy(self) -> StorageRetry:
        return StorageRetry(initial_backoff=self.retry_backoff_seconds, retry_total=self.retry_total)

    def client(self, max_connections: int = 32) -> BlobServiceClient:
        # A connection pool as large as the thread pools that share the client, so parallel
        # downloads do not queue on urllib3's default of 10 connections.
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max_connections)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        # The timeouts belong to the transport: the client's own connection_timeout/read_timeout
        # keywords only reach a transport that the SDK creates itself.
        transport = RequestsTransport(
            session=session,
            session_owner=True,
            connection_timeout=self.timeout_seconds,
            read_timeout=self.timeout_seconds,
        )
        options: dict[str, Any] = {"transport": transport, "retry_policy": self.retry_policy()}
        if self.connection_string is not None:
            return BlobServiceClient.from_connection_string(self.connection_string.get_secret_value(), **options)
        assert self.account_url is not None  # guaranteed by the validator
        return BlobServiceClient(self.account_url, credential=DefaultAzureCredential(), **options)


def _env_raw(name: str) -> str | None:
    raw = os.environ.get(name, "").strip()
    return raw or None


def _env_int(name: str, low: int, high: int) -> int | None:
    raw = _env_raw(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}, got {raw!r}")
    return value


def _env_seconds(name: str, low: float, high: float, *, low_inclusive: bool = True) -> float | None:
    raw = _env_raw(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (low <= value if low_inclusive else low < value) or not value <= high:  # NaN fails both
        bound = "from" if low_inclusive else "above"
        raise ValueError(f"{name} must be a number of seconds {bound} {low:g} to {high:g}, got {raw!r}")
    return value


def _one_line(exc: ValidationError) -> str:
    """A pydantic error as one line: each problem once, named by its environment variable."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        field = str(error["loc"][0]) if error["loc"] else ""
        if field in _ENV_OF_FIELD and _ENV_OF_FIELD[field] not in message:
            message = f"{_ENV_OF_FIELD[field]}: {message}"
        problems.append(message)
    return "; ".join(problems)


def ensure_containers(service: BlobServiceClient, names: Iterable[str] = tuple(Container)) -> None:
    """Create the platform's containers if missing (Pulumi creates them in Azure; this serves Azurite)."""
    for name in names:
        with contextlib.suppress(ResourceExistsError):
            service.create_container(name)
