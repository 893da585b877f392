"""Training as tasks: one per shard, on the local backend (Azurite) and as Batch container tasks (fake Batch)."""

from __future__ import annotations

import json
import os
import typing
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from azure.storage.blob import BlobServiceClient
from sklearn.svm import OneClassSVM
from typer.testing import CliRunner

from tests.faults import FaultProxy, Rule
from tests.workloads.fake_batch import FakeBatchService, batch_error, task_page, task_results
from tests.workloads.helpers import OWN_TYPE, OwnDetector, aggregates_for
from workloads.aggregator.publish import publish_aggregates
from workloads.common.aggregates import DEFAULT_MODEL_FEATURES
from workloads.common.cli_options import TrustedType
from workloads.common.envvars import TRAINING_FACTORY
from workloads.common.frames import to_parquet
from workloads.common.layout import Container, model_blob, pack_blob
from workloads.common.pairs import Pair
from workloads.common.shards import shard_name, shard_of
from workloads.common.storage import StorageSettings
from workloads.submitter.backend import JobSpec, TaskCommand
from workloads.submitter.batch import BatchBackend
from workloads.submitter.batch_settings import BatchSettings
from workloads.submitter.local import LocalBackend
from workloads.training import cli, pool_cli
from workloads.training.cli import app
from workloads.training.families import ModelSpec, default_estimator
from workloads.training.jobs import manifest_blob, parse_jsonl, run_log_blob
from workloads.training.pool import TrainingRequest, batch_waiter, plan_training, run_training, write_training_job
from workloads.training.pool_batch import TrainingBatchBackend
from workloads.training.train import Skip, train_and_publish

SHARDS = 4
START = datetime(2026, 11, 25, 6, tzinfo=UTC)
HOURS = 3  # 36 windows a pair; min_rows 24
END = START + timedelta(hours=HOURS)
GOOD = [Pair(f"dev-{i}", sensor) for i in range(6) for sensor in ("x", "y")]
BAD = Pair("dev-nan", "x")  # every feature NaN: no usable window
runner = CliRunner()


def request(**overrides: Any) -> TrainingRequest:
    values: dict[str, Any] = {
        "stack": "dev",
        "start": START,
        "end": END,
        "shard_count": SHARDS,
        "features": DEFAULT_MODEL_FEATURES,
        "model": ModelSpec(),  # ocsvm: compiled into the shard's pack
        "min_rows": 24,
    }
    return TrainingRequest(**{**values, **overrides})


def shard_folder(device: str) -> str:
    return shard_name(shard_of(device, SHARDS), SHARDS)


def publish_fleet(service: BlobServiceClient) -> int:
    """Three hours of the fleet's aggregates, one all-NaN pair, and rows of another shard's device misfiled in a
    shard's folder (counted, not trained on); the misfiled rows' count."""
    hours = [aggregates_for([*GOOD, BAD], START + timedelta(hours=h), windows=12, seed=h) for h in range(HOURS)]
    frame = pd.concat(hours, ignore_index=True)
    frame.loc[frame["device_id"] == BAD.device_id, ["avg", "min", "max", "stdev"]] = np.nan
    publish_aggregates(service, frame, shard_count=SHARDS)
    folder = shard_folder("dev-0")
    stranger = next(f"dev-{i}" for i in range(100) if shard_folder(f"dev-{i}") != folder)
    misfiled = aggregates_for([Pair(stranger, "x")], START, windows=3, seed=9)
    blob = f"{START:%Y/%m/%d/%H}/{folder}/misfiled.parquet"
    service.get_container_client(str(Container.AGGREGATES)).upload_blob(blob, to_parquet(misfiled))
    return len(misfiled)


def shards_with_data() -> set[str]:
    return {shard_folder(p.device_id) for p in [*GOOD, BAD]}


def test_every_shard_is_trained_by_its_own_task_in_worker_processes(
    service: BlobServiceClient, settings: StorageSettings
) -> None:
    misfiled = publish_fleet(service)
    with LocalBackend(settings, workers=2) as backend:
        summary = run_training(service, request(), backend)
    tasks = len(shards_with_data())
    assert (summary.ok, summary.tasks, summary.tasks_ok, summary.failed) == (True, tasks, tasks, {})
    assert (summary.pairs, summary.trained) == (len(GOOD) + 1, len(GOOD))
    assert summary.skipped == {"too_few_windows": 1} and summary.skipped_pairs == {str(BAD): "too_few_windows"}
    assert summary.rows_of_other_shards == misfiled and summary.rows_outside_their_hour == 0
    assert summary.rows == (len(GOOD) + 1) * 12 * HOURS and summary.rows_read == summary.rows + misfiled
    trained_shards = {shard_folder(p.device_id) for p in GOOD}
    assert summary.packs_written == len(trained_shards)  # each task wrote its own shard's pack, no other
    models = service.get_container_client(str(Container.MODELS))
    for pair in GOOD:
        assert models.get_blob_client(model_blob(pair)).exists()
    assert not models.get_blob_client(model_blob(BAD)).exists()
    for folder in shards_with_data():  # the bad pair's shard has no other pair here: nothing to pack
        assert models.get_blob_client(pack_blob(folder)).exists() is (folder in trained_shards)
    # The log of the bad pair's shard: one line for the skipped pair, then the task line; ok pairs only counted.
    plan = plan_training(service, request())
    task_id = next(m.task_id for m in plan.manifests if m.shard == shard_folder(BAD.device_id))
    data = service.get_container_client(str(Container.LOGS)).download_blob(run_log_blob(plan.job_id, task_id))
    task, skipped = parse_jsonl(data.readall())
    assert task is not None and task.error is None and task.skipped == {"too_few_windows": 1}
    assert [(s.device_id, s.reason) for s in skipped] == [(BAD.device_id, "too_few_windows")]
    assert skipped[0].error.startswith("only 0 usable window(s)")


def test_a_task_that_cannot_read_its_history_fails_then_succeeds_on_retry(
    service: BlobServiceClient, faulty_settings: StorageSettings, fault_proxy: FaultProxy
) -> None:
    publish_fleet(service)
    folder = shard_folder("dev-1")
    # The SDK's three attempts at one blob of one shard all fail: that task's first attempt fails, its retry works.
    rule = fault_proxy.add(Rule(rf"/aggregates/2026/11/25/07/{folder}/local-aggregator\.parquet", times=3))
    faulty = faulty_settings.client()
    plan = plan_training(faulty, request())
    task_id = next(m.task_id for m in plan.manifests if m.shard == folder)
    with LocalBackend(faulty_settings, workers=0, max_task_retries=1) as backend:
        summary = run_training(faulty, request(), backend)
    assert rule.hits == 3
    assert (summary.ok, summary.tasks_ok, summary.trained) == (True, len(shards_with_data()), len(GOOD))
    # The failed attempt wrote its log (saying why) before failing; the retry replaced it.
    assert len(fault_proxy.requests(rf"/logs/{run_log_blob(plan.job_id, task_id)}$", method="PUT")) == 2


def test_a_task_failing_on_every_attempt_fails_the_job_with_its_reason(
    service: BlobServiceClient, faulty_settings: StorageSettings, fault_proxy: FaultProxy
) -> None:
    publish_fleet(service)
    folder = shard_folder("dev-1")
    fault_proxy.add(Rule(rf"/aggregates/2026/11/25/07/{folder}/"))
    faulty = faulty_settings.client()
    with LocalBackend(faulty_settings, workers=0, max_task_retries=1) as backend:
        summary = run_training(faulty, request(), backend)
    assert not summary.ok and list(summary.failed) == [f"shard-{shard_of('dev-1', SHARDS):05d}"]
    (why,) = summary.failed.values()
    assert "could not read 1 aggregate blob(s)" in why and folder in why
    assert summary.tasks_ok == len(shards_with_data()) - 1


def test_manifests_and_job_ids_are_deterministic(service: BlobServiceClient) -> None:
    publish_fleet(service)
    first, again = plan_training(service, request()), plan_training(service, request())
    assert first.job_id == again.job_id and first.job_id.startswith("train-dev-2026112509-3h-")
    assert len(first.job_id) <= 64
    assert first.manifests == again.manifests
    assert sorted(first.tasks.values()) == sorted(shards_with_data())
    logs = service.get_container_client(str(Container.LOGS))
    blobs = write_training_job(service, first, "local")
    contents = {name: logs.download_blob(name).readall() for name in blobs.values()}
    assert write_training_job(service, again, "local") == blobs
    assert {name: logs.download_blob(name).readall() for name in blobs.values()} == contents
    assert set(blobs.values()) == {manifest_blob(first.job_id, task) for task in first.tasks}
    # Anything that changes the models is another job.
    assert plan_training(service, request(min_rows=30)).job_id != first.job_id
    assert plan_training(service, request(model=ModelSpec(family="ocsvm", params={"nu": 0.05}))).job_id != first.job_id


class FailingDetector(OneClassSVM):
    """An estimator whose fit raises with a message that looks like a reason code: it is still fit_failed."""

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> FailingDetector:  # noqa: N803
        raise ValueError("untrusted_model: not really, the fit itself failed")


def test_skips_carry_a_structured_reason_not_one_read_from_their_message(service: BlobServiceClient) -> None:
    publish_fleet(service)
    pair = GOOD[0]
    own = train_and_publish(service, START, END, factory=OwnDetector, pairs=[pair, BAD], shard_count=SHARDS)
    assert own.skipped[BAD] == Skip("too_few_windows", "only 0 usable window(s), need at least 24")
    assert own.skipped[pair].reason == "untrusted_model" and OWN_TYPE in own.skipped[pair].message
    failing = train_and_publish(service, START, END, factory=FailingDetector, pairs=[pair], shard_count=SHARDS)
    assert failing.skipped == {pair: Skip("fit_failed", "untrusted_model: not really, the fit itself failed")}
    assert str(failing.skipped[pair]) == "fit_failed: untrusted_model: not really, the fit itself failed"


def test_trainer_train_names_each_skip_and_why_nothing_was_published(service: BlobServiceClient) -> None:
    publish_fleet(service)
    args = ["train", "--from", "2026-11-25T06", "--to", "2026-11-25T09", "--shard-count", str(SHARDS)]
    result = runner.invoke(app, [*args, "--pairs", f"{GOOD[0]},{BAD}", "--min-rows", "40"])
    assert result.exit_code == 1
    skipped = json.loads(result.stdout)["skipped"]
    assert skipped == {
        str(BAD): "too_few_windows: only 0 usable window(s), need at least 40",
        str(GOOD[0]): "too_few_windows: only 36 usable window(s), need at least 40",
    }
    assert "every pair was skipped (too_few_windows: 2 pair(s))" in " ".join(result.stderr.split())
    assert "enough usable history" not in result.output
    none = runner.invoke(app, [*args, "--pairs", "nobody/x"])
    assert none.exit_code == 1 and "no pair has aggregates in the window" in " ".join(none.stderr.split())


def test_the_cli_submits_runs_and_sums_and_a_task_runs_its_manifest(
    service: BlobServiceClient, settings: StorageSettings
) -> None:
    publish_fleet(service)
    args = ["submit", "--days", "1", "--to", "2026-11-25T09", "--stack", "dev", "--shard-count", str(SHARDS)]
    result = runner.invoke(app, [*args, "--workers", "0"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["ok"], summary["trained"], summary["skipped"]) == (True, len(GOOD), {"too_few_windows": 1})
    job_id = summary["job_id"]
    assert json.loads(runner.invoke(app, ["summary", "--job-id", job_id]).stdout)["trained"] == len(GOOD)
    task = runner.invoke(app, ["task", "--manifest", manifest_blob(job_id, "shard-00000")])
    assert task.exit_code == 0, task.output
    assert json.loads(task.stdout)["kind"] == "task"
    outside = runner.invoke(app, ["task", "--manifest", f"2026/11/25/09/{job_id}/manifests/shard-00000.json"])
    assert outside.exit_code == 2 and "invalid training manifest location" in outside.output
    empty = runner.invoke(app, [*args[:4], "2026-11-20T00", *args[5:], "--workers", "0"])
    assert empty.exit_code == 1 and "no shard has aggregates in the window" in empty.output


def test_a_job_whose_every_pair_was_skipped_fails_naming_the_reasons(service: BlobServiceClient) -> None:
    publish_fleet(service)
    args = ["submit", "--days", "1", "--to", "2026-11-25T09", "--stack", "dev", "--shard-count", str(SHARDS)]
    result = runner.invoke(app, [*args, "--workers", "0", "--min-rows", "40"])  # 36 windows a pair at most
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    assert (summary["ok"], summary["trained"], summary["skipped"]) == (True, 0, {"too_few_windows": len(GOOD) + 1})
    message = " ".join(result.stderr.split())
    assert f"every pair was skipped (too_few_windows: {len(GOOD) + 1} pair(s))" in message
    later = runner.invoke(app, ["summary", "--job-id", summary["job_id"]])
    assert later.exit_code == 1 and "every pair was skipped" in " ".join(later.stderr.split())


def test_blobs_in_no_shard_folder_are_named_as_not_trained_on(service: BlobServiceClient) -> None:
    publish_fleet(service)
    aggregates = service.get_container_client(str(Container.AGGREGATES))
    rows = to_parquet(aggregates_for([Pair("legacy", "x")], START, windows=12))
    aggregates.upload_blob(f"{START:%Y/%m/%d/%H}/legacy.parquet", rows)  # the old layout: directly in the hour
    aggregates.upload_blob(f"{START:%Y/%m/%d/%H}/{shard_name(0, 8)}/other-count.parquet", rows)  # 8 shards, not 4
    result = runner.invoke(app, [*SUBMIT, "--workers", "0"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["blobs_outside_shard_folders"], summary["trained"]) == (2, len(GOOD))
    (note,) = summary["notes"]
    assert note.startswith("2 aggregate blob(s) of the window lie in no shard folder of this shard count")
    assert "were not trained on" in note and "refiles" in note and "`trainer train`" in note
    assert f"warning: {note}" in " ".join(result.stderr.split())
    later = json.loads(runner.invoke(app, ["summary", "--job-id", summary["job_id"]]).stdout)
    assert later["notes"] == [note]


FACTORY_CALLS: list[str] = []


def recording_factory() -> Any:
    """A user's own model factory (the default ocsvm): records each call, so a test sees whether a task ran it."""
    FACTORY_CALLS.append("called")
    return default_estimator()


FACTORY = f"{__name__}:recording_factory"
SUBMIT = ["submit", "--days", "1", "--to", "2026-11-25T09", "--stack", "dev", "--shard-count", str(SHARDS)]


def test_a_task_refuses_a_manifest_naming_a_factory_its_environment_does_not_allow(
    service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A manifest is a blob in 'logs', which the scorer identity can write: one rewritten to name a module:function
    factory is refused before anything is imported, unless the task's environment allows exactly that factory."""
    publish_fleet(service)
    monkeypatch.delenv(TRAINING_FACTORY, raising=False)
    plan = plan_training(service, request())
    manifest = next(m for m in plan.manifests if m.shard == shard_folder("dev-0"))
    blob = write_training_job(service, plan, "batch")[manifest.task_id]
    logs = service.get_container_client(str(Container.LOGS))

    def rewrite(family: str, **params: Any) -> None:
        tampered = manifest.model_copy(update={"model": ModelSpec(family=family, params=params)})
        logs.upload_blob(blob, tampered.model_dump_json(), overwrite=True)

    FACTORY_CALLS.clear()
    rewrite(FACTORY)
    for env in ({}, {TRAINING_FACTORY: "workloads.training.families:default_estimator"}):
        refused = runner.invoke(app, ["task", "--manifest", blob], env=env)
        assert refused.exit_code == 2, refused.output
        assert f"names the model factory '{FACTORY}', which this task's environment does not allow" in " ".join(
            refused.stderr.split()
        )
    rewrite("os:system", command="exit 3")
    refused = runner.invoke(app, ["task", "--manifest", blob], env={TRAINING_FACTORY: FACTORY})
    assert refused.exit_code == 2 and "'os:system'" in refused.stderr
    assert FACTORY_CALLS == [] and not logs.get_blob_client(run_log_blob(plan.job_id, manifest.task_id)).exists()
    # The factory its environment allows runs.
    rewrite(FACTORY)
    allowed = runner.invoke(app, ["task", "--manifest", blob], env={TRAINING_FACTORY: FACTORY})
    assert allowed.exit_code == 0, allowed.output
    assert FACTORY_CALLS and json.loads(allowed.stdout)["trained"] > 0


def test_submit_with_a_custom_factory_allows_it_to_its_local_workers_and_no_other(
    service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish_fleet(service)
    monkeypatch.delenv(TRAINING_FACTORY, raising=False)
    result = runner.invoke(app, [*SUBMIT, "--model", FACTORY, "--workers", "2"])  # spawned worker processes
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["ok"], summary["trained"], summary["failed"]) == (True, len(GOOD), {})
    assert TRAINING_FACTORY not in os.environ  # the allowance lasted as long as the submission
    assert "scorer image" not in result.output  # the warning is Batch's alone


def test_submit_validates_features_and_parameters_before_touching_storage(service: BlobServiceClient) -> None:
    publish_fleet(service)
    logs = service.get_container_client(str(Container.LOGS))
    wrong = runner.invoke(app, [*SUBMIT, "--features", "avg,bogus", "--workers", "0"])
    assert wrong.exit_code == 2 and "unknown feature(s) ['bogus']" in wrong.stderr
    # iforest's max_features=3 is valid on 4 columns, not on the 2 features the models would read.
    params = ["--model", "iforest", "--param", "max_features=3", "--features", "avg,max", "--workers", "0"]
    too_many = runner.invoke(app, [*SUBMIT, *params])
    assert too_many.exit_code == 2 and "max_features" in too_many.stderr, too_many.output
    assert not list(logs.list_blobs())  # no job.json, no manifest: nothing was submitted
    hints = typing.get_type_hints
    assert hints(cli.train, include_extras=True)["trusted_type"] == TrustedType
    assert hints(pool_cli.submit, include_extras=True)["trusted_type"] == TrustedType


# -- Batch ---------------------------------------------------------------------------------------------------

SETTINGS = BatchSettings(
    account_url="https://acct.westeurope.batch.azure.com",
    pool_id="scorers",
    scorer_image="bscoreacr.azurecr.io/scorer@sha256:" + "a" * 64,
    storage_account_url="https://bscoredata.blob.core.windows.net/",
    scorer_identity_id="/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/p",
    scorer_client_id="scorer-client-id",
    trainer_client_id="trainer-client-id",
    max_task_retries=2,
    max_wall_minutes=30,
)


def test_a_training_task_is_the_task_image_with_the_trainer_as_entry_point() -> None:
    job_id = "train-dev-2026112509-24h-0123abcd"
    fake = FakeBatchService()
    fake.handlers = {
        ("POST", "/jobs"): lambda call: (201, None),
        ("POST", f"/jobs/{job_id}/addtaskcollection"): task_results,
        ("PATCH", f"/jobs/{job_id}"): lambda call: (200, None),
    }
    backend = BatchBackend(fake.client(), SETTINGS, log=lambda _: None, sleep=lambda _: None)
    blob = manifest_blob(job_id, "shard-00003")
    job = JobSpec(job_id, "training dev", f"training/{job_id}/output/", task_max_wall=timedelta(hours=2))
    backend.submit_tasks(job, {"shard-00003": TaskCommand("trainer", blob)})
    (create,) = fake.of("POST", "/jobs")
    # 2 h x (1 + 2 retries) + 1 h for nodes.
    assert create.body["constraints"] == {"maxWallClockTime": "PT07H00M00S"}
    assert create.body["displayName"] == "training dev" and create.body["onAllTasksComplete"] == "noaction"
    (collection,) = fake.of("POST", f"/jobs/{job_id}/addtaskcollection")
    (task,) = collection.body["value"]
    identity = {"resourceId": SETTINGS.scorer_identity_id}
    assert task["commandLine"] == f"task --manifest training/{job_id}/manifests/shard-00003.json"
    assert task["containerSettings"] == {
        "imageName": SETTINGS.scorer_image,
        "containerRunOptions": "--rm --entrypoint trainer",
        "registry": {"registryServer": "bscoreacr.azurecr.io", "identityReference": identity},
    }
    assert task["environmentSettings"] == [
        {"name": "AZURE_STORAGE_ACCOUNT_URL", "value": SETTINGS.storage_account_url},
        {"name": "AZURE_CLIENT_ID", "value": "trainer-client-id"},
    ]
    assert task["constraints"] == {"maxTaskRetryCount": 2, "maxWallClockTime": "PT02H00M00S"}
    (output,) = task["outputFiles"]
    assert output["destination"]["container"]["path"] == f"training/{job_id}/output/shard-00003"
    assert fake.of("PATCH", f"/jobs/{job_id}")[0].body == {"onAllTasksComplete": "terminatejob"}


def test_a_batch_training_job_runs_its_command_lines_and_is_summed(
    service: BlobServiceClient, settings: StorageSettings
) -> None:
    """The fake pool runs each added task's command line through ``trainer`` (as ``--entrypoint trainer`` would);
    the submission waits on task counts and sums the logs."""
    publish_fleet(service)
    job_id = plan_training(service, request()).job_id
    ran: list[str] = []
    fake = fake_pool(job_id, ran, {})
    backend = BatchBackend(fake.client(), SETTINGS, log=lambda _: None, sleep=lambda _: None)
    summary = run_training(service, request(), backend, wait=batch_waiter(backend, 0, timedelta(minutes=1)))
    assert sorted(ran) == sorted(plan_training(service, request()).tasks)
    assert (summary.ok, summary.trained, summary.skipped) == (True, len(GOOD), {"too_few_windows": 1})
    assert summary.pack_left_out == {} and summary.as_json()["pack_left_out"] == {}
    # No job-level wall clock: a training job's tasks may queue on a small pool; each task is bounded by its own.
    (create,) = fake.of("POST", "/jobs")
    assert "constraints" not in create.body and create.body["poolInfo"] == {"poolId": "scorers"}


def fake_pool(job_id: str, ran: list[str], env: dict[str, str | None]) -> FakeBatchService:
    """A fake Batch account whose pool runs each added task's command line through ``trainer`` with the task's
    environment settings (``env`` gets the allowance each task carried)."""

    def add(call: Any) -> tuple[int, Any]:
        for task in call.body["value"]:
            assert task["containerSettings"]["containerRunOptions"] == "--rm --entrypoint trainer"
            settings = {e["name"]: e["value"] for e in task["environmentSettings"]}
            env[task["id"]] = settings.get(TRAINING_FACTORY)
            result = runner.invoke(
                app, task["commandLine"].split(), env={TRAINING_FACTORY: settings.get(TRAINING_FACTORY)}
            )
            assert result.exit_code == 0, result.output
            ran.append(task["id"])
        return task_results(call)

    def counts(call: Any) -> tuple[int, Any]:
        done = {"active": 0, "running": 0, "completed": len(ran), "succeeded": len(ran), "failed": 0}
        return 200, {"taskCounts": done, "taskSlotCounts": done}

    fake = FakeBatchService()
    fake.handlers = {
        ("POST", "/jobs"): lambda call: (201, None),
        ("POST", f"/jobs/{job_id}/addtaskcollection"): add,
        ("PATCH", f"/jobs/{job_id}"): lambda call: (200, None),
        ("GET", f"/jobs/{job_id}/taskcounts"): counts,
        ("GET", f"/jobs/{job_id}/tasks"): lambda call: task_page([]),
    }
    return fake


def use_fake_pool(monkeypatch: pytest.MonkeyPatch, fake: FakeBatchService) -> None:
    def backend(environment: dict[str, str]) -> TrainingBatchBackend:
        return TrainingBatchBackend(
            fake.client(), SETTINGS, log=lambda _: None, sleep=lambda _: None, task_environment=environment
        )

    monkeypatch.setattr(pool_cli, "_batch_backend", backend)


def test_batch_submit_puts_the_factory_allowance_on_each_task_and_warns_about_the_image(
    service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish_fleet(service)
    monkeypatch.delenv(TRAINING_FACTORY, raising=False)
    job_id = plan_training(service, request(start=END - timedelta(days=1), model=ModelSpec(family=FACTORY))).job_id
    ran: list[str] = []
    env: dict[str, str | None] = {}
    use_fake_pool(monkeypatch, fake_pool(job_id, ran, env))
    result = runner.invoke(app, [*SUBMIT, "--backend", "batch", "--model", FACTORY, "--poll-seconds", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["trained"] == len(GOOD)
    assert env == dict.fromkeys(ran, FACTORY) and len(ran) == len(shards_with_data())
    assert f"warning: the model factory {FACTORY} must be importable in the scorer image" in " ".join(
        result.stderr.split()
    )
    # A named family: no allowance on the tasks, no warning.
    ran.clear()
    env.clear()
    job_id = plan_training(service, request(start=END - timedelta(days=1))).job_id
    use_fake_pool(monkeypatch, fake_pool(job_id, ran, env))
    result = runner.invoke(app, [*SUBMIT, "--backend", "batch", "--poll-seconds", "1"])
    assert result.exit_code == 0, result.output
    assert ran and env == dict.fromkeys(ran) and "warning" not in result.stderr


@pytest.mark.parametrize("state", ["completed", "terminating"])
def test_resubmitting_a_training_whose_batch_job_completed_says_what_to_do(
    service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch, state: str
) -> None:
    """A completed Batch job accepts no more tasks: resubmitting the same training is refused up front (exit 2)."""
    publish_fleet(service)
    job_id = plan_training(service, request(start=END - timedelta(days=1))).job_id
    fake = fake_pool(job_id, [], {})
    fake.handlers[("GET", f"/jobs/{job_id}")] = lambda call: (200, {"id": job_id, "state": state})
    use_fake_pool(monkeypatch, fake)
    result = runner.invoke(app, [*SUBMIT, "--backend", "batch"])
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert f"training job {job_id} is {state} on Batch and accepts no more tasks" in message
    assert f"trainer summary --job-id {job_id}" in message and "az batch job delete" in message
    assert [c.method for c in fake.calls] == ["GET"]  # nothing created, added or patched
    # An active job (tasks still running) is resumed: only the tasks it lacks are added.
    fake.handlers[("GET", f"/jobs/{job_id}")] = lambda call: (200, {"id": job_id, "state": "active"})
    fake.handlers[("POST", "/jobs")] = lambda call: batch_error("JobExists", 409)
    fake.handlers[("GET", f"/jobs/{job_id}/tasks")] = lambda call: task_page([])
    resumed = runner.invoke(app, [*SUBMIT, "--backend", "batch", "--poll-seconds", "1"])
    assert resumed.exit_code == 0, resumed.output
