"""An ARM client for one Stream Analytics job: its state, start and stop, and its inputs, outputs, functions,
transformation and settings, with Azure's long-running operations, conflicts and grant propagation handled.

Why it exists, and what it relies on: see infra/stream_job.py, which drives it from Pulumi.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import TracebackType
from typing import Any, Final, TypeVar

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import (
    ContentDecodePolicy,
    HeadersPolicy,
    RequestIdPolicy,
    RetryPolicy,
    UserAgentPolicy,
)
from azure.core.pipeline.transport import HttpTransport
from azure.core.polling import LROPoller
from azure.core.rest import HttpRequest, HttpResponse
from azure.identity import ClientSecretCredential, DefaultAzureCredential
from azure.mgmt.core import ARMPipelineClient
from azure.mgmt.core.exceptions import ARMErrorFormat
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy, ARMHttpLoggingPolicy
from azure.mgmt.core.polling.arm_polling import ARMPolling

ARM_ENDPOINT: Final = "https://management.azure.com"
ARM_SCOPE: Final = "https://management.azure.com/.default"
API_VERSION: Final = "2020-03-01"
# Datasource types of the 2020-03-01 API: an Event Hubs input (V2) and a Blob output.
EVENT_HUB_V2: Final = "Microsoft.EventHub/EventHub"
BLOB: Final = "Microsoft.Storage/Blob"
# A function's binding type for a JavaScript UDF (functions.json: JavaScriptFunctionBinding).
JAVASCRIPT_UDF: Final = "Microsoft.StreamAnalytics/JavascriptUdf"

_LOG = logging.getLogger(__name__)
_T = TypeVar("_T")

# ARM ids are case-insensitive ("resourcegroups" and "resourceGroups" both occur); the job id is everything up to the
# job name, whatever sub-resource (input, output, transformation, function) follows it.
_JOB_ID = re.compile(
    r"^(?P<job>/subscriptions/(?P<subscription>[^/]+)/resourceGroups/(?P<group>[^/]+)"
    r"/providers/Microsoft\.StreamAnalytics/streamingjobs/(?P<name>[^/]+))"
    r"(?:/(?:inputs|outputs|transformations|functions)/[^/]+)?/?$",
    re.IGNORECASE,
)


# --- the deployer's credential: the identity azure-native runs as --------------------------------------------------

AZURE_SP_VARIABLES: Final = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET")
"""azure-identity's service-principal variables (``EnvironmentCredential``, first in ``DefaultAzureCredential``)."""
ARM_SP_VARIABLES: Final = ("ARM_CLIENT_ID", "ARM_TENANT_ID", "ARM_CLIENT_SECRET")
"""azure-native's (and Terraform azurerm's) service-principal variables."""

ARM_SP_SOURCE: Final = (
    "the service principal in ARM_CLIENT_ID/ARM_TENANT_ID/ARM_CLIENT_SECRET (azure-native's variables)"
)
DEFAULT_SOURCE: Final = (
    "DefaultAzureCredential: the service principal in AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET if set, "
    "else workload or managed identity, else `az login` (ARM_CLIENT_ID/ARM_TENANT_ID/ARM_CLIENT_SECRET are used "
    "instead when all three are set and no AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET is)"
)
GIVEN_SOURCE: Final = "the credential passed to StreamJobClient"


@dataclass(frozen=True)
class DeployerCredential:
    """An ARM credential and, for error messages, where it came from."""

    credential: TokenCredential
    source: str


def deployer_credential(environ: Mapping[str, str] | None = None) -> DeployerCredential:
    """The credential azure-native would use, as far as azure-identity can tell.

    ``DefaultAzureCredential`` covers ``AZURE_*`` service principals, workload/managed identity and ``az login``; but
    a CI job configured for azure-native sets ``ARM_CLIENT_ID``/``ARM_TENANT_ID``/``ARM_CLIENT_SECRET``, which
    azure-identity does not read. When all three are set and none of the ``AZURE_*`` ones is, they are used as a
    ``ClientSecretCredential``. (azure-native's OIDC and certificate variables are not mapped: set the ``AZURE_*``
    equivalents, which ``DefaultAzureCredential`` reads, in that case.)
    """
    env = os.environ if environ is None else environ
    if not any(env.get(name) for name in AZURE_SP_VARIABLES) and all(env.get(name) for name in ARM_SP_VARIABLES):
        credential = ClientSecretCredential(
            tenant_id=env["ARM_TENANT_ID"], client_id=env["ARM_CLIENT_ID"], client_secret=env["ARM_CLIENT_SECRET"]
        )
        return DeployerCredential(credential, ARM_SP_SOURCE)
    return DeployerCredential(DefaultAzureCredential(), DEFAULT_SOURCE)


# --- the job's states ----------------------------------------------------------------------------------------------


class JobState(StrEnum):
    """``properties.jobState`` values (see the module docstring for the sources)."""

    CREATED = "Created"
    STARTING = "Starting"
    RUNNING = "Running"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    DELETING = "Deleting"
    FAILED = "Failed"
    DEGRADED = "Degraded"
    RESTARTING = "Restarting"
    SCALING = "Scaling"


# Degraded is a running job riding out transient errors: the service brings it back to Running by itself.
RUNNING_STATES: Final = frozenset({JobState.RUNNING, JobState.DEGRADED})
# States the service moves out of on its own; a start/stop sent meanwhile is refused (409), so we wait them out.
TRANSITIONAL_STATES: Final = frozenset({JobState.STARTING, JobState.STOPPING, JobState.RESTARTING, JobState.SCALING})
# States in which the job processes nothing: stop has nothing to do, start may be sent.
IDLE_STATES: Final = frozenset({JobState.CREATED, JobState.STOPPED, JobState.FAILED})
_KNOWN_STATES: Final = frozenset(JobState)


class OutputStartMode(StrEnum):
    """``outputStartMode`` of a start request."""

    JOB_START_TIME = "JobStartTime"
    CUSTOM_TIME = "CustomTime"
    LAST_OUTPUT_EVENT_TIME = "LastOutputEventTime"


class Outcome(StrEnum):
    """What :meth:`StreamJobClient.ensure_running` / :meth:`StreamJobClient.stop` did (logged, and kept in state)."""

    ALREADY_RUNNING = "already_running"
    STARTED_JOB_START_TIME = "started:JobStartTime"
    STARTED_CUSTOM_TIME = "started:CustomTime"
    STARTED_LAST_OUTPUT_EVENT_TIME = "started:LastOutputEventTime"
    ALREADY_STOPPED = "already_stopped"
    STOPPED = "stopped"
    JOB_NOT_FOUND = "job_not_found"

    @classmethod
    def started(cls, mode: OutputStartMode) -> Outcome:
        return cls(f"started:{mode}")


START_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"
"""``outputStartTime``: "an ISO-8601 formatted time stamp" (StartStreamingJobParameters); we send UTC to the second."""

RETENTION_MARGIN: Final = timedelta(minutes=10)
"""How far inside the Event Hubs retention a clamped first start is placed (see :meth:`FirstStart.start_time`)."""


def format_start_time(moment: datetime) -> str:
    """A start time as sent to *Streaming Jobs - Start* and kept in Pulumi state: UTC, to the second, ``Z``."""
    return moment.astimezone(UTC).strftime(START_TIME_FORMAT)


def parse_start_time(text: str) -> datetime:
    """The inverse of :func:`format_start_time` (any ISO-8601 text with an offset, or naive meaning UTC)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class FirstStart:
    """Where a job that never produced output starts: ``requested_at``, the time the deployment first asked for a
    start (kept in Pulumi state by ``infra.stream_job.StreamJobFirstStart``), but no earlier than the input's
    retention allows.

    Why not JobStartTime: "Now ... Makes the starting point of the output event stream the same as when the job is
    started" (*How to start an Azure Stream Analytics job*,
    https://learn.microsoft.com/en-us/azure/stream-analytics/start-job), so every reading sent before the start that
    finally succeeds - while the first start waited up to 10 minutes for RBAC, after a first start that failed, across
    a config change before the first output - would never be aggregated. CustomTime ("start at a custom user time
    stamp specified via the outputStartTime property", which "must have a value if outputStartMode is set to
    CustomTime": StartStreamingJobParameters,
    https://learn.microsoft.com/en-us/javascript/api/@azure/arm-streamanalytics/startstreamingjobparameters, the body
    of https://learn.microsoft.com/en-us/rest/api/streamanalytics/2020-03-01/streaming-jobs/start) starts the output at
    the recorded time instead, and, "Similarly to the Now option, Azure Stream Analytics will automatically read the
    data prior to this time if a temporal operator is used" (start-job, above): the first window is whole.
    LastOutputEventTime ("When last stopped") "is available when the job was previously started" and produced output,
    so it is what every later start uses, as before (:meth:`StreamJobClient.ensure_running`).

    The bound: Event Hubs removes published events after the hub's retention ("Published events are removed from an
    event hub based on a configurable, time-based retention policy", *Event Hubs features*,
    https://learn.microsoft.com/en-us/azure/event-hubs/event-hubs-features#event-retention), so readings older than
    that are gone whatever the start time says. What the service does with an ``outputStartTime`` before the oldest
    retained event is not documented; we do not find out: a recorded time older than ``retention`` (less
    :data:`RETENTION_MARGIN`, the start itself takes minutes) is moved up to it, and the log says so.
    """

    requested_at: datetime
    retention: timedelta | None = None

    def start_time(self, now: datetime) -> datetime:
        """The ``outputStartTime`` to send at ``now``: the recorded time, clamped into the retention."""
        earliest = now - self.retention + RETENTION_MARGIN if self.retention is not None else None
        if earliest is not None and self.requested_at < earliest:
            return earliest
        return self.requested_at


class StreamJobError(RuntimeError):
    """A job operation could not be carried out; the message says what to do."""


class StreamJobAccessDeniedError(StreamJobError):
    """ARM answered 401/403, or no token could be had: the deployer's identity lacks rights on the job."""


class StreamJobNotFoundError(StreamJobError):
    """ARM answered 404 for the job."""


class StreamJobStartFailedError(StreamJobError):
    """Every start attempt within the time bound ended without the job running."""


class StreamJobTimeoutError(StreamJobError):
    """The job stayed in a transitional state (Starting, Stopping...) longer than the bound."""


class StreamJobGrantsNotEffectiveError(StreamJobError):
    """An input/output was refused as not authorized for longer than the grant bound (RBAC not propagated)."""


@dataclass(frozen=True)
class JobRef:
    """A streaming job's ARM id, split into the parts messages need."""

    id: str
    subscription: str
    resource_group: str
    name: str


def parse_job_id(resource_id: str) -> JobRef:
    """The job an ARM id belongs to: the job itself or one of its inputs/outputs/transformations/functions."""
    match = _JOB_ID.match(resource_id.strip())
    if match is None:
        raise ValueError(f"not a Stream Analytics job (or job sub-resource) id: {resource_id!r}")
    return JobRef(match["job"], match["subscription"], match["group"], match["name"])


def job_id_from_resource_id(resource_id: str) -> str:
    """The parent job id of a job, input or output ARM id (see :func:`parse_job_id`)."""
    return parse_job_id(resource_id).id


@dataclass(frozen=True)
class JobStatus:
    """The part of *Streaming Jobs - Get* the life cycle needs."""

    state: str
    last_output_event_time: str | None

    @property
    def running(self) -> bool:
        return self.state in RUNNING_STATES

    @property
    def idle(self) -> bool:
        return self.state in IDLE_STATES

    @property
    def transitional(self) -> bool:
        # An unknown (newer) state is treated as transitional: waiting is bounded and safer than acting on it.
        return self.state in TRANSITIONAL_STATES or self.state not in _KNOWN_STATES


def _required_grant(properties: Mapping[str, Any]) -> str:
    """The role the job's identity needs for an input/output, for error messages."""
    datasource = properties.get("datasource") or {}
    source = datasource.get("properties") or {}
    if datasource.get("type") in (EVENT_HUB_V2, "Microsoft.ServiceBus/EventHub"):
        return (
            f"Azure Event Hubs Data Receiver on event hub {source.get('eventHubName')!r} "
            f"(namespace {source.get('serviceBusNamespace')!r})"
        )
    if datasource.get("type") == BLOB:
        accounts = ", ".join(repr(a.get("accountName")) for a in source.get("storageAccounts") or [])
        return f"Storage Blob Data Contributor on container {source.get('container')!r} of storage account {accounts}"
    return f"a data-plane role on its {datasource.get('type')} data source"


# Stream Analytics' own refusal of an input/output whose managed-identity access it cannot validate yet (#2607), and
# storage's "This request is not authorized to perform this operation using this permission".
_NOT_AUTHORIZED = re.compile(
    r"not\s+authori[sz]ed|unauthori[sz]ed|AuthorizationPermissionMismatch|AuthorizationFailure", re.IGNORECASE
)


def grant_not_in_effect(err: HttpResponseError) -> bool:
    """Whether a PUT of an input/output was refused because the job's identity is not (yet) authorized.

    ARM's ``AuthorizationFailed`` is something else: the deployer itself lacks rights, which waiting does not fix.
    """
    if err.status_code not in (400, 403):
        return False
    code = err.error.code if err.error is not None else None
    if code == "AuthorizationFailed":
        return False
    return bool(_NOT_AUTHORIZED.search(_message(err)))


class _ConflictError(Exception):
    """A start/stop answered 409 Conflict: another operation on the job is in progress."""


class _SleepingArmPolling(ARMPolling):
    """ARMPolling whose waits go through the client's ``sleep``, so deadlines and tests see every wait."""

    def __init__(self, interval: float, sleep: Callable[[float], None]) -> None:
        super().__init__(timeout=interval)
        self._sleep_fn = sleep

    def _sleep(self, delay: float) -> None:
        self._sleep_fn(delay)


class StreamJobClient:
    """Read, change, start and stop a Stream Analytics job over ARM REST (api-version 2020-03-01).

    Everything that waits is injectable (``sleep``, ``clock``) and every bound is a parameter, so tests run the whole
    state machine against a fake transport without waiting. 429 and 5xx answers are retried by azure-core's
    ``RetryPolicy`` (which honours ``Retry-After``); 409 Conflict (an operation already in progress) is retried here,
    after waiting out the job's transitional state; an input/output refused as not authorized is retried until
    ``grant_timeout``.
    """

    def __init__(
        self,
        credential: TokenCredential | None = None,
        *,
        credential_source: str | None = None,
        transport: HttpTransport[Any, Any] | None = None,
        endpoint: str = ARM_ENDPOINT,
        polling_interval: float = 10.0,
        transition_timeout: float = 900.0,
        start_timeout: float = 600.0,
        start_retry_delay: float = 30.0,
        start_retry_max_delay: float = 120.0,
        grant_timeout: float = 600.0,
        grant_retry_delay: float = 30.0,
        grant_retry_max_delay: float = 120.0,
        max_conflicts: int = 10,
        retry_total: int = 5,
        retry_backoff_factor: float = 0.8,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        log: Callable[[str], None] = _LOG.info,
    ) -> None:
        """
        :param credential: ARM credential; when omitted, :func:`deployer_credential` (the identity azure-native uses),
            closed with the client.
        :param credential_source: how to name ``credential`` in access errors.
        :param transport: azure-core transport; the default is requests. Tests pass a fake ARM.
        :param polling_interval: seconds between GETs of a transitional job and between LRO polls without Retry-After.
        :param transition_timeout: the longest a job may stay Starting/Stopping/... before we give up.
        :param start_timeout: how long failed starts are retried (RBAC grants can take ~10 minutes to apply).
        :param start_retry_delay: first wait after a failed start; doubles up to ``start_retry_max_delay``.
        :param grant_timeout: how long an input/output refused as "not authorized" is retried (RBAC propagation).
        :param grant_retry_delay: first wait after such a refusal; doubles up to ``grant_retry_max_delay``.
        :param max_conflicts: 409 answers tolerated per operation before giving up.
        :param retry_total: azure-core RetryPolicy attempts for 408/429/5xx and connection errors.
        :param sleep: every wait of ours and of the LRO poller (``time.sleep`` in real use).
        :param clock: monotonic seconds, for the deadlines.
        :param now: the wall-clock time (aware, UTC), for a first start's retention bound (:class:`FirstStart`).
        :param log: progress lines (Pulumi's log when run by the dynamic provider).
        """
        self._owns_credential = credential is None
        if credential is None:
            found = deployer_credential()
            credential, credential_source = found.credential, credential_source or found.source
        self._credential: TokenCredential = credential
        self.credential_source = credential_source or GIVEN_SOURCE
        self._endpoint = endpoint.rstrip("/")
        self._polling_interval = polling_interval
        self._transition_timeout = transition_timeout
        self._start_timeout = start_timeout
        self._start_retry_delay = start_retry_delay
        self._start_retry_max_delay = start_retry_max_delay
        self._grant_timeout = grant_timeout
        self._grant_retry_delay = grant_retry_delay
        self._grant_retry_max_delay = grant_retry_max_delay
        self._max_conflicts = max_conflicts
        self._sleep = sleep
        self._clock = clock
        self._now = now
        self._log = log
        policies: list[Any] = [
            RequestIdPolicy(),
            HeadersPolicy(),
            UserAgentPolicy(sdk_moniker="batchscoring-stream-job"),
            ContentDecodePolicy(),
            RetryPolicy(retry_total=retry_total, retry_backoff_factor=retry_backoff_factor),
            ARMChallengeAuthenticationPolicy(self._credential, ARM_SCOPE),
            ARMHttpLoggingPolicy(),
        ]
        self._client: ARMPipelineClient[Any, Any] = ARMPipelineClient(
            base_url=self._endpoint, policies=policies, transport=transport
        )

    def close(self) -> None:
        self._client.close()
        close = getattr(self._credential, "close", None)
        if self._owns_credential and callable(close):
            close()

    def __enter__(self) -> StreamJobClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- single ARM operations -------------------------------------------------------------------------------------

    def get(self, job_id: str) -> JobStatus:
        """*Streaming Jobs - Get*: the job's state and last output time."""
        job = parse_job_id(job_id)
        response = self._send("GET", job.id)
        if response.status_code != 200:
            raise self._error(job, "read", HttpResponseError(response=response, error_format=ARMErrorFormat))
        properties: Mapping[str, Any] = response.json().get("properties") or {}
        return JobStatus(str(properties.get("jobState") or "Unknown"), properties.get("lastOutputEventTime") or None)

    def begin_start(self, job_id: str, mode: OutputStartMode, start_time: datetime | None = None) -> LROPoller[None]:
        """*Streaming Jobs - Start*: send the POST; the poller follows the long-running operation.

        ``outputStartTime`` is sent with CustomTime only, where it "must have a value" (StartStreamingJobParameters).
        """
        body: dict[str, str] = {"outputStartMode": str(mode)}
        if mode is OutputStartMode.CUSTOM_TIME:
            if start_time is None:
                raise ValueError("a CustomTime start needs its outputStartTime")
            body["outputStartTime"] = format_start_time(start_time)
        return self._begin(parse_job_id(job_id), "start", body)

    def begin_stop(self, job_id: str) -> LROPoller[None]:
        """*Streaming Jobs - Stop*: send the POST; the poller follows the long-running operation."""
        return self._begin(parse_job_id(job_id), "stop", None)

    def update_settings(self, job_id: str, settings: Mapping[str, Any]) -> None:
        """*Streaming Jobs - Update* (PATCH): only the given job properties (and ``tags``) change."""
        job = parse_job_id(job_id)
        body: dict[str, Any] = {}
        properties = {key: value for key, value in settings.items() if key != "tags"}
        if properties:
            body["properties"] = properties
        if "tags" in settings:
            body["tags"] = settings["tags"]
        response = self._send("PATCH", job.id, body)
        if response.status_code != 200:
            err = HttpResponseError(response=response, error_format=ARMErrorFormat)
            raise self._error(job, f"update settings {sorted(settings)} of", err)

    def put_transformation(self, job_id: str, name: str, properties: Mapping[str, Any]) -> None:
        """*Transformations - Create Or Replace*: the query and streaming units."""
        job = parse_job_id(job_id)
        try:
            self._put(job, "transformations", name, properties)
        except ClientAuthenticationError:
            raise
        except HttpResponseError as err:
            raise self._error(job, f"write transformation {name!r} of", err) from err

    def put_function(self, job_id: str, name: str, properties: Mapping[str, Any]) -> None:
        """*Functions - Create Or Replace*: a user-defined function the query calls (``udf.<name>``)."""
        job = parse_job_id(job_id)
        try:
            self._put(job, "functions", name, properties)
        except ClientAuthenticationError:
            raise
        except HttpResponseError as err:
            raise self._error(job, f"write function {name!r} of", err) from err

    def delete_function(self, job_id: str, name: str) -> None:
        """*Functions - Delete* (one already gone is fine)."""
        self._delete(parse_job_id(job_id), "functions", name)

    def put_input(self, job_id: str, name: str, properties: Mapping[str, Any]) -> None:
        """*Inputs - Create Or Replace*, retried while the job identity's access is not in effect yet."""
        self._put_authorized(parse_job_id(job_id), "inputs", name, properties)

    def put_output(self, job_id: str, name: str, properties: Mapping[str, Any]) -> None:
        """*Outputs - Create Or Replace*, retried while the job identity's access is not in effect yet."""
        self._put_authorized(parse_job_id(job_id), "outputs", name, properties)

    def delete_input(self, job_id: str, name: str) -> None:
        """*Inputs - Delete* (one already gone is fine)."""
        self._delete(parse_job_id(job_id), "inputs", name)

    def delete_output(self, job_id: str, name: str) -> None:
        """*Outputs - Delete* (one already gone is fine)."""
        self._delete(parse_job_id(job_id), "outputs", name)

    # --- the life cycle --------------------------------------------------------------------------------------------

    def wait_until_settled(self, job_id: str) -> JobStatus:
        """GET the job until it leaves Starting/Stopping/Restarting/Scaling (bounded by ``transition_timeout``)."""
        job = parse_job_id(job_id)
        deadline = self._clock() + self._transition_timeout
        status = self.get(job.id)
        while status.transitional:
            if self._clock() >= deadline:
                raise StreamJobTimeoutError(
                    f"Stream Analytics job {job.name!r} is still {status.state} after "
                    f"{self._transition_timeout:.0f} s; look at its Activity log in the Azure portal, then re-run "
                    "the deployment."
                )
            self._log(f"stream job {job.name}: {status.state}, waiting")
            self._sleep(self._polling_interval)
            status = self.get(job.id)
        return status

    def ensure_running(self, job_id: str, first_start: FirstStart | None = None) -> Outcome:
        """Make the job run; do nothing when it already does (Running or Degraded).

        The output start mode is LastOutputEventTime when the job has produced output before (nothing lost between
        stop and start). A job that never produced output starts at ``first_start`` (CustomTime at the time the
        deployment first asked for a start, within the input's retention: :class:`FirstStart`), so the readings sent
        since then are aggregated even when that first start failed; without one, at JobStartTime (the documented
        default: readings sent before the start are not aggregated).
        A start that ends without the job running (typically Failed because its managed identity's role grants have
        not propagated yet) is retried with exponential backoff for up to ``start_timeout`` seconds.
        """
        job = parse_job_id(job_id)
        started: OutputStartMode | None = None  # the mode of the last start sent
        judged = True  # whether the last start's result has been looked at
        last_error: str | None = None
        attempts = conflicts = 0
        deadline = 0.0
        delay = self._start_retry_delay
        while True:
            status = self.wait_until_settled(job.id)
            if status.running:
                return Outcome.started(started) if started else Outcome.ALREADY_RUNNING
            if status.state == JobState.DELETING:
                raise StreamJobError(f"Stream Analytics job {job.name!r} is being deleted; it cannot be started.")
            if not judged:  # the last start ended without the job running
                judged = True
                ended = f"ended {status.state}" + (f" ({last_error})" if last_error else "")
                if self._clock() + delay > deadline:
                    raise self._start_failed(job, attempts, ended)
                self._log(f"stream job {job.name}: start {ended}; retrying in {delay:.0f} s")
                self._sleep(delay)
                delay = min(delay * 2, self._start_retry_max_delay)
                continue  # read the job again: it may have recovered meanwhile
            mode, start_time = self._start_mode(job, status, first_start)
            at = f" at {format_start_time(start_time)}" if start_time is not None else ""
            self._log(f"stream job {job.name}: {status.state}, starting with {mode}{at}")
            if attempts == 0:
                deadline = self._clock() + self._start_timeout
            try:
                poller = self.begin_start(job.id, mode, start_time)
            except _ConflictError:
                conflicts = self._conflict(job, "start", conflicts)
                continue
            attempts += 1
            started, judged, last_error = mode, False, None
            try:
                poller.result()
            except ClientAuthenticationError:
                raise
            except HttpResponseError as err:  # the operation itself failed: the job's state decides what next
                last_error = _message(err)

    def _start_mode(
        self, job: JobRef, status: JobStatus, first_start: FirstStart | None
    ) -> tuple[OutputStartMode, datetime | None]:
        """LastOutputEventTime once the job has produced output; else CustomTime at ``first_start`` (clamped into the
        input's retention, said in the log); else JobStartTime."""
        if status.last_output_event_time:
            return OutputStartMode.LAST_OUTPUT_EVENT_TIME, None
        if first_start is None:
            return OutputStartMode.JOB_START_TIME, None
        start_time = first_start.start_time(self._now())
        if start_time != first_start.requested_at:
            self._log(
                f"stream job {job.name}: the first start was asked for at "
                f"{format_start_time(first_start.requested_at)}, longer ago than the input's retention; readings "
                f"sent before {format_start_time(start_time)} have expired from Event Hubs"
            )
        return OutputStartMode.CUSTOM_TIME, start_time

    def stop(self, job_id: str, *, missing_ok: bool = False) -> Outcome:
        """Stop the job and wait until it is Stopped; nothing to do when it is Created, Stopped or Failed.

        :param missing_ok: a job that no longer exists (404) counts as stopped; used on destroy, where the job may
            already have been deleted by hand.
        """
        job = parse_job_id(job_id)
        try:
            return self._stop(job)
        except StreamJobNotFoundError:
            if not missing_ok:
                raise
            self._log(f"stream job {job.name}: not found, nothing to stop")
            return Outcome.JOB_NOT_FOUND

    def _stop(self, job: JobRef) -> Outcome:
        stopped = False
        conflicts = 0
        while True:
            status = self.wait_until_settled(job.id)
            if status.idle or status.state == JobState.DELETING:
                return Outcome.STOPPED if stopped else Outcome.ALREADY_STOPPED
            if stopped:
                raise StreamJobError(
                    f"Stream Analytics job {job.name!r} is {status.state} right after a successful stop; "
                    "something else is starting it. Stop it in the Azure portal and re-run the deployment."
                )
            self._log(f"stream job {job.name}: {status.state}, stopping")
            try:
                poller = self.begin_stop(job.id)
            except _ConflictError:
                conflicts = self._conflict(job, "stop", conflicts)
                continue
            try:
                poller.result()
            except ClientAuthenticationError:
                raise
            except HttpResponseError as err:
                raise StreamJobError(
                    f"Stopping Stream Analytics job {job.name!r} failed: {_message(err)}. "
                    "Stop it in the Azure portal (or Stop-AzStreamAnalyticsJob) and re-run the deployment."
                ) from err
            stopped = True

    # --- internals -------------------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> HttpRequest:
        return HttpRequest(method, f"{self._endpoint}{path}", params={"api-version": API_VERSION}, json=body)

    def _send(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> HttpResponse:
        response: HttpResponse = self._client.send_request(self._request(method, path, body))
        return response

    def _put(self, job: JobRef, kind: str, name: str, properties: Mapping[str, Any]) -> HttpResponse:
        """PUT a job sub-resource (body ``{"properties": ...}``); raises the ARM error on anything but 200/201."""
        response = self._send("PUT", f"{job.id}/{kind}/{name}", {"properties": dict(properties)})
        if response.status_code not in (200, 201):
            raise HttpResponseError(response=response, error_format=ARMErrorFormat)
        return response

    def _put_authorized(self, job: JobRef, kind: str, name: str, properties: Mapping[str, Any]) -> None:
        """PUT an input/output; while ASA refuses it as not authorized (#2607), retry with backoff up to the bound."""
        what = f"{kind[:-1]} {name!r}"
        started = self._clock()
        deadline = started + self._grant_timeout
        delay = self._grant_retry_delay
        attempts = 0
        while True:
            attempts += 1
            try:
                self._put(job, kind, name, properties)
                return
            except ClientAuthenticationError:
                raise
            except HttpResponseError as err:
                if not grant_not_in_effect(err):
                    raise self._error(job, f"write {what} of", err) from err
                if self._clock() + delay > deadline:
                    raise StreamJobGrantsNotEffectiveError(
                        f"Stream Analytics refused {what} of job {job.name!r} as not authorized for "
                        f"{self._clock() - started:.0f} s ({attempts} attempt(s), bound {self._grant_timeout:.0f} s): "
                        f"{_message(err)}. The job's system-assigned managed identity needs "
                        f"{_required_grant(properties)}. Azure RBAC role assignments can take up to 10 minutes to "
                        "take effect (Troubleshoot Azure RBAC); if the assignment exists (Azure portal > the resource "
                        "> Access control (IAM) > Role assignments, the job's name as principal), wait a few minutes "
                        "and re-run `pulumi up`; if it does not, check the grants in infra/platform.py "
                        "(stream-access) and that the deployer may create role assignments."
                    ) from err
                self._log(f"stream job {job.name}: {what} not authorized yet ({_message(err)}); retry in {delay:.0f} s")
                self._sleep(delay)
                delay = min(delay * 2, self._grant_retry_max_delay)

    def _delete(self, job: JobRef, kind: str, name: str) -> None:
        response = self._send("DELETE", f"{job.id}/{kind}/{name}")
        if response.status_code not in (200, 204):
            err = HttpResponseError(response=response, error_format=ARMErrorFormat)
            raise self._error(job, f"delete {kind[:-1]} {name!r} of", err)

    def _begin(self, job: JobRef, action: str, body: Mapping[str, Any] | None) -> LROPoller[None]:
        """Send a start/stop POST and wrap the answer in a poller, as generated azure-mgmt SDKs do."""
        request = self._request("POST", f"{job.id}/{action}", body)
        initial: PipelineResponse[Any, Any] = self._client._pipeline.run(request, stream=False)
        status_code = initial.http_response.status_code
        if status_code == 409:
            raise _ConflictError(
                _message(HttpResponseError(response=initial.http_response, error_format=ARMErrorFormat))
            )
        if status_code not in (200, 202):
            err = HttpResponseError(response=initial.http_response, error_format=ARMErrorFormat)
            raise self._error(job, action, err)
        polling = _SleepingArmPolling(self._polling_interval, self._sleep)
        return LROPoller[None](self._client, initial, lambda _response: None, polling)

    def _conflict(self, job: JobRef, action: str, seen: int) -> int:
        """Count a 409 and wait before the caller re-reads the job and tries again (bounded)."""
        seen += 1
        if seen > self._max_conflicts:
            raise StreamJobError(
                f"Stream Analytics job {job.name!r} refused {action} {seen} times with 409 Conflict (another "
                "operation on the job is in progress). Wait for it to finish (Activity log in the Azure portal), "
                "then re-run the deployment."
            )
        self._log(f"stream job {job.name}: {action} answered 409 Conflict, waiting")
        self._sleep(self._polling_interval)
        return seen

    def access_help(self) -> str:
        """What to check when ARM refuses the deployer: which identity ran, and which rights it needs."""
        return (
            f"Pulumi's stream job provider authenticated with {self.credential_source}. That identity needs "
            "Microsoft.StreamAnalytics/streamingjobs/Read, Write, Start/action and Stop/action and write access to "
            "the job's inputs, outputs, functions and transformations, e.g. the Contributor role on the job or its "
            "resource group; it should be the identity azure-native deploys with."
        )

    def _error(self, job: JobRef, action: str, err: HttpResponseError) -> StreamJobError:
        """A clear, actionable error for an ARM refusal."""
        if err.status_code in (401, 403):
            return StreamJobAccessDeniedError(
                f"Not allowed to {action} Stream Analytics job {job.name!r} (resource group {job.resource_group!r}): "
                f"{_message(err)}. {self.access_help()}"
            )
        if err.status_code == 404:
            return StreamJobNotFoundError(
                f"Stream Analytics job {job.name!r} was not found in resource group {job.resource_group!r} "
                f"(subscription {job.subscription}): {_message(err)}. Was it deleted outside Pulumi? "
                "Run `pulumi refresh`, then `pulumi up`."
            )
        return StreamJobError(f"Could not {action} Stream Analytics job {job.name!r}: {_message(err)}")

    def _start_failed(self, job: JobRef, attempts: int, ended: str) -> StreamJobStartFailedError:
        return StreamJobStartFailedError(
            f"Stream Analytics job {job.name!r} did not reach Running: {attempts} start attempt(s) within "
            f"{self._start_timeout:.0f} s, the last one {ended}. On a first deployment this is usually the job's "
            "managed identity role grants (Event Hubs Data Receiver on the hub, Storage Blob Data Contributor on the "
            "output account) not yet in effect: Azure RBAC changes can take up to 10 minutes. Check the grants and "
            "the job's Activity log in the Azure portal, then re-run `pulumi up`: a job that never produced output "
            "then starts at the time the first start was asked for (kept in Pulumi state), within Event Hubs "
            "retention. (By hand: Start-AzStreamAnalyticsJob -ResourceGroupName "
            f"{job.resource_group} -Name {job.name} -OutputStartMode LastOutputEventTime, or CustomTime with "
            "-OutputStartTime at that time if it never produced output.)"
        )


def _message(err: HttpResponseError) -> str:
    """The ARM error's code and message, without azure-core's multi-line dump."""
    error = err.error
    if error is not None and (error.code or error.message):
        text = f"{error.code}: {error.message}" if error.code else str(error.message)
    else:
        text = str(err.message or err.reason or err).splitlines()[0]
    return text.rstrip(". ")
