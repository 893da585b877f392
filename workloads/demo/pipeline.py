"""The whole hourly pipeline on one machine: simulate, aggregate, train, submit each hour, evaluate."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd
from azure.storage.blob import BlobServiceClient
from rich.progress import Progress

from workloads.aggregator.publish import publish_aggregates
from workloads.common.aggregates import AggregationSpec, MessageShape, ReadingAccount, aggregate_with_account
from workloads.common.frames import read_hour_predictions
from workloads.common.layout import Container, model_blob, run_log_blob
from workloads.common.pairs import Pair
from workloads.common.runlog import PairStatus, parse_jsonl
from workloads.common.shards import DEFAULT_SHARD_COUNT
from workloads.common.storage import StorageSettings, ensure_containers
from workloads.common.windows import HOUR, hours
from workloads.scorer.task import ScorerOptions
from workloads.simulator.fleet import Anomaly, FleetSpec, anomalous_windows, simulate, to_messages
from workloads.submitter.local import LocalBackend
from workloads.submitter.plan import task_id_for
from workloads.submitter.reconcile import Reconciler, ReconcileSettings
from workloads.submitter.record import JobRecord
from workloads.training.families import ModelSpec
from workloads.training.packs import update_packs
from workloads.training.train import train_and_publish


@dataclass(frozen=True)
class DemoConfig:
    fleet: FleetSpec
    aggregation: AggregationSpec
    last_hour: datetime  # the newest hour scored
    score_hours: int = 3
    history_hours: int = 24
    shard_count: int = DEFAULT_SHARD_COUNT  # one folder and model pack per shard: a task each
    workers: int = 2
    stack: str = "local"
    bad_pairs: bool = True  # break two models on purpose to show that the hour still completes
    # How the simulated devices package their readings; the aggregator flattens either (as the stream job does).
    message_shape: MessageShape = MessageShape.READING
    model: ModelSpec = field(default_factory=ModelSpec)  # the family every pair is trained with (trainer train --model)

    @property
    def first_score_hour(self) -> datetime:
        return self.last_hour - (self.score_hours - 1) * HOUR

    @property
    def history_start(self) -> datetime:
        return self.first_score_hour - self.history_hours * HOUR


@dataclass
class HourRun:
    hour: datetime
    record: JobRecord
    seconds: float


@dataclass
class DemoResult:
    readings: int = 0
    messages: int = 0  # what the fleet sent: the readings, or one message per device and timestamp
    account: ReadingAccount = field(default_factory=ReadingAccount)  # the aggregator's: nothing dropped unsaid
    aggregate_rows: int = 0
    models: int = 0
    hours: list[HourRun] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # pair -> reason (from the run logs)
    windows_scored: int = 0
    flagged: int = 0
    injected: int = 0
    true_positives: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def precision(self) -> float:
        return self.true_positives / self.flagged if self.flagged else 0.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.injected if self.injected else 0.0


def break_models(service: BlobServiceClient, pairs: list[Pair], shard_count: int) -> dict[Pair, str]:
    """Delete one model and replace another with a broken file (a bad publish: new bytes, their own
    checksum), as an operator might find them. Like every writer of models, it takes the pairs' entries out
    of their shards' packs first, so the scorer takes the per-pair path and logs why each pair failed."""
    models = service.get_container_client(str(Container.MODELS))
    missing, corrupt = pairs[-1], pairs[-2]
    update_packs(models, shard_count, {missing: None, corrupt: None})
    models.delete_blob(model_blob(missing))
    blob = models.get_blob_client(model_blob(corrupt))
    data = b"not a skops file"
    metadata = {**blob.get_blob_properties().metadata, "sha256": hashlib.sha256(data).hexdigest()}
    blob.upload_blob(data, overwrite=True, metadata=metadata)
    return {missing: "missing_model", corrupt: "corrupt_model"}


def run_demo(settings: StorageSettings, config: DemoConfig, progress: Progress) -> DemoResult:
    service = settings.client()
    ensure_containers(service)
    result = DemoResult()

    step = time.perf_counter()
    task = progress.add_task("simulate fleet", total=None)
    readings, anomalies = simulate(config.fleet, config.history_start - HOUR, config.last_hour + 2 * HOUR)
    result.readings = len(readings)
    progress.update(task, total=1, completed=1)
    result.timings["simulate"] = time.perf_counter() - step

    step = time.perf_counter()
    task = progress.add_task("aggregate -> aggregates/", total=None)
    messages = to_messages(readings, config.message_shape)
    result.messages = len(messages)
    aggregates, result.account = aggregate_with_account(messages, config.aggregation)
    result.aggregate_rows = len(aggregates)
    blobs = publish_aggregates(service, aggregates, config.shard_count)
    progress.update(task, total=len(blobs), completed=len(blobs))
    result.timings["aggregate"] = time.perf_counter() - step
    del readings, messages, aggregates

    step = time.perf_counter()
    pairs = config.fleet.pairs()
    task = progress.add_task("train + publish models", total=len(pairs))
    training = train_and_publish(
        service,
        config.history_start,
        config.first_score_hour,
        model=config.model,
        shard_count=config.shard_count,
        on_pair=lambda _: progress.advance(task),
    )
    result.models = len(training.published)
    if config.bad_pairs and len(pairs) >= 3:
        break_models(service, sorted(training.published), config.shard_count)
    result.timings["train"] = time.perf_counter() - step

    score_hours = list(hours(config.first_score_hour, config.last_hour + HOUR))
    task = progress.add_task("score hours (submitter, local backend)", total=len(score_hours))
    with LocalBackend(settings, workers=config.workers, options=ScorerOptions()) as backend:
        # The same reconciler as the scheduled path: each hour is scored because it was never scored
        # or because the freshly published aggregates changed its inputs.
        plan = ReconcileSettings(stack=config.stack, shard_count=config.shard_count)
        reconciler = Reconciler(service, backend, plan)
        for hour in score_hours:
            step = time.perf_counter()
            scored = reconciler.hour(hour, datetime.now(UTC))
            if scored.record is None:
                raise RuntimeError(f"hour {hour:%Y-%m-%dT%H} was not scored: {scored.why}")
            result.hours.append(HourRun(hour, scored.record, time.perf_counter() - step))
            progress.advance(task)

    step = time.perf_counter()
    _evaluate(service, config, anomalies, result)
    result.timings["evaluate"] = time.perf_counter() - step
    return result


def _evaluate(service: BlobServiceClient, config: DemoConfig, anomalies: list[Anomaly], result: DemoResult) -> None:
    """Window-level precision/recall of the flags against the injected anomalies."""
    truth, ambiguous = anomalous_windows(anomalies, config.aggregation.window)
    logs = service.get_container_client(str(Container.LOGS))
    flagged: set[tuple[Pair, datetime]] = set()
    scored: set[tuple[Pair, datetime]] = set()
    for run in result.hours:
        predictions = read_hour_predictions(service, run.hour)
        for row in predictions.itertuples(index=False):
            key = (Pair(str(row.device_id), str(row.sensor)), pd.Timestamp(row.window_end).to_pydatetime())
            scored.add(key)
            if row.is_anomaly:
                flagged.add(key)
        for index in range(run.record.tasks):
            log_name = run_log_blob(run.hour, run.record.job_id, task_id_for(index))
            _, pair_logs = parse_jsonl(logs.download_blob(log_name).readall())
            for log in pair_logs:
                if log.status is PairStatus.FAILED:
                    result.failures[f"{log.device_id}/{log.sensor}"] = f"{log.reason}: {log.error}"
    in_scope = truth & scored
    flagged -= ambiguous
    result.windows_scored = len(scored)
    result.flagged = len(flagged)
    result.injected = len(in_scope)
    result.true_positives = len(flagged & in_scope)
