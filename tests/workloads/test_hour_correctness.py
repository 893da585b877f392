"""Issue 7's reproductions, each against real Azurite (through the fault-injecting proxy where a fault
is needed): every hour scored exactly once, on complete data, and nothing lost without a trace."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from azure.storage.blob import BlobServiceClient
from sklearn.ensemble import IsolationForest
from typer.testing import CliRunner

from tests.faults import FaultProxy, Rule
from tests.workloads.helpers import HOUR, aggregates_for, publish_data_and_models, train_on
from workloads.aggregator.publish import publish_aggregates
from workloads.common.aggregates import DEFAULT_MODEL_FEATURES
from workloads.common.frames import read_hour_predictions, to_parquet
from workloads.common.hour_inputs import InputReadError, read_hour_aggregates
from workloads.common.hour_state import Action, AttemptStatus, Reason, read_state
from workloads.common.layout import Container, local_aggregate_blob, manifest_blob
from workloads.common.manifest import TaskManifest
from workloads.common.modelstore import ModelCache, ModelError, load_model, publish_model
from workloads.common.pairs import Pair
from workloads.common.storage import StorageSettings
from workloads.common.windows import SETTLE
from workloads.scorer.cli import app as scorer
from workloads.scorer.task import score_task
from workloads.submitter.backend import JobOutcome
from workloads.submitter.cli import app as submitter
from workloads.submitter.local import LocalBackend
from workloads.submitter.plan import JobPlan, Trust
from workloads.submitter.reconcile import Reconciler, ReconcileSettings
from workloads.submitter.report import HourStatus, collect
from workloads.training.cli import app as trainer

runner = CliRunner()
PAIRS = [Pair(f"dev-{d}", s) for d in range(5) for s in ("temp", "hum")]
NOW = HOUR + timedelta(hours=1, minutes=20)
AGGREGATE_GET = r"/aggregates/2026/11/25/10/.*\.parquet$"
TASK_INPUT_GET = r"/logs/2026/11/25/10/[^/]+/inputs/task-\d+\.parquet$"  # a task's rows, cut by the submitter


@pytest.fixture
def faulty_service(service: BlobServiceClient, faulty_settings: StorageSettings) -> BlobServiceClient:
    """Empty platform containers, reached through the fault proxy (``faulty_settings`` is in the env)."""
    return faulty_settings.client()


def reconciler(service: BlobServiceClient, backend: Any, chunk_size: int = 4, **kwargs: Any) -> Reconciler:
    return Reconciler(service, backend, ReconcileSettings(stack="dev", chunk_size=chunk_size, **kwargs))


class FaultsAfterPlanning(LocalBackend):
    """Local backend that arms a proxy rule when tasks start, so the planner's own read is unharmed."""

    def __init__(self, settings: StorageSettings, proxy: FaultProxy, rule: Rule, **kwargs: Any) -> None:
        super().__init__(settings, workers=0, **kwargs)
        self.proxy, self.rule = proxy, rule

    def submit(self, plan: JobPlan, manifests: dict[str, str]) -> JobOutcome:
        self.proxy.add(self.rule)
        return super().submit(plan, manifests)


# 1. A failed read of its inputs inside a task fails the task (retried), never "no data".
def test_a_transient_read_failure_in_a_task_is_retried_not_taken_for_no_data(
    faulty_service: BlobServiceClient, faulty_settings: StorageSettings, fault_proxy: FaultProxy
) -> None:
    service = faulty_service
    publish_data_and_models(service, PAIRS)
    rule = Rule(TASK_INPUT_GET, times=3)  # the SDK's three attempts of the first task run all get 503
    with FaultsAfterPlanning(faulty_settings, fault_proxy, rule, max_task_retries=1) as backend:
        result = reconciler(service, backend, chunk_size=100).hour(HOUR, NOW)
    assert rule.hits == 3
    assert result.status is AttemptStatus.COMPLETED and result.record is not None
    assert (result.record.ok, result.record.no_data) == (10, 0)


def test_a_persistent_read_failure_fails_the_hour_which_stays_due(
    faulty_service: BlobServiceClient, faulty_settings: StorageSettings, fault_proxy: FaultProxy
) -> None:
    service = faulty_service
    publish_data_and_models(service, PAIRS)
    rule = Rule(TASK_INPUT_GET)
    with FaultsAfterPlanning(faulty_settings, fault_proxy, rule, max_task_retries=1) as backend:
        failed = reconciler(service, backend).hour(HOUR, NOW)
    assert failed.status is AttemptStatus.FAILED and failed.record is not None
    assert failed.record.no_data == 0 and set(failed.record.task_errors) == {"task-00000", "task-00001", "task-00002"}
    assert "could not read 1 task input blob(s): logs/2026/11/25/10/score-dev-2026112510-r001/inputs/task-00000" in (
        str(failed.record.task_errors)
    )
    assert read_hour_predictions(service, HOUR).empty  # a failed revision never becomes the hour's outputs
    fault_proxy.clear()
    with LocalBackend(faulty_settings, workers=0) as backend:
        retried = reconciler(service, backend).hour(HOUR, NOW)
    assert (retried.reason, retried.status, retried.job_id) == (
        Reason.RETRY_FAILED,
        AttemptStatus.COMPLETED,
        "score-dev-2026112510-r002",
    )


def test_a_task_that_cannot_read_writes_a_failed_log_and_raises(
    faulty_service: BlobServiceClient, faulty_settings: StorageSettings, fault_proxy: FaultProxy
) -> None:
    service = faulty_service
    publish_data_and_models(service, PAIRS[:2])
    fault_proxy.add(Rule(AGGREGATE_GET, fault="drop"))
    manifest = TaskManifest(job_id="job-1", task_id="task-00000", hour=HOUR, pairs=tuple(PAIRS[:2]))
    with pytest.raises(InputReadError, match=r"local-aggregator\.parquet"):
        score_task(service, manifest)
    name = "2026/11/25/10/job-1/tasks/task-00000.jsonl"
    log = service.get_container_client("logs").download_blob(name).readall()
    task = json.loads(log.decode().splitlines()[-1])
    assert task["error"].startswith("could not read 1 aggregate blob(s)") and task["no_data"] == 0


MODEL_GET = r"/models/dev-0/temp/model\.skops$"


def test_a_model_that_cannot_be_read_fails_the_task_not_the_pair(
    faulty_service: BlobServiceClient, faulty_settings: StorageSettings, fault_proxy: FaultProxy
) -> None:
    """A 503 on one model GET (after the SDK's retries) must not pass as a failed pair of a completed hour."""
    service = faulty_service
    publish_data_and_models(service, PAIRS[:2])
    fault_proxy.add(Rule(MODEL_GET))
    manifest = TaskManifest(job_id="job-1", task_id="task-00000", hour=HOUR, pairs=tuple(PAIRS[:2]))
    with pytest.raises(InputReadError, match=r"could not read 1 model blob\(s\): models/dev-0/temp/model\.skops"):
        score_task(service, manifest)
    log = service.get_container_client("logs").download_blob("2026/11/25/10/job-1/tasks/task-00000.jsonl").readall()
    task = json.loads(log.decode().splitlines()[-1])
    assert task["error"].startswith("could not read 1 model blob(s)") and task["ok"] == 0

    fault_proxy.clear()
    rule = Rule(MODEL_GET, times=3)  # every attempt of the first task run; its retry reads the model
    with FaultsAfterPlanning(faulty_settings, fault_proxy, rule, max_task_retries=1) as backend:
        result = reconciler(service, backend, chunk_size=100).hour(HOUR, NOW)
    assert rule.hits == 3 and result.status is AttemptStatus.COMPLETED and result.record is not None
    assert (result.record.ok, result.record.failed) == (2, 0)


# 2. Malformed ids are quarantined row by row; the rest of the hour is scored; the trainer skips them.
BAD_IDS = ["../x", "a/b", "..", "", None, "d" * 65]


def with_bad_rows(hour: datetime = HOUR) -> pd.DataFrame:
    good = aggregates_for(PAIRS, hour)
    bad = aggregates_for([Pair("z", "temp")] * len(BAD_IDS), hour, windows=1).astype({"device_id": object})
    bad["device_id"] = BAD_IDS
    return pd.concat([good, bad], ignore_index=True)


def test_malformed_ids_are_quarantined_and_the_rest_is_scored(service: BlobServiceClient) -> None:
    publish_data_and_models(service, PAIRS)
    publish_aggregates(service, with_bad_rows())
    result = runner.invoke(submitter, ["run", "--hour", "2026-11-25T10", "--stack", "dev", "--workers", "0"])
    assert result.exit_code == 0, result.output
    (hour,) = json.loads(result.stdout)
    assert hour["status"] == "completed" and hour["record"]["ok"] == 10
    assert hour["record"]["input_issues"]["quarantined_rows"] == {local_aggregate_blob(HOUR): {"bad_device_id": 6}}
    report = runner.invoke(submitter, ["report", "--hour", "2026-11-25T10"])
    assert "quarantined rows" in report.stdout and "6 bad_device_id" in report.stdout


def test_trainer_skips_malformed_rows_and_reports_them(service: BlobServiceClient) -> None:
    for back in range(1, 4):
        publish_aggregates(service, with_bad_rows(HOUR - timedelta(hours=back)))
    result = runner.invoke(trainer, ["--from", "2026-11-25T07", "--to", "2026-11-25T10"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["published"] == 10 and summary["skipped"] == {}
    assert sum(r["bad_device_id"] for r in summary["quarantined_rows"].values()) == 18


# 3. Hours that are not complete are refused; empty and unreadable hours are not closed for good.
@pytest.mark.parametrize("offset", [timedelta(0), timedelta(hours=3)])
def test_run_refuses_the_current_and_future_hours(settings: StorageSettings, offset: timedelta) -> None:
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + offset
    result = runner.invoke(submitter, ["run", "--hour", f"{hour:%Y-%m-%dT%H}", "--workers", "0"])
    assert result.exit_code == 2
    assert "is not complete until" in result.output and "nothing scored" in result.output


def test_an_empty_hour_is_scored_again_when_its_data_lands(
    service: BlobServiceClient, settings: StorageSettings
) -> None:
    with LocalBackend(settings, workers=0) as backend:
        empty = reconciler(service, backend).hour(HOUR, NOW)
        assert empty.status is AttemptStatus.COMPLETED and empty.record is not None and empty.record.pairs == 0
        assert collect(service, HOUR, NOW, SETTLE).status is HourStatus.EMPTY  # not shown as plain "scored"
        publish_data_and_models(service, PAIRS)
        late = reconciler(service, backend).hour(HOUR, NOW + timedelta(hours=1))
    assert (late.reason, late.status) == (Reason.INPUTS_CHANGED, AttemptStatus.COMPLETED)
    assert late.record is not None and late.record.ok == 10
    assert collect(service, HOUR, NOW + timedelta(hours=1), SETTLE).status is HourStatus.SCORED


def test_an_hour_whose_only_blob_is_unreadable_fails_and_says_so(
    faulty_service: BlobServiceClient, faulty_settings: StorageSettings, fault_proxy: FaultProxy
) -> None:
    service = faulty_service
    publish_data_and_models(service, PAIRS)
    fault_proxy.add(Rule(AGGREGATE_GET))
    result = runner.invoke(submitter, ["run", "--hour", "2026-11-25T10", "--stack", "dev", "--workers", "0"])
    assert result.exit_code == 1
    assert "1 hour(s) failed" in result.output and "local-aggregator.parquet" in result.output
    (hour,) = json.loads(result.stdout)
    assert hour["record"]["read_errors"] and hour["record"]["status"] == "failed"
    # 7. The report shows the read error, in the table and in JSON.
    as_json = json.loads(runner.invoke(submitter, ["report", "--hour", "2026-11-25T10", "--json"]).stdout)[0]
    assert as_json["status"] == "failed" and list(as_json["read_errors"]) == [local_aggregate_blob(HOUR)]
    table = runner.invoke(submitter, ["report", "--hour", "2026-11-25T10"]).stdout
    assert "unreadable blob" in table and "unable to receive requests" in table


def test_an_hour_scored_without_a_corrupt_blob_never_reports_plain_success(service: BlobServiceClient) -> None:
    publish_data_and_models(service, PAIRS)
    corrupt = "2026/11/25/10/asa-0001.parquet"
    service.get_container_client(str(Container.AGGREGATES)).upload_blob(corrupt, b"PAR1 junk")
    args = ["run", "--hour", "2026-11-25T10", "--stack", "dev", "--workers", "0"]
    result = runner.invoke(submitter, args)
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert f"scored without 1 corrupt aggregate blob(s), their rows lost: aggregates/{corrupt}" in message
    (hour,) = json.loads(result.stdout)
    assert hour["status"] == "completed" and hour["record"]["ok"] == 10  # the rest of the hour is published
    summary = json.loads(runner.invoke(submitter, ["report", "--hour", "2026-11-25T10", "--json"]).stdout)[0]
    assert summary["status"] == "partial" and list(summary["corrupt_blobs"]) == [corrupt]
    assert read_state(service, HOUR).state.latest.corrupt_blobs == 1  # type: ignore[union-attr]


# 4. Duplicates are dropped, conflicts resolved (newest blob wins) and reported.
def test_duplicate_blobs_and_conflicting_rows_do_not_double_predictions(
    service: BlobServiceClient, settings: StorageSettings
) -> None:
    frame = publish_data_and_models(service, PAIRS)
    aggregates = service.get_container_client(str(Container.AGGREGATES))
    aggregates.upload_blob("2026/11/25/10/asa-replay.parquet", to_parquet(frame))  # an identical second blob
    newer = frame.iloc[:1].copy()
    newer["avg"] = newer["avg"] + 5.0
    time.sleep(1.1)  # Last-Modified has one-second resolution: same-second blobs are ordered by name
    aggregates.upload_blob("2026/11/25/10/asa-late.parquet", to_parquet(newer))  # written last: it wins
    read = read_hour_aggregates(service, HOUR)
    assert (read.duplicates, read.conflicts, len(read.frame)) == (len(frame), 1, len(frame))
    key = (read.frame.device_id == "dev-0") & (read.frame.sensor == newer.sensor.iloc[0])
    winner = read.frame[key & (read.frame.window_end == newer.window_end.iloc[0])]
    assert list(winner["avg"]) == list(newer["avg"])
    with LocalBackend(settings, workers=0) as backend:
        result = reconciler(service, backend).hour(HOUR, NOW)
    assert result.record is not None and result.record.input_issues["duplicate_rows"] == len(frame)
    assert len(read_hour_predictions(service, HOUR)) == len(frame)


# 5. A re-run replaces the hour completely; reports count only the latest revision.
def test_force_with_another_chunking_replaces_outputs_and_counts_once(
    service: BlobServiceClient, settings: StorageSettings
) -> None:
    publish_data_and_models(service, PAIRS)
    with LocalBackend(settings, workers=0) as backend:
        reconciler(service, backend, chunk_size=3).hour(HOUR, NOW)
        service.get_container_client(str(Container.MODELS)).delete_blob(f"{PAIRS[0]}/model.skops")
        forced = reconciler(service, backend, chunk_size=7).hour(HOUR, NOW, force=True)
    assert forced.record is not None and (forced.record.ok, forced.record.failed) == (9, 1)
    predictions = read_hour_predictions(service, HOUR)
    assert len(predictions) == 9 * 12 and PAIRS[0].device_id + "/temp" not in set(
        predictions.device_id + "/" + predictions.sensor
    )
    names = [b.name for b in service.get_container_client(str(Container.PREDICTIONS)).list_blobs()]
    assert len(names) == 2 and all("/score-dev-2026112510-r002/" in n for n in names)  # r001's blobs are gone
    summary = json.loads(runner.invoke(submitter, ["report", "--hour", "2026-11-25T10", "--json"]).stdout)[0]
    assert (summary["pairs_ok"], summary["pairs_failed"], summary["revisions"]) == (9, 1, 2)


# 6. Identifiers are validated at every boundary; manifests only from their job's folder.
@pytest.mark.parametrize("bad", ["../x", "a/b", "..", "", "x" * 65])
def test_job_and_task_ids_cannot_steer_paths(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid job id"):
        TaskManifest(job_id=bad, task_id="t", hour=HOUR, pairs=())
    with pytest.raises(ValueError, match="invalid task id"):
        TaskManifest(job_id="j", task_id=bad, hour=HOUR, pairs=())


@pytest.mark.parametrize(
    "args",
    [
        ["--manifest", "../predictions/x.json"],
        ["--manifest", "2026/11/25/10/job/manifests/../../../models/x.json"],
        ["--hour", "2026-11-25T10", "--pairs", "a/x", "--job-id", "../2026/11/25/09/job"],
        ["--hour", "2026-11-25T10", "--pairs", "a/x", "--task-id", "../../x"],
    ],
)
def test_scorer_refuses_paths_outside_a_jobs_folder(settings: StorageSettings, args: list[str]) -> None:
    result = runner.invoke(scorer, args)
    assert result.exit_code == 2, result.output
    assert "invalid" in result.output


def test_a_manifest_must_match_its_location(service: BlobServiceClient) -> None:
    manifest = TaskManifest(job_id="other-job", task_id="task-00000", hour=HOUR - timedelta(hours=1), pairs=())
    name = manifest_blob(HOUR, "job-1", "task-00000")
    service.get_container_client("logs").upload_blob(name, manifest.model_dump_json())
    result = runner.invoke(scorer, ["--manifest", name])
    assert result.exit_code == 2 and "do not match its location" in " ".join(result.output.split())
    missing = runner.invoke(scorer, ["--manifest", manifest_blob(HOUR, "job-1", "task-00001")])
    assert missing.exit_code == 2
    assert f"no manifest at logs/{manifest_blob(HOUR, 'job-1', 'task-00001')}" in " ".join(missing.output.split())


# 7. The trainer fails on unreadable history, naming the blob, and publishes nothing.
def test_trainer_over_unreadable_history_publishes_nothing(
    faulty_service: BlobServiceClient, faulty_settings: StorageSettings, fault_proxy: FaultProxy
) -> None:
    service = faulty_service
    for back in range(1, 4):
        publish_aggregates(service, aggregates_for(PAIRS, HOUR - timedelta(hours=back), seed=back))
    fault_proxy.add(Rule(r"/aggregates/2026/11/25/08/"))
    result = runner.invoke(trainer, ["--from", "2026-11-25T07", "--to", "2026-11-25T10"])
    assert result.exit_code == 1
    assert "aggregates/2026/11/25/08/local-aggregator.parquet" in " ".join(result.output.split())
    assert list(service.get_container_client(str(Container.MODELS)).list_blobs()) == []


# 8. Dropped connections in worker processes surface as text; bad connection strings exit 2.
def test_a_dropped_connection_in_a_worker_process_is_reported_as_text(
    faulty_service: BlobServiceClient, faulty_settings: StorageSettings, fault_proxy: FaultProxy
) -> None:
    service = faulty_service
    publish_data_and_models(service, PAIRS[:2])
    rule = Rule(TASK_INPUT_GET, fault="drop")
    backend = FaultsAfterPlanning(faulty_settings, fault_proxy, rule, max_task_retries=0)
    backend._executor.shutdown()
    with LocalBackend(faulty_settings, workers=1, max_task_retries=0) as real:
        backend._executor = real._executor
        result = reconciler(service, backend).hour(HOUR, NOW)
    assert result.status is AttemptStatus.FAILED and result.record is not None
    error = result.record.task_errors["task-00000"]
    assert "pickle" not in error and "could not read 1 task input blob(s)" in error


def test_a_bad_connection_string_exits_2_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "nonsense")
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_URL", raising=False)
    for app, args in ((submitter, ["report"]), (scorer, ["--hour", "2026-11-25T10", "--pairs", "a/x"])):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "AZURE_STORAGE_CONNECTION_STRING" in result.output
        assert "Traceback" not in result.output


# 9. Trust travels with the task, and is part of the model cache's key.
def test_trusted_types_reach_the_scorer_on_the_scheduled_path(
    service: BlobServiceClient, settings: StorageSettings
) -> None:
    publish_data_and_models(service, PAIRS[:2])
    x = aggregates_for(PAIRS[:1], windows=60)[list(DEFAULT_MODEL_FEATURES)].to_numpy()
    publish_model(
        service.get_container_client(str(Container.MODELS)),
        PAIRS[0],
        IsolationForest(n_estimators=5, random_state=0).fit(x),
        DEFAULT_MODEL_FEATURES,
    )
    with LocalBackend(settings, workers=1) as backend:
        refused = reconciler(service, backend).hour(HOUR, NOW)
        assert refused.record is not None and (refused.record.ok, refused.record.failed) == (1, 1)
        trusted = reconciler(service, backend, trust=Trust(types=("sklearn.tree._tree.Tree",))).hour(
            HOUR, NOW, force=True
        )
    assert trusted.record is not None and (trusted.record.ok, trusted.record.failed) == (2, 0)


def test_the_model_cache_never_serves_a_trusted_load_to_an_untrusted_call(service: BlobServiceClient) -> None:
    models = service.get_container_client(str(Container.MODELS))
    x = np.random.default_rng(0).normal(size=(60, 4))
    publish_model(models, PAIRS[0], IsolationForest(n_estimators=5).fit(x), DEFAULT_MODEL_FEATURES)
    cache = ModelCache()
    load_model(models, PAIRS[0], cache=cache, trusted_types=("sklearn.tree._tree.Tree",))
    with pytest.raises(ModelError, match="untrusted"):
        load_model(models, PAIRS[0], cache=cache)


# The reconcile scenario: missed triggers, late data, a duplicated blob; then a second run does nothing.
def test_one_reconcile_run_scores_every_hour_once_and_a_second_run_does_nothing(
    service: BlobServiceClient, settings: StorageSettings
) -> None:
    hours = [HOUR - timedelta(hours=i) for i in reversed(range(5))]  # 06 .. 10
    for hour in hours:
        publish_data_and_models(service, PAIRS, hour)
    aggregates = service.get_container_client(str(Container.AGGREGATES))
    settings_ = {"hours": 5}
    with LocalBackend(settings, workers=0) as backend:
        # The fourth hour was scored on time, then late data landed for it.
        early = reconciler(service, backend, **settings_).hour(hours[3], hours[3] + timedelta(hours=1, minutes=20))
        assert early.status is AttemptStatus.COMPLETED
        late = aggregates_for([Pair("late", "temp")], hours[3], windows=3)
        aggregates.upload_blob(f"{hours[3]:%Y/%m/%d/%H}/asa-late.parquet", to_parquet(late))
        publish_model(
            service.get_container_client(str(Container.MODELS)),
            Pair("late", "temp"),
            train_on(aggregates_for([Pair("late", "temp")], windows=40)),
            DEFAULT_MODEL_FEATURES,
        )
        # The fifth hour has the same aggregates twice (a stream job replay).
        frame = aggregates_for(PAIRS, hours[4])
        aggregates.upload_blob(f"{hours[4]:%Y/%m/%d/%H}/asa-replay.parquet", to_parquet(frame))

        first = reconciler(service, backend, **settings_).run(NOW)
        second = reconciler(service, backend, **settings_).run(NOW)
    assert [(r.hour, r.action, r.reason) for r in first] == [
        (hours[0], Action.SCORE, Reason.NEVER_SCORED),
        (hours[1], Action.SCORE, Reason.NEVER_SCORED),
        (hours[2], Action.SCORE, Reason.NEVER_SCORED),
        (hours[3], Action.SCORE, Reason.INPUTS_CHANGED),
        (hours[4], Action.SCORE, Reason.NEVER_SCORED),
    ]
    assert all(r.status is AttemptStatus.COMPLETED for r in first)
    assert [r.action for r in second] == [Action.SKIP] * 5
    for hour in hours:
        predictions = read_hour_predictions(service, hour)
        extra = 3 if hour == hours[3] else 0
        assert len(predictions) == len(PAIRS) * 12 + extra  # every window once, late rows included
        assert not predictions.duplicated(["device_id", "sensor", "window_end"]).any()
        state = read_state(service, hour).state
        assert state is not None and state.latest is not None and state.latest.job_id == state.current_job_id
    assert first[4].record is not None and first[4].record.input_issues["duplicate_rows"] == len(PAIRS) * 12


def test_two_reconcilers_at_once_score_each_hour_once(service: BlobServiceClient, settings: StorageSettings) -> None:
    hours = [HOUR - timedelta(hours=i) for i in reversed(range(3))]
    for hour in hours:
        publish_data_and_models(service, PAIRS[:4], hour)
    results: list[list[Any]] = []
    with LocalBackend(settings, workers=0) as one, LocalBackend(settings, workers=0) as two:
        threads = [
            threading.Thread(target=lambda b=b: results.append(reconciler(service, b, hours=3).run(NOW)))
            for b in (one, two)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    scored = [r for run in results for r in run if r.action is Action.SCORE]
    assert sorted(r.hour for r in scored) == hours  # each hour once, by one of the two
    for hour in hours:
        state = read_state(service, hour).state
        assert state is not None and [a.revision for a in state.attempts] == [1]
