"""One scorer task: a chunk of pairs for one hour, in one process.

The aggregate blobs the plan listed are read once per task; models are fetched concurrently (round
trips, not maths, bound the task) and kept in a per-process cache; each pair's predictions are one
blob under the job's own folder, so a retried task overwrites them and readers, who follow the hour's
state to the current job, never see a mix of revisions.

A task that cannot read its inputs fails (after writing a run log that says why), so that Batch
retries it and the hour is not closed on incomplete data; a pair that cannot be scored is logged and
skipped.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd
from azure.storage.blob import BlobServiceClient, ContainerClient

from workloads.common.aggregates import KEYS, WINDOW_END
from workloads.common.frames import to_parquet
from workloads.common.hour_inputs import HourAggregates, InputReadError, read_hour_aggregates
from workloads.common.layout import Container, prediction_blob, run_log_blob
from workloads.common.manifest import TaskManifest
from workloads.common.modelstore import ModelCache, ModelError, load_model
from workloads.common.pairs import Pair
from workloads.common.runlog import PairLog, PairStatus, TaskLog, to_jsonl
from workloads.scorer.scoring import feature_matrix, predictions_table, score_rows


@dataclass(frozen=True)
class ScorerOptions:
    trust_pickle: bool = False
    trusted_types: tuple[str, ...] = ()
    concurrency: int = 16


@dataclass
class TaskReport:
    task: TaskLog
    pairs: list[PairLog] = field(default_factory=list)
    log_blob: str = ""


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


class _PairScorer:
    """Scores one pair and turns every failure into a log line instead of an exception."""

    def __init__(
        self, service: BlobServiceClient, manifest: TaskManifest, options: ScorerOptions, cache: ModelCache
    ) -> None:
        # Trust is what the manifest grants (the operator's choice for the run) plus what this
        # invocation adds on its own command line.
        self.models: ContainerClient = service.get_container_client(str(Container.MODELS))
        self.predictions: ContainerClient = service.get_container_client(str(Container.PREDICTIONS))
        self.manifest = manifest
        self.options = options
        self.cache = cache

    def __call__(self, pair: Pair, rows: pd.DataFrame | None) -> PairLog:
        base = {
            "job_id": self.manifest.job_id,
            "task_id": self.manifest.task_id,
            "hour": self.manifest.hour,
            "device_id": pair.device_id,
            "sensor": pair.sensor,
        }
        if rows is None or rows.empty:
            return PairLog(**base, status=PairStatus.NO_DATA, reason="no_data")
        timings: dict[str, float] = {}
        started = time.perf_counter()
        try:
            loaded = load_model(
                self.models,
                pair,
                cache=self.cache,
                trust_pickle=self.options.trust_pickle or self.manifest.trust_pickle,
                trusted_types=(*self.options.trusted_types, *self.manifest.trusted_types),
            )
            timings["load"] = _ms(started)
            step = time.perf_counter()
            matrix, finite = feature_matrix(rows, loaded.metadata.features, loaded.estimator)
            if not len(matrix):
                raise ModelError("bad_data", f"none of the {len(rows)} window(s) has finite features")
            scores, flags = score_rows(loaded.estimator, matrix)
            table = predictions_table(pair, rows[WINDOW_END], finite, scores, flags, loaded.metadata.sha256)
            timings["score"] = _ms(step)
            step = time.perf_counter()
            self.predictions.upload_blob(
                prediction_blob(self.manifest.hour, self.manifest.job_id, pair), to_parquet(table), overwrite=True
            )
            timings["write"] = _ms(step)
        except ModelError as exc:
            return PairLog(
                **base,
                status=PairStatus.FAILED,
                reason=exc.reason,
                error=str(exc),
                rows=len(rows),
                timings_ms={**timings, "total": _ms(started)},
            )
        except Exception as exc:  # the contract: one bad pair never sinks the task
            return PairLog(
                **base,
                status=PairStatus.FAILED,
                reason="error",
                error=f"{type(exc).__name__}: {exc}",
                rows=len(rows),
                timings_ms={**timings, "total": _ms(started)},
            )
        timings["total"] = _ms(started)
        return PairLog(
            **base,
            status=PairStatus.OK,
            rows=table.num_rows,
            anomalies=int(flags.sum()),
            dropped_rows=int((~finite).sum()),
            model_sha256=loaded.metadata.sha256,
            timings_ms=timings,
        )


def group_rows(frame: pd.DataFrame, pairs: Sequence[Pair]) -> dict[Pair, pd.DataFrame]:
    """The chunk's rows per pair, in window order; pairs without rows are absent."""
    wanted = [(p.device_id, p.sensor) for p in pairs]
    mask = pd.MultiIndex.from_frame(frame[list(KEYS)]).isin(wanted)
    subset = frame.loc[mask].sort_values([*KEYS, WINDOW_END])
    return {
        Pair(str(d), str(s)): rows.reset_index(drop=True) for (d, s), rows in subset.groupby(list(KEYS), sort=False)
    }


def _task_log(
    manifest: TaskManifest,
    started_at: datetime,
    pair_logs: list[PairLog],
    aggregates: HourAggregates | None,
    cache: ModelCache,
    timings: dict[str, float],
    error: str | None = None,
) -> TaskLog:
    count = {status: sum(p.status is status for p in pair_logs) for status in PairStatus}
    return TaskLog(
        job_id=manifest.job_id,
        task_id=manifest.task_id,
        hour=manifest.hour,
        host=socket.gethostname(),
        started_at=started_at,
        finished_at=datetime.now(UTC),
        pairs=len(manifest.pairs),
        ok=count[PairStatus.OK],
        no_data=count[PairStatus.NO_DATA],
        failed=count[PairStatus.FAILED],
        anomalies=sum(p.anomalies for p in pair_logs),
        aggregate_blobs=len(aggregates.blobs) if aggregates else len(manifest.inputs or ()),
        error=error,
        corrupt_blobs=aggregates.corrupt if aggregates else {},
        quarantined_rows=aggregates.quarantined_rows if aggregates else 0,
        duplicate_rows=aggregates.duplicates if aggregates else 0,
        conflicting_rows=aggregates.conflicts if aggregates else 0,
        models_cached=len(cache),
        timings_ms=timings,
    )


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
    """Score every pair of the manifest and write the run log; pair failures are logged, not raised.

    Raises InputReadError when the inputs cannot be read, after logging the failure.
    """
    options = options or ScorerOptions()
    cache = cache if cache is not None else ModelCache()
    started_at, started = datetime.now(UTC), time.perf_counter()
    try:
        aggregates = read_hour_aggregates(service, manifest.hour, manifest.inputs)
    except InputReadError as exc:
        failed = _task_log(manifest, started_at, [], None, cache, {"total": _ms(started)}, error=str(exc))
        with contextlib.suppress(Exception):  # the storage that failed the read may fail this too
            _write_log(service, failed, [])
        raise
    read_ms = _ms(started)
    rows = group_rows(aggregates.frame, manifest.pairs)
    scorer = _PairScorer(service, manifest, options, cache)
    step = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, options.concurrency)) as pool:
        pair_logs = list(pool.map(lambda p: scorer(p, rows.get(p)), manifest.pairs))
    score_ms = _ms(step)
    timings = {"read_aggregates": read_ms, "score_pairs": score_ms, "total": _ms(started)}
    task = _task_log(manifest, started_at, pair_logs, aggregates, cache, timings)
    return TaskReport(task=task, pairs=pair_logs, log_blob=_write_log(service, task, pair_logs))
