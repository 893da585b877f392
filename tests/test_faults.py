"""The fault proxy against the real Azurite, and what each fault looks like through the real SDK.

Measured with azure-storage-blob 12.31 / azure-core 1.41 (the assertions below pin it):

* ``status`` 503: retried by the retry policy; ``HttpResponseError`` (status 503, ServerBusy) after
  ``retry_total + 1`` attempts.
* ``drop``: retried; ``ServiceResponseError`` (RemoteDisconnected: the request was sent, so not a
  ServiceRequestError) after ``retry_total + 1`` attempts.
* ``reset_mid_body`` on a download: the body is read outside the retry policy, by the downloader's
  own loop (3 attempts, 1 s apart, whatever the settings); then ``HttpResponseError`` without a
  status, caused by ``IncompleteReadError``. Never truncated bytes.
* ``delay`` beyond the read timeout: ``ServiceResponseTimeoutError`` (a ServiceResponseError) after
  ``retry_total + 1`` attempts.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests
from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    IncompleteReadError,
    ResourceModifiedError,
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.storage.blob import BlobBlock, BlobClient, BlobSasPermissions, BlobServiceClient, generate_blob_sas
from typer.testing import CliRunner

from tests.faults import FaultProxy, Rule
from workloads.common.storage import StorageRetry, StorageSettings, ensure_containers
from workloads.demo.azurite import ACCOUNT, KEY, PROJECT_ROOT, connection_string
from workloads.scorer.cli import app as scorer

HOUR_10 = r"/aggregates/2026/11/25/10/.*\.parquet"
DATA = os.urandom(100_000)
STORAGE_ENV = (
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT_URL",
    "AZURE_STORAGE_RETRY_TOTAL",
    "AZURE_STORAGE_RETRY_BACKOFF_SECONDS",
    "AZURE_STORAGE_TIMEOUT_SECONDS",
)


@pytest.fixture
def client(faulty_settings: StorageSettings) -> BlobServiceClient:
    service = faulty_settings.client()
    ensure_containers(service)
    return service


def upload(client: BlobServiceClient, hour: int = 10, data: bytes = DATA) -> BlobClient:
    """A fresh blob (unique name, so tests need no cleanup) under an hour folder of aggregates."""
    blob = client.get_blob_client("aggregates", f"2026/11/25/{hour:02d}/{uuid.uuid4().hex}.parquet")
    blob.upload_blob(data)
    return blob


def statuses(proxy: FaultProxy, blob: BlobClient, method: str = "GET") -> list[int | None]:
    return [e.status for e in proxy.requests(blob.blob_name, method)]


# -- forwarding -------------------------------------------------------------------------------


def test_everything_is_forwarded_unchanged_over_kept_alive_connections(
    fault_proxy: FaultProxy, client: BlobServiceClient
) -> None:
    connections = fault_proxy.connections
    blob = upload(client)
    assert blob.download_blob().readall() == DATA
    assert blob.get_blob_properties().size == len(DATA)  # HEAD: Content-Length kept, no body
    prefix = blob.blob_name.rsplit("/", 1)[0]
    assert blob.blob_name in [b.name for b in client.get_container_client("aggregates").list_blobs(prefix)]

    # Block upload: PUTs with query strings and an XML body.
    staged = client.get_blob_client("aggregates", f"{prefix}/{uuid.uuid4().hex}.parquet")
    staged.stage_block("b1", b"hello ")
    staged.stage_block("b2", b"world")
    staged.commit_block_list([BlobBlock("b1"), BlobBlock("b2")])
    assert staged.download_blob().readall() == b"hello world"

    etag = blob.get_blob_properties().etag
    with pytest.raises(ResourceModifiedError) as not_modified:
        blob.download_blob(etag=etag, match_condition=MatchConditions.IfModified)
    assert not_modified.value.status_code == 304
    with pytest.raises(ResourceModifiedError) as precondition:
        blob.download_blob(etag='"0x8D000000000000"', match_condition=MatchConditions.IfNotModified)
    assert precondition.value.status_code == 412
    with pytest.raises(ResourceModifiedError):  # a HEAD answered 304: no body, no hang
        blob.get_blob_properties(etag=etag, match_condition=MatchConditions.IfModified)
    assert blob.download_blob(etag=etag, match_condition=MatchConditions.IfNotModified).readall() == DATA

    assert statuses(fault_proxy, blob) == [206, 304, 412, 206]
    assert statuses(fault_proxy, blob, "HEAD") == [200, 200, 304]
    assert all(e.fault is None for e in fault_proxy.log)
    # A dozen sequential requests of one client ride on one kept-alive connection (or two).
    assert fault_proxy.connections - connections <= 2


def test_a_chunked_request_body_is_forwarded_with_a_length(fault_proxy: FaultProxy, client: BlobServiceClient) -> None:
    name = f"2026/11/25/10/{uuid.uuid4().hex}.parquet"
    sas = generate_blob_sas(
        ACCOUNT,
        "aggregates",
        name,
        account_key=KEY,
        permission=BlobSasPermissions(create=True, write=True),
        expiry=datetime.now(UTC) + timedelta(minutes=5),
    )
    url = f"{fault_proxy.endpoint}/{ACCOUNT}/aggregates/{name}?{sas}"
    response = requests.put(url, data=iter([b"chunked ", b"body"]), headers={"x-ms-blob-type": "BlockBlob"}, timeout=10)
    assert response.status_code == 201, response.text
    assert client.get_blob_client("aggregates", name).download_blob().readall() == b"chunked body"


# -- injected faults --------------------------------------------------------------------------


def test_a_503_once_is_retried_by_the_sdk(fault_proxy: FaultProxy, client: BlobServiceClient) -> None:
    blob = upload(client)
    rule = fault_proxy.add(Rule(HOUR_10, times=1))
    assert blob.download_blob().readall() == DATA
    assert rule.hits == 1
    assert statuses(fault_proxy, blob) == [503, 206]


def test_a_503_on_every_attempt_fails_after_the_configured_retries(
    fault_proxy: FaultProxy, client: BlobServiceClient, faulty_settings: StorageSettings
) -> None:
    busy, other_hour = upload(client, hour=10), upload(client, hour=11)
    rule = fault_proxy.add(Rule(HOUR_10))
    with pytest.raises(HttpResponseError) as error:
        busy.download_blob()
    assert error.value.status_code == 503
    assert getattr(error.value, "error_code", None) == "ServerBusy"  # set by the storage SDK
    assert rule.hits == faulty_settings.retry_total + 1 == 3
    assert other_hour.download_blob().readall() == DATA  # the pattern picks the paths
    assert rule.hits == 3


def test_a_dropped_connection_is_a_service_response_error_after_retries(
    fault_proxy: FaultProxy, client: BlobServiceClient
) -> None:
    blob = upload(client)
    once = fault_proxy.add(Rule(HOUR_10, fault="drop", times=1))
    assert blob.download_blob().readall() == DATA
    assert (once.hits, statuses(fault_proxy, blob)) == (1, [None, 206])

    always = fault_proxy.add(Rule(HOUR_10, fault="drop"))
    with pytest.raises(ServiceResponseError) as error:
        blob.download_blob()
    assert not isinstance(error.value, ServiceRequestError)
    assert "RemoteDisconnected" in str(error.value)
    assert always.hits == 3


def test_a_reset_in_the_middle_of_a_body_raises_rather_than_truncating(
    fault_proxy: FaultProxy, client: BlobServiceClient
) -> None:
    blob = upload(client)
    rule = fault_proxy.add(Rule(HOUR_10, fault="reset_mid_body"))
    with pytest.raises(HttpResponseError) as error:
        blob.download_blob().readall()
    assert isinstance(error.value.__cause__, IncompleteReadError)
    assert error.value.status_code is None
    assert "IncompleteRead(50000 bytes read, 50000 more expected)" in str(error.value)
    # The downloader's own body retries (3, fixed), not the retry policy's.
    assert rule.hits == 3
    assert statuses(fault_proxy, blob) == [206, 206, 206]


def test_a_single_reset_is_retried_by_the_downloader(fault_proxy: FaultProxy, client: BlobServiceClient) -> None:
    blob = upload(client)
    rule = fault_proxy.add(Rule(HOUR_10, fault="reset_mid_body", times=1))
    assert blob.download_blob().readall() == DATA
    assert rule.hits == 1


def test_a_delay_beyond_the_read_timeout_is_a_timeout(
    fault_proxy: FaultProxy, client: BlobServiceClient, faulty_settings: StorageSettings
) -> None:
    blob = upload(client)
    short = fault_proxy.add(Rule(HOUR_10, fault="delay", delay=0.1, times=1))
    assert blob.download_blob().readall() == DATA
    assert (short.hits, fault_proxy.requests(blob.blob_name, "GET")[0].fault) == (1, "delay")

    impatient = faulty_settings.model_copy(update={"timeout_seconds": 0.3, "retry_total": 1})
    slow = fault_proxy.add(Rule(HOUR_10, fault="delay", delay=1.0))
    with pytest.raises(ServiceResponseTimeoutError, match="Read timed out"):
        impatient.client().get_blob_client("aggregates", blob.blob_name).download_blob()
    assert slow.hits == 2


def test_a_method_filter_leaves_other_methods_alone(fault_proxy: FaultProxy, client: BlobServiceClient) -> None:
    blob = upload(client)
    puts = fault_proxy.add(Rule(HOUR_10, method="put"))
    assert blob.download_blob().readall() == DATA
    assert blob.get_blob_properties().size == len(DATA)
    assert puts.hits == 0
    with pytest.raises(HttpResponseError) as error:
        blob.upload_blob(b"new", overwrite=True)
    assert (error.value.status_code, puts.hits) == (503, 3)

    fault_proxy.clear()
    every = fault_proxy.add(Rule(HOUR_10, method=None, status=500, error_code="InternalError", times=3))
    with pytest.raises(HttpResponseError) as head:  # a body-less error answer to a HEAD
        blob.get_blob_properties()
    assert (head.value.status_code, getattr(head.value, "error_code", None), every.hits) == (500, "InternalError", 3)
    assert blob.download_blob().readall() == DATA  # times=3 spent


def test_faults_reach_other_processes(
    fault_proxy: FaultProxy, client: BlobServiceClient, faulty_settings: StorageSettings
) -> None:
    flaky, broken = upload(client, hour=10), upload(client, hour=12)
    once = fault_proxy.add(Rule(HOUR_10, times=1))
    always = fault_proxy.add(Rule(r"/aggregates/2026/11/25/12/", fault="drop"))
    script = textwrap.dedent(
        f"""
        from workloads.common.storage import StorageSettings
        service = StorageSettings.from_env().client()
        print(len(service.get_blob_client("aggregates", {flaky.blob_name!r}).download_blob().readall()))
        try:
            service.get_blob_client("aggregates", {broken.blob_name!r}).download_blob()
        except Exception as exc:
            print(type(exc).__name__)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(len(DATA)), "ServiceResponseError"]
    assert (once.hits, always.hits) == (1, faulty_settings.retry_total + 1)


def test_the_proxy_connection_string_keeps_the_account(fault_proxy: FaultProxy) -> None:
    proxied = fault_proxy.connection_string(connection_string(10000))
    assert f"BlobEndpoint=http://127.0.0.1:{fault_proxy.port}/{ACCOUNT};" in proxied
    assert f"AccountKey={KEY};" in proxied
    assert proxied.count("BlobEndpoint=") == 1


def test_rules_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        Rule("x", fault="explode")  # type: ignore[arg-type]


# -- storage settings -------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in STORAGE_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("nonsense", "part 1 is not Key=Value"),
        ("AccountName=devstoreaccount1;=x", "part 2 is not Key=Value"),
        (";;", "it is empty"),
        (connection_string(10000).replace(f"AccountKey={KEY};", ""), "AccountKey is missing"),
        (connection_string(10000).replace(f"AccountName={ACCOUNT};", ""), "AccountName is missing"),
        (connection_string(10000).replace(KEY, KEY[:-3] + "!!!"), "AccountKey is not valid base64"),
        (connection_string(10000).replace("http://127.0.0.1", "127.0.0.1"), "BlobEndpoint is not an http(s) URL"),
        ("SharedAccessSignature=sv=2025&sig=abc", "BlobEndpoint is missing"),
        (
            f"AccountName={ACCOUNT};AccountKey={KEY};BlobSecondaryEndpoint=http://127.0.0.1/x",
            "specifies only secondary endpoint",
        ),
    ],
)
def test_a_malformed_connection_string_is_one_line_naming_the_variable(
    clean_env: pytest.MonkeyPatch, value: str, problem: str
) -> None:
    clean_env.setenv("AZURE_STORAGE_CONNECTION_STRING", value)
    with pytest.raises(ValueError) as error:
        StorageSettings.from_env()
    message = str(error.value)
    assert message.startswith("AZURE_STORAGE_CONNECTION_STRING is malformed: ")
    assert problem in message
    assert "\n" not in message
    assert KEY[:12] not in message and "sig=abc" not in message


@pytest.mark.parametrize(
    "value",
    [
        connection_string(10000),
        "UseDevelopmentStorage=true",
        "SharedAccessSignature=sv=2025&sig=abc;BlobEndpoint=https://acct.blob.core.windows.net",
        f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY};EndpointSuffix=core.windows.net",
    ],
)
def test_well_formed_connection_strings_are_accepted(clean_env: pytest.MonkeyPatch, value: str) -> None:
    clean_env.setenv("AZURE_STORAGE_CONNECTION_STRING", value)
    assert StorageSettings.from_env().connection_string is not None


def test_the_scorer_cli_reports_a_bad_connection_string_as_a_usage_error(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AZURE_STORAGE_CONNECTION_STRING", "nonsense")
    result = CliRunner().invoke(scorer, ["--hour", "2026-11-25T10", "--shard", "s00003-of-00016"])
    assert result.exit_code == 2
    flat = " ".join(result.output.replace("│", " ").split())
    assert "AZURE_STORAGE_CONNECTION_STRING is malformed: part 1 is not Key=Value" in flat
    assert "Traceback" not in result.output


def test_retry_and_timeout_settings_default_and_come_from_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AZURE_STORAGE_CONNECTION_STRING", connection_string(10000))
    defaults = StorageSettings.from_env()
    assert (defaults.retry_total, defaults.retry_backoff_seconds, defaults.timeout_seconds) == (5, 2.0, 60.0)
    clean_env.setenv("AZURE_STORAGE_RETRY_TOTAL", "0")
    clean_env.setenv("AZURE_STORAGE_RETRY_BACKOFF_SECONDS", " 0.25 ")
    clean_env.setenv("AZURE_STORAGE_TIMEOUT_SECONDS", "7.5")
    chosen = StorageSettings.from_env()
    assert (chosen.retry_total, chosen.retry_backoff_seconds, chosen.timeout_seconds) == (0, 0.25, 7.5)
    assert pickle.loads(pickle.dumps(chosen)) == chosen  # travels to worker processes as it is
    assert "0.25" not in repr(chosen.connection_string)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("AZURE_STORAGE_RETRY_TOTAL", "21", "an integer from 0 to 20"),
        ("AZURE_STORAGE_RETRY_TOTAL", "-1", "an integer from 0 to 20"),
        ("AZURE_STORAGE_RETRY_TOTAL", "2.5", "an integer from 0 to 20"),
        ("AZURE_STORAGE_RETRY_TOTAL", "five", "an integer from 0 to 20"),
        ("AZURE_STORAGE_RETRY_BACKOFF_SECONDS", "-0.5", "a number of seconds from 0 to 60"),
        ("AZURE_STORAGE_RETRY_BACKOFF_SECONDS", "soon", "a number of seconds from 0 to 60"),
        ("AZURE_STORAGE_RETRY_BACKOFF_SECONDS", "inf", "a number of seconds from 0 to 60"),
        ("AZURE_STORAGE_TIMEOUT_SECONDS", "0", "a number of seconds above 0 to 3600"),
        ("AZURE_STORAGE_TIMEOUT_SECONDS", "nan", "a number of seconds above 0 to 3600"),
        ("AZURE_STORAGE_TIMEOUT_SECONDS", "1e9", "a number of seconds above 0 to 3600"),
    ],
)
def test_bad_retry_and_timeout_settings_are_one_line_naming_the_variable(
    clean_env: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    clean_env.setenv("AZURE_STORAGE_CONNECTION_STRING", connection_string(10000))
    clean_env.setenv(name, value)
    with pytest.raises(ValueError) as error:
        StorageSettings.from_env()
    assert str(error.value) == f"{name} must be {expected}, got {value!r}"


def test_the_retry_policy_doubles_its_backoff_from_the_initial_one() -> None:
    policy = StorageRetry(initial_backoff=2.0, retry_total=5)
    assert (policy.total_retries, policy.connect_retries, policy.read_retries, policy.status_retries) == (5, 5, 5, 5)
    for count, expected in [(1, 2), (2, 4), (3, 8), (4, 16), (5, 32), (6, 60), (9, 60)]:
        waits = [policy.get_backoff_time({"count": count}) for _ in range(20)]
        assert all(0.8 * expected <= w <= 1.2 * expected for w in waits), (count, waits)
    assert StorageRetry(initial_backoff=0, retry_total=1).get_backoff_time({"count": 1}) == 0
