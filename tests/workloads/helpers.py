"""Builders shared by the workload tests: small aggregates and models with known contents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from azure.storage.blob import BlobServiceClient
from sklearn.svm import OneClassSVM

from workloads.aggregator.publish import publish_aggregates
from workloads.common.aggregates import DEFAULT_MODEL_FEATURES
from workloads.common.layout import Container
from workloads.common.manifest import TaskManifest
from workloads.common.modelstore import publish_model
from workloads.common.pairs import Pair
from workloads.common.runlog import PairLog
from workloads.common.shards import DEFAULT_SHARD_COUNT
from workloads.scorer.task import TaskReport, score_task
from workloads.submitter.plan import plan_hour
from workloads.training.train import default_estimator

HOUR = datetime(2026, 11, 25, 10, tzinfo=UTC)
GOOD_PAIRS = [Pair("a", "x"), Pair("b", "x")]


def aggregates_for(pairs: list[Pair], hour: datetime = HOUR, windows: int = 12, seed: int = 0) -> pd.DataFrame:
    """Plausible aggregates: ``windows`` five-minute windows per pair whose ends lie in ``hour``."""
    rng = np.random.default_rng(seed)
    rows = []
    for pair in pairs:
        for w in range(windows):
            avg = 20 + rng.normal(0, 0.3)
            rows.append(
                {
                    "device_id": pair.device_id,
                    "sensor": pair.sensor,
                    "window_end": pd.Timestamp(hour + timedelta(minutes=5 * w)),
                    "avg": avg,
                    "min": avg - 1 - rng.random(),
                    "max": avg + 1 + rng.random(),
                    "stdev": 0.5 + 0.1 * rng.random(),
                    "count": 30,
                }
            )
    return pd.DataFrame(rows).astype({"device_id": "string", "sensor": "string", "count": "int64"})


class OwnDetector(OneClassSVM):
    """A user's own estimator class: importable (worker processes too), but no type skops or the vetted list
    knows, so loading its model needs ``--trusted-type`` OWN_TYPE."""


OWN_TYPE = f"{OwnDetector.__module__}.OwnDetector"


def train_on(frame: pd.DataFrame) -> object:
    return default_estimator().fit(frame[list(DEFAULT_MODEL_FEATURES)].to_numpy())


def hour_manifests(
    service: BlobServiceClient, hour: datetime = HOUR, shard_count: int = DEFAULT_SHARD_COUNT, **plan: Any
) -> list[TaskManifest]:
    """The tasks the planner makes for the hour: one per folder (shard, or slice of a large one)."""
    return list(plan_hour(service, "test", hour, shard_count=shard_count, **plan).tasks)


def score_hour(service: BlobServiceClient, hour: datetime = HOUR, **kwargs: Any) -> list[TaskReport]:
    """Every task of the hour, scored in this process (``kwargs`` go to ``score_task``)."""
    return [score_task(service, manifest, **kwargs) for manifest in hour_manifests(service, hour)]


def pair_logs(reports: list[TaskReport]) -> dict[Pair, PairLog]:
    """Every pair line of the reports, by pair (a pair is in exactly one task)."""
    lines = [line for report in reports for line in report.pairs]
    by_pair = {Pair(line.device_id, line.sensor): line for line in lines}
    assert len(by_pair) == len(lines), "a pair was scored by two tasks"
    return by_pair


def publish_data_and_models(service: BlobServiceClient, pairs: list[Pair], hour: datetime = HOUR) -> pd.DataFrame:
    """Publish the hour's aggregates and, for each pair, a model trained on its own earlier history."""
    publish_aggregates(service, aggregates_for(pairs, hour))
    history = aggregates_for(pairs, hour - timedelta(hours=6), windows=72, seed=1)
    models = service.get_container_client(str(Container.MODELS))
    for pair in pairs:
        rows = history[(history.device_id == pair.device_id) & (history.sensor == pair.sensor)]
        publish_model(models, pair, train_on(rows), DEFAULT_MODEL_FEATURES)
    return aggregates_for(pairs, hour)
