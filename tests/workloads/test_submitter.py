from __future__ import annotations

import json
import math
import re
from datetime import timedelta

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient
from pydantic import ValidationError

from tests.faults import FaultProxy, Rule
from tests.workloads.helpers import (
    HOUR,
    aggregates_for,
    hour_manifests,
    pair_logs,
    publish_data_and_models,
    train_on,
)
from workloads.aggregator.publish import publish_aggregates
from workloads.common.aggregates import DEFAULT_MODEL_FEATURES
from workloads.common.frames import read_hour_predictions, to_parquet
from workloads.common.hour_inputs import InputBlob, list_hour_inputs
from workloads.common.hour_state import Action, Reason
from workloads.common.layout import (
    Container,
    hour_prefix,
    job_record_blob,
    local_aggregate_blob,
    manifest_blob,
    scored_marker_blob,
)
from workloads.common.manifest import MAX_SLICES, TaskManifest
from workloads.common.model_metadata import ModelMetadata, list_models
from workloads.common.modelstore import publish_model
from workloads.common.pairs import Pair
from workloads.common.runlog import PairStatus
from workloads.common.shards import DEFAULT_SHARD_COUNT, partition_of, shard_name, shard_of, slice_of
from workloads.common.storage import StorageSettings
from workloads.scorer.task import score_task
from workloads.submitter.local import LocalBackend
from workloads.submitter.plan import job_id_for, plan_hour
from workloads.submitter.reconcile import Reconciler, ReconcileSettings
from workloads.submitter.record import JobStatus, read_record
from workloads.submitter.submit import write_manifests
from workloads.training.packs import rebuild_packs, update_packs

PAIRS = [Pair(f"dev-{d}", s) for d in range(5) for s in ("temp", "hum")]
COUNT = DEFAULT_SHARD_COUNT
PREFIX = hour_prefix(HOUR)


def shard_of_pair(pair: Pair, count: int = COUNT) -> str:
    return shard_name(shard_of(pair.device_id, count), count)


def shards_of(pairs: list[Pair], count: int = COUNT) -> list[str]:
    """The shard folders the pairs' rows land in, in shard order."""
    return sorted({shard_of_pair(p, count) for p in pairs})


def pairs_in(pairs: list[Pair], folder: str | None) -> list[Pair]:
    return [p for p in pairs if shard_of_pair(p) == folder]


def blob(name: str, size: int = 100, etag: str = "0x1") -> InputBlob:
    return InputBlob(name, etag, size)


def test_the_pairs_spread_over_several_shards() -> None:
    """What the tests below rely on: PAIRS land in 5 shards, so plans have several tasks."""
    assert len(shards_of(PAIRS)) == 5


def test_job_ids_are_deterministic_and_valid_for_batch() -> None:
    assert job_id_for("dev", HOUR) == "score-dev-2026112510-r001"
    assert job_id_for("dev", HOUR, 12) == "score-dev-2026112510-r012"
    assert job_id_for("dev", HOUR + timedelta(minutes=59)) == job_id_for("dev", HOUR)
    assert job_id_for("prod", HOUR) != job_id_for("dev", HOUR)
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", job_id_for("a" * 31, HOUR))
    with pytest.raises(ValueError, match="invalid stack name"):
        job_id_for("Dev Stack", HOUR)


def test_plan_makes_one_task_per_shard_folder_in_shard_order(service: BlobServiceClient) -> None:
    publish_data_and_models(service, PAIRS)
    plan = plan_hour(service, "dev", HOUR + timedelta(minutes=30), shard_count=COUNT, revision=2)
    folders = shards_of(PAIRS)
    assert (plan.job_id, plan.hour, plan.shards) == ("score-dev-2026112510-r002", HOUR, len(folders))
    assert [t.task_id for t in plan.tasks] == [f"task-{i:05d}" for i in range(len(folders))]
    assert [t.folder for t in plan.tasks] == [t.shard for t in plan.tasks] == folders
    for task in plan.tasks:
        assert (task.job_id, task.hour, task.shard_count) == (plan.job_id, HOUR, COUNT)
        assert (task.slice_index, task.slices) == (0, 1)
        assert task.inputs == (local_aggregate_blob(f"{PREFIX}{task.folder}"),)  # its own folder's blob, only
    assert [b.name for b in plan.inputs] == [n for t in plan.tasks for n in t.inputs]
    # The same listing, the same plan: a retried plan cuts the hour the same way, under the same job id.
    assert plan_hour(service, "dev", HOUR, shard_count=COUNT, revision=2) == plan
    assert plan_hour(service, "dev", HOUR + timedelta(hours=1), shard_count=COUNT).tasks == ()


def test_a_large_shard_is_split_into_as_many_slices_as_its_bytes_need_and_no_more_than_the_cap(
    service: BlobServiceClient,
) -> None:
    s3, s5, s9 = (f"{PREFIX}{shard_name(i, COUNT)}/" for i in (3, 5, 9))
    listed = [
        blob(f"{s3}a.parquet", 100),
        blob(f"{s3}b.parquet", 150),  # 250 bytes: 3 slices of at most 100
        blob(f"{s5}a.parquet", 200),  # exactly 2 slices' worth
        blob(f"{s9}a.parquet", 40),  # fits one task
    ]
    plan = plan_hour(service, "dev", HOUR, shard_count=COUNT, max_task_bytes=100, inputs=listed)
    assert [(t.folder, t.slice_index, t.slices) for t in plan.tasks] == [
        (shard_name(3, COUNT), 0, 3),
        (shard_name(3, COUNT), 1, 3),
        (shard_name(3, COUNT), 2, 3),
        (shard_name(5, COUNT), 0, 2),
        (shard_name(5, COUNT), 1, 2),
        (shard_name(9, COUNT), 0, 1),
    ]
    assert [t.task_id for t in plan.tasks] == [f"task-{i:05d}" for i in range(6)]
    assert [t.inputs for t in plan.tasks[:3]] == [(f"{s3}a.parquet", f"{s3}b.parquet")] * 3  # every slice reads all
    assert plan.shards == 3
    # A huge shard gets at most MAX_SLICES tasks.
    huge = plan_hour(service, "dev", HOUR, shard_count=COUNT, max_task_bytes=1, inputs=[blob(f"{s3}a.parquet", 10**9)])
    assert len(huge.tasks) == MAX_SLICES and {t.slices for t in huge.tasks} == {MAX_SLICES}
    with pytest.raises(ValueError, match="at least 1"):
        plan_hour(service, "dev", HOUR, shard_count=COUNT, max_task_bytes=0, inputs=listed)


def test_the_slices_of_a_shard_score_each_of_its_pairs_exactly_once(
    service: BlobServiceClient, settings: StorageSettings
) -> None:
    pairs = [Pair(f"dev-{i:02d}", s) for i in range(20) for s in ("temp", "hum")]
    publish_data_and_models(service, pairs)
    sizes = {b.name: b.size for b in list_hour_inputs(service, HOUR)}
    biggest = max(sizes.values())
    max_task_bytes = math.ceil(biggest / 3)  # the largest shard gets 3 slices
    plan = plan_hour(service, "dev", HOUR, shard_count=COUNT, max_task_bytes=max_task_bytes)
    assert {t.folder for t in plan.tasks} == set(shards_of(pairs))
    for task in plan.tasks:
        assert task.slices == math.ceil(sum(sizes[n] for n in task.inputs) / max_task_bytes)
    assert max(t.slices for t in plan.tasks) == 3

    reports = [score_task(service, manifest) for manifest in plan.tasks]
    lines = pair_logs(reports)  # raises if two tasks scored one pair
    assert set(lines) == set(pairs) and all(line.status is PairStatus.OK for line in lines.values())
    for manifest, report in zip(plan.tasks, reports, strict=True):
        for line in report.pairs:
            assert shard_of_pair(Pair(line.device_id, line.sensor)) == manifest.folder
            assert slice_of(line.device_id, COUNT, manifest.slices) == manifest.slice_index
        # The blobs' rows are counted once per folder: by its first slice.
        assert report.task.rows_read == (12 * len(pairs_in(pairs, manifest.folder)) if manifest.slice_index == 0 else 0)

    with LocalBackend(settings, workers=0) as backend:
        reconcile = ReconcileSettings(stack="dev", max_task_bytes=max_task_bytes)
        result = Reconciler(service, backend, reconcile).hour(HOUR, NOW)
    assert result.record is not None and result.status is JobStatus.COMPLETED
    assert (result.record.tasks, result.record.pairs, result.record.ok) == (len(plan.tasks), 40, 40)
    assert result.record.rows["read"] == result.record.rows["scored"] == 40 * 12
    assert result.record.unaccounted_rows == 0
    assert len(read_hour_predictions(service, HOUR)) == 40 * 12


def test_legacy_blobs_and_folders_of_another_shard_count_each_get_a_refile_task(service: BlobServiceClient) -> None:
    four, sixteen = shard_name(1, 4), shard_name(1, COUNT)
    listed = [
        blob(f"{PREFIX}{sixteen}/a.parquet", 250),
        blob(f"{PREFIX}{four}/a.parquet", 10**6),
        blob(f"{PREFIX}processing-time.parquet", 10**6),
        blob(f"{PREFIX}writer-chose/a.parquet", 10**6),
    ]
    plan = plan_hour(service, "dev", HOUR, shard_count=COUNT, max_task_bytes=100, inputs=listed)
    # However big they are, folders that are no shard of the count are not sliced: their rows are all refiled.
    assert [(t.folder, t.shard, t.slice_index, t.slices, t.inputs) for t in plan.tasks] == [
        (None, None, 0, 1, (f"{PREFIX}processing-time.parquet",)),
        (four, None, 0, 1, (f"{PREFIX}{four}/a.parquet",)),
        *[(sixteen, sixteen, i, 3, (f"{PREFIX}{sixteen}/a.parquet",)) for i in range(3)],
        ("writer-chose", None, 0, 1, (f"{PREFIX}writer-chose/a.parquet",)),
    ]
    assert plan.shards == 1


def test_a_refile_task_scores_nothing_and_moves_every_row_to_its_own_folder(service: BlobServiceClient) -> None:
    publish_data_and_models(service, PAIRS[:2])  # dev-0: one shard folder of the current count
    aggregates = service.get_container_client(str(Container.AGGREGATES))
    legacy, other = PAIRS[2:4], PAIRS[4:6]  # dev-1 and dev-2
    aggregates.upload_blob(f"{PREFIX}processing-time.parquet", to_parquet(aggregates_for(legacy)))
    four = shard_name(shard_of("dev-2", 4), 4)
    aggregates.upload_blob(f"{PREFIX}{four}/old-count.parquet", to_parquet(aggregates_for(other)))
    plan = plan_hour(service, "dev", HOUR, shard_count=COUNT)
    assert [(t.folder, t.shard) for t in plan.tasks] == [
        (None, None),
        (four, None),
        (shard_of_pair(PAIRS[0]), shard_of_pair(PAIRS[0])),
    ]
    for task, pairs in zip(plan.tasks[:2], (legacy, other), strict=True):
        report = score_task(service, task)
        assert report.pairs == [] and report.task.error is None
        target = partition_of(pairs[0].device_id, HOUR, COUNT)
        assert (report.task.rows_read, report.task.refiled) == (24, {target: 24})
        assert len(list(aggregates.list_blobs(name_starts_with=f"{target}/refiled-"))) == 1


def test_a_blob_outside_the_hour_is_refused(service: BlobServiceClient) -> None:
    folder = shard_name(3, COUNT)
    for name in (
        f"2026/11/25/11/{folder}/a.parquet",  # the next hour
        f"{folder}/a.parquet",  # no hour at all
        f"{PREFIX}{folder}/a.json",  # not an aggregate blob
    ):
        with pytest.raises(ValueError, match="is not an aggregate blob of hour 2026-11-25T10"):
            plan_hour(
                service, "dev", HOUR, shard_count=COUNT, inputs=[blob(f"{PREFIX}{folder}/ok.parquet"), blob(name)]
            )
    # A manifest cannot name a blob outside its own folder either.
    task = hour_manifests(service, HOUR, inputs=[blob(f"{PREFIX}{folder}/ok.parquet")])[0]
    for name in (
        f"{PREFIX}{shard_name(4, COUNT)}/a.parquet",
        f"{PREFIX}{folder}/deeper/a.parquet",
        f"{PREFIX}a.parquet",
    ):
        with pytest.raises(ValidationError, match="invalid aggregate blob"):
            TaskManifest.model_validate({**task.model_dump(), "inputs": (name,)})


def test_planning_downloads_no_blob_and_lists_no_model(
    service: BlobServiceClient, faulty_settings: StorageSettings, fault_proxy: FaultProxy
) -> None:
    publish_data_and_models(service, PAIRS)
    expected = plan_hour(service, "dev", HOUR, shard_count=COUNT)
    refused = fault_proxy.add(Rule(r"/models", method=None, status=403, error_code="AuthorizationPermissionMismatch"))
    client = faulty_settings.client()
    with pytest.raises(HttpResponseError):  # the models really are out of reach through this client
        list_models(client.get_container_client(str(Container.MODELS)))
    refused.hits, before = 0, len(fault_proxy.log)

    plan = plan_hour(client, "dev", HOUR, shard_count=COUNT)
    assert plan == expected and len(plan.tasks) == 5
    asked = fault_proxy.log[before:]
    assert refused.hits == 0
    # One listing of the aggregates container (one page here), nothing else: no blob read, no model listed.
    assert [(e.method, e.path, e.status) for e in asked] == [("GET", "/devstoreaccount1/aggregates", 200)]


def test_the_fingerprint_changes_with_any_added_or_replaced_blob(service: BlobServiceClient) -> None:
    publish_data_and_models(service, PAIRS)
    aggregates = service.get_container_client(str(Container.AGGREGATES))
    seen = [plan_hour(service, "dev", HOUR, shard_count=COUNT).fingerprint]
    assert plan_hour(service, "dev", HOUR, shard_count=COUNT).fingerprint == seen[0]  # same blobs, same print

    first = local_aggregate_blob(partition_of("dev-0", HOUR, COUNT))
    data = aggregates.download_blob(first).readall()
    aggregates.upload_blob(first, data, overwrite=True)  # replaced by the very same bytes: a new version
    seen.append(plan_hour(service, "dev", HOUR, shard_count=COUNT).fingerprint)
    publish_aggregates(service, aggregates_for(PAIRS[:2], seed=5))  # replaced with other rows
    seen.append(plan_hour(service, "dev", HOUR, shard_count=COUNT).fingerprint)
    aggregates.upload_blob(f"{partition_of('dev-0', HOUR, COUNT)}/late.parquet", data)  # added beside it
    seen.append(plan_hour(service, "dev", HOUR, shard_count=COUNT).fingerprint)
    aggregates.upload_blob(f"{PREFIX}legacy.parquet", data)  # added outside every shard folder
    seen.append(plan_hour(service, "dev", HOUR, shard_count=COUNT).fingerprint)
    aggregates.delete_blob(f"{partition_of('dev-0', HOUR, COUNT)}/late.parquet")  # one removed
    seen.append(plan_hour(service, "dev", HOUR, shard_count=COUNT).fingerprint)
    assert len(set(seen)) == len(seen)


def test_no_data_counts_pack_pairs_without_rows_in_the_shards_that_have_data(
    service: BlobServiceClient, settings: StorageSettings
) -> None:
    publish_data_and_models(service, PAIRS[:6])
    models = service.get_container_client(str(Container.MODELS))
    quiet_sensor, quiet_device = Pair("dev-0", "quiet"), Pair("quiet", "temp")
    assert shard_of_pair(quiet_device) not in shards_of(PAIRS[:6])
    for silent in (quiet_sensor, quiet_device):
        publish_model(models, silent, train_on(aggregates_for([silent])), DEFAULT_MODEL_FEATURES)
    rebuild_packs(models, COUNT)
    with LocalBackend(settings, workers=0) as backend:
        result = Reconciler(service, backend, ReconcileSettings(stack="dev")).hour(HOUR, NOW)
    assert result.record is not None and result.status is JobStatus.COMPLETED
    assert (result.record.pairs, result.record.ok) == (6, 6)
    # The plan lists no models: a silent pair is found by the task of its shard, from the shard's pack. A shard
    # without rows this hour has no task, so its silent pairs are not counted.
    assert result.record.no_data == 1


NOW = HOUR + timedelta(hours=1, minutes=20)


def test_reconciling_twice_scores_once_and_force_replaces_the_hour(
    service: BlobServiceClient, settings: StorageSettings
) -> None:
    publish_data_and_models(service, PAIRS)
    tasks = len(shards_of(PAIRS))
    with LocalBackend(settings, workers=0) as backend:
        reconciler = Reconciler(service, backend, ReconcileSettings(stack="dev"))
        first = reconciler.hour(HOUR, NOW)
        assert (first.action, first.reason, first.status) == (Action.SCORE, Reason.NEVER_SCORED, JobStatus.COMPLETED)
        assert first.record is not None
        assert (first.record.tasks, first.record.shards, first.record.pairs, first.record.ok) == (tasks, tasks, 10, 10)

        again = reconciler.hour(HOUR, NOW)
        assert again.action is Action.SKIP and "scored (revision 1)" in again.why

        forced = reconciler.hour(HOUR, NOW, force=True)
        assert (forced.reason, forced.job_id) == (Reason.FORCED, "score-dev-2026112510-r002")
    assert len(read_hour_predictions(service, HOUR)) == 10 * 12
    predictions = [b.name for b in service.get_container_client(str(Container.PREDICTIONS)).list_blobs()]
    assert len(predictions) == tasks and all("/score-dev-2026112510-r002/task-" in n for n in predictions)  # one a task
    record = read_record(service, HOUR, "score-dev-2026112510-r002")
    assert record is not None and record.status is JobStatus.COMPLETED and record.revision == 2
    logs = [b.name for b in service.get_container_client(str(Container.LOGS)).list_blobs()]
    assert job_record_blob(HOUR, "score-dev-2026112510-r001") in logs
    assert sum("/tasks/" in n for n in logs) == 2 * tasks and sum("/manifests/" in n for n in logs) == 2 * tasks


def test_worker_processes_run_the_same_entry_point(service: BlobServiceClient, settings: StorageSettings) -> None:
    publish_data_and_models(service, PAIRS)
    with LocalBackend(settings, workers=2) as backend:
        result = Reconciler(service, backend, ReconcileSettings(stack="dev")).hour(HOUR, NOW)
    assert result.record is not None and result.status is JobStatus.COMPLETED
    assert (result.record.ok, result.record.failed) == (10, 0)


def test_a_task_that_cannot_run_fails_the_job_not_the_others(
    service: BlobServiceClient, settings: StorageSettings
) -> None:
    publish_data_and_models(service, PAIRS)
    plan = plan_hour(service, "dev", HOUR, shard_count=COUNT)
    assert len(plan.tasks) > 1
    with LocalBackend(settings, workers=0, max_task_retries=1) as backend:
        manifests = write_manifests(service, plan)
        missing = manifest_blob(HOUR, plan.job_id, "task-09999")
        manifests["task-00000"] = missing
        outcome = backend.submit(plan, manifests)
    assert outcome.finished and list(outcome.task_errors) == ["task-00000"]
    assert f"no manifest at logs/{missing}" in outcome.task_errors["task-00000"]


def test_each_task_scores_only_its_own_shard_with_the_checksum_of_the_model_it_used(
    service: BlobServiceClient,
) -> None:
    """The plan carries no model checksums any more (it lists no models): each pair line names the checksum of
    the model that scored it, the pack's entry (fast path) or the model file (per-pair path), and both are the
    published model's."""
    pairs = [Pair(f"dev-{i:02d}", sensor) for i in range(20) for sensor in ("temp", "hum")]
    publish_data_and_models(service, pairs)
    models = service.get_container_client(str(Container.MODELS))
    listed = {p: m.sha256 for p, m in list_models(models).items() if isinstance(m, ModelMetadata)}
    rebuild_packs(models, COUNT)
    unpacked = pairs[1::2]  # their entries retired: they are scored from their own model files
    update_packs(models, COUNT, dict.fromkeys(unpacked))

    plan = plan_hour(service, "dev", HOUR, shard_count=COUNT)
    paths: dict[Pair, str | None] = {}
    for task in plan.tasks:
        for line in score_task(service, task).pairs:
            pair = Pair(line.device_id, line.sensor)
            assert shard_of_pair(pair) == task.shard  # never a pair of another shard
            assert line.status is PairStatus.OK and line.model_sha256 == listed[pair]
            paths[pair] = line.path
    assert set(paths) == set(pairs)
    assert {paths[p] for p in unpacked} == {"model"}
    assert {p for p, path in paths.items() if path == "pack"} <= set(pairs[::2]) - set(unpacked)
    assert "pack" in paths.values()
    # Same inputs, same tasks: a retried plan cuts the hour the same way.
    assert plan_hour(service, "dev", HOUR, shard_count=COUNT).tasks == plan.tasks


def test_a_completed_revision_leaves_the_marker_the_hour_alert_watches(
    service: BlobServiceClient, settings: StorageSettings
) -> None:
    logs = service.get_container_client(str(Container.LOGS))
    publish_data_and_models(service, PAIRS[:2])
    models = service.get_container_client(str(Container.MODELS))
    with LocalBackend(settings, workers=0, max_task_retries=0) as backend:
        models.delete_blob(f"{PAIRS[0]}/model.skops")  # a failed pair still completes the hour
        scored = Reconciler(service, backend, ReconcileSettings(stack="dev")).hour(HOUR, NOW)
    assert scored.record is not None and scored.record.status is JobStatus.COMPLETED
    marker = json.loads(logs.download_blob(scored_marker_blob(HOUR)).readall())
    assert marker["job_id"] == scored.record.job_id and marker["pairs"] == 2
    assert not logs.get_blob_client(scored_marker_blob(HOUR + timedelta(hours=1))).exists()
