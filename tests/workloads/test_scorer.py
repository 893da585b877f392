from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from azure.storage.blob import BlobServiceClient

from tests.workloads.helpers import HOUR, aggregates_for, publish_data_and_models, train_on
from workloads.aggregator.publish import publish_aggregates
from workloads.common.aggregates import DEFAULT_MODEL_FEATURES
from workloads.common.frames import from_parquet, read_predictions
from workloads.common.layout import Container, model_blob, prediction_blob, run_log_blob
from workloads.common.manifest import TaskManifest
from workloads.common.modelstore import ModelCache, publish_model
from workloads.common.pairs import Pair
from workloads.common.runlog import PairStatus, parse_jsonl
from workloads.scorer.task import score_task

GOOD = [Pair("a", "x"), Pair("b", "x")]
MISSING, CORRUPT, ALL_NAN, SOME_NAN, WRONG_FEATURES, SILENT = (
    Pair("c", "x"),
    Pair("d", "x"),
    Pair("e", "x"),
    Pair("f", "x"),
    Pair("g", "x"),
    Pair("h", "x"),
)


def manifest(pairs: list[Pair]) -> TaskManifest:
    return TaskManifest(job_id="job-1", task_id="task-00000", hour=HOUR, pairs=tuple(pairs))


def blob_names(service: BlobServiceClient, container: Container) -> list[str]:
    return sorted(b.name for b in service.get_container_client(str(container)).list_blobs())


@pytest.fixture
def mixed_hour(service: BlobServiceClient) -> list[Pair]:
    """An hour with good pairs and one of each kind of bad pair."""
    pairs = [*GOOD, CORRUPT, ALL_NAN, SOME_NAN, WRONG_FEATURES, SILENT]
    publish_data_and_models(service, pairs)
    data = aggregates_for([p for p in pairs if p != SILENT] + [MISSING])
    data.loc[data.device_id == "e", "avg"] = np.nan
    data.loc[(data.device_id == "f") & (data.index % 4 == 0), "stdev"] = np.inf
    publish_aggregates(service, data)
    models = service.get_container_client(str(Container.MODELS))
    blob = models.get_blob_client(model_blob(CORRUPT))
    blob.upload_blob(b"\x00corrupt", overwrite=True, metadata=blob.get_blob_properties().metadata)
    four_features = train_on(aggregates_for([WRONG_FEATURES]))
    publish_model(models, WRONG_FEATURES, four_features, ("avg", "min", "max"))  # metadata says 3
    return [*pairs, MISSING]


def test_bad_pairs_are_logged_and_skipped_while_good_ones_are_scored(
    service: BlobServiceClient, mixed_hour: list[Pair]
) -> None:
    report = score_task(service, manifest(mixed_hour))
    by_pair = {Pair(p.device_id, p.sensor): p for p in report.pairs}
    assert {p for p, log in by_pair.items() if log.status is PairStatus.OK} == {*GOOD, SOME_NAN}
    assert by_pair[MISSING].reason == "missing_model"
    assert by_pair[CORRUPT].reason == "corrupt_model"
    assert by_pair[ALL_NAN].reason == "bad_data"
    assert by_pair[WRONG_FEATURES].reason == "bad_features"
    assert "expects 4 features" in (by_pair[WRONG_FEATURES].error or "")
    assert by_pair[SILENT].status is PairStatus.NO_DATA
    assert by_pair[SOME_NAN].dropped_rows == 3 and by_pair[SOME_NAN].rows == 9
    assert (report.task.ok, report.task.failed, report.task.no_data) == (3, 4, 1)
    assert all(p.timings_ms["total"] > 0 for p in report.pairs if p.status is not PairStatus.NO_DATA)

    # One blob for the task, holding only scored pairs: a failed pair leaves nothing half-written.
    assert blob_names(service, Container.PREDICTIONS) == [prediction_blob(HOUR, "job-1", "task-00000")]
    written = read_predictions(service, HOUR, "job-1")
    assert set(zip(written.device_id, written.sensor, strict=True)) == {
        (p.device_id, p.sensor) for p in [*GOOD, SOME_NAN]
    }
    assert len(written) == 12 + 12 + 9

    # The run log holds exactly the same lines, one per pair plus the task line.
    data = (
        service.get_container_client(str(Container.LOGS))
        .download_blob(run_log_blob(HOUR, "job-1", "task-00000"))
        .readall()
    )
    task, pairs = parse_jsonl(data)
    assert task == report.task and pairs == report.pairs
    assert len(data.decode().splitlines()) == len(mixed_hour) + 1


def test_predictions_equal_sklearn_predict_on_the_same_rows(service: BlobServiceClient) -> None:
    expected = publish_data_and_models(service, GOOD)
    score_task(service, manifest(GOOD))
    models = service.get_container_client(str(Container.MODELS))
    predictions = service.get_container_client(str(Container.PREDICTIONS))
    written = from_parquet(predictions.download_blob(prediction_blob(HOUR, "job-1", "task-00000")).readall())
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
    score_task(service, manifest(GOOD))
    first = read_predictions(service, HOUR, "job-1")
    # Retrain one model, re-run with a different chunking: same blobs, new content, no duplicates.
    models = service.get_container_client(str(Container.MODELS))
    new = publish_model(
        models, GOOD[0], train_on(aggregates_for([GOOD[0]], seed=9, windows=40)), DEFAULT_MODEL_FEATURES
    )
    for i, pair in enumerate(GOOD):
        score_task(service, TaskManifest(job_id="job-1", task_id=f"task-{i:05d}", hour=HOUR, pairs=(pair,)))
    second = read_predictions(service, HOUR, "job-1")
    assert len(second) == len(first) == 24
    assert not second.duplicated(["device_id", "sensor", "window_end"]).any()
    assert set(second.loc[second.device_id == "a", "model_sha256"]) == {new.sha256}


def test_a_corrupt_aggregate_blob_costs_only_its_rows(service: BlobServiceClient) -> None:
    publish_data_and_models(service, GOOD)
    service.get_container_client(str(Container.AGGREGATES)).upload_blob("2026/11/25/10/asa-0001.parquet", b"PAR1 junk")
    report = score_task(service, manifest(GOOD))
    assert report.task.ok == 2
    assert list(report.task.corrupt_blobs) == ["2026/11/25/10/asa-0001.parquet"]
    assert report.task.error is None  # undecodable, not unreadable: its rows are lost visibly, the task runs


def test_model_cache_is_reused_across_tasks(service: BlobServiceClient) -> None:
    publish_data_and_models(service, GOOD)
    cache = ModelCache()
    score_task(service, manifest(GOOD), cache=cache)
    report = score_task(service, manifest(GOOD), cache=cache)
    assert report.task.models_cached == 2 and report.task.ok == 2


def test_predictions_schema(service: BlobServiceClient) -> None:
    publish_data_and_models(service, GOOD[:1])
    score_task(service, manifest(GOOD[:1]))
    frame = read_predictions(service, HOUR, "job-1")
    assert list(frame.columns) == ["device_id", "sensor", "window_end", "score", "is_anomaly", "model_sha256"]
    assert frame["is_anomaly"].dtype == bool and frame["score"].dtype == "float64"
    assert isinstance(frame["window_end"].dtype, pd.DatetimeTZDtype)
