"""One scorer task: one shard's folder of an hour (or a slice of it), in one process.

The task reads its folder's aggregate blobs (``scorer.inputs``: validated, deduplicated, strays refiled)
and its shard's model pack (one blob), scores every pair that has a pack entry in one vectorised pass
(``fastpath.score_many``), and scores the rest with their own models: pairs the pack lacks, models the
fast path does not cover, and pairs with a row too close to the decision threshold for the fast path to
vouch for its flag. The pack's entries carry the checksum of the skops file each was compiled from, and
the trainer takes a pair's entry out of its pack before it replaces the model file, so an entry is never
older than the model it stands for. All of the task's predictions are one blob under the job's folder and its
run log another, so a task costs a handful of blob operations whatever its size, a retried task overwrites
both, and readers, who follow the hour's state to the current job, never see a mix of revisions.

A task that cannot read its inputs, or a model it needs, fails (after writing a run log that says why),
so that Batch retries it and the hour is not closed on incomplete data; a pair that cannot be scored
(a missing, corrupt, untrusted or mismatched model, unusable rows) is logged and skipped.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from workloads.common.aggregates import KEYS, WINDOW_END
from workloads.common.fastpath import score_many
from workloads.common.frames import to_parquet
from workloads.common.hour_inputs import InputReadError
from workloads.common.layout import Container, model_blob, pack_blob, prediction_blob, run_log_blob
from workloads.common.manifest import TaskManifest
from workloads.common.model_metadata import family_of
from workloads.common.model_pack import PACK_FAMILIES, PackEntry, read_pack
from workloads.common.model_versions import VersionPolicy, version_mismatch
from workloads.common.modelstore import (
    DEFAULT_MAX_CONCURRENT_LOADS,
    DEFAULT_MAX_MODEL_MIB,
    MIB,
    ModelCache,
    ModelError,
    load_model,
)
from workloads.common.pairs import Pair
from workloads.common.runlog import PairLog, PairStatus, TaskLog, error_line, to_jsonl
from workloads.common.shards import slice_of
from workloads.scorer.inputs import TaskInputs, read_task_inputs
from workloads.scorer.scoring import PREDICTION_SCHEMA, feature_matrix, predictions_table, score_rows


@dataclass(frozen=True)
class ScorerOptions:
    """How one task scores, as this invocation was told (trust adds to the manifest's; the rest is this
    invocation's alone).

    ``max_model_mib`` and ``max_concurrent_loads`` bound the memory a task spends on models: a model that
    would inflate past the cap fails its pair (``model_too_large``) instead of the node, and at most that
    many models are deserialised at once however many pairs are fetched in parallel (``concurrency``).
    """

    trust_pickle: bool = False
    trusted_types: tuple[str, ...] = ()
    concurrency: int = 16
    max_model_mib: int = DEFAULT_MAX_MODEL_MIB
    max_concurrent_loads: int = DEFAULT_MAX_CONCURRENT_LOADS
    version_policy: VersionPolicy | None = None  # None: the manifest's (the submitter's, from the stack)


@dataclass
class TaskReport:
    task: TaskLog
    pairs: list[PairLog] = field(default_factory=list)
    log_blob: str = ""


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


@dataclass(frozen=True)
class TaskRows:
    """The task's rows sorted by pair and window, and where each pair's rows are."""

    frame: pd.DataFrame
    spans: dict[Pair, tuple[int, int]]

    @classmethod
    def of(cls, frame: pd.DataFrame) -> TaskRows:
        """Every pair in the rows (validated ids) and its span, from where device or sensor changes."""
        frame = frame.sort_values([*KEYS, WINDOW_END], kind="stable").reset_index(drop=True)
        if frame.empty:  # a task whose rows were all refiled has no pairs
            return cls(frame, {})
        devices = frame["device_id"].to_numpy(dtype=object)
        sensors = frame["sensor"].to_numpy(dtype=object)
        changed = (devices[1:] != devices[:-1]) | (sensors[1:] != sensors[:-1])
        starts = np.flatnonzero(np.r_[True, changed]).tolist()
        spans = {
            Pair(str(devices[start]), str(sensors[start])): (start, end)
            for start, end in zip(starts, [*starts[1:], len(frame)], strict=True)
        }
        return cls(frame, spans)

    def rows(self, pair: Pair) -> pd.DataFrame:
        start, end = self.spans[pair]
        return self.frame.iloc[start:end]


class _PairScorer:
    """Scores one pair with its own model and turns every failure into a log line, not an exception."""

    def __init__(self, models: ContainerClient, manifest: TaskManifest, options: ScorerOptions, cache: ModelCache):
        self.models = models
        self.manifest = manifest
        # Trust is what the manifest grants (the operator's choice for the run) plus what this
        # invocation adds on its own command line.
        self.trust_pickle = options.trust_pickle or manifest.trust_pickle
        self.trusted_types = (*options.trusted_types, *manifest.trusted_types)
        self.version_policy = options.version_policy or manifest.sklearn_version_policy
        self.cache = cache
        self.max_bytes = options.max_model_mib * MIB
        # One per task: the pool's threads download in parallel, but only this many inflate a model at once.
        self.load_slots = threading.BoundedSemaphore(max(1, options.max_concurrent_loads))

    def __call__(self, pair: Pair, rows: pd.DataFrame) -> tuple[PairLog, pa.Table | None]:
        base = _base(self.manifest, pair)
        timings: dict[str, float] = {}
        started = time.perf_counter()
        try:
            loaded = load_model(
                self.models,
                pair,
                cache=self.cache,
                trust_pickle=self.trust_pickle,
                trusted_types=self.trusted_types,
                max_bytes=self.max_bytes,
                load_slots=self.load_slots,
                version_policy=self.version_policy,
            )
            timings["load"] = _ms(started)
            step = time.perf_counter()
            matrix, finite = feature_matrix(rows, loaded.metadata.features, loaded.estimator)
            if not len(matrix):
                raise ModelError("bad_data", f"none of the {len(rows)} window(s) has finite features")
            scores, flags = score_rows(loaded.estimator, matrix)
            table = predictions_table(pair, rows[WINDOW_END], finite, scores, flags, loaded.metadata.sha256)
            timings["score"] = _ms(step)
        except AzureError:
            # A model that could not be *read* (5xx after the SDK's retries, a timeout, a refused grant) is not
            # a bad pair: like an unreadable input it fails the task, so it is retried and the hour stays due.
            # load_model has already turned a missing model into ModelError("missing_model").
            raise
        except Exception as exc:  # the contract: one bad pair never sinks the task
            reason, error = (exc.reason, str(exc)) if isinstance(exc, ModelError) else ("error", error_line(exc))
            timings["total"] = _ms(started)
            failed = PairLog(
                **base, status=PairStatus.FAILED, reason=reason, error=error, rows=len(rows), timings_ms=timings
            )
            return failed, None
        timings["total"] = _ms(started)
        done = PairLog(
            **base,
            status=PairStatus.OK,
            path="model",
            family=family_of(loaded.estimator),  # as the pack path names it (PACK_FAMILIES), by what scores
            rows=table.num_rows,
            anomalies=int(flags.sum()),
            dropped_rows=int((~finite).sum()),
            model_sha256=loaded.metadata.sha256,
            timings_ms=timings,
        )
        return done, table


def _base(manifest: TaskManifest, pair: Pair) -> dict[str, object]:
    return {
        "job_id": manifest.job_id,
        "task_id": manifest.task_id,
        "hour": manifest.hour,
        "device_id": pair.device_id,
        "sensor": pair.sensor,
    }


@dataclass
class _PackScored:
    logs: list[PairLog]
    table: pa.Table | None
    leftover: list[Pair]  # for the per-pair path


def _score_from_pack(
    manifest: TaskManifest, rows: TaskRows, pack: dict[tuple[str, str], PackEntry], policy: VersionPolicy
) -> _PackScored:
    """Every pair with a current pack entry, in one vectorised pass; the rest is left over, among them pairs whose
    entry records a scikit-learn version the policy refuses (the per-pair path refuses or loads their model)."""
    chosen: list[tuple[Pair, PackEntry, np.ndarray, np.ndarray]] = []  # pair, entry, finite rows, finite mask
    inputs: list[np.ndarray] = []
    matrices: dict[tuple[str, ...], np.ndarray | None] = {}
    leftover: list[Pair] = []
    logs: list[PairLog] = []
    for pair, (start, end) in rows.spans.items():
        entry = pack.get((pair.device_id, pair.sensor))
        if entry is None or version_mismatch(entry.sklearn_version, policy) is not None:
            leftover.append(pair)
            continue
        if entry.features not in matrices:
            present = all(f in rows.frame.columns for f in entry.features)
            matrices[entry.features] = (
                rows.frame[list(entry.features)].to_numpy(dtype="float64", na_value=np.nan) if present else None
            )
        matrix = matrices[entry.features]
        if matrix is None:  # the per-pair path explains what is missing
            leftover.append(pair)
            continue
        finite = np.isfinite(matrix[start:end]).all(axis=1)
        if not finite.any():
            logs.append(
                PairLog(
                    **_base(manifest, pair),
                    status=PairStatus.FAILED,
                    reason="bad_data",
                    error=f"none of the {end - start} window(s) has finite features",
                    rows=end - start,
                )
            )
            continue
        numbers = np.arange(start, end)[finite]
        chosen.append((pair, entry, numbers, finite))
        inputs.append(matrix[numbers])
    results = score_many([entry.model for _, entry, _, _ in chosen], inputs)
    kept: list[tuple[Pair, PackEntry, np.ndarray, np.ndarray, np.ndarray]] = []
    for (pair, entry, numbers, finite), scored in zip(chosen, results, strict=True):
        if scored.borderline.any():  # the estimator decides these rows; it scores the whole pair
            leftover.append(pair)
            continue
        kept.append((pair, entry, numbers, scored.scores, scored.flags))
        logs.append(
            PairLog(
                **_base(manifest, pair),
                status=PairStatus.OK,
                path="pack",
                family=PACK_FAMILIES[type(entry.model)],
                rows=len(numbers),
                anomalies=int(scored.flags.sum()),
                dropped_rows=int((~finite).sum()),
                model_sha256=entry.model_sha256,
            )
        )
    return _PackScored(logs, _pack_table(rows.frame, kept), leftover)


def _pack_table(
    frame: pd.DataFrame, kept: list[tuple[Pair, PackEntry, np.ndarray, np.ndarray, np.ndarray]]
) -> pa.Table | None:
    if not kept:
        return None
    numbers = np.concatenate([k[2] for k in kept])
    shas = np.repeat(np.array([k[1].model_sha256 for k in kept], dtype=object), [len(k[2]) for k in kept])
    ids = pa.Table.from_pandas(frame[[*KEYS, WINDOW_END]], preserve_index=False).take(numbers)
    return pa.Table.from_arrays(
        [
            ids.column("device_id").cast(pa.string()),
            ids.column("sensor").cast(pa.string()),
            ids.column(WINDOW_END).cast(pa.timestamp("us", tz="UTC")),
            pa.array(np.concatenate([k[3] for k in kept]), pa.float64()),
            pa.array(np.concatenate([k[4] for k in kept]), pa.bool_()),
            pa.array(shas, pa.string()),
        ],
        schema=PREDICTION_SCHEMA,
    )


def read_shard_pack(
    service: BlobServiceClient, manifest: TaskManifest
) -> tuple[dict[tuple[str, str], PackEntry], str | None]:
    """The shard's pack and what became of it. A missing or unreadable pack costs speed, not results:
    every pair then takes the per-pair path."""
    if manifest.shard is None:
        return {}, None
    try:
        data = service.get_container_client(str(Container.MODELS)).download_blob(pack_blob(manifest.shard)).readall()
        return read_pack(data), "used"
    except ResourceNotFoundError:
        return {}, "missing"
    except Exception as exc:  # PackError, or storage trouble: the per-pair path may still succeed
        return {}, f"unreadable: {error_line(exc)}"[:300]


def _task_log(
    manifest: TaskManifest,
    started_at: datetime,
    pair_logs: list[PairLog],
    inputs: TaskInputs | None,
    cache: ModelCache,
    timings: dict[str, float],
    *,
    error: str | None = None,
    pack: str | None = None,
    silent: int = 0,
) -> TaskLog:
    count = {status: sum(p.status is status for p in pair_logs) for status in PairStatus}
    return TaskLog(
        job_id=manifest.job_id,
        task_id=manifest.task_id,
        hour=manifest.hour,
        host=socket.gethostname(),
        started_at=started_at,
        finished_at=datetime.now(UTC),
        folder=manifest.folder,
        slice_index=manifest.slice_index,
        slices=manifest.slices,
        pairs=len(pair_logs),
        ok=count[PairStatus.OK],
        no_data=silent,
        failed=count[PairStatus.FAILED],
        anomalies=sum(p.anomalies for p in pair_logs),
        aggregate_blobs=len(manifest.inputs),
        error=error,
        rows_read=inputs.rows_read if inputs else 0,
        rows=inputs.rows if inputs else 0,
        corrupt_blobs=inputs.corrupt if inputs else {},
        quarantined=inputs.quarantined if inputs else {},
        refiled=inputs.refiled if inputs else {},
        duplicate_rows=inputs.duplicates if inputs else 0,
        conflicting_rows=inputs.conflicts if inputs else 0,
        models_cached=len(cache),
        pack=pack,
        pack_pairs=sum(p.path == "pack" for p in pair_logs),
        families=dict(sorted(Counter(p.family for p in pair_logs if p.family is not None).items())),
        model_pairs=sum(p.path == "model" for p in pair_logs),
        timings_ms=timings,
    )


def _silent_pairs(manifest: TaskManifest, pack: dict[tuple[str, str], PackEntry], rows: TaskRows) -> int:
    """Pairs of this slice with a model in the pack but no rows this hour: worth a look, nothing to score."""
    with_rows = {(p.device_id, p.sensor) for p in rows.spans}
    mine = [key for key in pack if key not in with_rows]
    if manifest.slices > 1:
        mine = [key for key in mine if slice_of(key[0], manifest.shard_count, manifest.slices) == manifest.slice_index]
    return len(mine)


def _write_log(service: BlobServiceClient, task: TaskLog, pair_logs: list[PairLog]) -> str:
    log_name = run_log_blob(task.hour, task.job_id, task.task_id)
    service.get_container_client(str(Container.LOGS)).upload_blob(log_name, to_jsonl(task, pair_logs), overwrite=True)
    return log_name


def score_task(
    service: BlobServiceClient,
    manifest: TaskManifest,
    options: ScorerOptions | None = None,
    cache: ModelCache | None = None,
) -> TaskReport:
    """Score every pair of the manifest, write its predictions and then its run log (the run log
    last: it is what says the task finished); pair failures are logged, not raised.

    Every outcome leaves a run log: a task that cannot finish (inputs or a model unreadable, a write
    refused, a bug) writes one with its error before the exception goes on, so that the task is retried
    and the hour's report says why. Raises InputReadError when the inputs or a model cannot be read.
    """
    run = _TaskRun(service, manifest, options or ScorerOptions(), cache if cache is not None else ModelCache())
    try:
        return run.score()
    except Exception as exc:
        run.log_failure(exc)
        raise


class _TaskRun:
    """One attempt of a task: what it has read so far, for the run log of an attempt that fails."""

    def __init__(self, service: BlobServiceClient, manifest: TaskManifest, options: ScorerOptions, cache: ModelCache):
        self.service, self.manifest, self.options, self.cache = service, manifest, options, cache
        self.started_at, self.started = datetime.now(UTC), time.perf_counter()
        self.inputs: TaskInputs | None = None
        self.timings: dict[str, float] = {}

    def log_failure(self, error: Exception) -> None:
        """Log the task as failed (so the run log says why) before the error is raised and the task retried."""
        text = str(error) if isinstance(error, InputReadError) else error_line(error)
        timings = {**self.timings, "total": _ms(self.started)}
        log = _task_log(self.manifest, self.started_at, [], self.inputs, self.cache, timings, error=text)
        with contextlib.suppress(Exception):  # the storage that failed the task may fail this too
            _write_log(self.service, log, [])

    def score(self) -> TaskReport:
        service, manifest, cache, timings, started = self.service, self.manifest, self.cache, self.timings, self.started
        inputs = self.inputs = read_task_inputs(service, manifest)
        timings["read_inputs"] = _ms(started)
        step = time.perf_counter()
        pack, pack_status = read_shard_pack(service, manifest)
        timings["read_pack"] = _ms(step)

        step = time.perf_counter()
        rows = TaskRows.of(inputs.frame)
        policy = self.options.version_policy or manifest.sklearn_version_policy
        fast = _score_from_pack(manifest, rows, pack, policy)
        timings["score_pack"] = _ms(step)

        step = time.perf_counter()
        scorer = _PairScorer(service.get_container_client(str(Container.MODELS)), manifest, self.options, cache)
        with ThreadPoolExecutor(max_workers=max(1, self.options.concurrency)) as pool:
            futures = {pair: pool.submit(scorer, pair, rows.rows(pair)) for pair in fast.leftover}
        unreadable = {model_blob(p): error_line(e) for p, f in futures.items() if (e := f.exception()) is not None}
        if unreadable:
            raise InputReadError(unreadable, str(Container.MODELS), "model")
        slow = [future.result() for future in futures.values()]
        timings["score_models"] = _ms(step)

        pair_logs = sorted([*fast.logs, *(log for log, _ in slow)], key=lambda p: (p.device_id, p.sensor))
        silent = _silent_pairs(manifest, pack, rows)
        tables = [t for t in (fast.table, *(table for _, table in slow)) if t is not None]
        step = time.perf_counter()
        predictions = service.get_container_client(str(Container.PREDICTIONS))
        name = prediction_blob(manifest.hour, manifest.job_id, manifest.task_id)
        if tables:
            predictions.upload_blob(name, to_parquet(pa.concat_tables(tables)), overwrite=True)
        else:  # a retry that scored nothing must not leave an earlier attempt's rows behind
            with contextlib.suppress(ResourceNotFoundError):
                predictions.delete_blob(name)
        timings["write"] = _ms(step)
        timings["total"] = _ms(started)
        task = _task_log(manifest, self.started_at, pair_logs, inputs, cache, timings, pack=pack_status, silent=silent)
        return TaskReport(task=task, pairs=pair_logs, log_blob=_write_log(service, task, pair_logs))
