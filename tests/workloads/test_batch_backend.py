"""The Batch backend against the real azure-batch SDK with a fake HTTP service."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from tests.workloads.fake_batch import (
    ENDPOINT,
    Call,
    FakeBatchService,
    batch_error,
    failed_task,
    task_page,
    task_results,
)
from workloads.common.manifest import TaskManifest
from workloads.common.shards import shard_name
from workloads.submitter.backend import JobOutcome
from workloads.submitter.batch import BatchBackend, TaskCounts
from workloads.submitter.batch_settings import BatchSettings
from workloads.submitter.plan import JobPlan, job_id_for, task_id_for

HOUR = datetime(2026, 11, 25, 10, tzinfo=UTC)
JOB = job_id_for("dev", HOUR)
FAILED_FILTER = "executionInfo/result eq 'failure'"
JOBS, JOB_PATH = "/jobs", f"/jobs/{JOB}"
COLLECTION, TASKS = f"/jobs/{JOB}/addtaskcollection", f"/jobs/{JOB}/tasks"
SETTINGS = BatchSettings(
    account_url="https://acct.westeurope.batch.azure.com",
    pool_id="scorers",
    scorer_image="bscoreacr.azurecr.io/scorer@sha256:" + "a" * 64,
    storage_account_url="https://bscoredata.blob.core.windows.net/",
    scorer_identity_id="/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/scorer",
    scorer_client_id="scorer-client-id",
    max_task_retries=2,
    max_wall_minutes=30,
)


def plan_with(tasks: int, shard_count: int = 256) -> tuple[JobPlan, dict[str, str]]:
    """A plan of ``tasks`` shard folders (one blob each) and where their manifests would be."""
    manifests = tuple(
        TaskManifest(
            job_id=JOB,
            task_id=task_id_for(i),
            hour=HOUR,
            shard_count=shard_count,
            folder=shard_name(i, shard_count),
            inputs=(f"2026/11/25/10/{shard_name(i, shard_count)}/local-aggregator.parquet",),
        )
        for i in range(tasks)
    )
    plan = JobPlan(job_id=JOB, stack="dev", hour=HOUR, tasks=manifests)
    blobs = {t.task_id: f"2026/11/25/10/{JOB}/manifests/{t.task_id}.json" for t in manifests}
    return plan, blobs


def service(overrides: dict[tuple[str, str], Any] | None = None) -> FakeBatchService:
    fake = FakeBatchService()
    fake.handlers = {
        ("POST", JOBS): lambda call: (201, None),
        ("POST", COLLECTION): task_results,
        ("PATCH", JOB_PATH): lambda call: (200, None),
        ("GET", JOB_PATH): lambda call: batch_error("JobNotFound", 404),
        ("GET", TASKS): lambda call: (200, {"value": []}),
        **(overrides or {}),
    }
    return fake


def backend(fake: FakeBatchService) -> BatchBackend:
    return BatchBackend(fake.client(), SETTINGS, log=lambda _: None, sleep=lambda _: None)


def test_job_id_is_the_revisioned_one() -> None:
    assert JOB == "score-dev-2026112510-r001"


def test_job_and_task_bodies() -> None:
    fake = service()
    plan, manifests = plan_with(2)
    outcome = backend(fake).submit(plan, manifests)
    assert outcome == JobOutcome(finished=False, task_errors={})

    (create,) = fake.of("POST", JOBS)
    assert create.body == {
        "id": JOB,
        "displayName": "scoring dev 2026-11-25T10",
        "poolInfo": {"poolId": "scorers"},
        "onAllTasksComplete": "noaction",
        # 30 min x (1 + 2 retries) + 1 h for nodes: Batch terminates the job and its tasks after it.
        "constraints": {"maxWallClockTime": "PT02H30M00S"},
    }
    assert SETTINGS.claim_timeout == timedelta(hours=2, minutes=45)
    (update,) = fake.of("PATCH", JOB_PATH)
    assert update.body == {"onAllTasksComplete": "terminatejob"}
    # The job is switched to terminate only after its tasks were added.
    assert [c.method for c in fake.calls] == ["POST", "POST", "PATCH"]

    (collection,) = fake.of("POST", COLLECTION)
    first = collection.body["value"][0]
    identity = {"resourceId": SETTINGS.scorer_identity_id}
    assert first["id"] == "task-00000"
    assert first["commandLine"] == f"--manifest 2026/11/25/10/{JOB}/manifests/task-00000.json"
    assert first["containerSettings"] == {
        "imageName": SETTINGS.scorer_image,
        "containerRunOptions": "--rm",
        "registry": {"registryServer": "bscoreacr.azurecr.io", "identityReference": identity},
    }
    assert first["constraints"] == {"maxTaskRetryCount": 2, "maxWallClockTime": "PT30M00S"}
    assert first["environmentSettings"] == [
        {"name": "AZURE_STORAGE_ACCOUNT_URL", "value": SETTINGS.storage_account_url},
        {"name": "AZURE_CLIENT_ID", "value": "scorer-client-id"},
    ]
    (output,) = first["outputFiles"]
    assert output["filePattern"] == "../std*.txt"
    assert output["destination"]["container"] == {
        "containerUrl": "https://bscoredata.blob.core.windows.net/logs",
        "path": f"2026/11/25/10/{JOB}/output/task-00000",
        "identityReference": identity,
    }
    assert output["uploadOptions"] == {"uploadCondition": "taskcompletion"}


def test_tasks_are_added_in_collections_of_at_most_100() -> None:
    fake = service()
    plan, manifests = plan_with(250)
    assert backend(fake).submit(plan, manifests) == JobOutcome(finished=False)
    sizes = [len(c.body["value"]) for c in fake.of("POST", COLLECTION)]
    assert sizes == [100, 100, 50]
    added = [t["id"] for c in fake.of("POST", COLLECTION) for t in c.body["value"]]
    assert added == [task_id_for(i) for i in range(250)]


def test_an_existing_job_is_resumed_with_only_the_missing_tasks() -> None:
    fake = service(
        {
            ("POST", JOBS): lambda call: batch_error("JobExists", 409),
            ("GET", TASKS): lambda call: (200, {"value": [{"id": "task-00000"}, {"id": "task-00002"}]}),
        }
    )
    be = backend(fake)
    plan, manifests = plan_with(4)
    assert be.submit(plan, manifests) == JobOutcome(finished=False)
    (collection,) = fake.of("POST", COLLECTION)
    assert [t["id"] for t in collection.body["value"]] == ["task-00001", "task-00003"]
    assert any("resuming" in note for note in be.notes)


def test_an_existing_job_with_every_task_adds_none_and_still_terminates() -> None:
    fake = service(
        {
            ("POST", JOBS): lambda call: batch_error("JobExists", 409),
            ("GET", TASKS): lambda call: (200, {"value": [{"id": "task-00000"}, {"id": "task-00001"}]}),
        }
    )
    plan, manifests = plan_with(2)
    assert backend(fake).submit(plan, manifests) == JobOutcome(finished=False)
    assert fake.of("POST", COLLECTION) == []
    (listing,) = fake.of("GET", TASKS)
    assert listing.query["$select"] == ["id"]
    (update,) = fake.of("PATCH", JOB_PATH)
    assert update.body == {"onAllTasksComplete": "terminatejob"}


def job(state: str) -> Any:
    return lambda call: (200, {"id": JOB, "state": state, "poolInfo": {"poolId": "scorers"}})


@pytest.mark.parametrize("state", ["active", "terminating", "disabled"])
def test_poll_a_job_not_yet_completed_is_not_finished(state: str) -> None:
    fake = service({("GET", JOB_PATH): job(state)})
    assert backend(fake).poll(JOB) == JobOutcome(finished=False)
    assert fake.of("GET", TASKS) == []  # tasks are only looked at once the job has ended


def test_poll_a_completed_job_without_failed_tasks() -> None:
    fake = service({("GET", JOB_PATH): job("completed"), ("GET", TASKS): lambda call: task_page([])})
    assert backend(fake).poll(JOB) == JobOutcome(finished=True, task_errors={})
    (listing,) = fake.of("GET", TASKS)
    assert listing.query["$filter"] == [FAILED_FILTER]


def test_poll_a_completed_job_names_its_failed_tasks() -> None:
    message = "The task process exited with an unexpected exit code"
    fake = service(
        {
            ("GET", JOB_PATH): job("completed"),
            ("GET", TASKS): lambda call: task_page([failed_task("task-00001", 3, message)]),
        }
    )
    outcome = backend(fake).poll(JOB)
    assert outcome == JobOutcome(
        finished=True, task_errors={"task-00001": f"failed after retries (exit code 3): {message}"}
    )
    (listing,) = fake.of("GET", TASKS)
    # What the SDK really put on the wire: the OData filter and the comma-joined select.
    assert listing.query["$filter"] == [FAILED_FILTER]
    assert listing.query["$select"] == ["id,executionInfo"]
    assert "$expand" not in listing.query
    assert [c.path for c in fake.calls] == [JOB_PATH, TASKS]


def test_poll_reads_every_page_of_failed_tasks() -> None:
    next_link = f"{ENDPOINT}{TASKS}?api-version=2025-06-01&$skiptoken=page2"

    def pages(call: Call) -> tuple[int, Any]:
        if call.query.get("$skiptoken") == ["page2"]:
            return task_page([failed_task("task-00002", 1, "second page")])
        return task_page([failed_task("task-00000", 137, "killed")], next_link)

    fake = service({("GET", JOB_PATH): job("completed"), ("GET", TASKS): pages})
    outcome = backend(fake).poll(JOB)
    assert outcome.finished is True
    assert outcome.task_errors == {
        "task-00000": "failed after retries (exit code 137): killed",
        "task-00002": "failed after retries (exit code 1): second page",
    }
    assert len(fake.of("GET", TASKS)) == 2


def test_poll_a_failed_task_without_an_exit_code() -> None:
    # e.g. the container image could not be pulled: Batch reports failureInfo but no exit code.
    fake = service(
        {
            ("GET", JOB_PATH): job("completed"),
            ("GET", TASKS): lambda call: task_page([failed_task("task-00000", None, "image pull failed")]),
        }
    )
    (error,) = backend(fake).poll(JOB).task_errors.values()
    assert error.startswith("failed after retries") and error.endswith(": image pull failed")


def test_poll_a_missing_job_is_finished_with_a_job_level_error() -> None:
    fake = service({("GET", JOB_PATH): lambda call: batch_error("JobNotFound", 404)})
    outcome = backend(fake).poll(JOB)
    assert outcome == JobOutcome(finished=True, task_errors={"*": f"job {JOB} not found in the Batch account"})
    assert fake.of("GET", TASKS) == []


def test_poll_other_errors_surface() -> None:
    fake = service({("GET", JOB_PATH): lambda call: batch_error("AuthenticationFailed", 403)})
    with pytest.raises(HttpResponseError, match="AuthenticationFailed"):
        backend(fake).poll(JOB)


def test_partial_task_failures_retry_server_errors_and_report_client_errors() -> None:
    attempts: list[int] = []

    def flaky(call: Call) -> tuple[int, Any]:
        attempts.append(len(call.body["value"]))
        if len(attempts) == 1:
            return task_results(
                call,
                {
                    "task-00001": ("servererror", "ServerBusy"),
                    "task-00002": ("clienterror", "TaskExists"),  # added by an earlier, interrupted run: fine
                    "task-00003": ("clienterror", "InvalidPropertyValue"),
                },
            )
        return task_results(call)

    fake = service({("POST", COLLECTION): flaky})
    plan, manifests = plan_with(4)
    outcome = backend(fake).submit(plan, manifests)
    assert attempts == [4, 1]  # only the server-error task is sent again
    assert outcome.finished is False
    assert list(outcome.task_errors) == ["task-00003"]
    assert outcome.task_errors["task-00003"].startswith("InvalidPropertyValue")


def test_throttling_and_unavailable_are_retried() -> None:
    answers = iter(
        [
            (429, {"code": "TooManyRequests", "message": {"value": "slow down"}}),
            (503, {"code": "ServerBusy", "message": {"value": "busy"}}),
        ]
    )

    def throttled(call: Call) -> tuple[int, Any]:
        return next(answers, None) or task_results(call)

    fake = service({("POST", COLLECTION): throttled})
    plan, manifests = plan_with(3)
    assert backend(fake).submit(plan, manifests) == JobOutcome(finished=False)
    assert len(fake.of("POST", COLLECTION)) == 3  # 429 (SDK pipeline retry), 503 (our retry), success


def test_a_task_never_added_is_reported_not_lost() -> None:
    fake = service(
        {("POST", COLLECTION): lambda call: task_results(call, {"task-00000": ("servererror", "ServerBusy")})}
    )
    plan, manifests = plan_with(2)
    outcome = backend(fake).submit(plan, manifests)
    assert outcome == JobOutcome(
        finished=False, task_errors={"task-00000": "not added after 4 attempts (server errors)"}
    )
    # The job is still switched to terminate: the tasks that were added run and end it.
    (update,) = fake.of("PATCH", JOB_PATH)
    assert update.body == {"onAllTasksComplete": "terminatejob"}


def test_other_client_errors_surface() -> None:
    fake = service({("POST", JOBS): lambda call: batch_error("PoolNotFound", 400)})
    plan, manifests = plan_with(1)
    with pytest.raises(HttpResponseError, match="PoolNotFound"):
        backend(fake).submit(plan, manifests)


def test_wait_polls_task_counts_until_done() -> None:
    answers = iter(
        [
            {"active": 2, "running": 1, "completed": 0, "succeeded": 0, "failed": 0},
            {"active": 0, "running": 1, "completed": 2, "succeeded": 2, "failed": 0},
            {"active": 0, "running": 0, "completed": 3, "succeeded": 2, "failed": 1},
        ]
    )
    slots = {"active": 0, "running": 0, "completed": 0, "succeeded": 0, "failed": 0}
    fake = service(
        {("GET", f"/jobs/{JOB}/taskcounts"): lambda call: (200, {"taskCounts": next(answers), "taskSlotCounts": slots})}
    )
    seen: list[TaskCounts] = []
    counts = backend(fake).wait(JOB, 3, poll_seconds=0, on_poll=seen.append)
    assert (counts.succeeded, counts.failed, len(seen)) == (2, 1, 3)


def test_tasks_get_the_telemetry_connection_string_only_when_configured() -> None:
    connection = "InstrumentationKey=00000000-0000-0000-0000-000000000001;IngestionEndpoint=https://ingest.example/"
    fake = service()
    plan, manifests = plan_with(1)
    with_telemetry = SETTINGS.model_copy(update={"telemetry_connection_string": connection})
    BatchBackend(fake.client(), with_telemetry, log=lambda _: None, sleep=lambda _: None).submit(plan, manifests)
    (collection,) = fake.of("POST", COLLECTION)
    settings = {s["name"]: s["value"] for s in collection.body["value"][0]["environmentSettings"]}
    assert settings["APPLICATIONINSIGHTS_CONNECTION_STRING"] == connection
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING" not in {s["name"] for s in backend_task_environment(plan_with(1))}


def backend_task_environment(planned: tuple[JobPlan, dict[str, str]]) -> list[dict[str, str]]:
    fake = service()
    backend(fake).submit(*planned)
    (collection,) = fake.of("POST", COLLECTION)
    return list(collection.body["value"][0]["environmentSettings"])
