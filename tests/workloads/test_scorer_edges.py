"""Scorer edge cases of issue 17: empty hours and folders, oversized models, concurrent loads, boolean
features and manifests listing a blob twice. Real Azurite throughout; only our own ``deserialise`` is
wrapped, to count how many run at once."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import skops.io as sio
from azure.storage.blob import BlobServiceClient
from typer.testing import CliRunner

from tests.workloads.helpers import (
    HOUR,
    aggregates_for,
    hour_manifests,
    pair_logs,
    publish_data_and_models,
    score_hour,
    train_on,
)
from workloads.common import envvars, modelstore
from workloads.common.aggregates import DEFAULT_MODEL_FEATURES
from workloads.common.frames import to_parquet
from workloads.common.hour_inputs import validate_rows
from workloads.common.layout import Container, model_blob
from workloads.common.manifest import TaskManifest
from workloads.common.model_metadata import ModelMetadata
from workloads.common.model_versions import runtime_sklearn_version
from workloads.common.modelstore import ModelCache, ModelError, deserialise, load_model, publish_model
from workloads.common.pairs import Pair
from workloads.common.runlog import PairStatus, parse_jsonl
from workloads.common.shards import DEFAULT_SHARD_COUNT, partition_of, shard_name, shard_of
from workloads.common.storage import StorageSettings
from workloads.scorer.cli import app as scorer
from workloads.scorer.task import ScorerOptions

runner = CliRunner()
SHARD_OF_A = shard_name(shard_of("a", DEFAULT_SHARD_COUNT), DEFAULT_SHARD_COUNT)
EMPTY_SHARD = next(
    shard_name(s, DEFAULT_SHARD_COUNT) for s in range(DEFAULT_SHARD_COUNT) if s not in {shard_of(d, 16) for d in "ab"}
)
MIB = 2**20


def flat(text: str) -> str:
    return " ".join(text.replace("│", " ").split())


# (4) An hour with no rows, or a shard folder with no blobs, is a task that scored nothing, not a crash.


def assert_empty_task_logged(service: BlobServiceClient, result: Any, task_id: str) -> None:
    assert result.exit_code == 0, result.output
    assert result.exception is None and "Traceback" not in result.output
    summary = json.loads(result.stdout)
    assert (summary["pairs"], summary["ok"], summary["failed"], summary["rows"]) == (0, 0, 0, 0)
    assert summary["error"] is None and summary["aggregate_blobs"] == 0
    log_blob = f"{HOUR:%Y/%m/%d/%H}/manual/tasks/{task_id}.jsonl"
    assert summary["log_blob"] == f"logs/{log_blob}"
    task, pairs = parse_jsonl(service.get_container_client(str(Container.LOGS)).download_blob(log_blob).readall())
    assert task is not None and pairs == []
    assert (task.pairs, task.task_id, task.folder) == (0, task_id, summary["folder"])
    predictions = service.get_container_client(str(Container.PREDICTIONS))
    assert not list(predictions.list_blobs())  # nothing scored, nothing written


def test_scorer_cli_on_an_hour_without_any_rows_exits_0_with_a_run_log(service: BlobServiceClient) -> None:
    result = runner.invoke(scorer, ["--hour", "2026-11-25T10", "--shard", SHARD_OF_A, "--task-id", "t-empty"])
    assert_empty_task_logged(service, result, "t-empty")


def test_scorer_cli_on_an_empty_shard_folder_exits_0_with_a_run_log(service: BlobServiceClient) -> None:
    publish_data_and_models(service, [Pair("a", "x"), Pair("b", "x")])  # other folders of the hour have rows
    result = runner.invoke(scorer, ["--hour", "2026-11-25T10", "--shard", EMPTY_SHARD, "--task-id", "t-none"])
    assert_empty_task_logged(service, result, "t-none")
    assert json.loads(result.stdout)["folder"] == EMPTY_SHARD


# (6) Bounded model loads.


def inflating_estimator(size: int) -> Any:
    """A real, scorable IsolationForest carrying ``size`` bytes of zeros: deflated, its skops file is a few
    KiB per MiB it inflates to, which is what a cap on the blob's size would miss."""
    estimator = train_on(aggregates_for([Pair("a", "y")]))
    estimator.padding_ = np.zeros(size, dtype=np.uint8)  # type: ignore[attr-defined]
    return estimator


def publish_deflated(service: BlobServiceClient, pair: Pair, estimator: Any) -> tuple[int, int]:
    """Publish with ``publish_model`` (for its metadata), then replace the file by the same model deflated,
    with its checksum: (blob bytes, uncompressed bytes)."""
    models = service.get_container_client(str(Container.MODELS))
    metadata = publish_model(models, pair, estimator, DEFAULT_MODEL_FEATURES)
    data = sio.dumps(estimator, compression=zipfile.ZIP_DEFLATED)
    deflated = metadata.model_copy(update={"sha256": hashlib.sha256(data).hexdigest()})
    models.upload_blob(model_blob(pair), data, overwrite=True, metadata=deflated.to_blob_metadata())
    inflated = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(data)).infolist())
    return len(data), inflated


def test_a_model_that_inflates_past_the_cap_fails_its_pair_only(service: BlobServiceClient) -> None:
    good, big = Pair("a", "x"), Pair("a", "y")  # one device: one shard, one task
    publish_data_and_models(service, [good, big])
    blob_size, inflated = publish_deflated(service, big, inflating_estimator(40_000_000))
    assert blob_size < 1 * MIB < 8 * MIB < inflated  # under the cap as a blob, over it once inflated

    tracemalloc.start()
    try:
        (report,) = score_hour(service, options=ScorerOptions(max_model_mib=8), cache=ModelCache())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    by_pair = pair_logs([report])
    assert by_pair[good].status is PairStatus.OK
    assert (by_pair[big].status, by_pair[big].reason) == (PairStatus.FAILED, "model_too_large")
    error = by_pair[big].error or ""
    assert f"{inflated / MIB:.1f} MiB" in error and "8 MiB" in error and "--max-model-mib" in error
    assert envvars.MAX_MODEL_MIB in error
    assert (report.task.ok, report.task.failed, report.task.error) == (1, 1, None)
    # The refused model was never inflated: the task's Python and numpy allocations stay far below its size.
    assert peak < inflated / 2, (peak, inflated)
    logged = parse_jsonl(service.get_container_client(str(Container.LOGS)).download_blob(report.log_blob).readall())
    assert [(p.sensor, p.reason) for p in logged[1]] == [("x", None), ("y", "model_too_large")]

    # The default cap (256 MiB) lets it through: the cap, not the model, refused it.
    (default,) = score_hour(service, cache=ModelCache())
    assert default.task.ok == 2


def test_the_cap_applies_to_pickles_by_their_length() -> None:
    data = b"\x80\x04" + b"N" * (2 * MIB) + b"."
    metadata = ModelMetadata.model_validate(
        {
            "format": "pickle",
            "sha256": hashlib.sha256(data).hexdigest(),
            "features": ["avg"],
            "estimator": "X",
            "sklearn_version": runtime_sklearn_version(),
            "trained_at": "2026-11-25T00:00:00Z",
        }
    )
    with pytest.raises(ModelError) as refused:
        deserialise(data, metadata, trust_pickle=True, max_bytes=1 * MIB)
    assert refused.value.reason == "model_too_large" and "2.0 MiB" in str(refused.value)
    assert deserialise(data, metadata, trust_pickle=True, max_bytes=3 * MIB) is None  # 'N' is None


def test_the_scorer_cli_takes_the_cap_from_its_option_or_environment(
    service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = Pair("a", "y")
    publish_data_and_models(service, [big])
    publish_deflated(service, big, inflating_estimator(3 * MIB))
    args = ["--hour", "2026-11-25T10", "--shard", SHARD_OF_A]
    capped = runner.invoke(scorer, [*args, "--max-model-mib", "2"])
    assert capped.exit_code == 0, capped.output
    assert (json.loads(capped.stdout)["failed"], json.loads(capped.stdout)["ok"]) == (1, 0)
    monkeypatch.setenv(envvars.MAX_MODEL_MIB, "2")
    assert json.loads(runner.invoke(scorer, args).stdout)["failed"] == 1
    monkeypatch.setenv(envvars.MAX_MODEL_MIB, "4")
    assert json.loads(runner.invoke(scorer, args).stdout)["ok"] == 1
    for bad in (["--max-model-mib", "0"], ["--max-concurrent-loads", "0"]):
        refused = runner.invoke(scorer, [*args, *bad])
        assert refused.exit_code == 2 and bad[0] in flat(refused.output)


class ConcurrentLoads:
    """Wraps ``deserialise`` to record how many run at once (each held a little, so they overlap)."""

    def __init__(self) -> None:
        self.running = self.peak = self.calls = 0
        self.lock = threading.Lock()
        self.real = modelstore.deserialise

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            self.running += 1
            self.calls += 1
            self.peak = max(self.peak, self.running)
        try:
            time.sleep(0.05)
            return self.real(*args, **kwargs)
        finally:
            with self.lock:
                self.running -= 1


def test_concurrent_model_loads_are_capped_per_task(
    service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    pairs = [Pair("a", f"s{i:02d}") for i in range(16)]  # one device: one task, 16 per-pair loads (no pack)
    publish_data_and_models(service, pairs)
    loads = ConcurrentLoads()
    monkeypatch.setattr(modelstore, "deserialise", loads)
    (report,) = score_hour(service, options=ScorerOptions(concurrency=16, max_concurrent_loads=2), cache=ModelCache())
    assert report.task.ok == 16 and loads.calls == 16
    assert loads.peak == 2  # they did overlap, never more than the cap

    # Through the CLI and its environment variable; the cache still serves unchanged models (no loads).
    cache = ModelCache()
    loads.peak = loads.calls = 0
    monkeypatch.setenv(envvars.MAX_CONCURRENT_LOADS, "3")
    monkeypatch.setattr("workloads.scorer.entry._CACHE", cache)
    result = runner.invoke(scorer, ["--hour", "2026-11-25T10", "--shard", SHARD_OF_A])
    assert result.exit_code == 0, result.output
    assert (json.loads(result.stdout)["ok"], loads.calls, loads.peak) == (16, 16, 3)
    again = runner.invoke(scorer, ["--hour", "2026-11-25T10", "--shard", SHARD_OF_A])
    assert (json.loads(again.stdout)["models_cached"], loads.calls) == (16, 16)  # revalidated, not reloaded

    # Without a cap of its own (the default, 4), 16 overlapping loads still never exceed it.
    loads.peak = 0
    (default,) = score_hour(service, cache=ModelCache())
    assert default.task.ok == 16 and loads.peak == 4


def test_load_model_holds_a_slot_only_to_deserialise(service: BlobServiceClient) -> None:
    pair = Pair("a", "x")
    publish_data_and_models(service, [pair])
    models = service.get_container_client(str(Container.MODELS))
    slots = threading.BoundedSemaphore(1)
    with slots:  # every slot taken: a cached, unchanged model is still served, it needs no deserialisation
        cache = ModelCache()
        loaded = load_model(models, pair, cache=cache, load_slots=None)
        assert load_model(models, pair, cache=cache, load_slots=slots) is loaded
    assert load_model(models, pair, cache=ModelCache(), load_slots=slots).etag == loaded.etag
    with pytest.raises(ValueError):
        slots.release()  # the slot was given back exactly once


# (9a) Booleans are no measurements.


def test_boolean_feature_values_are_quarantined_as_bad_values() -> None:
    frame = aggregates_for([Pair("a", "x")], windows=4)
    as_bool = frame.assign(stdev=[True, False, True, False])
    rows, reasons = validate_rows(as_bool)
    assert rows.empty and reasons == {"bad_value": 4}
    with_nulls = frame.assign(stdev=pa.array([True, None, False, None]).to_pandas())  # object: bools and None
    rows, reasons = validate_rows(with_nulls)
    assert len(rows) == 2 and rows["stdev"].isna().all() and reasons == {"bad_value": 2}
    mixed = frame.assign(stdev=np.array([0.5, True, np.bool_(False), None], dtype=object))
    rows, reasons = validate_rows(mixed)
    assert list(rows["stdev"].fillna(-1)) == [0.5, -1] and reasons == {"bad_value": 2}
    nullable = frame.assign(stdev=frame["stdev"].gt(0).astype("boolean"))
    assert validate_rows(nullable)[1] == {"bad_value": 4}


def test_the_scorer_quarantines_rows_whose_feature_is_boolean(service: BlobServiceClient) -> None:
    good, flagged = Pair("a", "x"), Pair("a", "y")
    publish_data_and_models(service, [good, flagged])
    aggregates = service.get_container_client(str(Container.AGGREGATES))
    rows = aggregates_for([flagged], windows=5)
    odd = f"{partition_of('a', HOUR, DEFAULT_SHARD_COUNT)}/asa-bool.parquet"
    data = to_parquet(rows.assign(stdev=[True] * 5))
    assert pq.read_schema(io.BytesIO(data)).field("stdev").type == pa.bool_()  # stored as a Parquet boolean
    aggregates.upload_blob(odd, data)
    (report,) = score_hour(service, cache=ModelCache())
    assert report.task.quarantined == {odd: {"bad_value": 5}}
    assert report.task.rows_read == 12 * 2 + 5 and report.task.rows == 12 * 2
    by_pair = pair_logs([report])
    assert by_pair[good].rows == by_pair[flagged].rows == 12  # the boolean rows scored nothing
    task, _ = parse_jsonl(service.get_container_client(str(Container.LOGS)).download_blob(report.log_blob).readall())
    assert task is not None and task.quarantined == {odd: {"bad_value": 5}}


# (9b) A manifest listing a blob twice would read (and count) its rows twice.


def test_a_manifest_listing_a_blob_twice_is_refused(
    service: BlobServiceClient, settings: StorageSettings, tmp_path: Path
) -> None:
    publish_data_and_models(service, [Pair("a", "x")])
    (manifest,) = hour_manifests(service)
    (blob,) = manifest.inputs
    document = manifest.model_dump(mode="json")
    with pytest.raises(ValueError, match=rf"{blob}.*listed 3 times"):
        TaskManifest.model_validate({**document, "inputs": [blob, blob, blob]})
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({**document, "inputs": [blob, blob]}))
    result = runner.invoke(scorer, ["--manifest-file", str(path)])
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error:") and blob in line and "listed 2 times" in line and "Traceback" not in line
    assert TaskManifest.model_validate(document) == manifest  # each blob once is still fine
    assert not list(service.get_container_client(str(Container.PREDICTIONS)).list_blobs())
