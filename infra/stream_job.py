"""The Stream Analytics job's run life cycle: start it once it can run, stop it around changes and before destroy.

Pulumi (azure-native) creates and updates the ``StreamingJob`` resource but never starts or stops it: a job is
created ``Created`` and stays idle until someone calls *Start*. This module supplies the two pieces that do:

* :class:`StreamJobRun`, a dynamic resource declared after the job's input, output and role grants. Its ``create``
  and ``update`` make sure the job runs (its ``diff`` asks for an update whenever it finds the job idle, so every
  ``pulumi up`` leaves it running, also after a failed restart); its ``delete`` stops it, so ``pulumi destroy``
  stops the job before its input and output are deleted.
* :func:`lifecycle_hooks`, resource hooks bound to the job and to its ``Input``/``Output`` sub-resources: before an
  update that touches more than tags they stop the job (Azure does not let a running job's inputs/outputs change),
  after the update they start it again.

Both drive a small ARM client (:class:`StreamJobClient`) built on azure-core/azure-mgmt-core, so retries (429/5xx,
``Retry-After``) and long-running-operation polling are the SDK's own; only the job's state machine is ours.

Azure behaviour relied on, and where it is documented (Microsoft Learn pages unless said otherwise):

* *Streaming Jobs - Start* (api 2020-03-01): ``POST .../streamingjobs/{job}/start?api-version=2020-03-01`` with body
  ``{"outputStartMode": "JobStartTime" | "CustomTime" | "LastOutputEventTime"}`` (``outputStartTime`` only with
  CustomTime); answers 200 (started) or 202 (initiated).
  https://learn.microsoft.com/en-us/rest/api/streamanalytics/2020-03-01/streaming-jobs/start
* *Streaming Jobs - Stop* (api 2020-03-01): ``POST .../stop``, 200 or 202.
  https://learn.microsoft.com/en-us/rest/api/streamanalytics/2020-03-01/streaming-jobs/stop
* Both are ``x-ms-long-running-operation: true`` in the service's OpenAPI spec, which also documents *Get*'s
  ``properties.jobState`` and ``properties.lastOutputEventTime`` ("the last output event time of the streaming job or
  null indicating that output has not yet been produced"):
  https://github.com/Azure/azure-rest-api-specs/blob/main/specification/streamanalytics/resource-manager/Microsoft.StreamAnalytics/stable/2020-03-01/streamingjobs.json
  https://learn.microsoft.com/en-us/rest/api/streamanalytics/2020-03-01/streaming-jobs/get
* *How to start an Azure Stream Analytics job*: "When last stopped" (LastOutputEventTime) "is available when the job
  was previously started, but was stopped manually or failed" and restarts from the last output time "so no data is
  lost" (a few duplicates are possible); JobStartTime ("Now") is the default.
  https://learn.microsoft.com/en-us/azure/stream-analytics/start-job
* *Azure Stream Analytics job states*: Degraded means transient errors, and the service "will immediately try to
  recover ... and return to a Running state".
  https://learn.microsoft.com/en-us/azure/stream-analytics/job-states
  The full value set (Created, Starting, Running, Stopping, Stopped, Deleting, Failed, Degraded, Restarting, Scaling)
  is the SDKs' JobState enum: https://learn.microsoft.com/en-us/javascript/api/@azure/arm-streamanalytics/knownjobstate
* A running job's inputs/outputs cannot be changed, *Rotate login credentials for inputs and outputs of a Stream
  Analytics job*: "You must stop the job before updating the credentials, you can't replace the credentials while the
  job is running".
  https://learn.microsoft.com/en-us/azure/stream-analytics/stream-analytics-login-credentials-inputs-outputs
* *Track asynchronous Azure operations*: 202 with ``Azure-AsyncOperation`` and/or ``Location``, ``Retry-After``;
  ARMPolling implements exactly that.
  https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/async-operations
* *Troubleshoot Azure RBAC*: "When you assign roles or remove role assignments, it can take up to 10 minutes for
  changes to take effect" - hence the bounded retry of a start that fails right after the job's grants were created.
  https://learn.microsoft.com/en-us/azure/role-based-access-control/troubleshooting
* The deployer needs ``Microsoft.StreamAnalytics/streamingjobs/Read``, ``.../Start/action`` and ``.../Stop/action``
  (*Azure resource provider operations*).
  https://learn.microsoft.com/en-us/azure/role-based-access-control/resource-provider-operations

Not found in the docs, so handled defensively: that a query/streaming-unit change is refused while the job runs (we
stop for any change but tags; the spec's separate ``/scale`` action suggests SUs could change live), the status code
of a start/stop sent while another is in progress (409 "The Stream Analytics job is not in a valid state to perform
this operation" is what users report), which LRO headers the service actually sends, and how a start that fails
shows up (a failed operation or a Failed job: both are retried).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any, Final, TypeVar

import pulumi
import pulumi.dynamic
from azure.core.credentials import TokenCredential
from azure.core.exceptions import HttpResponseError
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
from azure.core.rest import HttpRequest
from azure.identity import DefaultAzureCredential
from azure.mgmt.core import ARMPipelineClient
from azure.mgmt.core.exceptions import ARMErrorFormat
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy, ARMHttpLoggingPolicy
from azure.mgmt.core.polling.arm_polling import ARMPolling
from pulumi.runtime.settings import get_monitor

ARM_ENDPOINT: Final = "https://management.azure.com"
ARM_SCOPE: Final = "https://management.azure.com/.default"
API_VERSION: Final = "2020-03-01"

STOP_HOOK_NAME: Final = "stream-job-stop-before-update"
START_HOOK_NAME: Final = "stream-job-start-after-update"

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
    STARTED_LAST_OUTPUT_EVENT_TIME = "started:LastOutputEventTime"
    ALREADY_STOPPED = "already_stopped"
    STOPPED = "stopped"
    JOB_NOT_FOUND = "job_not_found"

    @classmethod
    def started(cls, mode: OutputStartMode) -> Outcome:
        return cls(f"started:{mode}")


class StreamJobError(RuntimeError):
    """A start/stop could not be carried out; the message says what to do."""


class StreamJobAccessDeniedError(StreamJobError):
    """ARM answered 403: the deployer's identity lacks rights on the job."""


class StreamJobNotFoundError(StreamJobError):
    """ARM answered 404 for the job."""


class StreamJobStartFailedError(StreamJobError):
    """Every start attempt within the time bound ended without the job running."""


class StreamJobTimeoutError(StreamJobError):
    """The job stayed in a transitional state (Starting, Stopping...) longer than the bound."""


@dataclass(frozen=True)
class JobRef:
    """A streaming job's ARM id, split into the parts messages need."""

    id: str
    subscription: str
    resource_group: str
    name: str


def parse_job_id(resource_id: str) -> JobRef:
    """The job an ARM id belongs to: the job itself or one of its inputs/outputs/transformations/functions.

    Hooks bound to ``streamanalytics.Input``/``Output`` receive the sub-resource's id
    (``.../streamingjobs/<job>/inputs/<name>``); start and stop act on the parent job.
    """
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
    """Start/stop/read one or more Stream Analytics jobs over ARM REST (api-version 2020-03-01).

    Everything that waits is injectable (``sleep``, ``clock``) and every bound is a parameter, so tests run the whole
    state machine against a fake transport without waiting. 429 and 5xx answers are retried by azure-core's
    ``RetryPolicy`` (which honours ``Retry-After``); 409 Conflict (an operation already in progress) is retried here,
    after waiting out the job's transitional state.
    """

    def __init__(
        self,
        credential: TokenCredential | None = None,
        *,
        transport: HttpTransport[Any, Any] | None = None,
        endpoint: str = ARM_ENDPOINT,
        polling_interval: float = 10.0,
        transition_timeout: float = 900.0,
        start_timeout: float = 600.0,
        start_retry_delay: float = 30.0,
        start_retry_max_delay: float = 120.0,
        max_conflicts: int = 10,
        retry_total: int = 5,
        retry_backoff_factor: float = 0.8,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        log: Callable[[str], None] = _LOG.info,
    ) -> None:
        """
        :param credential: ARM credential; ``DefaultAzureCredential()`` (the deployer's az login, or a CI identity)
            when omitted, and closed with the client.
        :param transport: azure-core transport; the default is requests. Tests pass a fake ARM.
        :param polling_interval: seconds between GETs of a transitional job and between LRO polls without Retry-After.
        :param transition_timeout: the longest a job may stay Starting/Stopping/... before we give up.
        :param start_timeout: how long failed starts are retried (RBAC grants can take ~10 minutes to apply).
        :param start_retry_delay: first wait after a failed start; doubles up to ``start_retry_max_delay``.
        :param max_conflicts: 409 answers tolerated per operation before giving up.
        :param retry_total: azure-core RetryPolicy attempts for 408/429/5xx and connection errors.
        :param sleep: every wait of ours and of the LRO poller (``time.sleep`` in real use).
        :param clock: monotonic seconds, for the deadlines.
        :param log: progress lines (Pulumi's log when run by the hooks and the provider).
        """
        self._owns_credential = credential is None
        self._credential: TokenCredential = credential if credential is not None else DefaultAzureCredential()
        self._endpoint = endpoint.rstrip("/")
        self._polling_interval = polling_interval
        self._transition_timeout = transition_timeout
        self._start_timeout = start_timeout
        self._start_retry_delay = start_retry_delay
        self._start_retry_max_delay = start_retry_max_delay
        self._max_conflicts = max_conflicts
        self._sleep = sleep
        self._clock = clock
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
        response = self._client.send_request(self._request("GET", job.id))
        if response.status_code != 200:
            raise self._error(job, "read", HttpResponseError(response=response, error_format=ARMErrorFormat))
        properties: Mapping[str, Any] = response.json().get("properties") or {}
        return JobStatus(str(properties.get("jobState") or "Unknown"), properties.get("lastOutputEventTime") or None)

    def begin_start(self, job_id: str, mode: OutputStartMode) -> LROPoller[None]:
        """*Streaming Jobs - Start*: send the POST; the poller follows the long-running operation."""
        return self._begin(parse_job_id(job_id), "start", {"outputStartMode": str(mode)})

    def begin_stop(self, job_id: str) -> LROPoller[None]:
        """*Streaming Jobs - Stop*: send the POST; the poller follows the long-running operation."""
        return self._begin(parse_job_id(job_id), "stop", None)

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

    def ensure_running(self, job_id: str) -> Outcome:
        """Make the job run; do nothing when it already does (Running or Degraded).

        The output start mode is LastOutputEventTime when the job has produced output before (nothing lost between
        stop and start), else JobStartTime: the documented default, and the only choice for a job without output.
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
            mode = (
                OutputStartMode.LAST_OUTPUT_EVENT_TIME
                if status.last_output_event_time
                else OutputStartMode.JOB_START_TIME
            )
            self._log(f"stream job {job.name}: {status.state}, starting with {mode}")
            if attempts == 0:
                deadline = self._clock() + self._start_timeout
            try:
                poller = self.begin_start(job.id, mode)
            except _ConflictError:
                conflicts = self._conflict(job, "start", conflicts)
                continue
            attempts += 1
            started, judged, last_error = mode, False, None
            try:
                poller.result()
            except HttpResponseError as err:  # the operation itself failed: the job's state decides what next
                last_error = _message(err)

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
            except HttpResponseError as err:
                raise StreamJobError(
                    f"Stopping Stream Analytics job {job.name!r} failed: {_message(err)}. "
                    "Stop it in the Azure portal (or Stop-AzStreamAnalyticsJob) and re-run the deployment."
                ) from err
            stopped = True

    # --- internals -------------------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> HttpRequest:
        return HttpRequest(method, f"{self._endpoint}{path}", params={"api-version": API_VERSION}, json=body)

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

    def _error(self, job: JobRef, action: str, err: HttpResponseError) -> StreamJobError:
        """A clear, actionable error for an ARM refusal."""
        if err.status_code == 403:
            return StreamJobAccessDeniedError(
                f"Not allowed to {action} Stream Analytics job {job.name!r} (resource group {job.resource_group!r}): "
                f"{_message(err)}. The identity running Pulumi needs Microsoft.StreamAnalytics/streamingjobs/Read, "
                "Start/action and Stop/action on the job, e.g. the Contributor role on the job or its resource group."
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
            "the job's Activity log in the Azure portal, then re-run `pulumi up`; if only a hook failed, start the "
            f"job by hand (Start-AzStreamAnalyticsJob -ResourceGroupName {job.resource_group} -Name {job.name} "
            "-OutputStartMode LastOutputEventTime, or JobStartTime if it never produced output)."
        )


def _message(err: HttpResponseError) -> str:
    """The ARM error's code and message, without azure-core's multi-line dump."""
    error = err.error
    if error is not None and (error.code or error.message):
        text = f"{error.code}: {error.message}" if error.code else str(error.message)
    else:
        text = str(err.message or err.reason or err).splitlines()[0]
    return text.rstrip(". ")


# --- the factory every Pulumi entry point uses (tests replace it) -------------------------------------------------


def default_client() -> StreamJobClient:
    """A client with the deployer's credential (``DefaultAzureCredential``), logging through Pulumi."""
    return StreamJobClient(log=pulumi.log.info)


client_factory: Callable[[], StreamJobClient] = default_client
"""Module-level so the hooks and the dynamic provider (which Pulumi pickles) hold no client or credential."""


def _with_client(action: Callable[[StreamJobClient], _T]) -> _T:
    with client_factory() as client:
        return action(client)


# --- resource hooks ----------------------------------------------------------------------------------------------

IGNORED_INPUTS: Final = frozenset({"tags"})
"""Inputs whose change leaves the running job alone (ARM applies tags without touching the job's definition)."""


def needs_stop(old_inputs: Mapping[str, Any] | None, new_inputs: Mapping[str, Any] | None) -> bool:
    """Whether an update of the job (or of its input/output) has to stop the job first.

    Any change other than tags does: the query, streaming units, an input's or output's properties. Conservative on
    purpose - a needless stop costs a minute, a refused update fails the deployment. A missing input and ``None``
    count as equal. Unknown old inputs (never the case for an update) count as a change.
    """
    if old_inputs is None or new_inputs is None:
        return True
    keys = (set(old_inputs) | set(new_inputs)) - IGNORED_INPUTS
    return any(old_inputs.get(key) != new_inputs.get(key) for key in keys)


def stop_before_update(args: pulumi.ResourceHookArgs) -> None:
    """``before_update`` hook: stop the job when the pending change needs it (see :func:`needs_stop`)."""
    if not needs_stop(args.old_inputs, args.new_inputs):
        pulumi.log.info(f"{args.name}: tags-only change, the stream job keeps running")
        return
    job_id = job_id_from_resource_id(args.id)
    outcome = _with_client(lambda client: client.stop(job_id))
    pulumi.log.info(f"{args.name}: stream job {outcome} before the update")


def start_after_update(args: pulumi.ResourceHookArgs) -> None:
    """``after_update`` hook: make sure the job runs again (a no-op when it never stopped)."""
    job_id = job_id_from_resource_id(args.id)
    outcome = _with_client(lambda client: client.ensure_running(job_id))
    pulumi.log.info(f"{args.name}: stream job {outcome} after the update")


_hooks_cache: tuple[object, pulumi.ResourceHookBinding] | None = None


def lifecycle_hooks() -> pulumi.ResourceHookBinding:
    """The hook binding for the job and its inputs/outputs: stop before a real change, start after.

    Creating a ``pulumi.ResourceHook`` registers it with the engine, under a name that must be unique in the
    program; so the hooks are created on the first call and the same binding is returned for the rest of the
    program (a new engine connection, e.g. the next test's mocks, gets new hooks).

    Only updates are covered: adding a new input or output to a job that already runs is not stopped first (a
    ``before_create`` hook has no ARM id to derive the job from).
    """
    global _hooks_cache  # noqa: PLW0603 (one registration per engine connection)
    monitor = get_monitor()
    if _hooks_cache is None or _hooks_cache[0] is not monitor:
        binding = pulumi.ResourceHookBinding(
            before_update=[pulumi.ResourceHook(STOP_HOOK_NAME, stop_before_update)],
            after_update=[pulumi.ResourceHook(START_HOOK_NAME, start_after_update)],
        )
        _hooks_cache = (monitor, binding)
    return _hooks_cache[1]


# --- the dynamic resource ----------------------------------------------------------------------------------------


class StreamJobRunProvider(pulumi.dynamic.ResourceProvider):
    """create/update: the job runs; delete: the job is stopped. Stateless, so Pulumi can pickle it."""

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        job_id = str(props["job_id"])
        outcome = _with_client(lambda client: client.ensure_running(job_id))
        return pulumi.dynamic.CreateResult(f"{job_id}/run", {"job_id": job_id, "last_action": str(outcome)})

    def diff(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        """Never a replacement: "running" is not something to recreate. An update (start it) for another job, or
        when the job is found idle: stopped by hand, failed, or left stopped by an update whose restart failed;
        `pulumi up` is what leaves the job running."""
        job_id = str(_news["job_id"])
        if _olds.get("job_id") != job_id:
            return pulumi.dynamic.DiffResult(changes=True, replaces=[])
        status = _with_client(lambda client: client.get(job_id))
        return pulumi.dynamic.DiffResult(changes=status.idle, replaces=[])

    def update(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        job_id = str(_news["job_id"])
        outcome = _with_client(lambda client: client.ensure_running(job_id))
        return pulumi.dynamic.UpdateResult({"job_id": job_id, "last_action": str(outcome)})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        job_id = str(_props["job_id"])
        _with_client(lambda client: client.stop(job_id, missing_ok=True))


class StreamJobRun(pulumi.dynamic.Resource, module="batchscoring", name="StreamJobRun"):
    """The job is running. Declare it ``depends_on`` the job's input, output and role grants.

    On ``pulumi destroy`` it is deleted before what it depends on, so the job is stopped before its input and output
    go away.
    """

    job_id: pulumi.Output[str]
    last_action: pulumi.Output[str]

    def __init__(self, name: str, job_id: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(StreamJobRunProvider(), name, {"job_id": job_id, "last_action": None}, opts)
