"""A window filed under the wrong hour, as a processing-time path pattern would file it, is scored exactly
once, in its own hour; rows in a folder of no current shard are refiled, never dropped."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest
from azure.storage.blob import BlobServiceClient

from tests.workloads.helpers import HOUR, aggregates_for, publish_data_and_models
from workloads.aggregator.publish import publish_aggregates
from workloads.common.frames import read_hour_predictions, to_parquet
from workloads.common.layout import Container, hour_prefix, local_aggregate_blob
from workloads.common.pairs import Pair
from workloads.common.shards import DEFAULT_SHARD_COUNT, partition_of, shard_name, shard_of
from workloads.common.storage import StorageSettings
from workloads.scorer.task import ScorerOptions
from workloads.submitter.local import LocalBackend
from workloads.submitter.reconcile import HourResult, Reconciler, ReconcileSettings
from workloads.submitter.report import HourStatus, collect
from workloads.training.train import TrainingReport, read_history

PAIRS = [Pair("dev-1", "x"), Pair("dev-2", "x"), Pair("dev-3", "y")]
NEXT = HOUR + timedelta(hours=1)
LAST_WINDOW = pd.Timestamp(HOUR + timedelta(minutes=55))  # ends in HOUR, written after it: Azure may file it in NEXT
SETTINGS = ReconcileSettings(stack="test", hours=2)


def _reconcile(settings: StorageSettings, service: BlobServiceClient, now: datetime) -> dict[datetime, HourResult]:
    with LocalBackend(settings, workers=0, options=ScorerOptions()) as backend:
        return {r.hour: r for r in Reconciler(service, backend, SETTINGS).run(now)}


def _move_last_window_to_next_hour(service: BlobServiceClient, into: str) -> int:
    """Rewrite the hour's blobs without their last window and put those rows in ``into`` (a blob of NEXT)."""
    container = service.get_container_client(str(Container.AGGREGATES))
    frame = aggregates_for(PAIRS, HOUR)
    last = frame[frame.window_end == LAST_WINDOW]
    for blob in container.list_blobs(name_starts_with=hour_prefix(HOUR)):
        container.delete_blob(blob.name)
    publish_aggregates(service, frame[frame.window_end != LAST_WINDOW])
    container.upload_blob(into, to_parquet(last.reset_index(drop=True)), overwrite=True)
    return len(last)


def _windows(predictions: pd.DataFrame) -> list[pd.Timestamp]:
    return sorted(pd.Timestamp(t) for t in predictions["window_end"])


@pytest.mark.parametrize("where", ["next hour, same shard", "next hour, legacy folder"])
def test_the_last_window_written_into_the_next_hour_is_scored_once_in_its_own_hour(
    settings: StorageSettings, service: BlobServiceClient, where: str
) -> None:
    publish_data_and_models(service, PAIRS, HOUR)
    publish_aggregates(service, aggregates_for(PAIRS, NEXT, seed=3))
    shard = shard_name(shard_of("dev-1", DEFAULT_SHARD_COUNT), DEFAULT_SHARD_COUNT)
    into = (
        f"{hour_prefix(NEXT)}{shard}/asa-0001.parquet"
        if where == "next hour, same shard"
        else f"{hour_prefix(NEXT)}asa-0001.parquet"  # the old {datetime:HH} layout, no shard folder
    )
    moved = _move_last_window_to_next_hour(service, into)
    assert moved == len(PAIRS)
    now = NEXT + timedelta(hours=1, minutes=20)

    first = _reconcile(settings, service, now)
    # HOUR was scored without its last window (nobody knew where it was); NEXT's task found it and refiled
    # it to its own folder, so HOUR's inputs changed: it shows as stale, never as scored without its rows.
    assert first[HOUR].status is not None and first[NEXT].record is not None
    refiled = first[NEXT].record.input_issues["refiled_rows"]
    assert refiled == {partition_of(p.device_id, LAST_WINDOW.to_pydatetime(), DEFAULT_SHARD_COUNT): 1 for p in PAIRS}
    assert first[NEXT].record.rows["refiled"] == moved and first[NEXT].record.unaccounted_rows == 0
    assert collect(service, HOUR, now, SETTINGS.settle).status is HourStatus.STALE
    assert LAST_WINDOW not in _windows(read_hour_predictions(service, HOUR))

    second = _reconcile(settings, service, now)
    assert second[HOUR].reason is not None and second[HOUR].reason.value == "inputs_changed"
    assert second[NEXT].job_id is None  # NEXT is untouched: the rows it refiled were never its own
    hour_windows = _windows(read_hour_predictions(service, HOUR))
    next_windows = _windows(read_hour_predictions(service, NEXT))
    assert hour_windows.count(LAST_WINDOW) == len(PAIRS)  # once per pair
    assert len(hour_windows) == 12 * len(PAIRS)
    assert all(NEXT <= t.to_pydatetime() < NEXT + timedelta(hours=1) for t in next_windows)
    assert len(next_windows) == 12 * len(PAIRS)
    for hour in (HOUR, NEXT):
        assert collect(service, hour, now, SETTINGS.settle).status is HourStatus.SCORED

    third = _reconcile(settings, service, now)  # nothing changes any more: the refile is not repeated
    assert all(r.job_id is None for r in third.values())


def test_rows_of_another_shard_count_are_refiled_into_the_current_shards(
    settings: StorageSettings, service: BlobServiceClient
) -> None:
    """After a shard count change, rows still in the old count's folders are moved, not lost."""
    publish_data_and_models(service, PAIRS, HOUR)
    container = service.get_container_client(str(Container.AGGREGATES))
    for blob in container.list_blobs(name_starts_with=hour_prefix(HOUR)):
        container.delete_blob(blob.name)
    old = publish_aggregates(service, aggregates_for(PAIRS, HOUR), shard_count=4)
    assert all("-of-00004/" in name for name in old)
    now = NEXT + timedelta(minutes=20)

    first = _reconcile(settings, service, now)[HOUR]
    assert first.record is not None and first.record.rows["refiled"] == 12 * len(PAIRS)
    assert first.record.pairs == 0 and first.record.unaccounted_rows == 0
    second = _reconcile(settings, service, now)[HOUR]
    assert second.record is not None and second.record.ok == len(PAIRS)
    assert len(read_hour_predictions(service, HOUR)) == 12 * len(PAIRS)
    assert collect(service, HOUR, now, SETTINGS.settle).status is HourStatus.SCORED
    assert local_aggregate_blob(partition_of("dev-1", HOUR, 4)) in old


def test_training_counts_the_rows_it_finds_outside_their_hour(service: BlobServiceClient) -> None:
    """Training reads whole hours and keeps each hour's own rows; a misfiled row is counted, not dropped unseen."""
    publish_aggregates(service, aggregates_for(PAIRS, NEXT, seed=3))
    moved = _move_last_window_to_next_hour(service, f"{hour_prefix(NEXT)}asa-0001.parquet")
    report = TrainingReport()
    history = read_history(service, NEXT, NEXT + timedelta(hours=1), report)
    assert report.rows_outside_their_hour == moved == len(PAIRS)
    assert len(history) == 12 * len(PAIRS)  # NEXT's own rows only
