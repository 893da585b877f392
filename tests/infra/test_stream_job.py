"""The stream job's deployment against a fake ARM: inputs/outputs/functions/query/settings over ARM, start modes, waits,
LRO polling, retries (grants propagating, conflicts, throttling), the dynamic provider and the deployer's credential."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pulumi
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from pulumi.dynamic.dynamic import serialize_provider

from infra import stream_job, stream_job_client
from infra.stream_job import StreamJobDeployment, StreamJobDeploymentProvider
from infra.stream_job_client import (
    ARM_SP_SOURCE,
    DEFAULT_SOURCE,
    FirstStart,
    Outcome,
    OutputStartMode,
    StreamJobAccessDeniedError,
    StreamJobError,
    StreamJobGrantsNotEffectiveError,
    StreamJobNotFoundError,
    StreamJobStartFailedError,
    StreamJobTimeoutError,
    deployer_credential,
    job_id_from_resource_id,
    parse_job_id,
)
from tests.infra.fake_arm import GROUP, INPUT_ID, JOB_ID, LAST_OUTPUT, OUTPUT_ID, FakeArm
from workloads.common.shards import partition_udf

ROOT = Path(__file__).resolve().parents[2]
PATH_PATTERN = "{partition_path}"  # custom field partitioning on the query's partition column
UDF = "partitionOf"


_REAL_SLEEP = time.sleep


@pytest.fixture(autouse=True)
def no_real_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every wait must go through the injected clock."""

    def forbidden(seconds: float) -> None:
        raise AssertionError(f"time.sleep({seconds}) called for real")

    monkeypatch.setattr(time, "sleep", forbidden)


@pytest.fixture
def arm(monkeypatch: pytest.MonkeyPatch) -> FakeArm:
    """A fake ARM that the dynamic provider also reaches (through the module's client factory)."""
    fake = FakeArm()
    monkeypatch.setattr(stream_job, "client_factory", fake.client)
    return fake


# --- starting ----------------------------------------------------------------------------------------------------


def test_without_a_recorded_first_start_a_job_without_output_starts_at_job_start_time(arm: FakeArm) -> None:
    """The client alone, or a deployment state from before StreamJobFirstStart: the documented default."""
    with arm.client() as client:
        assert client.ensure_running(JOB_ID) is Outcome.STARTED_JOB_START_TIME
    (start,) = arm.of("POST", "/start")
    assert start.body == {"outputStartMode": "JobStartTime"}
    assert start.query == {"api-version": ["2020-03-01"]}
    assert arm.state == "Running"


def test_restart_after_output_resumes_from_the_last_output_event(arm: FakeArm) -> None:
    arm.state, arm.last_output_event_time = "Stopped", LAST_OUTPUT
    with arm.client() as client:
        assert client.ensure_running(JOB_ID) is Outcome.STARTED_LAST_OUTPUT_EVENT_TIME
    assert [c.body for c in arm.of("POST", "/start")] == [{"outputStartMode": "LastOutputEventTime"}]


@pytest.mark.parametrize("state", ["Running", "Degraded"])
def test_a_running_job_is_left_alone(arm: FakeArm, state: str) -> None:
    arm.state = state
    with arm.client() as client:
        assert client.ensure_running(JOB_ID) is Outcome.ALREADY_RUNNING
    assert arm.trace() == ["GET job"]


def test_a_stopping_job_is_waited_out_before_the_start(arm: FakeArm) -> None:
    arm.state, arm.settles_to, arm.settle_after = "Stopping", "Stopped", 3
    with arm.client() as client:
        assert client.ensure_running(JOB_ID) is Outcome.STARTED_JOB_START_TIME
    assert arm.trace()[:4] == ["GET job", "GET job", "GET job", "POST start"]
    assert arm.clock.sleeps[:2] == [10.0, 10.0]  # the polling interval between GETs, never a real sleep


def test_a_starting_job_is_waited_out_and_not_started_twice(arm: FakeArm) -> None:
    arm.state, arm.settles_to, arm.settle_after = "Starting", "Running", 2
    with arm.client() as client:
        assert client.ensure_running(JOB_ID) is Outcome.ALREADY_RUNNING
    assert arm.of("POST") == []


def test_a_job_stuck_in_transition_times_out(arm: FakeArm) -> None:
    arm.state = "Scaling"
    with arm.client(transition_timeout=60.0) as client, pytest.raises(StreamJobTimeoutError, match="still Scaling"):
        client.ensure_running(JOB_ID)
    assert arm.clock.now == pytest.approx(60.0)


def test_the_start_operation_is_polled_to_completion(arm: FakeArm) -> None:
    arm.polls = 2
    with arm.client() as client:
        client.ensure_running(JOB_ID)
    assert arm.trace() == [
        "GET job",
        "POST start",
        "GET operationResults/op-1",  # 202
        "GET operationResults/op-1",  # 202
        "GET operationResults/op-1",  # 200: done
        "GET job",
    ]
    assert arm.of("GET", "/op-1")[0].query == {"api-version": ["2020-03-01"]}


def test_azure_async_operation_is_preferred_to_location(arm: FakeArm) -> None:
    arm.async_operation, arm.polls = True, 1
    with arm.client() as client:
        assert client.ensure_running(JOB_ID) is Outcome.STARTED_JOB_START_TIME
    assert arm.trace() == [
        "GET job",
        "POST start",
        "GET asyncOperations/op-1",  # InProgress
        "GET asyncOperations/op-1",  # Succeeded
        "GET operationResults/op-1",  # the final Location GET of a POST
        "GET job",
    ]


def test_a_conflict_is_waited_out_and_retried(arm: FakeArm) -> None:
    arm.state, arm.conflicts = "Stopped", 2
    with arm.client() as client:
        assert client.ensure_running(JOB_ID) is Outcome.STARTED_JOB_START_TIME
    assert len(arm.of("POST", "/start")) == 3
    assert arm.state == "Running"


def test_endless_conflicts_give_up_with_advice(arm: FakeArm) -> None:
    arm.conflicts = 100
    with arm.client(max_conflicts=3) as client, pytest.raises(StreamJobError, match="409 Conflict") as raised:
        client.ensure_running(JOB_ID)
    assert "asa-batchscoring-dev" in str(raised.value)
    assert len(arm.of("POST", "/start")) == 4


def test_a_failed_start_is_retried_with_backoff_until_it_runs(arm: FakeArm) -> None:
    arm.failed_starts = 2  # e.g. the job's role grants took a while to apply
    with arm.client() as client:
        assert client.ensure_running(JOB_ID) is Outcome.STARTED_JOB_START_TIME
    assert len(arm.of("POST", "/start")) == 3
    backoffs = [s for s in arm.clock.sleeps if s != 10.0]  # not the LRO polling interval
    assert backoffs == [30.0, 60.0]
    assert arm.state == "Running"


def test_a_start_that_keeps_failing_gives_up_within_the_bound(arm: FakeArm) -> None:
    arm.failed_starts = 1000
    with (
        arm.client(start_timeout=600.0) as client,
        pytest.raises(StreamJobStartFailedError) as raised,
    ):
        client.ensure_running(JOB_ID)
    message = str(raised.value)
    for needed in ("asa-batchscoring-dev", "ended Failed", "authentication failed", "10 minutes", "pulumi up"):
        assert needed in message
    attempts = len(arm.of("POST", "/start"))
    assert f"{attempts} start attempt(s)" in message
    assert 3 <= attempts <= 8
    assert arm.clock.now <= 600.0 + 10.0 * 3  # the bound, give or take the last attempt's own polling


# --- the first start without a gap ------------------------------------------------------------------------------

RECORDED = "2026-12-02T07:00:00Z"  # when the deployment first asked for a start (FakeArm.wall)
CUSTOM_START = {"outputStartMode": "CustomTime", "outputStartTime": RECORDED}


def first_start_props(retention_days: int | None = 1, **parts: Any) -> dict[str, Any]:
    """The deployment's props as the program sends them: the marker's recorded time and the hub's retention."""
    return {**props(**parts), "first_start_time": RECORDED, "input_retention_days": retention_days}


def test_the_first_start_is_recorded_once_per_job(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = stream_job.StreamJobFirstStartProvider()
    monkeypatch.setattr(stream_job, "wall_clock", lambda: datetime(2026, 12, 2, 7, 0, 0, 700000, tzinfo=UTC))
    created = provider.create({"job_id": JOB_ID})
    assert created.outs == {"job_id": JOB_ID, "requested_at": RECORDED}
    olds = {**created.outs, "__provider": "..."}
    # A later `pulumi up` keeps it (that is the point); only a new job (azure-native replaced it) gets a new one.
    same = provider.diff(created.id, olds, {"job_id": JOB_ID})
    assert (same.changes, same.replaces) == (False, [])
    other = provider.diff(created.id, olds, {"job_id": JOB_ID.replace("asa-", "asa2-")})
    assert (other.changes, other.replaces) == (True, ["job_id"])


@pytest.mark.parametrize("failure", ["job-failed", "http-500"])
def test_a_failed_first_start_is_followed_by_a_start_at_the_recorded_time(
    arm: FakeArm, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """Issue 8's gap: a job that never produced output used to restart at JobStartTime, losing every reading sent
    before. The first `pulumi up` fails to start the job; the next one, two hours later, starts it at the time the
    first one asked for a start, not at its own."""
    monkeypatch.setattr(stream_job, "client_factory", lambda: arm.client(start_timeout=120.0))
    if failure == "job-failed":
        arm.failed_starts = 1000  # the grants never took effect within the first `pulumi up`
        expected: type[Exception] = StreamJobStartFailedError
    else:
        arm.start_errors = [500] * 6  # the start POST answered 500, beyond azure-core's retries (5)
        expected = StreamJobError
    with pytest.raises(expected):
        StreamJobDeploymentProvider().create(first_start_props())
    first = [c.body for c in arm.of("POST", "/start")]
    assert first and all(body == CUSTOM_START for body in first)
    assert arm.last_output_event_time is None and arm.state in {"Failed", "Created"}

    # The failed create left no deployment in state; the marker (created before it) kept the time. Two hours later:
    arm.calls.clear()
    arm.failed_starts, arm.start_errors = 0, []
    arm.clock.now += 2 * 3600
    result = StreamJobDeploymentProvider().create(first_start_props())
    (start,) = arm.of("POST", "/start")
    assert start.body == {"outputStartMode": "CustomTime", "outputStartTime": "2026-12-02T07:00:00Z"}
    assert arm.state == "Running"
    assert result.outs is not None
    assert result.outs["first_start_time"] == RECORDED and result.outs["last_action"].endswith("started:CustomTime")


def test_an_update_of_a_job_that_never_produced_output_starts_at_the_recorded_time(arm: FakeArm) -> None:
    """The deployment is in state but the job stopped (failed, or a config change) before its first output: the
    update restarts it at the recorded time too, not at JobStartTime."""
    arm.state = "Failed"
    arm.clock.now += 6 * 3600
    olds = {**first_start_props(), "last_action": "started:CustomTime"}
    assert StreamJobDeploymentProvider().diff("x", olds, first_start_props()).changes is True  # idle: update
    result = StreamJobDeploymentProvider().update("x", olds, first_start_props())
    assert [c.body for c in arm.of("POST", "/start")] == [CUSTOM_START]
    assert result.outs is not None and result.outs["last_action"] == "started:CustomTime"
    # The same after a definition change (stop, put, start).
    arm.calls.clear()
    arm.state = "Running"
    new = first_start_props(definition=changed(transformation=stream_job.transformation("aggregate", "SELECT 2", 1)))
    StreamJobDeploymentProvider().update("x", olds, new)
    assert writes(arm) == ["POST stop", "PUT transformations/aggregate", "POST start"]
    assert [c.body for c in arm.of("POST", "/start")] == [CUSTOM_START]


def test_once_the_job_has_produced_output_it_restarts_from_the_last_output(arm: FakeArm) -> None:
    arm.state, arm.last_output_event_time = "Stopped", LAST_OUTPUT
    StreamJobDeploymentProvider().update("x", first_start_props(), first_start_props())
    assert [c.body for c in arm.of("POST", "/start")] == [{"outputStartMode": "LastOutputEventTime"}]


def test_a_first_start_older_than_the_retention_starts_where_the_readings_still_are(arm: FakeArm) -> None:
    """Readings older than the hub's retention are gone anyway; the start time is moved inside it (10 min margin)."""
    arm.clock.now += 3 * 86400  # three days after the recorded time, with one day of retention
    logged: list[str] = []
    with arm.client(log=logged.append) as client:
        first_start = FirstStart(datetime(2026, 12, 2, 7, 0, tzinfo=UTC), timedelta(days=1))
        assert client.ensure_running(JOB_ID, first_start) is Outcome.STARTED_CUSTOM_TIME
    (start,) = arm.of("POST", "/start")
    assert start.body == {"outputStartMode": "CustomTime", "outputStartTime": "2026-12-04T07:10:00Z"}
    assert any("have expired from Event Hubs" in line for line in logged)
    # Within the retention, the recorded time is kept as it is.
    assert FirstStart(datetime(2026, 12, 2, 7, 0, tzinfo=UTC), timedelta(days=3)).start_time(
        datetime(2026, 12, 4, 7, 0, tzinfo=UTC)
    ) == datetime(2026, 12, 2, 7, 0, tzinfo=UTC)


def test_the_fake_refuses_a_custom_start_without_its_time(arm: FakeArm) -> None:
    with arm.client() as client:
        with pytest.raises(ValueError, match="outputStartTime"):
            client.begin_start(JOB_ID, OutputStartMode.CUSTOM_TIME)
        with pytest.raises(StreamJobError, match="outputStartTime must have a value"):
            client._begin(parse_job_id(JOB_ID), "start", {"outputStartMode": "CustomTime"})


# --- stopping ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["Created", "Stopped", "Failed"])
def test_stopping_an_idle_job_does_nothing(arm: FakeArm, state: str) -> None:
    arm.state = state
    with arm.client() as client:
        assert client.stop(JOB_ID) is Outcome.ALREADY_STOPPED
    assert arm.of("POST") == []


def test_stop_is_idempotent(arm: FakeArm) -> None:
    arm.state = "Running"
    with arm.client() as client:
        assert client.stop(JOB_ID) is Outcome.STOPPED
        assert client.stop(JOB_ID) is Outcome.ALREADY_STOPPED
    assert arm.trace() == [
        "GET job",
        "POST stop",
        "GET operationResults/op-1",  # 202
        "GET operationResults/op-1",  # 200: stopped
        "GET job",  # Stopped: done
        "GET job",  # the second stop: already Stopped, no POST
    ]
    assert arm.state == "Stopped"


def test_stop_waits_for_a_starting_job_then_stops_it(arm: FakeArm) -> None:
    arm.state, arm.settles_to, arm.settle_after = "Starting", "Running", 2
    with arm.client() as client:
        assert client.stop(JOB_ID) is Outcome.STOPPED
    assert arm.trace()[:3] == ["GET job", "GET job", "POST stop"]


def test_a_stop_conflict_is_retried(arm: FakeArm) -> None:
    arm.state, arm.conflicts = "Running", 1
    with arm.client() as client:
        assert client.stop(JOB_ID) is Outcome.STOPPED
    assert len(arm.of("POST", "/stop")) == 2


# --- errors ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("denied", ["read", "start"])
def test_403_says_the_deployer_needs_rights_on_the_job(arm: FakeArm, denied: str) -> None:
    arm.denied = {denied}
    with arm.client() as client, pytest.raises(StreamJobAccessDeniedError) as raised:
        client.ensure_running(JOB_ID)
    message = str(raised.value)
    assert "asa-batchscoring-dev" in message
    assert "Contributor" in message
    assert "AuthorizationFailed" in message


def test_404_names_the_missing_job(arm: FakeArm) -> None:
    missing = f"{GROUP}/providers/Microsoft.StreamAnalytics/streamingjobs/asa-gone"
    with arm.client() as client:
        with pytest.raises(StreamJobNotFoundError, match="'asa-gone' was not found in resource group"):
            client.ensure_running(missing)
        assert client.stop(missing, missing_ok=True) is Outcome.JOB_NOT_FOUND
        with pytest.raises(StreamJobNotFoundError):
            client.stop(missing)


def test_throttling_and_server_errors_are_retried_by_the_pipeline(arm: FakeArm) -> None:
    arm.transient = [429, 503]
    with arm.client() as client:
        assert client.ensure_running(JOB_ID) is Outcome.STARTED_JOB_START_TIME
    assert arm.trace()[:3] == ["GET job", "GET job", "GET job"]  # two refused, the third answered
    assert arm.clock.sleeps[:2] == [1.0, 1.0]  # Retry-After honoured, on the fake clock


# --- the definition and the ARM bodies ---------------------------------------------------------------------------

SETTINGS = {
    "eventsLateArrivalMaxDelayInSeconds": 300,
    "eventsOutOfOrderMaxDelayInSeconds": 300,
    "eventsOutOfOrderPolicy": "Drop",
    "outputErrorPolicy": "Stop",
    "tags": {"component": "ingestion"},
}
DEFINITION: dict[str, Any] = {
    "inputs": {"readings": stream_job.event_hub_input("evh-batchscoring-dev", "readings", "stream-analytics")},
    "outputs": {"aggregates": stream_job.blob_output("stbatchscoringdev", "aggregates", PATH_PATTERN)},
    "functions": {
        UDF: stream_job.javascript_udf(partition_udf(), ("nvarchar(max)", "datetime", "bigint"), "nvarchar(max)")
    },
    "transformation": stream_job.transformation("aggregate", "SELECT 1", 1),
    "settings": SETTINGS,
}
# What Inputs/Outputs/Transformations - Create Or Replace (api 2020-03-01) must receive, written out in full.
INPUT_BODY = {
    "properties": {
        "type": "Stream",
        "datasource": {
            "type": "Microsoft.EventHub/EventHub",
            "properties": {
                "serviceBusNamespace": "evh-batchscoring-dev",
                "eventHubName": "readings",
                "consumerGroupName": "stream-analytics",
                "authenticationMode": "Msi",
            },
        },
        "serialization": {"type": "Json", "properties": {"encoding": "UTF8"}},
    }
}
OUTPUT_BODY = {
    "properties": {
        "datasource": {
            "type": "Microsoft.Storage/Blob",
            "properties": {
                "storageAccounts": [{"accountName": "stbatchscoringdev"}],
                "container": "aggregates",
                "pathPattern": PATH_PATTERN,
                "authenticationMode": "Msi",
            },
        },
        "serialization": {"type": "Parquet", "properties": {}},
    }
}
# Functions - Create Or Replace: a scalar JavaScript UDF (functions.json, example Function_Create_JavaScript.json).
FUNCTION_BODY = {
    "properties": {
        "type": "Scalar",
        "properties": {
            "inputs": [{"dataType": "nvarchar(max)"}, {"dataType": "datetime"}, {"dataType": "bigint"}],
            "output": {"dataType": "nvarchar(max)"},
            "binding": {"type": "Microsoft.StreamAnalytics/JavascriptUdf", "properties": {"script": partition_udf()}},
        },
    }
}
TRANSFORMATION_BODY = {"properties": {"query": "SELECT 1", "streamingUnits": 1}}


def changed(**parts: Any) -> dict[str, Any]:
    """DEFINITION with some top-level parts replaced."""
    return {**DEFINITION, **parts}


def props(definition: dict[str, Any] = DEFINITION, job_id: str = JOB_ID) -> dict[str, Any]:
    return {"job_id": job_id, "definition": definition}


def writes(arm: FakeArm) -> list[str]:
    """The calls that change or start/stop the job, in order (no GETs, no LRO polls)."""
    return [label for label in arm.trace() if not label.startswith("GET")]


def position(labels: list[str], label: str) -> int:
    assert label in labels, f"{label!r} not in {labels}"
    return labels.index(label)


# --- create -------------------------------------------------------------------------------------------------------


def test_create_puts_input_output_function_and_transformation_then_starts_with_job_start_time(arm: FakeArm) -> None:
    result = StreamJobDeploymentProvider().create(props())
    # The function before the query that calls it.
    assert writes(arm) == [
        "PUT inputs/readings",
        "PUT outputs/aggregates",
        f"PUT functions/{UDF}",
        "PUT transformations/aggregate",
        "POST start",
    ]
    puts = {c.path.removeprefix(JOB_ID + "/"): c for c in arm.of("PUT")}
    assert puts["inputs/readings"].body == INPUT_BODY
    assert puts["outputs/aggregates"].body == OUTPUT_BODY
    assert puts[f"functions/{UDF}"].body == FUNCTION_BODY
    assert puts["transformations/aggregate"].body == TRANSFORMATION_BODY
    assert arm.functions == {UDF: FUNCTION_BODY["properties"]}
    assert all(c.query == {"api-version": ["2020-03-01"]} for c in arm.calls if "operationResults" not in c.path)
    assert [c.body for c in arm.of("POST", "/start")] == [{"outputStartMode": "JobStartTime"}]
    assert arm.state == "Running"
    assert arm.inputs == {"readings": INPUT_BODY["properties"]}
    assert arm.outputs == {"aggregates": OUTPUT_BODY["properties"]}
    # Created with its settings by azure-native: nothing to PATCH.
    assert arm.of("PATCH") == []
    assert result.id == f"{JOB_ID}/deployment"
    assert result.outs is not None
    assert result.outs["job_id"] == JOB_ID and result.outs["definition"] == DEFINITION
    assert result.outs["last_action"].endswith("started:JobStartTime")


def test_create_sends_integers_although_the_engine_hands_numbers_back_as_floats(arm: FakeArm) -> None:
    as_floats = changed(
        transformation={"name": "aggregate", "query": "SELECT 1", "streamingUnits": 1.0},
        settings={**SETTINGS, "eventsLateArrivalMaxDelayInSeconds": 300.0},
    )
    result = StreamJobDeploymentProvider().create(props(as_floats))
    (put,) = arm.of("PUT", "/transformations/aggregate")
    assert put.body == TRANSFORMATION_BODY and type(put.body["properties"]["streamingUnits"]) is int
    assert result.outs is not None and result.outs["definition"] == DEFINITION


def test_create_retries_the_authorization_refusal_until_the_grant_is_in_effect(arm: FakeArm) -> None:
    arm.input_grant_failures = 2  # the role assignment was created a moment ago (pulumi-azure-native#2607)
    StreamJobDeploymentProvider().create(props())
    assert writes(arm) == [
        "PUT inputs/readings",  # 400 not authorized
        "PUT inputs/readings",  # 400 not authorized
        "PUT inputs/readings",
        "PUT outputs/aggregates",
        f"PUT functions/{UDF}",
        "PUT transformations/aggregate",
        "POST start",
    ]
    backoffs = [s for s in arm.clock.sleeps if s != 10.0]  # not the LRO polling interval
    assert backoffs == [30.0, 60.0]
    assert arm.state == "Running"


@pytest.mark.parametrize(
    ("failing", "grant"),
    [
        ("input", "Azure Event Hubs Data Receiver on event hub 'readings' (namespace 'evh-batchscoring-dev')"),
        ("output", "Storage Blob Data Contributor on container 'aggregates' of storage account 'stbatchscoringdev'"),
    ],
)
def test_a_grant_that_never_takes_effect_gives_up_within_the_bound_naming_it(
    arm: FakeArm, monkeypatch: pytest.MonkeyPatch, failing: str, grant: str
) -> None:
    setattr(arm, f"{failing}_grant_failures", 1000)
    monkeypatch.setattr(stream_job, "client_factory", lambda: arm.client(grant_timeout=300.0))
    with pytest.raises(StreamJobGrantsNotEffectiveError) as raised:
        StreamJobDeploymentProvider().create(props())
    message = str(raised.value)
    for needed in (grant, "not authorized", "up to 10 minutes", "RBAC", "pulumi up", "asa-batchscoring-dev"):
        assert needed in message
    attempts = len(arm.of("PUT", f"/{failing}s/{'readings' if failing == 'input' else 'aggregates'}"))
    assert f"{attempts} attempt(s)" in message and 3 <= attempts <= 6
    assert arm.clock.now <= 300.0
    assert arm.of("PUT", "/transformations/aggregate") == [] and arm.of("POST", "/start") == []


def test_the_deployer_lacking_rights_is_not_retried_and_names_its_identity(arm: FakeArm) -> None:
    arm.denied = {"write"}
    with pytest.raises(StreamJobAccessDeniedError) as raised:
        StreamJobDeploymentProvider().create(props())
    assert len(arm.of("PUT")) == 1  # AuthorizationFailed is ARM refusing the deployer: waiting does not help
    message = str(raised.value)
    assert "write input 'readings'" in message and "AuthorizationFailed" in message
    assert "the credential passed to StreamJobClient" in message and "Contributor" in message


def test_create_on_a_job_that_already_runs_stops_it_first(arm: FakeArm) -> None:
    """Adopting a running job (state lost, or a job started by hand): its inputs cannot change while it runs."""
    arm.state, arm.last_output_event_time = "Running", LAST_OUTPUT
    StreamJobDeploymentProvider().create(props())
    labels = writes(arm)
    assert labels[0] == "POST stop" and labels[-1] == "POST start"
    assert [c.body for c in arm.of("POST", "/start")] == [{"outputStartMode": "LastOutputEventTime"}]


def test_the_fake_refuses_changes_while_the_job_runs(arm: FakeArm) -> None:
    """What the stop before every change is for (pulumi-azure-native#785)."""
    arm.state = "Running"
    with arm.client() as client, pytest.raises(StreamJobError, match="stop it before changing it"):
        client.put_transformation(JOB_ID, "aggregate", TRANSFORMATION_BODY["properties"])


# --- update -------------------------------------------------------------------------------------------------------


def running_with_output(arm: FakeArm) -> FakeArm:
    arm.state, arm.last_output_event_time = "Running", LAST_OUTPUT
    return arm


def test_update_with_a_changed_query_stops_puts_only_the_transformation_and_restarts(arm: FakeArm) -> None:
    running_with_output(arm)
    new = changed(transformation=stream_job.transformation("aggregate", "SELECT 2", 1))
    result = StreamJobDeploymentProvider().update(f"{JOB_ID}/deployment", props(), props(new))
    labels = writes(arm)
    assert labels == ["POST stop", "PUT transformations/aggregate", "POST start"]
    assert (
        position(labels, "POST stop")
        < position(labels, "PUT transformations/aggregate")
        < position(labels, "POST start")
    )
    (put,) = arm.of("PUT")
    assert put.body == {"properties": {"query": "SELECT 2", "streamingUnits": 1}}
    assert [c.body for c in arm.of("POST", "/start")] == [{"outputStartMode": "LastOutputEventTime"}]
    assert arm.state == "Running"
    assert result.outs == {
        "job_id": JOB_ID,
        "definition": new,
        "first_start_time": None,
        "input_retention_days": None,
        "last_action": "stopped; put transformation aggregate; started:LastOutputEventTime",
    }


def test_update_with_more_streaming_units_puts_the_transformation(arm: FakeArm) -> None:
    running_with_output(arm)
    new = changed(transformation=stream_job.transformation("aggregate", "SELECT 1", 3))
    StreamJobDeploymentProvider().update("x", props(), props(new))
    assert [c.body for c in arm.of("PUT")] == [{"properties": {"query": "SELECT 1", "streamingUnits": 3}}]


def test_update_with_changed_late_arrival_settings_patches_only_those(arm: FakeArm) -> None:
    running_with_output(arm)
    settings = {**SETTINGS, "eventsLateArrivalMaxDelayInSeconds": 60, "eventsOutOfOrderMaxDelayInSeconds": 60}
    StreamJobDeploymentProvider().update("x", props(), props(changed(settings=settings)))
    assert writes(arm) == ["POST stop", "PATCH job", "POST start"]
    (patch,) = arm.of("PATCH")
    assert patch.path == JOB_ID and patch.query == {"api-version": ["2020-03-01"]}
    assert patch.body == {
        "properties": {"eventsLateArrivalMaxDelayInSeconds": 60, "eventsOutOfOrderMaxDelayInSeconds": 60}
    }
    assert arm.properties == {"eventsLateArrivalMaxDelayInSeconds": 60, "eventsOutOfOrderMaxDelayInSeconds": 60}
    assert arm.of("PUT") == []


def test_a_tags_change_patches_the_tags_beside_the_properties(arm: FakeArm) -> None:
    running_with_output(arm)
    tags = {"component": "ingestion", "owner": "data"}
    StreamJobDeploymentProvider().update("x", props(), props(changed(settings={**SETTINGS, "tags": tags})))
    assert [c.body for c in arm.of("PATCH")] == [{"tags": tags}]
    assert arm.tags == tags


def test_update_of_an_input_puts_it_and_a_removed_output_is_deleted(arm: FakeArm) -> None:
    running_with_output(arm)
    arm.outputs = {"aggregates": OUTPUT_BODY["properties"], "old": OUTPUT_BODY["properties"]}
    old = changed(outputs={**DEFINITION["outputs"], "old": OUTPUT_BODY["properties"]})
    new = changed(inputs={"readings": stream_job.event_hub_input("evh-batchscoring-dev", "readings", "other")})
    StreamJobDeploymentProvider().update("x", props(old), props(new))
    assert writes(arm) == ["POST stop", "PUT inputs/readings", "DELETE outputs/old", "POST start"]
    assert arm.of("PUT")[0].body["properties"]["datasource"]["properties"]["consumerGroupName"] == "other"
    assert sorted(arm.outputs) == ["aggregates"]


def test_a_changed_function_script_stops_puts_the_function_and_restarts_from_the_last_output(arm: FakeArm) -> None:
    running_with_output(arm)
    script = "function (deviceId, windowEnd, shardCount) { return 'x'; }"
    new = changed(
        functions={UDF: stream_job.javascript_udf(script, ("nvarchar(max)", "datetime", "bigint"), "nvarchar(max)")}
    )
    result = StreamJobDeploymentProvider().update("x", props(), props(new))
    assert writes(arm) == ["POST stop", f"PUT functions/{UDF}", "POST start"]
    (put,) = arm.of("PUT")
    assert put.path == f"{JOB_ID}/functions/{UDF}" and put.query == {"api-version": ["2020-03-01"]}
    assert put.body["properties"]["properties"]["binding"] == {
        "type": "Microsoft.StreamAnalytics/JavascriptUdf",
        "properties": {"script": script},
    }
    assert [c.body for c in arm.of("POST", "/start")] == [{"outputStartMode": "LastOutputEventTime"}]
    assert result.outs is not None
    assert result.outs["last_action"] == f"stopped; put function {UDF}; started:LastOutputEventTime"


def test_a_new_function_goes_in_before_the_query_that_calls_it(arm: FakeArm) -> None:
    """The upgrade of a job deployed before the partition function: output (path pattern), function, then query."""
    running_with_output(arm)
    old = changed(
        outputs={"aggregates": stream_job.blob_output("stbatchscoringdev", "aggregates", "{datetime:yyyy}")},
        functions={},
        transformation=stream_job.transformation("aggregate", "SELECT 0", 1),
    )
    StreamJobDeploymentProvider().update("x", props(old), props())
    assert writes(arm) == [
        "POST stop",
        "PUT outputs/aggregates",
        f"PUT functions/{UDF}",
        "PUT transformations/aggregate",
        "POST start",
    ]
    assert arm.of("PUT", "/outputs/aggregates")[0].body == OUTPUT_BODY


def test_a_function_no_longer_called_is_deleted_after_the_query_that_stopped_calling_it(arm: FakeArm) -> None:
    running_with_output(arm)
    arm.functions = {UDF: FUNCTION_BODY["properties"], "old": FUNCTION_BODY["properties"]}
    old = changed(functions={**DEFINITION["functions"], "old": FUNCTION_BODY["properties"]})
    new = changed(transformation=stream_job.transformation("aggregate", "SELECT 2", 1))
    result = StreamJobDeploymentProvider().update("x", props(old), props(new))
    assert writes(arm) == ["POST stop", "PUT transformations/aggregate", "DELETE functions/old", "POST start"]
    assert sorted(arm.functions) == [UDF]
    assert result.outs is not None and "deleted function old" in result.outs["last_action"]
    # Deleting a function already gone is fine (204).
    arm.state = "Stopped"
    with arm.client() as client:
        client.delete_function(JOB_ID, "old")
    assert arm.of("DELETE")[-1].path == f"{JOB_ID}/functions/old"


def test_a_refused_function_names_it(arm: FakeArm) -> None:
    arm.denied = {"write"}
    with arm.client() as client, pytest.raises(StreamJobAccessDeniedError, match=f"write function '{UDF}'"):
        client.put_function(JOB_ID, UDF, FUNCTION_BODY["properties"])
    assert len(arm.of("PUT")) == 1  # not retried: only inputs/outputs wait for the job identity's grants


def test_update_with_nothing_changed_but_the_job_idle_only_starts_it(arm: FakeArm) -> None:
    arm.state, arm.last_output_event_time = "Failed", LAST_OUTPUT
    result = StreamJobDeploymentProvider().update("x", props(), props())
    assert writes(arm) == ["POST start"]
    assert [c.body for c in arm.of("POST", "/start")] == [{"outputStartMode": "LastOutputEventTime"}]
    assert result.outs is not None and result.outs["last_action"] == "started:LastOutputEventTime"


def test_update_for_a_new_job_writes_the_whole_definition(arm: FakeArm) -> None:
    """azure-native replaced the job (a new id): the new one has no inputs, outputs or query of ours yet."""
    old_job = JOB_ID.replace("asa-", "asa-old-")
    StreamJobDeploymentProvider().update("x", props(job_id=old_job), props())
    assert writes(arm) == [
        "PUT inputs/readings",
        "PUT outputs/aggregates",
        f"PUT functions/{UDF}",
        "PUT transformations/aggregate",
        "POST start",
    ]


def test_a_stop_that_fails_leaves_the_definition_unapplied(arm: FakeArm) -> None:
    """The update fails, Pulumi keeps the old definition in state, and the next `pulumi up` tries again."""
    arm.state, arm.denied = "Running", {"stop"}
    new = changed(transformation=stream_job.transformation("aggregate", "SELECT 2", 1))
    with pytest.raises(StreamJobAccessDeniedError, match="stop"):
        StreamJobDeploymentProvider().update("x", props(), props(new))
    assert arm.of("PUT") == [] and arm.state == "Running"


# --- diff ---------------------------------------------------------------------------------------------------------


def test_diff_reads_the_job_only_when_the_definition_is_unchanged(arm: FakeArm) -> None:
    provider = StreamJobDeploymentProvider()
    arm.state = "Running"
    olds = {**props(), "last_action": "started:JobStartTime", "__provider": "..."}
    same = provider.diff("x", olds, props())
    assert (same.changes, same.replaces) == (False, [])
    assert arm.trace() == ["GET job"]
    # Stopped by hand, failed, or left stopped by a failed update: the next `pulumi up` starts it again.
    for idle in ("Stopped", "Failed", "Created"):
        arm.state = idle
        assert provider.diff("x", olds, props()).changes is True
    arm.state = "Starting"
    assert provider.diff("x", olds, props()).changes is False


@pytest.mark.parametrize(
    "news",
    [
        props(changed(transformation=stream_job.transformation("aggregate", "SELECT 2", 1))),
        props(changed(settings={**SETTINGS, "outputErrorPolicy": "Drop"})),
        props(changed(outputs={})),
        props(changed(functions={UDF: {**FUNCTION_BODY["properties"], "type": "Other"}})),
        props(job_id=JOB_ID.replace("asa-", "asa2-")),
        props(changed(inputs="04da6b54-80e4-46f7-96ec-b56ff0331ba9")),  # unknown during a preview
    ],
    ids=["query", "setting", "outputs", "function", "other-job", "unknown"],
)
def test_diff_updates_for_any_change_without_asking_arm_and_never_replaces(arm: FakeArm, news: dict[str, Any]) -> None:
    result = StreamJobDeploymentProvider().diff("x", props(), news)
    assert (result.changes, result.replaces) == (True, [])
    assert arm.calls == []


def test_diff_compares_numbers_as_the_program_wrote_them(arm: FakeArm) -> None:
    arm.state = "Running"
    as_floats = changed(transformation={"name": "aggregate", "query": "SELECT 1", "streamingUnits": 1.0})
    assert StreamJobDeploymentProvider().diff("x", props(as_floats), props()).changes is False


# --- delete -------------------------------------------------------------------------------------------------------


def test_delete_stops_the_job(arm: FakeArm) -> None:
    arm.state = "Running"
    StreamJobDeploymentProvider().delete(f"{JOB_ID}/deployment", {**props(), "last_action": "started:JobStartTime"})
    assert writes(arm) == ["POST stop"]
    assert arm.state == "Stopped"


def test_delete_of_a_job_already_gone_succeeds(arm: FakeArm) -> None:
    gone = f"{GROUP}/providers/Microsoft.StreamAnalytics/streamingjobs/asa-gone"
    StreamJobDeploymentProvider().delete(f"{gone}/deployment", props(job_id=gone))
    assert arm.of("POST") == []


# --- pickling: the provider runs in Pulumi's provider process ----------------------------------------------------


def test_the_provider_pickles_by_reference_and_loads_in_a_separate_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # subprocess.run polls its child with time.sleep when the child is slow (a loaded CI machine); no wait of the
    # provider's own is exercised here.
    monkeypatch.setattr(time, "sleep", _REAL_SLEEP)
    provider = StreamJobDeploymentProvider()
    assert vars(provider) == {}
    serialized = serialize_provider(provider)
    raw = base64.b64decode(serialized)
    assert b"infra.stream_job" in raw and b"StreamJobDeploymentProvider" in raw
    assert b"ensure_running" not in raw and b"FakeArm" not in raw  # a reference, not the code (nor a client)
    # What Pulumi's provider process does with the serialized provider (pulumi/dynamic/__main__.py: dill.loads of
    # the base64 text), in a fresh interpreter started like it: in the project directory, nothing imported.
    script = (
        "import base64, sys, dill\n"
        "provider = dill.loads(base64.b64decode(sys.stdin.read()))\n"
        "print(type(provider).__module__, type(provider).__qualname__)\n"
        "result = provider.diff('x', {'job_id': 'j', 'definition': {}}, {'job_id': 'j', 'definition': {'a': 1}})\n"
        "print(result.changes, result.replaces)\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", script], input=serialized, capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["infra.stream_job StreamJobDeploymentProvider", "True []"]


# --- the deployer's credential ------------------------------------------------------------------------------------


class Recorder:
    """Stands in for an azure-identity credential class and records how it was built."""

    built: list[tuple[str, dict[str, Any]]]

    def __init__(self, name: str, built: list[tuple[str, dict[str, Any]]]) -> None:
        self.name, self.built = name, built

    def __call__(self, **kwargs: Any) -> Any:
        self.built.append((self.name, kwargs))
        return self


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    built: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(stream_job_client, "ClientSecretCredential", Recorder("ClientSecretCredential", built))
    monkeypatch.setattr(stream_job_client, "DefaultAzureCredential", Recorder("DefaultAzureCredential", built))
    for name in (*stream_job_client.AZURE_SP_VARIABLES, *stream_job_client.ARM_SP_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    return built


ARM_ENV = {"ARM_CLIENT_ID": "app-1", "ARM_TENANT_ID": "tenant-1", "ARM_CLIENT_SECRET": "s3cret"}


def test_azure_natives_service_principal_variables_are_used_when_azure_identitys_are_unset(
    credentials: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ARM_ENV.items():
        monkeypatch.setenv(name, value)
    found = deployer_credential()
    assert credentials == [
        ("ClientSecretCredential", {"tenant_id": "tenant-1", "client_id": "app-1", "client_secret": "s3cret"})
    ]
    assert found.source == ARM_SP_SOURCE


@pytest.mark.parametrize(
    "env",
    [
        {},  # az login, managed or workload identity
        {**ARM_ENV, "AZURE_CLIENT_ID": "app-2"},  # azure-identity's own variables win
        {"ARM_CLIENT_ID": "app-1", "ARM_TENANT_ID": "tenant-1"},  # no secret: not a service principal login
    ],
    ids=["nothing", "azure-variables", "incomplete-arm"],
)
def test_otherwise_default_azure_credential_is_used(
    credentials: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    found = deployer_credential()
    assert credentials == [("DefaultAzureCredential", {})]
    assert found.source == DEFAULT_SOURCE


def test_a_403_names_the_identity_variables_the_provider_used(
    arm: FakeArm, credentials: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ARM_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(stream_job_client, "ClientSecretCredential", lambda **_: FakeCredential())
    arm.denied = {"read"}
    with arm.client(credential=None) as client, pytest.raises(StreamJobAccessDeniedError) as raised:
        client.get(JOB_ID)
    assert "ARM_CLIENT_ID/ARM_TENANT_ID/ARM_CLIENT_SECRET" in str(raised.value)


class FakeCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("fake-arm-token", int(time.time()) + 3600)


class NoCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        raise ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token")


def test_no_token_at_all_says_which_identity_variables_to_set(arm: FakeArm, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        stream_job,
        "client_factory",
        lambda: arm.client(credential=NoCredential(), credential_source=DEFAULT_SOURCE),
    )
    with pytest.raises(StreamJobAccessDeniedError) as raised:
        StreamJobDeploymentProvider().create(props())
    message = str(raised.value)
    assert "Could not get an ARM token" in message
    assert "AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET" in message and "ARM_CLIENT_ID" in message
    assert arm.calls == []


# --- ids -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "resource_id",
    [
        JOB_ID,
        INPUT_ID,
        OUTPUT_ID,
        f"{JOB_ID}/transformations/aggregate",
        f"{JOB_ID}/functions/{UDF}",
        JOB_ID.replace("resourceGroups", "resourcegroups") + "/",
    ],
)
def test_the_job_id_is_derived_from_job_input_and_output_ids(resource_id: str) -> None:
    assert job_id_from_resource_id(resource_id).lower() == JOB_ID.lower()


@pytest.mark.parametrize("resource_id", [GROUP, f"{GROUP}/providers/Microsoft.EventHub/namespaces/ns", f"{JOB_ID}/x/y"])
def test_other_ids_are_refused(resource_id: str) -> None:
    with pytest.raises(ValueError, match="not a Stream Analytics job"):
        job_id_from_resource_id(resource_id)


# --- Pulumi wiring (mock engine) ---------------------------------------------------------------------------------


class Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        return {}


@pytest.fixture
def mocks() -> Iterator[Mocks]:
    recorded = Mocks()
    pulumi.runtime.set_mocks(recorded, preview=False)
    yield recorded


def test_stream_job_deployment_is_a_dynamic_resource_taking_the_job_id_and_definition(mocks: Mocks) -> None:
    @pulumi.runtime.test
    def program() -> pulumi.Output[None]:
        run = StreamJobDeployment(
            "ingest-run",
            job_id=pulumi.Output.from_input(JOB_ID),
            definition=pulumi.Output.from_input(DEFINITION),
            input_retention_days=3,
        )

        def check(values: list[Any]) -> None:
            marker, recorded = mocks.resources
            assert marker.typ == "pulumi-python:dynamic/batchscoring:StreamJobFirstStart"
            assert marker.name == "ingest-run-first-start" and marker.inputs["job_id"] == JOB_ID
            assert recorded.typ == "pulumi-python:dynamic/batchscoring:StreamJobDeployment"
            assert recorded.inputs["job_id"] == JOB_ID
            assert recorded.inputs["definition"] == DEFINITION
            assert recorded.inputs["input_retention_days"] == 3
            assert "__provider" in recorded.inputs
            assert values == [JOB_ID, DEFINITION, 3]

        return pulumi.Output.all(run.job_id, run.definition, run.input_retention_days).apply(check)

    program()
