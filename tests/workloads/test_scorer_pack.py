"""The scorer's pack path on real Azurite: a planned task reads its own shard folder and its shard's pack,
scores the pairs with an entry in one pass, and every other pair with its own model, with equal results."""

from __future__ import annotations

import hashlib
import pickle
import re
from collections import defaultdict
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from azure.storage.blob import BlobServiceClient
from sklearn.ensemble import IsolationForest

from tests.faults import FaultProxy
from tests.workloads.helpers import HOUR, aggregates_for, pair_logs, publish_data_and_models
from workloads.aggregator.publish import publish_aggregates
from workloads.common.aggregates import DEFAULT_MODEL_FEATURES
from workloads.common.fastpath import Scored, compile_model, score_many
from workloads.common.forest_kernel import ForestModel
from workloads.common.frames import read_predictions
from workloads.common.hour_inputs import InputReadError, list_hour_inputs
from workloads.common.layout import Container, hour_prefix, model_blob, pack_blob, prediction_blob, run_log_blob
from workloads.common.manifest import TaskManifest
from workloads.common.model_metadata import ModelFormat, ModelMetadata, list_models
from workloads.common.model_pack import PackEntry, read_pack, write_pack
from workloads.common.modelstore import publish_model
from workloads.common.pairs import Pair
from workloads.common.runlog import parse_jsonl
from workloads.common.shards import DEFAULT_SHARD_COUNT, shard_name, shard_of
from workloads.common.storage import StorageSettings
from workloads.common.vetted_types import trusted_for_loading
from workloads.scorer import task as scorer_task
from workloads.scorer.task import TaskReport, score_task
from workloads.submitter.plan import JobPlan, plan_hour
from workloads.submitter.submit import write_manifests
from workloads.training.packs import rebuild_packs
from workloads.training.train import train_and_publish

PAIRS = [Pair(f"dev-{i:02d}", sensor) for i in range(6) for sensor in ("temp", "hum")]
COUNT = DEFAULT_SHARD_COUNT


def shard(pair: Pair) -> str:
    return shard_name(shard_of(pair.device_id, COUNT), COUNT)


def publish_packs(service: BlobServiceClient, pairs: list[Pair]) -> dict[Pair, PackEntry]:
    """The packs a publisher would write: each pair's stored model, compiled, with its checksum, in the
    pack of its shard."""
    models = service.get_container_client(str(Container.MODELS))
    listed = list_models(models)
    entries: dict[Pair, PackEntry] = {}
    by_shard: dict[str, list[PackEntry]] = defaultdict(list)
    for pair in pairs:
        metadata = listed[pair]
        assert isinstance(metadata, ModelMetadata)
        compiled = compile_model(sio.loads(models.download_blob(model_blob(pair)).readall()))
        assert compiled is not None
        entries[pair] = PackEntry(pair.device_id, pair.sensor, metadata.sha256, metadata.features, compiled)
        by_shard[shard(pair)].append(entries[pair])
    for name, packed in by_shard.items():
        models.upload_blob(pack_blob(name), write_pack(packed), overwrite=True)
    return entries


def planned(service: BlobServiceClient, **plan: Any) -> JobPlan:
    done = plan_hour(service, "dev", HOUR, shard_count=COUNT, **plan)
    write_manifests(service, done)
    return done


def score_plan(service: BlobServiceClient, plan: JobPlan) -> list[TaskReport]:
    return [score_task(service, task) for task in plan.tasks]


def totals(reports: list[TaskReport], *keys: str) -> tuple[int, ...]:
    return tuple(sum(getattr(r.task, key) for r in reports) for key in keys)


def expected(service: BlobServiceClient, pair: Pair, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    data = service.get_container_client("models").download_blob(model_blob(pair)).readall()
    model = sio.loads(data, trusted=trusted_for_loading())
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
    publish_packs(service, PAIRS)
    plan = planned(service)
    reports = score_plan(service, plan)
    assert len(plan.tasks) == plan.shards == len({shard(p) for p in PAIRS}) > 1
    assert {task.shard for task in plan.tasks} == {shard(p) for p in PAIRS}
    for task, report in zip(plan.tasks, reports, strict=True):
        assert report.task.pack == "used" and report.task.model_pairs == 0
        assert report.task.pack_pairs == report.task.ok == report.task.pairs > 0
        assert all(
            p.path == "pack" and p.rows == 12 and shard(Pair(p.device_id, p.sensor)) == task.shard for p in report.pairs
        )
        assert report.task.models_cached == 0  # no per-pair model was fetched at all
    assert set(pair_logs(reports)) == set(PAIRS)
    assert_equal_to_sklearn(service, plan.job_id, PAIRS, frame)
    names = sorted(b.name for b in service.get_container_client("predictions").list_blobs())
    assert names == sorted(prediction_blob(HOUR, plan.job_id, t.task_id) for t in plan.tasks)


@pytest.fixture
def faulty_service(service: BlobServiceClient, faulty_settings: StorageSettings) -> BlobServiceClient:
    """Empty platform containers, reached through the fault proxy, which logs every request."""
    return faulty_settings.client()


def test_a_pair_without_an_entry_takes_its_own_model_and_pack_pairs_carry_their_entrys_checksum(
    service: BlobServiceClient, faulty_service: BlobServiceClient, fault_proxy: FaultProxy
) -> None:
    frame = publish_data_and_models(service, PAIRS)
    entries = publish_packs(service, PAIRS[1:])  # PAIRS[0] not in its pack
    # The trainer replaces PAIRS[2]'s model: it takes the old entry out of the pack before it replaces the
    # model file and puts the new one in after, so no pack holds an entry older than its model file.
    history = aggregates_for([PAIRS[2]], HOUR - timedelta(hours=6), windows=72, seed=5)
    publish_aggregates(service, history)
    retrained = train_and_publish(service, HOUR - timedelta(hours=6), HOUR, pairs=[PAIRS[2]]).published[PAIRS[2]]
    assert retrained != entries[PAIRS[2]].model_sha256
    packed = read_pack(service.get_container_client("models").download_blob(pack_blob(shard(PAIRS[2]))).readall())
    assert packed[(PAIRS[2].device_id, PAIRS[2].sensor)].model_sha256 == retrained
    sha = {pair: entry.model_sha256 for pair, entry in entries.items()} | {PAIRS[2]: retrained}
    own = list_models(service.get_container_client("models"))[PAIRS[0]]
    assert isinstance(own, ModelMetadata)
    sha[PAIRS[0]] = own.sha256

    plan = planned(service)
    fault_proxy.clear()
    reports = [score_task(faulty_service, task) for task in plan.tasks]
    by_pair = pair_logs(reports)
    assert by_pair[PAIRS[0]].path == "model"
    assert {p for p, log in by_pair.items() if log.path == "pack"} == set(PAIRS[1:])
    assert totals(reports, "pack_pairs", "model_pairs", "ok") == (11, 1, 12)
    # The checksum a pack pair is recorded with is its entry's: no model file of a pack pair is read.
    assert {p: log.model_sha256 for p, log in by_pair.items()} == sha
    read = {e.path.split("/models/", 1)[1] for e in fault_proxy.requests(r"/models/dev-")}
    assert read == {model_blob(PAIRS[0])}
    got = read_predictions(service, HOUR, plan.job_id)
    assert {(d, s): set(g.model_sha256) for (d, s), g in got.groupby(["device_id", "sensor"])} == {
        (p.device_id, p.sensor): {sha[p]} for p in PAIRS
    }
    assert_equal_to_sklearn(service, plan.job_id, PAIRS, frame)  # PAIRS[2] scored with its new model


@pytest.mark.parametrize(("pack", "status"), [(None, "missing"), (b"PK\x03\x04 not a pack", "unreadable: PackError")])
def test_a_missing_or_corrupt_pack_costs_speed_not_results(
    service: BlobServiceClient, pack: bytes | None, status: str
) -> None:
    frame = publish_data_and_models(service, PAIRS)
    plan = planned(service)
    if pack is not None:
        for task in plan.tasks:
            assert task.shard is not None
            service.get_container_client("models").upload_blob(pack_blob(task.shard), pack)
    reports = score_plan(service, plan)
    assert all((r.task.pack or "").startswith(status) for r in reports)
    assert totals(reports, "pack_pairs", "model_pairs", "ok") == (0, 12, 12)
    assert_equal_to_sklearn(service, plan.job_id, PAIRS, frame)


def test_borderline_rows_are_left_to_the_estimator(service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = publish_data_and_models(service, PAIRS)
    publish_packs(service, PAIRS)
    real = score_many
    calls: list[int] = []

    def one_borderline(models: Any, matrices: Any) -> list[Scored]:
        results = real(models, matrices)
        calls.append(len(results))
        if len(calls) == 1:  # the first pair of the first task has one borderline row
            first = results[0]
            borderline = first.borderline.copy()
            borderline[0] = True
            results[0] = Scored(first.scores, first.flags, borderline, first.error_bound)
        return results

    monkeypatch.setattr(scorer_task, "score_many", one_borderline)
    plan = planned(service)
    reports = score_plan(service, plan)
    assert totals(reports, "pack_pairs", "model_pairs") == (11, 1)
    assert reports[0].task.model_pairs == 1 and reports[0].pairs[0].path == "model"  # pairs come sorted
    assert_equal_to_sklearn(service, plan.job_id, PAIRS, frame)


def test_pickled_models_never_get_a_pack_entry(service: BlobServiceClient) -> None:
    """Was: the plan offered no checksum a pickled model's entry could match. The plan lists no models any
    more and the scorer trusts the pack, so the guarantee is that packs are compiled from skops files only."""
    publish_data_and_models(service, PAIRS[:2])
    models = service.get_container_client(str(Container.MODELS))
    blob = models.get_blob_client(model_blob(PAIRS[0]))
    estimator = sio.loads(blob.download_blob().readall())
    data = pickle.dumps(estimator)
    metadata = ModelMetadata.from_blob_metadata(blob.get_blob_properties().metadata)
    metadata = metadata.model_copy(update={"format": ModelFormat.PICKLE, "sha256": hashlib.sha256(data).hexdigest()})
    blob.upload_blob(data, overwrite=True, metadata=metadata.to_blob_metadata())
    rebuilt = rebuild_packs(models, COUNT)
    assert "pickle" in rebuilt.skipped[PAIRS[0]]
    assert set(read_pack(models.download_blob(pack_blob(shard(PAIRS[0]))).readall())) == {
        (PAIRS[1].device_id, PAIRS[1].sensor)
    }
    (task,) = planned(service).tasks
    by_pair = {Pair(p.device_id, p.sensor): p for p in score_task(service, task).pairs}
    assert by_pair[PAIRS[0]].reason == "untrusted_model" and by_pair[PAIRS[1]].path == "pack"


def test_forest_and_svm_pairs_share_a_pack_and_forests_score_exactly_like_sklearn(service: BlobServiceClient) -> None:
    """Half the pairs get an IsolationForest (the iforest family's default); ``trainer pack`` puts both
    families in the packs, every pair takes the pack path and the forests' scores are sklearn's, bit for bit."""
    frame = publish_data_and_models(service, PAIRS)
    history = aggregates_for(PAIRS, HOUR - timedelta(hours=6), windows=72, seed=1)
    models = service.get_container_client(str(Container.MODELS))
    forests: dict[Pair, Any] = {}
    for pair in PAIRS[::2]:
        rows = history[(history.device_id == pair.device_id) & (history.sensor == pair.sensor)]
        forests[pair] = IsolationForest(random_state=0).fit(rows[list(DEFAULT_MODEL_FEATURES)].to_numpy())
        publish_model(models, pair, forests[pair], DEFAULT_MODEL_FEATURES, family="iforest")
    rebuilt = rebuild_packs(models, COUNT)
    assert not rebuilt.skipped
    packed = {
        key: e for s in rebuilt.written for key, e in read_pack(models.download_blob(pack_blob(s)).readall()).items()
    }
    assert {key for key, e in packed.items() if isinstance(e.model, ForestModel)} == {
        (p.device_id, p.sensor) for p in forests
    }
    plan = planned(service)
    reports = score_plan(service, plan)
    assert totals(reports, "pack_pairs", "model_pairs", "ok") == (12, 0, 12)
    assert_equal_to_sklearn(service, plan.job_id, PAIRS, frame)
    got = read_predictions(service, HOUR, plan.job_id)
    for pair, forest in forests.items():
        mine = got[(got.device_id == pair.device_id) & (got.sensor == pair.sensor)].sort_values("window_end")
        rows = frame[(frame.device_id == pair.device_id) & (frame.sensor == pair.sensor)].sort_values("window_end")
        want = forest.decision_function(rows[list(DEFAULT_MODEL_FEATURES)].to_numpy())
        assert mine["score"].to_numpy().tobytes() == want.tobytes()


def aggregate_reads(fault_proxy: FaultProxy) -> list[str]:
    """The aggregate blobs downloaded through the proxy since it was last cleared (listings excluded)."""
    return sorted(e.path.split("/aggregates/", 1)[1] for e in fault_proxy.requests(r"/aggregates/.", "GET"))


def test_a_task_reads_only_its_own_shard_folder_and_fails_when_one_of_its_blobs_is_gone(
    service: BlobServiceClient, faulty_service: BlobServiceClient, fault_proxy: FaultProxy
) -> None:
    publish_data_and_models(service, PAIRS)
    listed = [b.name for b in list_hour_inputs(service, HOUR)]
    plan = planned(service)
    assert len(plan.tasks) > 2
    assert sorted(name for task in plan.tasks for name in task.inputs) == sorted(listed)  # each blob in one task
    logs = service.get_container_client("logs")
    for task in plan.tasks:
        assert task.inputs and all(name.startswith(f"{hour_prefix(HOUR)}{task.folder}/") for name in task.inputs)
        fault_proxy.clear()
        report = score_task(faulty_service, task)
        assert aggregate_reads(fault_proxy) == sorted(task.inputs)  # its own folder's blobs, nothing else
        mine = [p for p in PAIRS if shard(p) == task.shard]
        assert sorted((p.device_id, p.sensor) for p in report.pairs) == sorted((p.device_id, p.sensor) for p in mine)
        logged, _ = parse_jsonl(logs.download_blob(report.log_blob).readall())
        assert logged is not None
        assert (logged.aggregate_blobs, logged.rows_read, logged.rows) == (
            len(task.inputs),
            12 * len(mine),
            12 * len(mine),
        )

    first, second = plan.tasks[:2]
    aggregates = service.get_container_client(str(Container.AGGREGATES))
    for name in second.inputs:  # another shard's blob gone: none of the first task's business
        aggregates.delete_blob(name)
    assert score_task(service, first).task.ok == len([p for p in PAIRS if shard(p) == first.shard])
    (gone,) = first.inputs
    aggregates.delete_blob(gone)
    with pytest.raises(InputReadError, match=rf"could not read 1 aggregate blob\(s\): aggregates/{re.escape(gone)}: "):
        score_task(service, first)
    failed, pairs = parse_jsonl(logs.download_blob(run_log_blob(HOUR, first.job_id, first.task_id)).readall())
    assert failed is not None and pairs == []
    assert failed.error is not None and gone in failed.error and failed.ok == 0


def test_a_retry_that_scores_nothing_leaves_no_earlier_rows(service: BlobServiceClient) -> None:
    publish_data_and_models(service, PAIRS[:2])
    (task,) = planned(service).tasks
    score_task(service, task)
    assert not read_predictions(service, HOUR, task.job_id).empty
    for pair in PAIRS[:2]:
        service.get_container_client("models").delete_blob(model_blob(pair))
    report = score_task(service, task)
    assert report.task.failed == 2 and read_predictions(service, HOUR, task.job_id).empty


def test_manifests_refuse_inputs_outside_their_folder_and_inconsistent_slices() -> None:
    folder = shard(PAIRS[0])
    mine = f"{hour_prefix(HOUR)}{folder}/asa-0.parquet"
    base: dict[str, Any] = {"job_id": "job-1", "task_id": "task-00000", "hour": HOUR, "shard_count": COUNT}
    TaskManifest(**base, folder=folder, inputs=(mine,), slice_index=2, slices=3)  # what is allowed
    other_shard = shard_name((shard_of(PAIRS[0].device_id, COUNT) + 1) % COUNT, COUNT)
    for foreign in (
        f"{hour_prefix(HOUR)}{other_shard}/asa-0.parquet",  # another shard's folder
        f"{hour_prefix(HOUR + timedelta(hours=1))}{folder}/asa-0.parquet",  # another hour's
        f"{hour_prefix(HOUR)}asa-0.parquet",  # the hour folder itself
        f"{hour_prefix(HOUR)}{folder}/deeper/asa-0.parquet",  # not directly in the folder
        f"{hour_prefix(HOUR)}{folder}/asa-0.json",  # not an aggregate blob
        f"{hour_prefix(HOUR)}{folder}/../{other_shard}/asa-0.parquet",
    ):
        with pytest.raises(ValueError, match="invalid aggregate blob"):
            TaskManifest(**base, folder=folder, inputs=(mine, foreign))
    with pytest.raises(ValueError, match="invalid aggregate blob"):  # a legacy task reads the hour folder only
        TaskManifest(**base, folder=None, inputs=(mine,))
    for bad in ("..", f"{folder}/..", f"../{folder}", "", f"{folder}//x", "."):
        with pytest.raises(ValueError, match="invalid folder"):
            TaskManifest(**base, folder=bad, inputs=())
    with pytest.raises(ValueError, match="slice 3 of 3"):
        TaskManifest(**base, folder=folder, inputs=(mine,), slice_index=3, slices=3)
    for not_a_shard in (None, "legacy", shard_name(0, 4)):  # nothing to slice where nothing is scored
        with pytest.raises(ValueError, match="only a shard's folder is sliced"):
            TaskManifest(**base, folder=not_a_shard, inputs=(), slice_index=0, slices=2)
