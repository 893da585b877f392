from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from azure.storage.blob import BlobServiceClient

from tests.workloads.helpers import HOUR, aggregates_for, publish_data_and_models, train_on
from workloads.common.aggregates import DEFAULT_MODEL_FEATURES
from workloads.common.frames import read_hour_predictions
from workloads.common.hour_state import Action, Reason
from workloads.common.layout import Container, job_record_blob, manifest_blob, scored_marker_blob
from workloads.common.model_metadata import list_model_checksums
from workloads.common.modelstore import publish_model
from workloads.common.pairs import Pair
from workloads.common.shards import parse_shard_name, shard_of
from workloads.common.storage import StorageSettings
from workloads.submitter.local import LocalBackend
from workloads.submitter.plan import chunk, job_id_for, plan_hour
from workloads.submitter.reconcile import Reconciler, ReconcileSettings
from workloads.submitter.record import JobStatus, read_record
from workloads.submitter.submit import write_manifests

PAIRS = [Pair(f"dev-{d}", s) for d in range(5) for s in ("temp", "hum")]


def test_chunking_is_sorted_complete_and_deterministic() -> None:
    shuffled = list(reversed(PAIRS)) + PAIRS[:3]  # duplicates are scheduled once
    chunks = chunk(shuffled, 4)
    assert [len(c) for c in chunks] == [4, 4, 2]
    assert [p for c in chunks for p in c] == sorted(PAIRS)
    assert chunk(PAIRS, 4) == chunks
    assert chunk(PAIRS, 100) == [tuple(sorted(PAIRS))]
    assert chunk([], 3) == []
    with pytest.raises(ValueError, match="at least 1"):
        chunk(PAIRS, 0)


def test_job_ids_are_deterministic_and_valid_for_batch() -> None:
    assert job_id_for("dev", HOUR) == "score-dev-2026112510-r001"
    assert job_id_for("dev", HOUR, 12) == "score-dev-2026112510-r012"
    assert job_id_for("dev", HOUR + timedelta(minutes=59)) == job_id_for("dev", HOUR)
    assert job_id_for("prod", HOUR) != job_id_for("dev", HOUR)
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", job_id_for("a" * 31, HOUR))
    with pytest.raises(ValueError, match="invalid stack name"):
        job_id_for("Dev Stack", HOUR)


def test_plan_schedules_pairs_with_data_and_reports_silent_ones(service: BlobServiceClient) -> None:
    publish_data_and_models(service, PAIRS[:6])
    silent = Pair("quiet", "temp")
    publish_model(
        service.get_container_client(str(Container.MODELS)),
        silent,
        train_on(aggregates_for([silent])),
        DEFAULT_MODEL_FEATURES,
    )
    plan = plan_hour(service, "dev", HOUR, chunk_size=4)
    assert plan.job_id == "score-dev-2026112510-r001"
    assert [t.task_id for t in plan.tasks] == ["task-00000", "task-00001"]
    assert [p for t in plan.tasks for p in t.pairs] == sorted(PAIRS[:6])
    assert all(t.job_id == plan.job_id and t.hour == HOUR for t in plan.tasks)
    assert plan.silent_pairs == (silent,)
    assert plan_hour(service, "dev", HOUR + timedelta(hours=1), chunk_size=4).tasks == ()


NOW = HOUR + timedelta(hours=1, minutes=20)


def test_reconciling_twice_scores_once_and_force_replaces_the_hour(
    service: BlobServiceClient, settings: StorageSettings
) -> None:
    publish_data_and_models(service, PAIRS)
    with LocalBackend(settings, workers=0) as backend:
        reconciler = Reconciler(service, backend, ReconcileSettings(stack="dev", chunk_size=3))
        first = reconciler.hour(HOUR, NOW)
        assert (first.action, first.reason, first.status) == (Action.SCORE, Reason.NEVER_SCORED, JobStatus.COMPLETED)
        assert first.record is not None
        assert (first.record.tasks, first.record.pairs, first.record.ok) == (4, 10, 10)

        again = reconciler.hour(HOUR, NOW)
        assert again.action is Action.SKIP and "scored (revision 1)" in again.why

        forced = reconciler.hour(HOUR, NOW, force=True)
        assert (forced.reason, forced.job_id) == (Reason.FORCED, "score-dev-2026112510-r002")
    assert len(read_hour_predictions(service, HOUR)) == 10 * 12
    predictions = [b.name for b in service.get_container_client(str(Container.PREDICTIONS)).list_blobs()]
    assert len(predictions) == 4 and all("/score-dev-2026112510-r002/task-" in n for n in predictions)  # one per task
    record = read_record(service, HOUR, "score-dev-2026112510-r002")
    assert record is not None and record.status is JobStatus.COMPLETED and record.revision == 2
    logs = [b.name for b in service.get_container_client(str(Container.LOGS)).list_blobs()]
    assert job_record_blob(HOUR, "score-dev-2026112510-r001") in logs
    assert sum("/tasks/" in n for n in logs) == 8 and sum("/manifests/" in n for n in logs) == 8


def test_worker_processes_run_the_same_entry_point(service: BlobServiceClient, settings: StorageSettings) -> None:
    publish_data_and_models(service, PAIRS)
    with LocalBackend(settings, workers=2) as backend:
        result = Reconciler(service, backend, ReconcileSettings(stack="dev", chunk_size=5)).hour(HOUR, NOW)
    assert result.record is not None and result.status is JobStatus.COMPLETED
    assert (result.record.ok, result.record.failed) == (10, 0)


def test_a_task_that_cannot_run_fails_the_job_not_the_others(
    service: BlobServiceClient, settings: StorageSettings
) -> None:
    publish_data_and_models(service, PAIRS)
    plan = plan_hour(service, "dev", HOUR, chunk_size=5)
    with LocalBackend(settings, workers=0, max_task_retries=1) as backend:
        manifests = write_manifests(service, plan)
        missing = manifest_blob(HOUR, plan.job_id, "task-09999")
        manifests["task-00000"] = missing
        outcome = backend.submit(plan, manifests)
    assert outcome.finished and list(outcome.task_errors) == ["task-00000"]
    assert f"no manifest at logs/{missing}" in outcome.task_errors["task-00000"]


def test_tasks_never_span_shards_and_carry_the_listed_checksums(service: BlobServiceClient) -> None:
    pairs = [Pair(f"dev-{i:02d}", sensor) for i in range(20) for sensor in ("temp", "hum")]
    publish_data_and_models(service, pairs)
    listed = list_model_checksums(service.get_container_client(str(Container.MODELS)))
    plan = plan_hour(service, "dev", HOUR, chunk_size=3, shard_count=4)
    assert sorted(p for task in plan.tasks for p in task.pairs) == sorted(pairs)
    for task in plan.tasks:
        assert task.shard is not None and len(task.pairs) <= 3
        shard, count = parse_shard_name(task.shard)
        assert count == 4 and {shard_of(p.device_id, 4) for p in task.pairs} == {shard}
        assert task.models == {str(p): listed[p] for p in task.pairs}
    # Same inputs, same tasks: a retried plan cuts the hour the same way.
    again = plan_hour(service, "dev", HOUR, chunk_size=3, shard_count=4)
    assert [(t.shard, t.pairs) for t in again.tasks] == [(t.shard, t.pairs) for t in plan.tasks]


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
