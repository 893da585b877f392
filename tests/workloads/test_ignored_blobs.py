"""What is an input, and what is ignored visibly (issue 17, finding 7).

An input is a blob whose name ends exactly in ``.parquet`` directly in an hour folder or directly in one folder
under it. Everything else under the hour (``.PARQUET``, ``.parquet.tmp``, a deeper folder) and everything under
the day that sits in no two-digit hour folder is never read, and every report names it: a writer's mistake must
not lose rows without a word. Ignored blobs do not change the fingerprint (they cannot change the outcome).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from azure.storage.blob import BlobServiceClient
from pydantic import ValidationError

from tests.workloads.helpers import HOUR, aggregates_for, publish_data_and_models, train_on
from workloads.common.aggregates import DEFAULT_MODEL_FEATURES
from workloads.common.frames import read_hour_predictions, to_parquet
from workloads.common.hour_inputs import (
    MAX_NAMES_SHOWN,
    HourInputs,
    InputBlob,
    fingerprint,
    list_hour_inputs,
    list_misnamed_under_day,
    read_hour_aggregates,
)
from workloads.common.hour_state import Reason
from workloads.common.layout import Container, hour_prefix, parse_aggregate_blob
from workloads.common.manifest import TaskManifest
from workloads.common.modelstore import publish_model
from workloads.common.pairs import Pair
from workloads.common.shards import DEFAULT_SHARD_COUNT, shard_name, shard_of
from workloads.common.storage import StorageSettings
from workloads.submitter.local import LocalBackend
from workloads.submitter.plan import plan_hour
from workloads.submitter.reconcile import Reconciler, ReconcileSettings
from workloads.submitter.record import JobStatus, read_record
from workloads.submitter.report import HourStatus, collect, issue_lines
from workloads.submitter.submit import new_record

COUNT = DEFAULT_SHARD_COUNT
PREFIX = hour_prefix(HOUR)  # 2026/11/25/10/
DAY = "2026/11/25/"
NOW = HOUR + timedelta(hours=1, minutes=20)
SETTLE = timedelta(minutes=15)
PAIRS = [Pair(f"dev-{d}", s) for d in range(3) for s in ("temp", "hum")]
# Pairs with models whose rows are only in blobs that are no input: if any of them is scored, a blob was read.
GHOSTS = [Pair("ghost-upper", "temp"), Pair("ghost-tmp", "temp"), Pair("ghost-nested", "temp")]


def shard_folder(device: str) -> str:
    return shard_name(shard_of(device, COUNT), COUNT)


UPPER = f"{PREFIX}{shard_folder('ghost-upper')}/asa-1.PARQUET"
TMP = f"{PREFIX}{shard_folder('ghost-tmp')}/asa-2.parquet.tmp"
NESTED = f"{PREFIX}{shard_folder('ghost-nested')}/extra/x.parquet"
IGNORED = sorted([UPPER, TMP, NESTED])
# Under the day but in no hour folder: never any hour's input.
MISNAMED = [f"{DAY}10x/", f"{DAY}7/", f"{DAY}stray.parquet"]


def publish_with_junk(service: BlobServiceClient) -> None:
    """Real inputs for PAIRS, and beside them (same hour, same shards) the ghosts' rows in blobs that are no input."""
    publish_data_and_models(service, PAIRS)
    publish_junk(service)


def publish_junk(service: BlobServiceClient) -> None:
    aggregates = service.get_container_client(str(Container.AGGREGATES))
    models = service.get_container_client(str(Container.MODELS))
    for ghost, name in zip(GHOSTS, (UPPER, TMP, NESTED), strict=True):
        rows = aggregates_for([ghost])
        aggregates.upload_blob(name, to_parquet(rows))
        publish_model(
            models, ghost, train_on(aggregates_for([ghost], HOUR - timedelta(hours=6), 72, 1)), DEFAULT_MODEL_FEATURES
        )
    ghost_rows = to_parquet(aggregates_for(GHOSTS))
    aggregates.upload_blob(f"{DAY}7/{shard_folder('ghost-upper')}/asa-0.parquet", ghost_rows)  # hour 07 mistyped
    aggregates.upload_blob(f"{DAY}10x/asa-0.parquet", ghost_rows)
    aggregates.upload_blob(f"{DAY}stray.parquet", ghost_rows)


def test_the_rule_refuses_other_extensions_and_deeper_folders() -> None:
    assert parse_aggregate_blob(f"{PREFIX}s00001-of-00016/a.parquet") is not None
    assert parse_aggregate_blob(f"{PREFIX}a.parquet") is not None
    for name in (UPPER, TMP, NESTED, f"{PREFIX}./a.parquet", f"{PREFIX}../a.parquet", f"{DAY}7/a.parquet"):
        assert parse_aggregate_blob(name) is None, name
    # A task can never be pointed at a deeper folder either.
    with pytest.raises(ValidationError, match="invalid folder"):
        TaskManifest(
            job_id="j", task_id="t", hour=HOUR, shard_count=COUNT, folder="s00001-of-00016/extra", inputs=(NESTED,)
        )


def test_ignored_blobs_are_listed_beside_the_inputs_and_do_not_change_the_fingerprint(
    service: BlobServiceClient,
) -> None:
    publish_data_and_models(service, PAIRS)
    clean = plan_hour(service, "dev", HOUR, shard_count=COUNT)
    publish_junk(service)

    listing = list_hour_inputs(service, HOUR)
    assert [b.name for b in listing] == [b.name for b in clean.inputs]  # the same inputs as before the junk
    assert listing.ignored == tuple(IGNORED)
    assert fingerprint(listing) == clean.fingerprint

    plan = plan_hour(service, "dev", HOUR, shard_count=COUNT)
    assert plan.ignored == tuple(IGNORED)
    assert plan.tasks == clean.tasks and plan.fingerprint == clean.fingerprint
    read = {name for task in plan.tasks for name in task.inputs}
    assert not read & {*IGNORED}
    assert all(parse_aggregate_blob(name) is not None for name in read)
    # Training reads an hour through the same listing: none of the ghosts' rows either.
    assert set(read_hour_aggregates(service, HOUR).frame["device_id"]) == {p.device_id for p in PAIRS}


def test_misnamed_hour_folders_and_blobs_directly_under_the_day_are_named(service: BlobServiceClient) -> None:
    publish_with_junk(service)
    aggregates = service.get_container_client(str(Container.AGGREGATES))
    aggregates.upload_blob(f"{DAY}11/{shard_folder('dev-0')}/asa-0.parquet", b"")  # another real hour: fine
    aggregates.upload_blob(f"{DAY}11", b"")  # a hierarchical namespace's directory marker of hour 11: fine
    assert list_misnamed_under_day(service, HOUR) == MISNAMED
    assert list_misnamed_under_day(service, HOUR + timedelta(days=1)) == []


def test_reconcile_reads_only_inputs_and_the_record_and_report_name_every_ignored_blob(
    service: BlobServiceClient, settings: StorageSettings
) -> None:
    publish_with_junk(service)
    with LocalBackend(settings, workers=0) as backend:
        result = Reconciler(service, backend, ReconcileSettings(stack="dev")).hour(HOUR, NOW)
    assert result.record is not None and result.status is JobStatus.COMPLETED
    record = read_record(service, HOUR, result.record.job_id)
    assert record is not None
    assert (record.ignored_blobs, record.ignored_blobs_total) == (IGNORED, len(IGNORED))
    assert not {*IGNORED} & {*record.inputs}
    # Scoring read the real inputs only: no ghost scored, no row of theirs read, refiled or counted.
    assert (record.pairs, record.ok) == (len(PAIRS), len(PAIRS))
    assert record.rows["read"] == record.rows["scored"] == len(PAIRS) * 12
    assert not record.input_issues.get("refiled_rows")
    predictions = read_hour_predictions(service, HOUR)
    assert set(predictions["device_id"]) == {p.device_id for p in PAIRS}

    days: dict[str, tuple[str, ...]] = {}
    report = collect(service, HOUR, NOW, SETTLE, days)
    assert report.status is HourStatus.SCORED  # the ignored blobs do not make the hour stale
    summary = report.summary()
    assert (summary["ignored_blobs"], summary["ignored_blobs_total"]) == (IGNORED, len(IGNORED))
    assert summary["misnamed_under_day"] == MISNAMED
    lines = issue_lines(summary)
    for name in IGNORED:
        assert ("ignored blobs (not inputs)", f"aggregates/{name}") in lines
    assert ("misnamed folder under the day (never read)", f"aggregates/{DAY}7/") in lines
    assert ("misnamed folder under the day (never read)", f"aggregates/{DAY}10x/") in lines
    assert ("blob under the day, in no hour folder (never read)", f"aggregates/{DAY}stray.parquet") in lines
    assert list(days) == [DAY]  # the next hour of the day reuses this listing

    # The report lists the hour live: a blob ignored since scoring is named too, and still changes nothing.
    late = f"{PREFIX}{shard_folder('dev-0')}/late.parquet.tmp"
    service.get_container_client(str(Container.AGGREGATES)).upload_blob(late, b"partial")
    again = collect(service, HOUR, NOW, SETTLE)
    assert again.status is HourStatus.SCORED
    assert again.summary()["ignored_blobs"] == sorted([*IGNORED, late])
    assert ("ignored blobs (not inputs)", f"aggregates/{late}") in issue_lines(again.summary())


def test_the_record_names_at_most_a_hundred_ignored_blobs_and_counts_the_rest(service: BlobServiceClient) -> None:
    folder = shard_folder("dev-0")
    inputs = [InputBlob(f"{PREFIX}{folder}/a.parquet", "0x1", 10)]
    ignored = [f"{PREFIX}{folder}/part-{i:04d}.parquet.tmp" for i in range(MAX_NAMES_SHOWN + 5)]
    plan = plan_hour(service, "dev", HOUR, shard_count=COUNT, inputs=HourInputs(inputs, ignored))
    record = new_record(plan, "local", 1, Reason.NEVER_SCORED)
    assert (record.ignored_blobs, record.ignored_blobs_total) == (ignored[:MAX_NAMES_SHOWN], len(ignored))
    assert plan.fingerprint == fingerprint(inputs)
