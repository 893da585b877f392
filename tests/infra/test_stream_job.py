"""The stream job's run life cycle against a fake ARM: start modes, waits, LRO polling, retries, hooks, provider."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import dill
import pulumi
import pytest
from pulumi.dynamic.dynamic import serialize_provider

from infra import stream_job
from infra.stream_job import (
    START_HOOK_NAME,
    STOP_HOOK_NAME,
    Outcome,
    StreamJobAccessDeniedError,
    StreamJobError,
    StreamJobNotFoundError,
    StreamJobRun,
    StreamJobRunProvider,
    StreamJobStartFailedError,
    StreamJobTimeoutError,
    job_id_from_resource_id,
    needs_stop,
)
from tests.infra.fake_arm import GROUP, INPUT_ID, JOB_ID, LAST_OUTPUT, OUTPUT_ID, FakeArm


@pytest.fixture(autouse=True)
def no_real_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every wait must go through the injected clock."""

    def forbidden(seconds: float) -> None:
        raise AssertionError(f"time.sleep({seconds}) called for real")

    monkeypatch.setattr(time, "sleep", forbidden)


@pytest.fixture
def arm(monkeypatch: pytest.MonkeyPatch) -> FakeArm:
    """A fake ARM that the hooks and the dynamic provider also reach (through the module's client factory)."""
    fake = FakeArm()
    monkeypatch.setattr(stream_job, "client_factory", fake.client)
    return fake


# --- starting ----------------------------------------------------------------------------------------------------


def test_first_start_uses_job_start_time(arm: FakeArm) -> None:
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


# --- hooks -------------------------------------------------------------------------------------------------------

QUERY_V1 = {"name": "aggregate", "query": "SELECT 1", "streamingUnits": 1}
JOB_INPUTS = {"jobName": "asa-batchscoring-dev", "resourceGroupName": "rg", "transformation": QUERY_V1, "tags": {}}


@pytest.mark.parametrize(
    ("new", "stop"),
    [
        ({**JOB_INPUTS, "tags": {"owner": "data"}}, False),
        (dict(JOB_INPUTS), False),
        ({**JOB_INPUTS, "transformation": {**QUERY_V1, "query": "SELECT 2"}}, True),
        ({**JOB_INPUTS, "transformation": {**QUERY_V1, "streamingUnits": 3}}, True),
        ({**JOB_INPUTS, "outputErrorPolicy": "Drop"}, True),
    ],
    ids=["tags-only", "unchanged", "query", "streaming-units", "new-property"],
)
def test_only_changes_beyond_tags_need_a_stop(new: dict[str, Any], stop: bool) -> None:
    assert needs_stop(JOB_INPUTS, new) is stop


def test_unknown_old_inputs_count_as_a_change() -> None:
    assert needs_stop(None, JOB_INPUTS)


@pytest.mark.parametrize(
    "resource_id",
    [
        JOB_ID,
        INPUT_ID,
        OUTPUT_ID,
        f"{JOB_ID}/transformations/aggregate",
        JOB_ID.replace("resourceGroups", "resourcegroups") + "/",
    ],
)
def test_the_job_id_is_derived_from_job_input_and_output_ids(resource_id: str) -> None:
    assert job_id_from_resource_id(resource_id).lower() == JOB_ID.lower()


@pytest.mark.parametrize("resource_id", [GROUP, f"{GROUP}/providers/Microsoft.EventHub/namespaces/ns", f"{JOB_ID}/x/y"])
def test_other_ids_are_refused(resource_id: str) -> None:
    with pytest.raises(ValueError, match="not a Stream Analytics job"):
        job_id_from_resource_id(resource_id)


def hook_args(resource_id: str, old: dict[str, Any], new: dict[str, Any]) -> pulumi.ResourceHookArgs:
    return pulumi.ResourceHookArgs(
        urn="urn:pulumi:dev::batchscoring::azure-native:streamanalytics:Input::readings",
        id=resource_id,
        name="readings",
        type="azure-native:streamanalytics:Input",
        old_inputs=old,
        new_inputs=new,
        old_outputs=old,
    )


def test_a_tags_only_change_does_not_stop_the_job(arm: FakeArm) -> None:
    arm.state = "Running"
    stream_job.stop_before_update(hook_args(JOB_ID, JOB_INPUTS, {**JOB_INPUTS, "tags": {"cost": "x"}}))
    assert arm.calls == []
    assert arm.state == "Running"


def test_a_query_change_stops_the_job_before_the_update(arm: FakeArm) -> None:
    arm.state = "Running"
    new = {**JOB_INPUTS, "transformation": {**QUERY_V1, "query": "SELECT 2"}}
    stream_job.stop_before_update(hook_args(JOB_ID, JOB_INPUTS, new))
    assert [c.path for c in arm.of("POST")] == [f"{JOB_ID}/stop"]
    assert arm.state == "Stopped"


def test_an_input_change_stops_the_parent_job(arm: FakeArm) -> None:
    arm.state = "Running"
    old = {"inputName": "readings", "properties": {"consumerGroupName": "a"}}
    stream_job.stop_before_update(hook_args(INPUT_ID, old, {**old, "properties": {"consumerGroupName": "b"}}))
    assert [c.path for c in arm.of("POST")] == [f"{JOB_ID}/stop"]


def test_after_the_update_the_job_is_started_again(arm: FakeArm) -> None:
    arm.state, arm.last_output_event_time = "Stopped", LAST_OUTPUT
    stream_job.start_after_update(hook_args(OUTPUT_ID, {}, {}))
    assert [(c.path, c.body) for c in arm.of("POST")] == [
        (f"{JOB_ID}/start", {"outputStartMode": "LastOutputEventTime"})
    ]
    assert arm.state == "Running"


# --- the dynamic provider ----------------------------------------------------------------------------------------


def test_create_starts_the_job(arm: FakeArm) -> None:
    result = StreamJobRunProvider().create({"job_id": JOB_ID})
    assert result.outs == {"job_id": JOB_ID, "last_action": "started:JobStartTime"}
    assert result.id == f"{JOB_ID}/run"
    assert arm.state == "Running"


def test_update_makes_sure_the_job_runs(arm: FakeArm) -> None:
    arm.state, arm.last_output_event_time = "Failed", LAST_OUTPUT
    result = StreamJobRunProvider().update(f"{JOB_ID}/run", {"job_id": JOB_ID}, {"job_id": JOB_ID})
    assert result.outs == {"job_id": JOB_ID, "last_action": "started:LastOutputEventTime"}


def test_delete_stops_the_job(arm: FakeArm) -> None:
    arm.state = "Running"
    StreamJobRunProvider().delete(f"{JOB_ID}/run", {"job_id": JOB_ID, "last_action": "already_running"})
    assert [c.path for c in arm.of("POST")] == [f"{JOB_ID}/stop"]
    assert arm.state == "Stopped"


def test_delete_of_a_job_already_gone_succeeds(arm: FakeArm) -> None:
    gone = f"{GROUP}/providers/Microsoft.StreamAnalytics/streamingjobs/asa-gone"
    StreamJobRunProvider().delete(f"{gone}/run", {"job_id": gone})
    assert arm.of("POST") == []


def test_diff_never_replaces_and_updates_for_another_job_or_an_idle_one(arm: FakeArm) -> None:
    provider = StreamJobRunProvider()
    arm.state = "Running"
    same = provider.diff("x", {"job_id": JOB_ID, "last_action": "stopped"}, {"job_id": JOB_ID})
    other = provider.diff("x", {"job_id": JOB_ID}, {"job_id": JOB_ID.replace("asa-", "asa2-")})
    assert (same.changes, same.replaces) == (False, [])
    assert (other.changes, other.replaces) == (True, [])
    # Stopped by hand, or left stopped by a failed restart: the next `pulumi up` starts it again.
    for idle in ("Stopped", "Failed", "Created"):
        arm.state = idle
        assert provider.diff("x", {"job_id": JOB_ID}, {"job_id": JOB_ID}).changes is True
    arm.state = "Starting"
    assert provider.diff("x", {"job_id": JOB_ID}, {"job_id": JOB_ID}).changes is False


def test_the_provider_pickles_without_clients_or_credentials() -> None:
    provider = StreamJobRunProvider()
    assert vars(provider) == {}
    restored = dill.loads(base64.b64decode(serialize_provider(provider)))
    assert isinstance(restored, StreamJobRunProvider)
    assert vars(restored) == {}


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


def named(hooks: list[Any] | None) -> list[pulumi.ResourceHook]:
    """The hooks, checked to be named `ResourceHook`s (the engine reports them by name)."""
    assert hooks and all(isinstance(hook, pulumi.ResourceHook) for hook in hooks)
    return list(hooks)


def test_lifecycle_hooks_are_named_and_registered_once_per_program(mocks: Mocks) -> None:
    @pulumi.runtime.test
    def program() -> None:
        binding = stream_job.lifecycle_hooks()
        assert stream_job.lifecycle_hooks() is binding  # the job and its inputs/outputs share one registration
        before, after = named(binding.before_update), named(binding.after_update)
        assert [(h.name, h.callback) for h in before] == [(STOP_HOOK_NAME, stream_job.stop_before_update)]
        assert [(h.name, h.callback) for h in after] == [(START_HOOK_NAME, stream_job.start_after_update)]
        assert binding.before_create is None and binding.before_delete is None

    program()


def test_stream_job_run_is_a_dynamic_resource_taking_the_job_id(mocks: Mocks) -> None:
    @pulumi.runtime.test
    def program() -> pulumi.Output[None]:
        run = StreamJobRun("ingest-run", job_id=pulumi.Output.from_input(JOB_ID))

        def check(job_id: str) -> None:
            (recorded,) = mocks.resources
            assert recorded.typ == "pulumi-python:dynamic/batchscoring:StreamJobRun"
            assert recorded.inputs["job_id"] == JOB_ID
            assert "__provider" in recorded.inputs
            assert job_id == JOB_ID

        return run.job_id.apply(check)

    program()
