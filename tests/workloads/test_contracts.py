from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from azure.storage.blob import BlobServiceClient

from tests.workloads.helpers import HOUR, aggregates_for
from workloads.aggregator.publish import publish_aggregates
from workloads.common import layout
from workloads.common.frames import from_parquet, to_parquet
from workloads.common.hour_inputs import read_hour_aggregates
from workloads.common.manifest import TaskManifest
from workloads.common.model_metadata import ModelFormat, ModelMetadata
from workloads.common.pairs import Pair
from workloads.common.runlog import PairLog, PairStatus, TaskLog, parse_jsonl, to_jsonl
from workloads.common.shards import partition_of, shard_name, shard_of
from workloads.common.storage import StorageSettings
from workloads.common.windows import last_complete_hour, parse_hour, validate_window


def test_pair_parse_and_validation() -> None:
    assert Pair.parse("dev-1/temperature") == Pair("dev-1", "temperature")
    assert str(Pair("dev-1", "temp")) == "dev-1/temp"
    for bad in ("no-slash", "dev/../x", "dev 1/temp", "/temp", "dev/"):
        with pytest.raises(ValueError):
            Pair.parse(bad)


def test_blob_layout_is_time_partitioned() -> None:
    pair = Pair("dev-1", "temp")
    assert layout.hour_prefix(HOUR) == "2026/11/25/10/"
    partition = partition_of("dev-1", HOUR, 16)
    assert partition == f"2026/11/25/10/{shard_name(shard_of('dev-1', 16), 16)}"
    assert layout.aggregate_folder(partition) == f"{partition}/"
    assert layout.local_aggregate_blob(partition) == f"{partition}/local-aggregator.parquet"
    # Refiled rows: one blob per source blob version and target partition, named only by those.
    refiled = layout.refiled_blob(partition, "2026/11/25/09/asa-1.parquet", '"0x1"')
    assert refiled == layout.refiled_blob(partition, "2026/11/25/09/asa-1.parquet", '"0x1"')
    assert re.fullmatch(rf"{partition}/refiled-[0-9a-f]{{24}}\.parquet", refiled)
    assert refiled != layout.refiled_blob(partition, "2026/11/25/09/asa-1.parquet", '"0x2"')
    assert refiled != layout.refiled_blob(partition, "2026/11/25/09/asa-2.parquet", '"0x1"')
    assert layout.prediction_blob(HOUR, "job", "task-00001") == "2026/11/25/10/job/task-00001.parquet"
    assert layout.pack_blob("s00007-of-00064") == "packs/s00007-of-00064.npz"
    assert layout.pair_from_model_blob(layout.pack_blob("s00007-of-00064")) is None  # never taken for a model
    assert layout.hour_state_blob(HOUR) == "2026/11/25/10/hour.json"
    assert layout.run_log_blob(HOUR, "job", "task-00001") == "2026/11/25/10/job/tasks/task-00001.jsonl"
    assert layout.manifest_blob(HOUR, "job", "task-00001") == "2026/11/25/10/job/manifests/task-00001.json"
    assert layout.model_blob(pair) == "dev-1/temp/model.skops"
    assert layout.pair_from_model_blob("dev-1/temp/model.skops") == pair
    assert layout.pair_from_model_blob("dev-1/temp/other.txt") is None


def test_aggregate_blobs_are_placed_by_their_folder_under_the_hour() -> None:
    place = layout.parse_aggregate_blob
    assert place("2026/11/25/10/s00003-of-00016/asa-0.parquet") == layout.AggregateBlobPlace(HOUR, "s00003-of-00016")
    assert place("2026/11/25/10/local-aggregator.parquet") == layout.AggregateBlobPlace(HOUR, None)  # old layout
    for other in (
        "2026/11/25/10/a/b/x.parquet",  # deeper than one folder under the hour: no input
        "2026/11/25/10/s00003-of-00016/asa-0.PARQUET",
        "2026/11/25/10/s00003-of-00016/asa-0.parquet.tmp",
        "2026/11/25/10/s00003-of-00016/asa-0.json",
        "2026/13/25/10/x.parquet",
        "x.parquet",
        "2026/11/25/x.parquet",
    ):
        assert place(other) is None


def test_hours_parse_and_last_complete_hour() -> None:
    assert parse_hour("2026-11-25T10") == HOUR
    assert parse_hour("2026-11-25T10:00:00Z") == HOUR
    assert parse_hour("2026-11-25T11:00:00+01:00") == HOUR
    with pytest.raises(ValueError, match="on the hour"):
        parse_hour("2026-11-25T10:30")
    with pytest.raises(ValueError, match="expected"):
        parse_hour("yesterday")
    assert last_complete_hour(datetime(2026, 11, 25, 11, 14, tzinfo=UTC)) == HOUR - timedelta(hours=1)
    assert last_complete_hour(datetime(2026, 11, 25, 11, 15, tzinfo=UTC)) == HOUR


@pytest.mark.parametrize("minutes", [7, 45, 0])
def test_windows_must_tile_an_hour(minutes: int) -> None:
    with pytest.raises(ValueError, match="divides one hour"):
        validate_window(timedelta(minutes=minutes))


def test_manifest_round_trip() -> None:
    inputs = ("2026/11/25/10/s00003-of-00016/asa-0.parquet", "2026/11/25/10/s00003-of-00016/asa-1.parquet")
    manifest = TaskManifest(
        job_id="j",
        task_id="t",
        hour=HOUR,
        shard_count=16,
        folder="s00003-of-00016",
        inputs=inputs,
        slice_index=1,
        slices=2,
        trusted_types=("sklearn.tree._tree.Tree",),
    )
    text = manifest.model_dump_json()
    assert '"folder":"s00003-of-00016"' in text and f'"inputs":["{inputs[0]}","{inputs[1]}"]' in text
    assert TaskManifest.model_validate_json(text) == manifest
    assert manifest.shard == "s00003-of-00016" and not manifest.accounts_for_blobs
    # A folder that is no shard of the stack's count is read (its rows refiled) but has no shard to score.
    legacy = TaskManifest(
        job_id="j", task_id="t", hour=HOUR, shard_count=16, folder=None, inputs=("2026/11/25/10/old.parquet",)
    )
    assert legacy.shard is None and legacy.accounts_for_blobs
    assert TaskManifest.model_validate_json(legacy.model_dump_json()) == legacy
    other_count = TaskManifest(job_id="j", task_id="t", hour=HOUR, shard_count=16, folder="s00003-of-00004", inputs=())
    assert other_count.shard is None


def test_model_metadata_round_trips_through_blob_metadata() -> None:
    meta = ModelMetadata(
        format=ModelFormat.SKOPS,
        sha256="ab" * 32,
        features=("avg", "max"),
        estimator="Pipeline",
        sklearn_version="1.9.1",
        trained_at=HOUR,
        training_rows=12,
    )
    blob_meta = meta.to_blob_metadata()
    assert blob_meta["features"] == "avg,max"
    assert all(isinstance(v, str) for v in blob_meta.values())
    assert ModelMetadata.from_blob_metadata(blob_meta) == meta
    with pytest.raises(ValueError, match="invalid model metadata"):
        ModelMetadata.from_blob_metadata({"format": "skops"})


def test_run_log_round_trip() -> None:
    pair = PairLog(job_id="j", task_id="t", hour=HOUR, device_id="a", sensor="x", status=PairStatus.OK, rows=3)
    task = TaskLog(
        job_id="j",
        task_id="t",
        hour=HOUR,
        host="h",
        started_at=HOUR,
        finished_at=HOUR,
        pairs=1,
        ok=1,
        no_data=0,
        failed=0,
        anomalies=0,
        aggregate_blobs=1,
        folder="s00003-of-00016",
        slice_index=0,
        slices=2,
        rows_read=20,
        rows=12,
        corrupt_blobs={"2026/11/25/10/s00003-of-00016/bad.parquet": "ArrowInvalid: not parquet"},
        quarantined={"2026/11/25/10/s00003-of-00016/asa-0.parquet": {"bad_device_id": 2}},
        refiled={"2026/11/25/11/s00003-of-00016": 5},
        duplicate_rows=1,
    )
    assert (task.quarantined_rows, task.refiled_rows) == (2, 5)
    assert parse_jsonl(to_jsonl(task, [pair])) == (task, [pair])


def test_aggregates_round_trip_through_azurite(service: BlobServiceClient) -> None:
    frame = aggregates_for([Pair("a", "x"), Pair("b", "y")])
    assert from_parquet(to_parquet(frame)).equals(frame)
    publish_aggregates(service, frame)
    read = read_hour_aggregates(service, HOUR)
    assert (read.corrupt, read.quarantined, read.duplicates, read.conflicts) == ({}, {}, 0, 0)
    pd.testing.assert_frame_equal(
        read.frame.sort_values(["device_id", "sensor", "window_end"]).reset_index(drop=True),
        frame.astype({"count": "float64"}).sort_values(["device_id", "sensor", "window_end"]).reset_index(drop=True),
        check_dtype=False,
    )


def test_storage_settings_need_exactly_one_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_URL", raising=False)
    with pytest.raises(ValueError, match="exactly one"):
        StorageSettings.from_env()
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_URL", "https://acct.blob.core.windows.net")
    settings = StorageSettings.from_env()
    assert settings.client().url.startswith("https://acct.blob.core.windows.net")
