"""A fake Azure Resource Manager serving one Stream Analytics job, behind azure-core's real pipeline.

Only the HTTP layer is replaced (a requests adapter inside azure-core's RequestsTransport, as in
tests/workloads/fake_batch.py), so `StreamJobClient` runs its real policies (retry, bearer token) and the real
ARMPolling against canned ARM answers:

* start/stop answer 202 with a ``Location`` header (and ``Azure-AsyncOperation`` when asked); polling that URL answers
  202 ``polls`` times, then 200 once the operation is done (or the ARM error when it failed);
* meanwhile the job is Starting/Stopping and a start/stop sent then is refused with 409 Conflict;
* a start can end Failed a number of times first (RBAC grants not yet in effect), or its POST be answered with an
  error status (e.g. 500) a number of times;
* a start's body is checked as the 2020-03-01 spec describes it: ``outputStartMode`` one of JobStartTime, CustomTime,
  LastOutputEventTime; ``outputStartTime`` (ISO-8601) required with CustomTime and only with it; LastOutputEventTime
  refused on a job without output (our assumption: the docs say the option "is available when the job was previously
  started");
* inputs, outputs, functions and transformations are PUT (201 created, 200 replaced) and inputs/outputs/functions
  DELETEd (200, 204 when gone); the job is PATCHed (its properties merged, its tags replaced); all of them as in the
  2020-03-01 REST spec;
* an input/output PUT can be refused a number of times first as Stream Analytics refuses an identity whose role
  assignment has not propagated (400 "Stream Analytics job has validation errors: Access to EventHub ... is not
  authorized", pulumi-azure-native#2607);
* a PUT/PATCH/DELETE while the job is not idle is refused (400): the docs say a running job's inputs/outputs cannot
  change (and pulumi-azure-native#785 shows updates failing), the exact answer is our assumption;
* 403 for denied operations, 404 for any other job, and transient 429/503 answers on demand.

Every request is recorded (method, path, query, body). Waits go to a `FakeClock`: nothing sleeps for real.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from azure.core.pipeline.transport import RequestsTransport
from requests.adapters import BaseAdapter

from infra.stream_job_client import ARM_ENDPOINT, StreamJobClient
from tests.fake_http import Call, FakeCredential, json_response

SUBSCRIPTION = "00000000-1111-2222-3333-444444444444"
GROUP = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-batchscoring-dev"
JOB_ID = f"{GROUP}/providers/Microsoft.StreamAnalytics/streamingjobs/asa-batchscoring-dev"
INPUT_ID = f"{JOB_ID}/inputs/readings"
OUTPUT_ID = f"{JOB_ID}/outputs/aggregates"
IDLE = {"Created", "Stopped", "Failed"}
SUB_RESOURCES = {"inputs", "outputs", "functions", "transformations"}
OPERATIONS = f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.StreamAnalytics/locations/westeurope"
LAST_OUTPUT = "2026-11-25T14:55:00Z"
TRANSITIONAL = {"Starting", "Stopping", "Restarting", "Scaling"}
NOT_VALID_STATE = "The Stream Analytics job is not in a valid state to perform this operation."


@dataclass
class Operation:
    action: str  # start | stop
    polls_left: int
    fails: bool
    done: bool = False


@dataclass
class FakeClock:
    """`time.monotonic` and `time.sleep` for the client: sleeping only moves the clock and is recorded."""

    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeTransport(RequestsTransport):
    """RequestsTransport whose `sleep` (used by RetryPolicy and LRO polling) goes to the fake clock."""

    def __init__(self, session: requests.Session, clock: FakeClock) -> None:
        super().__init__(session=session, session_owner=False)
        self._clock = clock

    def sleep(self, duration: float) -> None:
        self._clock.sleep(duration)


@dataclass
class FakeArm(BaseAdapter):
    """One job's state machine; fields are the scenario knobs, `calls` what the client sent."""

    state: str = "Created"
    last_output_event_time: str | None = None
    polls: int = 1  # 202 answers from the operation URL before the operation is done
    failed_starts: int = 0  # the next N starts end with the job Failed
    start_errors: list[int] = field(default_factory=list)  # statuses answered (one each) to the next start POSTs
    conflicts: int = 0  # the next N start/stop requests are refused with 409 whatever the state
    settle_after: int = 0  # GETs of the job after which a transitional state settles...
    settles_to: str | None = None  # ...into this state
    denied: set[str] = field(default_factory=set)  # "read", "start", "stop", "write": answered 403
    input_grant_failures: int = 0  # the next N input PUTs are refused as not authorized (RBAC not propagated)
    output_grant_failures: int = 0  # the same for output PUTs
    properties: dict[str, Any] = field(default_factory=dict)  # the job's settings, as PATCHed
    tags: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)  # name -> properties, as PUT
    outputs: dict[str, Any] = field(default_factory=dict)
    functions: dict[str, Any] = field(default_factory=dict)
    transformations: dict[str, Any] = field(default_factory=dict)
    async_operation: bool = False  # also send Azure-AsyncOperation (polled first, then the Location)
    transient: list[int] = field(default_factory=list)  # statuses answered (one each) before anything else
    clock: FakeClock = field(default_factory=FakeClock)
    wall: datetime = datetime(2026, 12, 2, 7, 0, tzinfo=UTC)  # the wall-clock time when the fake clock reads 0
    calls: list[Call] = field(default_factory=list)
    operations: dict[str, Operation] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__()

    # --- transport plumbing --------------------------------------------------------------------------------------

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        call = Call.of(request)
        self.calls.append(call)
        if self.transient:
            status = self.transient.pop(0)
            return self._response(request, status, _error("Throttled", "try again"), {"Retry-After": "1"})
        status, payload, headers = self._route(call)
        return self._response(request, status, payload, headers)

    def close(self) -> None:
        pass

    def _response(
        self, request: requests.PreparedRequest, status: int, payload: Any, extra: dict[str, str] | None = None
    ) -> requests.Response:
        return json_response(request, status, payload, extra)

    def transport(self) -> FakeTransport:
        session = requests.Session()
        session.mount("https://", self)
        return FakeTransport(session, self.clock)

    def client(self, **kwargs: Any) -> StreamJobClient:
        """A real StreamJobClient wired to this fake, its clock and sleep; `kwargs` override the bounds (and the
        credential: pass ``credential=None`` to have the client choose one from the environment)."""
        options: dict[str, Any] = {
            "credential": FakeCredential(),
            "polling_interval": 10.0,
            "retry_backoff_factor": 0.0,
            "log": lambda _msg: None,
            "now": self.now,
        }
        options |= kwargs
        return StreamJobClient(transport=self.transport(), sleep=self.clock.sleep, clock=self.clock, **options)

    def now(self) -> datetime:
        """The wall-clock time: ``wall`` plus however long the client has (fake-)slept."""
        return self.wall + timedelta(seconds=self.clock.now)

    # --- ARM ------------------------------------------------------------------------------------------------------

    def _route(self, call: Call) -> tuple[int, Any, dict[str, str]]:
        path = call.path.rstrip("/")
        if path.lower() == JOB_ID.lower() and call.method == "GET":
            return self._get_job()
        if path.lower() == JOB_ID.lower() and call.method == "PATCH":
            return self._write(lambda: self._patch(call.body or {}))
        kind, _, name = (
            path[len(JOB_ID) + 1 :].partition("/") if path.lower().startswith(JOB_ID.lower() + "/") else ("", "", "")
        )
        if kind in SUB_RESOURCES and name and "/" not in name and call.method in ("PUT", "DELETE"):
            if call.method == "DELETE":
                return self._write(lambda: self._delete(kind, name))
            return self._write(lambda: self._put(kind, name, (call.body or {}).get("properties")))
        if path.lower() == f"{JOB_ID}/start".lower() and call.method == "POST":
            return self._start(call.body or {})
        if path.lower() == f"{JOB_ID}/stop".lower() and call.method == "POST":
            return self._stop()
        if path.startswith(f"{OPERATIONS}/") and call.method == "GET":
            return self._poll(path.rsplit("/", 2)[-2], path.rsplit("/", 1)[-1])
        return 404, _error("ResourceNotFound", f"The Resource '{path}' was not found."), {}

    def _get_job(self) -> tuple[int, Any, dict[str, str]]:
        if "read" in self.denied:
            return 403, _denied("read"), {}
        if self.settles_to is not None and self.state in TRANSITIONAL:
            self.settle_after -= 1
            if self.settle_after <= 0:
                self.state, self.settles_to = self.settles_to, None
        properties = {"jobState": self.state, "lastOutputEventTime": self.last_output_event_time}
        return 200, {"id": JOB_ID, "name": JOB_ID.rsplit("/", 1)[-1], "properties": properties}, {}

    def _write(self, action: Callable[[], tuple[int, Any, dict[str, str]]]) -> tuple[int, Any, dict[str, str]]:
        if "write" in self.denied:
            return 403, _denied("write"), {}
        if self.state not in IDLE:
            return 400, _error("BadRequest", f"The streaming job is {self.state}: stop it before changing it."), {}
        return action()

    def _patch(self, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        self.properties |= body.get("properties") or {}
        if "tags" in body:
            self.tags = dict(body["tags"])
        return 200, {"id": JOB_ID, "properties": {"jobState": self.state, **self.properties}, "tags": self.tags}, {}

    def _put(self, kind: str, name: str, properties: Any) -> tuple[int, Any, dict[str, str]]:
        if not isinstance(properties, dict):
            return 400, _error("BadRequest", "The request body must have 'properties'."), {}
        if kind == "inputs" and self.input_grant_failures > 0:
            self.input_grant_failures -= 1
            return 400, _not_authorized(properties), {}
        if kind == "outputs" and self.output_grant_failures > 0:
            self.output_grant_failures -= 1
            return 400, _not_authorized(properties), {}
        store: dict[str, Any] = getattr(self, kind)
        created = name not in store
        store[name] = properties
        body = {
            "id": f"{JOB_ID}/{kind}/{name}",
            "name": name,
            "type": f"Microsoft.StreamAnalytics/streamingjobs/{kind}",
        }
        return (201 if created else 200), {**body, "properties": properties}, {"ETag": f"etag-{len(self.calls)}"}

    def _delete(self, kind: str, name: str) -> tuple[int, Any, dict[str, str]]:
        store: dict[str, Any] = getattr(self, kind)
        return (200, None, {}) if store.pop(name, None) is not None else (204, None, {})

    def _start(self, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        if "start" in self.denied:
            return 403, _denied("start/action"), {}
        if refused := self._conflict():
            return refused
        if self.start_errors:
            status = self.start_errors.pop(0)
            return status, _error("InternalServerError", "An internal error occurred; try again."), {}
        if self.state in {"Running", "Degraded"}:
            return 409, _error("Conflict", NOT_VALID_STATE), {}
        if refused := _invalid_start(body):
            return 400, _error("BadRequest", refused), {}
        if body.get("outputStartMode") == "LastOutputEventTime" and not self.last_output_event_time:
            return 400, _error("BadRequest", "LastOutputEventTime needs a job that has produced output."), {}
        fails = self.failed_starts > 0
        self.failed_starts -= int(fails)
        self.state = "Starting"
        return self._accept(Operation("start", self.polls, fails))

    def _stop(self) -> tuple[int, Any, dict[str, str]]:
        if "stop" in self.denied:
            return 403, _denied("stop/action"), {}
        if refused := self._conflict():
            return refused
        self.state = "Stopping"
        return self._accept(Operation("stop", self.polls, fails=False))

    def _conflict(self) -> tuple[int, Any, dict[str, str]] | None:
        if self.conflicts > 0 or self.state in TRANSITIONAL:
            self.conflicts = max(0, self.conflicts - 1)
            return 409, _error("Conflict", NOT_VALID_STATE), {}
        return None

    def _accept(self, operation: Operation) -> tuple[int, Any, dict[str, str]]:
        op_id = f"op-{len(self.operations) + 1}"
        self.operations[op_id] = operation
        headers = {"Location": self.location_url(op_id)}
        if self.async_operation:
            headers["Azure-AsyncOperation"] = self.async_operation_url(op_id)
        return 202, None, headers

    @staticmethod
    def location_url(op_id: str) -> str:
        return f"{ARM_ENDPOINT}{OPERATIONS}/operationResults/{op_id}?api-version=2020-03-01"

    @staticmethod
    def async_operation_url(op_id: str) -> str:
        return f"{ARM_ENDPOINT}{OPERATIONS}/asyncOperations/{op_id}?api-version=2020-03-01"

    def _poll(self, kind: str, op_id: str) -> tuple[int, Any, dict[str, str]]:
        operation = self.operations[op_id]
        if not operation.done and operation.polls_left > 0:
            operation.polls_left -= 1
            if kind == "asyncOperations":
                return 200, {"status": "InProgress"}, {}
            return 202, None, {"Location": self.location_url(op_id)}
        self._finish(operation)
        failure = _error("StreamingJobFailedToStart", "Input 'readings': authentication failed (403 from Event Hubs).")
        if kind == "asyncOperations":
            return 200, {"status": "Failed", **failure} if operation.fails else {"status": "Succeeded"}, {}
        return (400, failure, {}) if operation.fails else (200, None, {})

    def _finish(self, operation: Operation) -> None:
        if operation.done:
            return
        operation.done = True
        if operation.action == "start":
            self.state = "Failed" if operation.fails else "Running"
        else:
            self.state = "Stopped"

    # --- what the tests look at -----------------------------------------------------------------------------------

    def of(self, method: str, suffix: str = "") -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path.endswith(suffix)]

    def trace(self) -> list[str]:
        """The calls as short labels: 'GET job', 'POST start', 'GET operationResults/op-1', ..."""
        labels = []
        for call in self.calls:
            if call.path.startswith(OPERATIONS):
                labels.append(f"{call.method} {call.path.removeprefix(OPERATIONS + '/')}")
            elif call.path.lower().startswith(JOB_ID.lower()):
                rest = call.path[len(JOB_ID) :].strip("/")
                labels.append(f"{call.method} {rest or 'job'}")
            else:
                labels.append(f"{call.method} {call.path}")
        return labels


def _invalid_start(body: dict[str, Any]) -> str | None:
    """What is wrong with a start body (StartStreamingJobParameters, api 2020-03-01), or None."""
    mode, start_time = body.get("outputStartMode", "JobStartTime"), body.get("outputStartTime")
    if mode not in {"JobStartTime", "CustomTime", "LastOutputEventTime"}:
        return f"Unknown outputStartMode {mode!r}."
    if (mode == "CustomTime") != (start_time is not None):
        return "outputStartTime must have a value if and only if outputStartMode is CustomTime."
    if start_time is not None:
        try:
            datetime.fromisoformat(str(start_time).replace("Z", "+00:00"))
        except ValueError:
            return f"outputStartTime {start_time!r} is not an ISO-8601 time stamp."
    return None


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _not_authorized(properties: dict[str, Any]) -> dict[str, Any]:
    """Stream Analytics' refusal of a data source its managed identity may not use yet (pulumi-azure-native#2607)."""
    source = properties.get("datasource", {}).get("properties", {})
    target = (
        f"EventHub sb://{source.get('serviceBusNamespace')}.servicebus.windows.net/{source.get('eventHubName')}"
        if "eventHubName" in source
        else f"storage container {source.get('container')}"
    )
    return _error(
        "BadRequest",
        f"Stream Analytics job has validation errors: Access to {target} is not authorized.  "
        "Exception Attempted to perform an unauthorized operation.",
    )


def _denied(action: str) -> dict[str, Any]:
    return _error(
        "AuthorizationFailed",
        f"The client 'deployer' does not have authorization to perform action "
        f"'Microsoft.StreamAnalytics/streamingjobs/{action}' over scope '{JOB_ID}'.",
    )
