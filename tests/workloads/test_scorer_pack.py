"""The scorer's pack path on real Azurite: a planned task reads its own rows and its shard's pack,
scores current entries in one pass, and every other pair with its own model, with equal results."""

from __future__ import annotations

import hashlib
import io
import pickle
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from azure.storage.blob import BlobServiceClient

from tests.workloads.helpers import HOUR, aggregates_for, publish_data_and_models, train_on
from workloads.common.aggregates import DEFAULT_MODEL_FEATURES
from workloads.common.fastpath import Scored, compile_model
from workloads.common.frames import read_predictions
from workloads.common.hour_inputs import InputReadError
from workloads.common.layout import Container, model_blob, pack_blob, prediction_blob
from workloads.common.manifest import TaskManifest
from workloads.common.model_metadata import ModelFormat, ModelMetadata, list_models
from workloads.common.model_pack import PackEntry, write_pack
from workloads.common.modelstore import publish_model
from workloads.common.pairs import Pair
from workloads.scorer import task as scorer_task
from workloads.scorer.task import score_task
from workloads.submitter.plan import JobPlan, plan_hour
from workloads.submitter.submit import write_manifests

PAIRS = [Pair(f"dev-{i:02d}", sensor) for i in range(6) for sensor in ("temp", "hum")]


def publish_pack(service: BlobServiceClient, shard: str, pairs: list[Pair]) -> None:
    """The pack a publisher would write: each pair's stored model, compiled, with its checksum."""
    models = service.get_container_client(str(Container.MODELS))
    listed = list_models(models)
    entries = []
    for pair in pairs:
        metadata = listed[pair]
        assert isinstance(metadata, ModelMetadata)
        compiled = compile_model(sio.loads(models.download_blob(model_blob(pair)).readall()))
        assert compiled is not None
        entries.append(PackEntry(pair.device_id, pair.sensor, metadata.sha256, metadata.features, compiled))
    models.upload_blob(pack_blob(shard), write_pack(entries), overwrite=True)


def planned(service: BlobServiceClient, shard_count: int = 1, chunk_size: int = 100) -> JobPlan:
    plan = plan_hour(service, "dev", HOUR, chunk_size, shard_count=shard_count)
    write_manifests(service, plan)
    return plan


def expected(service: BlobServiceClient, pair: Pair, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    model = sio.loads(service.get_container_client("models").download_blob(model_blob(pair)).readall())
    rows = frame[(frame.device_id == pair.device_id) & (frame.sensor == pair.sensor)].sort_values("window_end")
    x = rows[list(DEFAULT_MODEL_FEATURES)].to_numpy()
    return model.decision_function(x), model.predict(x) == -1


def assert_equal_to_sklearn(service: BlobServiceClient, job_id: str, pairs: list[Pair], frame: pd.DataFrame) -> None:
    got = read_predictions(service, HOUR, job_id).sort_values(["device_id", "sensor", "window_end"])
    assert set(zip(got.device_id, got.sensor, strict=True)) == {(p.device_id, p.sensor) for p in pairs}
    for pair in pairs:
        scores, flags = expected(service, pair, frame)
        mine = got[(got.device_id == pair.device_id) & (got.sensor == pair.sensor)]
        np.testing.assert_array_equal(mine["is_anomaly"].to_numpy(), flags)
        np.testing.assert_allclose(mine["score"].to_numpy(), scores, rtol=1e-9, atol=1e-9)


def test_a_current_pack_scores_every_pair_in_one_pass_like_sklearn(service: BlobServiceClient) -> None:
    frame = publish_data_and_models(service, PAIRS)
    plan = planned(service, shard_count=2)
    for task in plan.tasks:
        assert task.shard is not None
        publish_pack(service, task.shard, list(task.pairs))
    reports = [score_task(service, task) for task in plan.tasks]
    assert len(plan.tasks) == 2 and {task.shard for task in plan.tasks} == {"s00000-of-00002", "s00001-of-00002"}
    for report in reports:
        assert report.task.pack == "used" and report.task.model_pairs == 0
        assert report.task.pack_pairs == report.task.ok == report.task.pairs
        assert all(p.path == "pack" and p.rows == 12 for p in report.pairs)
    assert report.task.models_cached == 0  # no per-pair model was fetched at all
    assert_equal_to_sklearn(service, plan.job_id, PAIRS, frame)
    names = sorted(b.name for b in service.get_container_client("predictions").list_blobs())
    assert names == [prediction_blob(HOUR, plan.job_id, t.task_id) for t in plan.tasks]


def test_stale_and_missing_entries_fall_back_to_the_pairs_own_models(service: BlobServiceClient) -> None:
    frame = publish_data_and_models(service, PAIRS)
    publish_pack(service, "s00000-of-00001", PAIRS[1:])  # PAIRS[0] not in the pack
    models = service.get_container_client(str(Container.MODELS))
    retrained = publish_model(
        models, PAIRS[1], train_on(aggregates_for([PAIRS[1]], seed=5, windows=60)), DEFAULT_MODEL_FEATURES
    )  # replaced on its own after the pack was written: its entry is stale
    (task,) = planned(service).tasks
    report = score_task(service, task)
    by_pair = {Pair(p.device_id, p.sensor): p for p in report.pairs}
    assert by_pair[PAIRS[0]].path == "model" and by_pair[PAIRS[1]].path == "model"
    assert by_pair[PAIRS[1]].model_sha256 == retrained.sha256
    assert {p for p, log in by_pair.items() if log.path == "pack"} == set(PAIRS[2:])
    assert (report.task.pack_pairs, report.task.model_pairs, report.task.ok) == (10, 2, 12)
    assert_equal_to_sklearn(service, task.job_id, PAIRS, frame)


@pytest.mark.parametrize(("pack", "status"), [(None, "missing"), (b"PK\x03\x04 not a pack", "unreadable: PackError")])
def test_a_missing_or_corrupt_pack_costs_speed_not_results(
    service: BlobServiceClient, pack: bytes | None, status: str
) -> None:
    frame = publish_data_and_models(service, PAIRS)
    if pack is not None:
        service.get_container_client("models").upload_blob(pack_blob("s00000-of-00001"), pack)
    (task,) = planned(service).tasks
    report = score_task(service, task)
    assert (report.task.pack or "").startswith(status)
    assert (report.task.pack_pairs, report.task.model_pairs, report.task.ok) == (0, 12, 12)
    assert_equal_to_sklearn(service, task.job_id, PAIRS, frame)


def test_borderline_rows_are_left_to_the_estimator(service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = publish_data_and_models(service, PAIRS)
    publish_pack(service, "s00000-of-00001", PAIRS)
    real = scorer_task.score_many

    def one_borderline(models: Any, matrices: Any) -> list[Scored]:
        results = real(models, matrices)
        first = results[0]
        borderline = first.borderline.copy()
        borderline[0] = True
        results[0] = Scored(first.scores, first.flags, borderline, first.error_bound)
        return results

    monkeypatch.setattr(scorer_task, "score_many", one_borderline)
    (task,) = planned(service).tasks
    report = score_task(service, task)
    assert (report.task.pack_pairs, report.task.model_pairs) == (11, 1)
    assert_equal_to_sklearn(service, task.job_id, PAIRS, frame)


def test_pickled_models_never_take_the_pack_path(service: BlobServiceClient) -> None:
    publish_data_and_models(service, PAIRS[:2])
    publish_pack(service, "s00000-of-00001", PAIRS[:2])
    models = service.get_container_client(str(Container.MODELS))
    blob = models.get_blob_client(model_blob(PAIRS[0]))
    estimator = sio.loads(blob.download_blob().readall())
    data = pickle.dumps(estimator)
    metadata = ModelMetadata.from_blob_metadata(blob.get_blob_properties().metadata)
    metadata = metadata.model_copy(update={"format": ModelFormat.PICKLE, "sha256": hashlib.sha256(data).hexdigest()})
    blob.upload_blob(data, overwrite=True, metadata=metadata.to_blob_metadata())
    (task,) = planned(service).tasks
    assert str(PAIRS[0]) not in task.models  # the plan offers no checksum the pack could match
    by_pair = {Pair(p.device_id, p.sensor): p for p in score_task(service, task).pairs}
    assert by_pair[PAIRS[0]].reason == "untrusted_model" and by_pair[PAIRS[1]].path == "pack"


def test_a_task_reads_only_its_own_rows_and_fails_when_they_are_gone(service: BlobServiceClient) -> None:
    publish_data_and_models(service, PAIRS)
    plan = planned(service, shard_count=3, chunk_size=2)
    sizes = []
    logs = service.get_container_client("logs")
    for task in plan.tasks:
        assert task.inputs_blob is not None and len(task.pairs) <= 2
        rows = pd.read_parquet(io.BytesIO(logs.download_blob(task.inputs_blob).readall()))
        assert set(zip(rows.device_id, rows.sensor, strict=True)) == {(p.device_id, p.sensor) for p in task.pairs}
        sizes.append(len(rows))
    assert sum(sizes) == 12 * len(PAIRS)
    first = plan.tasks[0]
    assert first.inputs_blob is not None
    logs.delete_blob(first.inputs_blob)
    with pytest.raises(InputReadError, match=r"could not read 1 task input blob\(s\): logs/.*/inputs/task-00000"):
        score_task(service, first)


def test_a_retry_that_scores_nothing_leaves_no_earlier_rows(service: BlobServiceClient) -> None:
    publish_data_and_models(service, PAIRS[:2])
    (task,) = planned(service).tasks
    score_task(service, task)
    assert not read_predictions(service, HOUR, task.job_id).empty
    for pair in PAIRS[:2]:
        service.get_container_client("models").delete_blob(model_blob(pair))
    report = score_task(service, task)
    assert report.task.failed == 2 and read_predictions(service, HOUR, task.job_id).empty


def test_manifests_refuse_pairs_outside_their_shard_and_foreign_input_blobs() -> None:
    base: dict[str, Any] = {"job_id": "job-1", "task_id": "task-00000", "hour": HOUR, "pairs": [str(p) for p in PAIRS]}
    with pytest.raises(ValueError, match="not in shard s00001-of-00002"):
        TaskManifest(**base, shard="s00001-of-00002")
    with pytest.raises(ValueError, match="invalid inputs_blob"):
        TaskManifest(**base, inputs_blob="2026/11/25/10/other-job/inputs/task-00000.parquet")
    with pytest.raises(ValueError, match="invalid model checksum"):
        TaskManifest(**base, models={"zzz/temp": "0" * 64})
