"""Issue 7's reproductions, each against real Azurite (through the fault-injecting proxy where a fault
is needed): every hour scored exactly once, on complete data, and nothing lost without a trace.

Since issue 15 the planner only lists the hour's shard folders and each task reads, validates,
deduplicates and scores its own folder: the same guarantees hold with the work moved into the tasks
(a blob that cannot be read fails its task, so the revision fails and the hour stays due; a corrupt
blob is listed and the hour is ``partial``; every row read is accounted for in the record)."""

from __future__ import annotations

import json
import math
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from azure.storage.blob import BlobServiceClient
from typer.testing import CliRunner

from tests.faults import FaultProxy, Rule
from tests.workloads.helpers import (
    HOUR,
    OWN_TYPE,
    OwnDetector,
    aggregates_for,
    hour_manifests,
    publish_data_and_models,
    train_on,
)
from workloads.aggregator.publish import publish_aggregates, split_by_partition
from workloads.common.aggregates import DEFAULT_MODEL_FEATURES, empty_aggregates
from workloads.common.frames import read_hour_predictions, to_parquet
from workloads.common.hour_inputs import InputReadError, list_hour_inputs
from workloads.common.hour_state import Action, AttemptStatus, Reason, read_state
from workloads.common.layout import (
    Container,
    hour_prefix,
    local_aggregate_blob,
    manifest_blob,
    parse_aggregate_blob,
    prediction_blob,
)
from workloads.common.manifest import TaskManifest
from workloads.common.modelstore import ModelCache, ModelError, load_model, publish_model
from workloads.common.pairs import Pair
from workloads.common.shards import DEFAULT_SHARD_COUNT, partition_of, shard_name, shard_of
from workloads.common.storage import StorageSettings
from workloads.common.windows import SETTLE
from workloads.scorer.cli import app as scorer
from workloads.scorer.inputs import read_task_inputs
from workloads.scorer.task import score_task
from workloads.submitter.backend import JobOutcome
from workloads.submitter.cli import app as submitter
from workloads.submitter.local import LocalBackend
from workloads.submitter.plan import JobPlan, Trust, task_id_for
from workloads.submitter.reconcile import Reconciler, ReconcileSettings
from workloads.submitter.report import HourStatus, collect
from workloads.training.cli import app as trainer

runner = CliRunner()
PAIRS = [Pair(f"dev-{d}", s) for d in range(5) for s in ("temp", "hum")]
NOW = HOUR + timedelta(hours=1, minutes=20)
SHARDS = DEFAULT_SHARD_COUNT
AGGREGATE_GET = r"/aggregates/2026/11/25/10/.*\.parquet$"  # a task reading its folder (planning only lists)


def partition(device: str, hour: datetime = HOUR) -> str:
    return partition_of(device, hour, SHARDS)


def blob_of(device: str, hour: datetime = HOUR) -> str:
    """The local aggregator's blob holding the device's rows of the hour."""
    return local_aggregate_blob(partition(device, hour))


def folder_of(device: str) -> str:
    return shard_name(shard_of(device, SHARDS), SHARDS)


def device_in(shard: int, prefix: str = "dev", avoid: tuple[str, ...] = ()) -> str:
    """The first ``<prefix>-<n>`` whose device lies in ``shard``: tests choose shards by the real hash."""
    return next(d for n in range(10_000) if shard_of(d := f"{prefix}-{n}", SHARDS) == shard and d not in avoid)


def shard_task(device: str, job_id: str = "job-1") -> TaskManifest:
    """The manifest of the task that reads the device's shard folder of HOUR."""
    return TaskManifest(
        job_id=job_id,
        task_id="task-00000",
        hour=HOUR,
        shard_count=SHARDS,
        folder=folder_of(device),
        inputs=(blob_of(device),),
    )


def listed_folders(service: BlobServiceClient, hour: datetime) -> set[str | None]:
    """The folders under the hour that hold aggregate blobs, from a listing."""
    return {parse_aggregate_blob(b.name).folder for b in list_hour_inputs(service, hour)}  # type: ignore[union-attr]


def pair_keys(predictions: pd.DataFrame) -> set[str]:
    return set(predictions.device_id + "/" + predictions.sensor) if not predictions.empty else set()


def issue_rows(table: str) -> list[tuple[str, str]]:
    """(issue, detail) of each row of the report's "Inputs and tasks" table, cells wrapped over lines rejoined."""
    rows: list[list[str]] = []
    for line in table[table.index("Inputs and tasks") :].splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if not line.startswith("│") or len(cells) != 3:
            continue
        if cells[0]:
            rows.append(cells)
        else:  # a continuation line of the row above
            rows[-1] = [" ".join(filter(None, (old, new))) for old, new in zip(rows[-1], cells, strict=True)]
    return [(issue, detail) for _, issue, detail in rows]


@pytest.fixture
def faulty_service(service: BlobServiceClient, faulty_settings: StorageSettings) -> BlobServiceClient:
    """Empty platform containers, reached through the fault proxy (``faulty_settings`` is in the env)."""
    return faulty_settings.client()


def reconciler(service: BlobServiceClient, backend: Any, **kwargs: Any) -> Reconciler:
    return Reconciler(service, backend, ReconcileSettings(stack="dev", **kwargs))


class FaultsAfterPlanning(LocalBackend):
    """Local backend that arms a proxy rule when tasks start, so that only the tasks spend its ``times``."""

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
    rule = Rule(AGGREGATE_GET, times=3)  # the SDK's three attempts of the first task run all get 503
    with FaultsAfterPlanning(faulty_settings, fault_proxy, rule, max_task_retries=1) as backend:
        result = reconciler(service, backend).hour(HOUR, NOW)
    assert rule.hits == 3
    assert result.status is AttemptStatus.COMPLETED and result.record is not None
    assert (result.record.ok, result.record.no_data, result.record.task_errors) == (10, 0, {})
    assert len(read_hour_predictions(service, HOUR)) == len(PAIRS) * 12  # the retried task's rows are all there


def test_a_persistent_read_failure_fails_the_hour_which_stays_due(
    faulty_service: BlobServiceClient, faulty_settings: StorageSettings, fault_proxy: FaultProxy
) -> None:
    service = faulty_service
    publish_data_and_models(service, PAIRS)
    fault_proxy.add(Rule(AGGREGATE_GET))  # armed before planning: the plan only lists, so it still succeeds
    with LocalBackend(faulty_settings, workers=0, max_task_retries=1) as backend:
        failed = reconciler(service, backend).hour(HOUR, NOW)
    assert failed.status is AttemptStatus.FAILED and failed.record is not None
    blobs = sorted(blob_of(f"dev-{d}") for d in range(5))  # one shard folder per device: one task each
    assert failed.record.inputs == blobs and failed.record.tasks == 5
    assert failed.record.no_data == 0 and failed.record.ok == 0
    assert set(failed.record.task_errors) == {task_id_for(i) for i in range(5)}
    for index, blob in enumerate(blobs):  # tasks in folder order, each naming the blob it could not read
        assert f"could not read 1 aggregate blob(s): aggregates/{blob}" in failed.record.task_errors[task_id_for(index)]
    state = read_state(service, HOUR).state
    assert state is not None and state.latest is not None and state.current_job_id is None
    assert state.latest.error is not None and f"aggregates/{blobs[0]}" in state.latest.error
    assert read_hour_predictions(service, HOUR).empty  # a failed revision never becomes the hour's outputs
    assert collect(service, HOUR, NOW, SETTLE).status is HourStatus.FAILED
    fault_proxy.clear()
    with LocalBackend(faulty_settings, workers=0) as backend:
        retried = reconciler(service, backend).hour(HOUR, NOW)
    assert (retried.reason, retried.status, retried.job_id) == (
        Reason.RETRY_FAILED,
        AttemptStatus.COMPLETED,
        "score-dev-2026112510-r002",
    )
    assert retried.record is not None and retried.record.ok == 10


def test_a_task_that_cannot_read_writes_a_failed_log_and_raises(
    faulty_service: BlobServiceClient, faulty_settings: StorageSettings, fault_proxy: FaultProxy
) -> None:
    service = faulty_service
    publish_data_and_models(service, PAIRS[:2])
    fault_proxy.add(Rule(AGGREGATE_GET, fault="drop"))
    manifest = shard_task("dev-0")
    assert hour_manifests(service)[0].inputs == manifest.inputs  # the task the planner makes of this hour
    with pytest.raises(InputReadError, match=r"local-aggregator\.parquet"):
        score_task(service, manifest)
    name = "2026/11/25/10/job-1/tasks/task-00000.jsonl"
    log = service.get_container_client("logs").download_blob(name).readall()
    task = json.loads(log.decode().splitlines()[-1])
    assert task["error"].startswith(f"could not read 1 aggregate blob(s): aggregates/{blob_of('dev-0')}")
    assert (task["no_data"], task["pairs"], task["rows_read"]) == (0, 0, 0)


MODEL_GET = r"/models/dev-0/temp/model\.skops$"


def test_a_model_that_cannot_be_read_fails_the_task_not_the_pair(
    faulty_service: BlobServiceClient, faulty_settings: StorageSettings, fault_proxy: FaultProxy
) -> None:
    """A 503 on one model GET (after the SDK's retries) must not pass as a failed pair of a completed hour."""
    service = faulty_service
    publish_data_and_models(service, PAIRS[:2])
    fault_proxy.add(Rule(MODEL_GET))
    manifest = shard_task("dev-0")
    with pytest.raises(InputReadError, match=r"could not read 1 model blob\(s\): models/dev-0/temp/model\.skops"):
        score_task(service, manifest)
    log = service.get_container_client("logs").download_blob("2026/11/25/10/job-1/tasks/task-00000.jsonl").readall()
    task = json.loads(log.decode().splitlines()[-1])
    assert task["error"].startswith("could not read 1 model blob(s)") and task["ok"] == 0

    fault_proxy.clear()
    rule = Rule(MODEL_GET, times=3)  # every attempt of the first task run; its retry reads the model
    with FaultsAfterPlanning(faulty_settings, fault_proxy, rule, max_task_retries=1) as backend:
        result = reconciler(service, backend).hour(HOUR, NOW)
    assert rule.hits == 3 and result.status is AttemptStatus.COMPLETED and result.record is not None
    assert (result.record.ok, result.record.failed) == (2, 0)


# 2. Malformed ids are quarantined row by row; the rest of the hour is scored; the trainer skips them.
BAD_IDS = ["../x", "a/b", "..", "", None, "d" * 65]


def bad_rows(hour: datetime = HOUR) -> pd.DataFrame:
    bad = aggregates_for([Pair("z", "temp")] * len(BAD_IDS), hour, windows=1).astype({"device_id": object})
    bad["device_id"] = BAD_IDS
    return bad


def with_bad_rows(hour: datetime = HOUR) -> pd.DataFrame:
    return pd.concat([aggregates_for(PAIRS, hour), bad_rows(hour)], ignore_index=True)


def test_malformed_ids_are_quarantined_and_the_rest_is_scored(service: BlobServiceClient) -> None:
    publish_data_and_models(service, PAIRS)
    # A stream job blob of dev-0's folder that also holds six rows with malformed device ids.
    bad_blob = f"{partition('dev-0')}/asa-0001.parquet"
    mixed = pd.concat([aggregates_for(PAIRS[:1], windows=1), bad_rows()], ignore_index=True)
    service.get_container_client(str(Container.AGGREGATES)).upload_blob(bad_blob, to_parquet(mixed))
    result = runner.invoke(submitter, ["run", "--hour", "2026-11-25T10", "--stack", "dev", "--workers", "0"])
    assert result.exit_code == 0, result.output
    (hour,) = json.loads(result.stdout)
    assert hour["status"] == "completed" and hour["record"]["ok"] == 10
    assert hour["record"]["input_issues"]["quarantined_rows"] == {bad_blob: {"bad_device_id": 6}}
    assert hour["record"]["rows"]["quarantined"] == 6 and hour["record"]["unaccounted_rows"] == 0
    assert len(read_hour_predictions(service, HOUR)) == len(PAIRS) * 12  # its good row deduplicated, not doubled
    report = runner.invoke(submitter, ["report", "--hour", "2026-11-25T10"]).stdout
    assert ("quarantined rows", f"aggregates/{bad_blob}: 6 bad_device_id") in issue_rows(report)


def test_malformed_ids_the_aggregator_files_anywhere_are_quarantined_in_every_folder(
    service: BlobServiceClient, settings: StorageSettings
) -> None:
    """Malformed ids hash to shards like any other id: each folder's task quarantines its own."""
    publish_data_and_models(service, PAIRS)
    publish_aggregates(service, with_bad_rows())
    expected: dict[str, dict[str, int]] = {}
    for device in BAD_IDS:
        blob = local_aggregate_blob(partition_of(device, HOUR, SHARDS))
        expected.setdefault(blob, {"bad_device_id": 0})["bad_device_id"] += 1
    assert len(expected) > 1
    with LocalBackend(settings, workers=0) as backend:
        result = reconciler(service, backend).hour(HOUR, NOW)
    assert result.status is AttemptStatus.COMPLETED and result.record is not None and result.record.ok == 10
    assert result.record.input_issues["quarantined_rows"] == expected
    assert result.record.rows["quarantined"] == 6 and result.record.unaccounted_rows == 0


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
        assert empty.record.tasks == 0
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
    publish_data_and_models(service, PAIRS[:2])  # one device: the hour is one blob in one shard folder
    blob = blob_of("dev-0")
    assert [b.name for b in list_hour_inputs(service, HOUR)] == [blob]
    fault_proxy.add(Rule(AGGREGATE_GET))
    result = runner.invoke(submitter, ["run", "--hour", "2026-11-25T10", "--stack", "dev", "--workers", "0"])
    assert result.exit_code == 1
    assert "1 hour(s) failed" in result.output and "local-aggregator.parquet" in result.output
    (hour,) = json.loads(result.stdout)
    assert hour["status"] == "failed" and hour["record"]["status"] == "failed"
    assert list(hour["record"]["task_errors"]) == ["task-00000"]
    assert f"could not read 1 aggregate blob(s): aggregates/{blob}" in hour["record"]["task_errors"]["task-00000"]
    assert hour["record"]["ok"] == 0 and hour["record"]["no_data"] == 0
    # 7. The report shows the task's read error, in the table and in JSON.
    as_json = json.loads(runner.invoke(submitter, ["report", "--hour", "2026-11-25T10", "--json"]).stdout)[0]
    assert as_json["status"] == "failed" and list(as_json["task_errors"]) == ["task-00000"]
    assert f"aggregates/{blob}" in as_json["task_errors"]["task-00000"] and f"aggregates/{blob}" in as_json["error"]
    table = issue_rows(runner.invoke(submitter, ["report", "--hour", "2026-11-25T10"]).stdout)
    failed = [detail for issue, detail in table if issue == "task failed"]
    assert len(failed) == 1 and failed[0].startswith("task-00000: task failed: could not read 1 aggregate blob(s)")
    assert f"aggregates/{blob}" in failed[0].replace(" ", "") and "unable to receive requests" in failed[0]


@pytest.mark.parametrize("where", ["shard folder", "hour folder"])
def test_an_hour_scored_without_a_corrupt_blob_never_reports_plain_success(
    service: BlobServiceClient, where: str
) -> None:
    """A corrupt blob in a shard folder (as the stream job writes) or directly in the hour (the old layout)."""
    publish_data_and_models(service, PAIRS)
    folder = partition("dev-0") if where == "shard folder" else HOUR.strftime("%Y/%m/%d/%H")
    corrupt = f"{folder}/asa-0001.parquet"
    service.get_container_client(str(Container.AGGREGATES)).upload_blob(corrupt, b"PAR1 junk")
    args = ["run", "--hour", "2026-11-25T10", "--stack", "dev", "--workers", "0"]
    result = runner.invoke(submitter, args)
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert f"scored without 1 corrupt aggregate blob(s), their rows lost: aggregates/{corrupt}" in message
    (hour,) = json.loads(result.stdout)
    assert hour["status"] == "completed" and hour["record"]["ok"] == 10  # the rest of the hour is published
    assert list(hour["record"]["input_issues"]["corrupt_blobs"]) == [corrupt]
    summary = json.loads(runner.invoke(submitter, ["report", "--hour", "2026-11-25T10", "--json"]).stdout)[0]
    assert summary["status"] == "partial" and list(summary["corrupt_blobs"]) == [corrupt]
    assert read_state(service, HOUR).state.latest.corrupt_blobs == 1  # type: ignore[union-attr]
    assert len(read_hour_predictions(service, HOUR)) == len(PAIRS) * 12


# 4. Duplicates are dropped, conflicts resolved (newest blob wins) and reported.
def test_duplicate_blobs_and_conflicting_rows_do_not_double_predictions(
    service: BlobServiceClient, settings: StorageSettings
) -> None:
    frame = publish_data_and_models(service, PAIRS)
    aggregates = service.get_container_client(str(Container.AGGREGATES))
    for place, rows in split_by_partition(frame, SHARDS).items():  # a replay: every folder's blob once more
        aggregates.upload_blob(f"{place}/asa-replay.parquet", to_parquet(rows))
    newer = frame.iloc[:1].copy()
    newer["avg"] = newer["avg"] + 5.0
    # Written last (or in the same second with a later name, the documented tie-break): it wins.
    aggregates.upload_blob(f"{partition('dev-0')}/zz-asa-late.parquet", to_parquet(newer))
    (task,) = [m for m in hour_manifests(service) if m.folder == folder_of("dev-0")]
    read = read_task_inputs(service, task)  # what dev-0's task reads of its folder
    own = int((frame.device_id == "dev-0").sum())
    assert (read.rows, read.duplicates, read.conflicts, len(read.frame)) == (2 * own + 1, own, 1, own)
    key = (read.frame.device_id == "dev-0") & (read.frame.sensor == newer.sensor.iloc[0])
    winner = read.frame[key & (read.frame.window_end == newer.window_end.iloc[0])]
    assert list(winner["avg"]) == list(newer["avg"])
    with LocalBackend(settings, workers=0) as backend:
        result = reconciler(service, backend).hour(HOUR, NOW)
    assert result.record is not None and result.status is AttemptStatus.COMPLETED
    assert result.record.input_issues["duplicate_rows"] == len(frame)
    assert result.record.input_issues["conflicting_rows"] == 1
    assert (result.record.rows["read"], result.record.rows["scored"]) == (2 * len(frame) + 1, len(frame))
    predictions = read_hour_predictions(service, HOUR)
    assert len(predictions) == len(frame)
    assert not predictions.duplicated(["device_id", "sensor", "window_end"]).any()


# 5. A re-run replaces the hour completely; reports count only the latest revision.
def test_force_with_another_slicing_replaces_outputs_and_counts_once(
    service: BlobServiceClient, settings: StorageSettings
) -> None:
    publish_data_and_models(service, PAIRS)
    smallest = min(b.size for b in list_hour_inputs(service, HOUR))
    with LocalBackend(settings, workers=0) as backend:
        first = reconciler(service, backend).hour(HOUR, NOW)
        service.get_container_client(str(Container.MODELS)).delete_blob(f"{PAIRS[0]}/model.skops")
        # Every shard now too big for one task: each is split into slices (another task layout).
        sliced = reconciler(service, backend, max_task_bytes=math.ceil(smallest / 2))
        forced = sliced.hour(HOUR, NOW, force=True)
    assert first.record is not None and first.record.tasks == 5
    assert forced.record is not None and forced.record.tasks >= 2 * 5
    assert (forced.record.ok, forced.record.failed) == (9, 1)
    assert forced.record.rows["unaccounted"] == 0 and forced.record.rows["read"] == len(PAIRS) * 12
    predictions = read_hour_predictions(service, HOUR)
    assert len(predictions) == 9 * 12 and f"{PAIRS[0]}" not in pair_keys(predictions)
    names = {b.name for b in service.get_container_client(str(Container.PREDICTIONS)).list_blobs()}
    report = collect(service, HOUR, NOW, SETTLE)
    scored = {prediction_blob(HOUR, forced.record.job_id, t.task_id) for t in report.tasks if t.ok}
    assert len(scored) == 5 and names == scored  # r001's blobs are gone; r002 has one per shard with rows
    summary = json.loads(runner.invoke(submitter, ["report", "--hour", "2026-11-25T10", "--json"]).stdout)[0]
    assert (summary["pairs_ok"], summary["pairs_failed"], summary["revisions"]) == (9, 1, 2)


# 6. Identifiers are validated at every boundary; manifests only from their job's folder.
@pytest.mark.parametrize("bad", ["../x", "a/b", "..", "", "x" * 65])
def test_job_and_task_ids_cannot_steer_paths(bad: str) -> None:
    where = {"hour": HOUR, "shard_count": SHARDS, "folder": None, "inputs": ()}
    with pytest.raises(ValueError, match="invalid job id"):
        TaskManifest(job_id=bad, task_id="t", **where)
    with pytest.raises(ValueError, match="invalid task id"):
        TaskManifest(job_id="j", task_id=bad, **where)


@pytest.mark.parametrize("folder", ["../09", "s00001-of-00016/../..", ".", "s00001-of-00016/"])
def test_a_task_folder_cannot_steer_paths(folder: str) -> None:
    with pytest.raises(ValueError, match="invalid folder"):
        TaskManifest(job_id="j", task_id="t", hour=HOUR, shard_count=SHARDS, folder=folder, inputs=())


@pytest.mark.parametrize(
    "inputs",
    [
        ("2026/11/25/09/s00001-of-00016/local-aggregator.parquet",),  # another hour
        ("2026/11/25/10/s00002-of-00016/local-aggregator.parquet",),  # another folder
        ("2026/11/25/10/s00001-of-00016/../../09/x.parquet",),
        ("2026/11/25/10/s00001-of-00016/deeper/x.parquet",),
    ],
)
def test_a_task_reads_only_blobs_directly_in_its_folder(inputs: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="invalid aggregate blob"):
        TaskManifest(job_id="j", task_id="t", hour=HOUR, shard_count=SHARDS, folder="s00001-of-00016", inputs=inputs)


SHARD = "s00003-of-00016"


@pytest.mark.parametrize(
    "args",
    [
        ["--manifest", "../predictions/x.json"],
        ["--manifest", "2026/11/25/10/job/manifests/../../../models/x.json"],
        ["--hour", "2026-11-25T10", "--shard", SHARD, "--job-id", "../2026/11/25/09/job"],
        ["--hour", "2026-11-25T10", "--shard", SHARD, "--task-id", "../../x"],
        ["--hour", "2026-11-25T10", "--shard", "../../09/s00003-of-00016"],
    ],
)
def test_scorer_refuses_paths_outside_a_jobs_folder(settings: StorageSettings, args: list[str]) -> None:
    result = runner.invoke(scorer, args)
    assert result.exit_code == 2, result.output
    assert "invalid" in result.output


def test_a_manifest_must_match_its_location(service: BlobServiceClient) -> None:
    manifest = TaskManifest(
        job_id="other-job",
        task_id="task-00000",
        hour=HOUR - timedelta(hours=1),
        shard_count=SHARDS,
        folder=None,
        inputs=(),
    )
    name = manifest_blob(HOUR, "job-1", "task-00000")
    service.get_container_client("logs").upload_blob(name, manifest.model_dump_json())
    result = runner.invoke(scorer, ["--manifest", name])
    assert result.exit_code == 2 and "do not match its location" in " ".join(result.output.split())
    missing = runner.invoke(scorer, ["--manifest", manifest_blob(HOUR, "job-1", "task-00001")])
    assert missing.exit_code == 2
    assert f"no manifest at logs/{manifest_blob(HOUR, 'job-1', 'task-00001')}" in " ".join(missing.output.split())


def test_a_manifest_whose_inputs_leave_its_folder_is_refused(service: BlobServiceClient) -> None:
    """A manifest blob edited to read another folder's (or hour's) blobs is not run."""
    manifest = shard_task("dev-0", job_id="job-1")
    data = json.loads(manifest.model_dump_json())
    data["inputs"] = [f"{hour_prefix(HOUR - timedelta(hours=1))}{manifest.folder}/local-aggregator.parquet"]
    name = manifest_blob(HOUR, "job-1", "task-00000")
    service.get_container_client("logs").upload_blob(name, json.dumps(data))
    result = runner.invoke(scorer, ["--manifest", name])
    assert result.exit_code == 2 and "invalid aggregate blob" in " ".join(result.output.split())


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
    first = min(blob_of(f"dev-{d}", HOUR - timedelta(hours=2)) for d in range(5))  # errors are listed by name
    assert f"aggregates/{first}" in "".join(result.output.split())
    assert list(service.get_container_client(str(Container.MODELS)).list_blobs()) == []


# 8. Dropped connections in worker processes surface as text; bad connection strings exit 2.
def test_a_dropped_connection_in_a_worker_process_is_reported_as_text(
    faulty_service: BlobServiceClient, faulty_settings: StorageSettings, fault_proxy: FaultProxy
) -> None:
    service = faulty_service
    publish_data_and_models(service, PAIRS[:2])
    rule = Rule(AGGREGATE_GET, fault="drop")
    backend = FaultsAfterPlanning(faulty_settings, fault_proxy, rule, max_task_retries=0)
    backend._executor.shutdown()
    with LocalBackend(faulty_settings, workers=1, max_task_retries=0) as real:
        backend._executor = real._executor
        result = reconciler(service, backend).hour(HOUR, NOW)
    assert result.status is AttemptStatus.FAILED and result.record is not None
    error = result.record.task_errors["task-00000"]
    assert "pickle" not in error and f"could not read 1 aggregate blob(s): aggregates/{blob_of('dev-0')}" in error


def test_a_bad_connection_string_exits_2_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "nonsense")
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_URL", raising=False)
    for app, args in ((submitter, ["report"]), (scorer, ["--hour", "2026-11-25T10", "--shard", SHARD])):
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
        service.get_container_client(str(Container.MODELS)), PAIRS[0], OwnDetector().fit(x), DEFAULT_MODEL_FEATURES
    )
    with LocalBackend(settings, workers=1) as backend:
        refused = reconciler(service, backend).hour(HOUR, NOW)
        assert refused.record is not None and (refused.record.ok, refused.record.failed) == (1, 1)
        trust = Trust(types=(OWN_TYPE,))
        trusted = reconciler(service, backend, trust=trust).hour(HOUR, NOW, force=True)
    assert trusted.record is not None and (trusted.record.ok, trusted.record.failed) == (2, 0)
    report = collect(service, HOUR, NOW, SETTLE)
    assert [p.path for p in report.pairs] == ["model", "model"]  # both read with their own model, no pack
    manifest = service.get_container_client("logs").download_blob(trusted.record.manifests[0]).readall()
    assert TaskManifest.model_validate_json(manifest).trusted_types == trust.types


def test_the_model_cache_never_serves_a_trusted_load_to_an_untrusted_call(service: BlobServiceClient) -> None:
    models = service.get_container_client(str(Container.MODELS))
    x = np.random.default_rng(0).normal(size=(60, 4))
    publish_model(models, PAIRS[0], OwnDetector().fit(x), DEFAULT_MODEL_FEATURES)
    cache = ModelCache()
    load_model(models, PAIRS[0], cache=cache, trusted_types=(OWN_TYPE,))
    with pytest.raises(ModelError, match=f"--trusted-type {OWN_TYPE}") as refused:
        load_model(models, PAIRS[0], cache=cache)
    assert refused.value.reason == "untrusted_model"


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
        # The fourth hour was scored on time, then late data landed for it (in its own shard folder).
        early = reconciler(service, backend, **settings_).hour(hours[3], hours[3] + timedelta(hours=1, minutes=20))
        assert early.status is AttemptStatus.COMPLETED
        late = aggregates_for([Pair("late", "temp")], hours[3], windows=3)
        aggregates.upload_blob(f"{partition('late', hours[3])}/asa-late.parquet", to_parquet(late))
        publish_model(
            service.get_container_client(str(Container.MODELS)),
            Pair("late", "temp"),
            train_on(aggregates_for([Pair("late", "temp")], windows=40)),
            DEFAULT_MODEL_FEATURES,
        )
        # The fifth hour has the same aggregates twice (a stream job replay into every folder).
        frame = aggregates_for(PAIRS, hours[4])
        for place, rows in split_by_partition(frame, SHARDS).items():
            aggregates.upload_blob(f"{place}/asa-replay.parquet", to_parquet(rows))

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
        predictions = read_hour_predictions(service, hour)
        assert len(predictions) == 4 * 12 and not predictions.duplicated(["device_id", "sensor", "window_end"]).any()


# 10. Every row read is accounted for: the record's row account balances, with the numbers of a known input.
def balanced(rows: dict[str, int]) -> bool:
    placed = rows["duplicates"] + rows["conflicts"] + rows["scored"] + rows["non_finite"] + rows["failed_pairs"]
    return rows["read"] == rows["quarantined"] + rows["refiled"] + rows["own"] and rows["own"] == placed


def test_the_row_account_balances_with_exact_numbers(service: BlobServiceClient, settings: StorageSettings) -> None:
    frame = publish_data_and_models(service, PAIRS)  # 10 pairs x 12 windows, one blob per device's folder
    nomodel = device_in(shard_of("dev-0", SHARDS), prefix="nomodel")  # in dev-0's folder, without a model
    used = {shard_of(p.device_id, SHARDS) for p in PAIRS}
    stray = next(d for n in range(10_000) if shard_of(d := f"stray-{n}", SHARDS) not in used)  # another shard
    publish_model(
        service.get_container_client(str(Container.MODELS)),
        Pair(stray, "temp"),
        train_on(aggregates_for([Pair(stray, "temp")], windows=40)),
        DEFAULT_MODEL_FEATURES,
    )
    dev0 = frame[frame.device_id == "dev-0"]
    conflict = dev0[dev0.sensor == "hum"].iloc[:1].assign(avg=np.nan)  # newer, disagrees, and is not finite
    extra = pd.concat(
        [
            bad_rows(),  # 6 rows with malformed ids: quarantined
            dev0[dev0.sensor == "temp"],  # 12 exact duplicates of dev-0/temp
            conflict,  # 1 conflicting row that wins and is then dropped by the scorer as non-finite
            aggregates_for([Pair(nomodel, "temp")], windows=1),  # 1 row of a pair whose model is missing
            aggregates_for([Pair(stray, "temp")], windows=1),  # 1 row of another shard's device: refiled
        ],
        ignore_index=True,
    )
    # Later than the local aggregator's blob (or, in the same second, after it by name): its rows win conflicts.
    extra_blob = f"{partition('dev-0')}/replay-0001.parquet"
    service.get_container_client(str(Container.AGGREGATES)).upload_blob(extra_blob, to_parquet(extra))

    with LocalBackend(settings, workers=0) as backend:
        first = reconciler(service, backend).hour(HOUR, NOW)
        assert first.status is AttemptStatus.COMPLETED and first.record is not None
        record = first.record
        assert record.rows == {
            "read": 120 + 21,
            "quarantined": 6,
            "refiled": 1,
            "own": 134,
            "duplicates": 12,
            "conflicts": 1,
            "scored": 119,
            "non_finite": 1,
            "failed_pairs": 1,
            "unaccounted": 0,
        }
        assert balanced(record.rows) and record.unaccounted_rows == 0 and record.unaccounted == 0
        assert (record.pairs, record.ok, record.failed) == (11, 10, 1)
        assert record.input_issues == {
            "corrupt_blobs": {},
            "quarantined_rows": {extra_blob: {"bad_device_id": 6}},
            "refiled_rows": {partition(stray): 1},
            "duplicate_rows": 12,
            "conflicting_rows": 1,
        }
        predictions = read_hour_predictions(service, HOUR)
        assert len(predictions) == 119 and f"{stray}/temp" not in pair_keys(predictions)
        # The refiled row is a new blob in its own folder: the hour is stale, and its re-score reads it there.
        assert collect(service, HOUR, NOW, SETTLE).status is HourStatus.STALE
        second = reconciler(service, backend).hour(HOUR, NOW)
        third = reconciler(service, backend).hour(HOUR, NOW)
    assert (second.reason, second.status) == (Reason.INPUTS_CHANGED, AttemptStatus.COMPLETED)
    assert second.record is not None and second.record.tasks == 6
    assert second.record.rows == {
        "read": 120 + 21 + 1,  # the refiled blob's row is read in its folder; its source blob still holds it
        "quarantined": 6,
        "refiled": 1,  # found again, already written (the same name): no second copy
        "own": 135,
        "duplicates": 12,
        "conflicts": 1,
        "scored": 120,
        "non_finite": 1,
        "failed_pairs": 1,
        "unaccounted": 0,
    }
    assert balanced(second.record.rows) and (second.record.ok, second.record.failed) == (11, 1)
    predictions = read_hour_predictions(service, HOUR)
    assert len(predictions) == 120 and not predictions.duplicated(["device_id", "sensor", "window_end"]).any()
    assert (predictions.device_id == stray).sum() == 1  # scored once, in its own folder
    assert third.action is Action.SKIP  # refiling again wrote nothing: the inputs are unchanged


# 11. Shards come and go: an hour's tasks are its shard folders, whatever the other hours have.
def test_shards_that_come_and_go(service: BlobServiceClient, settings: StorageSettings) -> None:
    hour_a, hour_b = HOUR - timedelta(hours=1), HOUR
    s1, s2, s3, s5 = (device_in(shard) for shard in (1, 2, 3, 5))
    publish_data_and_models(service, [Pair(s1, "temp"), Pair(s2, "temp")], hour_a)
    publish_data_and_models(service, [Pair(s2, "temp"), Pair(s3, "temp")], hour_b)
    # A folder that exists but holds only an empty Parquet file (a writer that flushed no rows).
    empty = f"{hour_prefix(hour_b)}{shard_name(4, SHARDS)}/asa-0000.parquet"
    service.get_container_client(str(Container.AGGREGATES)).upload_blob(empty, to_parquet(empty_aggregates()))
    folders = {hour_a: {shard_name(1, SHARDS), shard_name(2, SHARDS)}}
    folders[hour_b] = {shard_name(n, SHARDS) for n in (2, 3, 4)}
    devices = {hour_a: {s1, s2}, hour_b: {s2, s3}}

    def check(results: list[Any], scored: set[datetime], now: datetime) -> None:
        assert {r.hour for r in results if r.action is Action.SCORE} == scored
        assert all(r.status is AttemptStatus.COMPLETED for r in results if r.action is Action.SCORE)
        for hour in (hour_a, hour_b):
            assert listed_folders(service, hour) == folders[hour]
            report = collect(service, hour, now, SETTLE)
            assert report.status is HourStatus.SCORED and report.record is not None
            assert sorted(str(t.folder) for t in report.tasks) == sorted(folders[hour])  # one task per shard folder
            assert report.record.tasks == report.record.shards == len(folders[hour])
            assert balanced(report.record.rows) and report.record.rows["unaccounted"] == 0
            predictions = read_hour_predictions(service, hour)
            assert set(predictions.device_id) == devices[hour] and len(predictions) == 12 * len(devices[hour])
            for task in report.tasks:
                assert task.pairs == (0 if task.folder == shard_name(4, SHARDS) else 1)

    now = NOW
    with LocalBackend(settings, workers=0) as backend:
        check(reconciler(service, backend, hours=2).run(now), {hour_a, hour_b}, now)

        # A new shard appears in hour B after it was scored: B is stale, A is not; the re-score covers it.
        publish_data_and_models(service, [Pair(s5, "temp")], hour_b)
        assert collect(service, hour_b, now, SETTLE).status is HourStatus.STALE
        assert collect(service, hour_a, now, SETTLE).status is HourStatus.SCORED
        folders[hour_b].add(shard_name(5, SHARDS))
        devices[hour_b].add(s5)
        now += timedelta(minutes=10)
        came = reconciler(service, backend, hours=2).run(now)
        assert [(r.action, r.reason) for r in came] == [(Action.SKIP, None), (Action.SCORE, Reason.INPUTS_CHANGED)]
        check(came, {hour_b}, now)

        # A shard goes (its blob deleted): the re-score has no task for it and its predictions are gone.
        service.get_container_client(str(Container.AGGREGATES)).delete_blob(blob_of(s3, hour_b))
        folders[hour_b].discard(shard_name(3, SHARDS))
        devices[hour_b].discard(s3)
        now += timedelta(minutes=10)
        check(reconciler(service, backend, hours=2).run(now), {hour_b}, now)
    state = read_state(service, hour_b).state
    assert state is not None and [a.revision for a in state.attempts] == [1, 2, 3]
