from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from azure.storage.blob import BlobServiceClient

from tests.workloads.helpers import (
    HOUR,
    aggregates_for,
    hour_manifests,
    pair_logs,
    publish_data_and_models,
    score_hour,
    train_on,
)
from workloads.aggregator.publish import publish_aggregates
from workloads.common.aggregates import DEFAULT_MODEL_FEATURES
from workloads.common.frames import from_parquet, read_predictions, to_parquet
from workloads.common.hour_inputs import list_hour_inputs
from workloads.common.layout import Container, model_blob, prediction_blob, run_log_blob
from workloads.common.manifest import TaskManifest
from workloads.common.modelstore import ModelCache, load_model, publish_model
from workloads.common.pairs import Pair
from workloads.common.runlog import PairStatus, parse_jsonl
from workloads.common.shards import DEFAULT_SHARD_COUNT, partition_of, shard_name, shard_of, slice_of
from workloads.scorer.task import TaskReport, score_task
from workloads.training.packs import pack_entry, rebuild_packs, update_packs

GOOD = [Pair("a", "x"), Pair("b", "x")]
MISSING, CORRUPT, ALL_NAN, SOME_NAN, WRONG_FEATURES, SILENT = (
    Pair("c", "x"),
    Pair("d", "x"),
    Pair("e", "x"),
    Pair("f", "x"),
    Pair("g", "x"),
    Pair("h", "x"),
)


def blob_names(service: BlobServiceClient, container: Container) -> list[str]:
    return sorted(b.name for b in service.get_container_client(str(container)).list_blobs())


def score_all(service: BlobServiceClient, manifests: list[TaskManifest], **kwargs: Any) -> list[TaskReport]:
    return [score_task(service, manifest, **kwargs) for manifest in manifests]


def pack_only(service: BlobServiceClient, pairs: list[Pair]) -> None:
    """Put just these pairs' models into their shards' packs (the trainer's update, without training)."""
    models = service.get_container_client(str(Container.MODELS))
    changes = {}
    for pair in pairs:
        loaded = load_model(models, pair)
        changes[pair] = pack_entry(pair, loaded.estimator, loaded.metadata.sha256, loaded.metadata.features)
    update_packs(models, DEFAULT_SHARD_COUNT, changes)


@pytest.fixture
def mixed_hour(service: BlobServiceClient) -> list[Pair]:
    """An hour with good pairs and one of each kind of bad pair, spread over several shards' folders."""
    pairs = [*GOOD, CORRUPT, ALL_NAN, SOME_NAN, WRONG_FEATURES, SILENT]
    publish_data_and_models(service, pairs)
    aggregates = service.get_container_client(str(Container.AGGREGATES))
    for listed in aggregates.list_blobs():  # SILENT has a model but no rows this hour
        aggregates.delete_blob(listed.name)
    data = aggregates_for([p for p in pairs if p != SILENT] + [MISSING])
    data.loc[data.device_id == "e", "avg"] = np.nan
    data.loc[(data.device_id == "f") & (data.index % 4 == 0), "stdev"] = np.inf
    publish_aggregates(service, data)
    models = service.get_container_client(str(Container.MODELS))
    blob = models.get_blob_client(model_blob(CORRUPT))
    blob.upload_blob(b"\x00corrupt", overwrite=True, metadata=blob.get_blob_properties().metadata)
    four_features = train_on(aggregates_for([WRONG_FEATURES]))
    publish_model(models, WRONG_FEATURES, four_features, ("avg", "min", "max"))  # metadata says 3
    pack_only(service, [SILENT])  # its shard's pack knows it, so its task counts it as silent
    return [*pairs, MISSING]


def test_bad_pairs_are_logged_and_skipped_while_good_ones_are_scored(
    service: BlobServiceClient, mixed_hour: list[Pair]
) -> None:
    manifests = hour_manifests(service)
    assert len({m.folder for m in manifests}) == len(manifests) > 1
    reports = score_all(service, manifests)
    by_pair = pair_logs(reports)
    assert {p for p, log in by_pair.items() if log.status is PairStatus.OK} == {*GOOD, SOME_NAN}
    assert by_pair[MISSING].reason == "missing_model"
    assert by_pair[CORRUPT].reason == "corrupt_model"
    assert by_pair[ALL_NAN].reason == "bad_data"
    assert by_pair[WRONG_FEATURES].reason == "bad_features"
    assert "expects 4 features" in (by_pair[WRONG_FEATURES].error or "")
    # A pair with a model but no rows gets no line (nothing to score is no failure); its task counts it.
    assert SILENT not in by_pair and set(by_pair) == set(mixed_hour) - {SILENT}
    (silent_task,) = [r for r in reports if r.task.no_data]
    assert silent_task.task.folder == shard_name(shard_of(SILENT.device_id, 16), 16) and silent_task.task.no_data == 1
    assert by_pair[SOME_NAN].dropped_rows == 3 and by_pair[SOME_NAN].rows == 9
    totals = [sum(getattr(r.task, key) for r in reports) for key in ("ok", "failed", "no_data")]
    assert totals == [3, 4, 1]
    assert all(p.timings_ms["total"] > 0 for p in by_pair.values())

    # One blob per task that scored something, holding only its scored pairs: a failed pair leaves
    # nothing half-written, and a task whose pairs all failed writes no blob at all.
    job_id = manifests[0].job_id
    scoring = [r for r in reports if r.task.ok]
    assert any(r.task.failed for r in scoring)  # a task with good and failed pairs (a and e share a shard)
    assert blob_names(service, Container.PREDICTIONS) == sorted(
        prediction_blob(HOUR, job_id, r.task.task_id) for r in scoring
    )
    predictions = service.get_container_client(str(Container.PREDICTIONS))
    for report in scoring:
        rows = from_parquet(predictions.download_blob(prediction_blob(HOUR, job_id, report.task.task_id)).readall())
        ok = {(p.device_id, p.sensor) for p in report.pairs if p.status is PairStatus.OK}
        assert set(zip(rows.device_id, rows.sensor, strict=True)) == ok
    written = read_predictions(service, HOUR, job_id)
    assert set(zip(written.device_id, written.sensor, strict=True)) == {
        (p.device_id, p.sensor) for p in [*GOOD, SOME_NAN]
    }
    assert len(written) == 12 + 12 + 9

    # Each task's run log holds exactly the same lines, one per pair plus the task line.
    logs = service.get_container_client(str(Container.LOGS))
    for report in reports:
        assert report.log_blob == run_log_blob(HOUR, job_id, report.task.task_id)
        data = logs.download_blob(report.log_blob).readall()
        task, pairs = parse_jsonl(data)
        assert task == report.task and pairs == report.pairs
        assert len(data.decode().splitlines()) == len(report.pairs) + 1
    assert sum(len(r.pairs) for r in reports) == len(mixed_hour) - 1


def test_predictions_equal_sklearn_predict_on_the_same_rows(service: BlobServiceClient) -> None:
    expected = publish_data_and_models(service, GOOD)
    reports = score_hour(service)
    models = service.get_container_client(str(Container.MODELS))
    written = read_predictions(service, HOUR, reports[0].task.job_id)
    for pair in GOOD:
        model = sio.loads(models.download_blob(model_blob(pair)).readall())
        rows = expected[(expected.device_id == pair.device_id) & (expected.sensor == pair.sensor)].sort_values(
            "window_end"
        )
        x = rows[list(DEFAULT_MODEL_FEATURES)].to_numpy()
        got = written[(written.device_id == pair.device_id) & (written.sensor == pair.sensor)]
        assert list(got["window_end"]) == list(rows["window_end"])
        np.testing.assert_array_equal(got["is_anomaly"].to_numpy(), model.predict(x) == -1)
        np.testing.assert_array_equal(got["score"].to_numpy(), model.decision_function(x))


def test_rerunning_an_hour_replaces_predictions(service: BlobServiceClient) -> None:
    publish_data_and_models(service, GOOD)
    manifests = hour_manifests(service)
    score_all(service, manifests)
    job_id = manifests[0].job_id
    first = read_predictions(service, HOUR, job_id)
    # Retrain one model, re-run the same job with every shard sliced: more tasks (a superset of the first
    # run's ids, the extra slices without pairs), new content, no duplicates, nothing left of the first run.
    models = service.get_container_client(str(Container.MODELS))
    new = publish_model(
        models, GOOD[0], train_on(aggregates_for([GOOD[0]], seed=9, windows=40)), DEFAULT_MODEL_FEATURES
    )
    smallest = min(b.size for b in list_hour_inputs(service, HOUR))
    sliced = hour_manifests(service, max_task_bytes=max(1, smallest // 2))
    assert {m.job_id for m in sliced} == {job_id} and all(m.slices >= 2 for m in sliced)
    assert {m.task_id for m in manifests} < {m.task_id for m in sliced}
    score_all(service, sliced)
    second = read_predictions(service, HOUR, job_id)
    assert len(second) == len(first) == 24
    assert not second.duplicated(["device_id", "sensor", "window_end"]).any()
    assert set(second.loc[second.device_id == "a", "model_sha256"]) == {new.sha256}


def test_a_corrupt_aggregate_blob_costs_only_its_rows(service: BlobServiceClient) -> None:
    publish_data_and_models(service, GOOD)
    junk = f"{partition_of('a', HOUR, DEFAULT_SHARD_COUNT)}/asa-0001.parquet"  # beside a's rows
    service.get_container_client(str(Container.AGGREGATES)).upload_blob(junk, b"PAR1 junk")
    reports = score_hour(service)
    assert sum(r.task.ok for r in reports) == 2
    (with_junk,) = [r for r in reports if r.task.corrupt_blobs]
    assert list(with_junk.task.corrupt_blobs) == [junk]
    assert [(p.device_id, p.status) for p in with_junk.pairs] == [("a", PairStatus.OK)]  # its folder's good rows
    assert all(r.task.error is None for r in reports)  # undecodable, not unreadable: rows lost visibly, task runs


def test_model_cache_is_reused_across_tasks(service: BlobServiceClient) -> None:
    publish_data_and_models(service, GOOD)
    assert len(hour_manifests(service)) == 2  # a and b are in different shards: one model per task
    cache = ModelCache()
    first = score_hour(service, cache=cache)
    assert [r.task.models_cached for r in first] == [1, 2]
    second = score_hour(service, cache=cache)
    assert [r.task.models_cached for r in second] == [2, 2] and sum(r.task.ok for r in second) == 2


def test_predictions_schema(service: BlobServiceClient) -> None:
    publish_data_and_models(service, GOOD[:1])
    (report,) = score_hour(service)
    frame = read_predictions(service, HOUR, report.task.job_id)
    assert list(frame.columns) == ["device_id", "sensor", "window_end", "score", "is_anomaly", "model_sha256"]
    assert frame["is_anomaly"].dtype == bool and frame["score"].dtype == "float64"
    assert isinstance(frame["window_end"].dtype, pd.DatetimeTZDtype)


def devices_of_one_shard(per_slice: int, slices: int) -> tuple[str, list[str]]:
    """(shard name, devices): ``per_slice`` devices of one shard for each of its ``slices`` slices."""
    count = DEFAULT_SHARD_COUNT
    shard = shard_of("dev-000", count)
    by_slice: dict[int, list[str]] = {i: [] for i in range(slices)}
    for i in range(10_000):
        device = f"dev-{i:03d}"
        if shard_of(device, count) == shard and len(by_slice[slice_of(device, count, slices)]) < per_slice:
            by_slice[slice_of(device, count, slices)].append(device)
        if all(len(found) == per_slice for found in by_slice.values()):
            break
    return shard_name(shard, count), sorted(d for found in by_slice.values() for d in found)


def test_a_shard_too_big_for_one_task_is_sliced_and_every_pair_scored_exactly_once(
    service: BlobServiceClient,
) -> None:
    shard, devices = devices_of_one_shard(per_slice=3, slices=3)
    silent, devices = devices[0], devices[1:]  # a model in the pack, no rows this hour
    pairs = [Pair(d, s) for d in devices for s in ("temp", "hum")]
    publish_data_and_models(service, [*pairs, Pair(silent, "temp")])
    publish_aggregates(service, aggregates_for(pairs))  # replaces the shard's blob: no rows for `silent`
    rebuild_packs(service.get_container_client(str(Container.MODELS)), DEFAULT_SHARD_COUNT)
    folder = f"{HOUR:%Y/%m/%d/%H}/{shard}"
    aggregates = service.get_container_client(str(Container.AGGREGATES))
    corrupt = f"{folder}/asa-0000.parquet"
    aggregates.upload_blob(corrupt, b"PAR1 junk")
    other = next(d for d in (f"x{i}" for i in range(100)) if shard_name(shard_of(d, 16), 16) != shard)
    strays = aggregates_for([Pair(other, "temp"), Pair(devices[0], "temp"), Pair("later", "temp")], windows=1)
    strays.loc[1, "window_end"] = pd.Timestamp(HOUR + timedelta(hours=1))  # ends in the next hour
    strays.loc[2, "device_id"] = "bad id"  # quarantined: not a valid id
    odd = f"{folder}/asa-0001.parquet"
    aggregates.upload_blob(odd, to_parquet(strays))

    total = sum(b.size for b in list_hour_inputs(service, HOUR))
    manifests = hour_manifests(service, max_task_bytes=math.ceil(total / 3))
    assert [(m.folder, m.slice_index, m.slices) for m in manifests] == [(shard, i, 3) for i in range(3)]
    assert len({m.inputs for m in manifests}) == 1 and len(manifests[0].inputs) == 3  # each reads the folder
    reports = score_all(service, manifests)

    by_pair = pair_logs(reports)  # fails if a pair was scored by two slices
    assert set(by_pair) == set(pairs) and all(log.status is PairStatus.OK for log in by_pair.values())
    for report in reports:
        index = report.task.slice_index
        assert report.pairs and all(slice_of(p.device_id, 16, 3) == index for p in report.pairs)
        assert report.task.rows == 12 * len(report.pairs) and report.task.aggregate_blobs == 3
    assert sum(r.task.no_data for r in reports) == 1  # the silent pair, counted by its own slice only
    (quiet,) = [r for r in reports if r.task.no_data]
    assert quiet.task.slice_index == slice_of(silent, 16, 3)
    written = read_predictions(service, HOUR, manifests[0].job_id)
    assert len(written) == 12 * len(pairs) and not written.duplicated(["device_id", "sensor", "window_end"]).any()

    # Only the first slice speaks for the blobs every slice read: each fact is counted once in the hour.
    first, *rest = (r.task for r in reports)
    assert first.rows_read == 12 * len(pairs) + 3
    assert list(first.corrupt_blobs) == [corrupt]
    assert first.quarantined == {odd: {"bad_device_id": 1}}
    assert first.refiled == {
        partition_of(other, HOUR, DEFAULT_SHARD_COUNT): 1,
        partition_of(devices[0], HOUR + timedelta(hours=1), DEFAULT_SHARD_COUNT): 1,
    }
    for task in rest:
        assert (task.rows_read, task.corrupt_blobs, task.quarantined, task.refiled) == (0, {}, {}, {})
    refiled = [b.name for b in aggregates.list_blobs() if "/refiled-" in b.name]
    assert sorted(name.rsplit("/", 1)[0] for name in refiled) == sorted(first.refiled)
