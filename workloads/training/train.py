"""Training one model per device/sensor pair on a history of aggregates, and publishing it.

All of the history is read before anything is trained, and every pair is trained before anything is
published: unreadable history raises (InputReadError) with nothing published, and a pair that cannot
be trained is skipped with its reason, so a run never publishes half a fleet and then fails.

The shards' model packs are always kept in step: the trained pairs' entries are retired before their
models are replaced and the new entries added after, so a pack entry is never older than its model.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from azure.storage.blob import BlobServiceClient

from workloads.common.aggregates import DEFAULT_MODEL_FEATURES, KEYS, WINDOW_END
from workloads.common.hour_inputs import HourAggregates, read_hour_aggregates
from workloads.common.layout import Container
from workloads.common.modelstore import ModelError, serialise_model
from workloads.common.pairs import Pair
from workloads.common.shards import DEFAULT_SHARD_COUNT, shard_name
from workloads.common.windows import hours
from workloads.training.families import EstimatorFactory, ModelSpec, default_estimator, family_of
from workloads.training.packs import PackUpdate
from workloads.training.publishing import ReadyModel, publish_with_packs

__all__ = [
    "Skip",
    "TrainingReport",
    "default_estimator",
    "describe_skips",
    "read_history",
    "skip_counts",
    "train_and_publish",
    "train_pair",
]

TOO_FEW_WINDOWS = "too_few_windows"
FIT_FAILED = "fit_failed"


@dataclass(frozen=True)
class Skip:
    """Why a pair got no model: a stable code (``too_few_windows``; a ``ModelError``'s own, e.g.
    ``untrusted_model``; else ``fit_failed``) and the whole message."""

    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


@dataclass
class TrainingReport:
    published: dict[Pair, str] = field(default_factory=dict)  # pair -> model sha256
    skipped: dict[Pair, Skip] = field(default_factory=dict)  # pair -> why
    quarantined_rows: dict[str, dict[str, int]] = field(default_factory=dict)  # blob -> reason -> rows
    corrupt_blobs: dict[str, str] = field(default_factory=dict)  # blob -> why its rows were left out
    duplicate_rows: int = 0
    conflicting_rows: int = 0
    rows_outside_their_hour: int = 0  # found in another hour's folder: not trained on there
    windows_not_finite: int = 0  # windows of trained pairs left out of their fit: a feature NaN or infinite
    packs: PackUpdate | None = None  # None: no pair trained, packs left alone


def skip_counts(skipped: Mapping[Pair, Skip]) -> dict[str, int]:
    """Pairs skipped by reason, sorted by reason."""
    return dict(sorted(Counter(skip.reason for skip in skipped.values()).items()))


def describe_skips(counts: Mapping[str, int]) -> str:
    """``too_few_windows: 3 pair(s), untrusted_model: 1 pair(s)``: for a failure's one line."""
    return ", ".join(f"{reason}: {count} pair(s)" for reason, count in counts.items())


def read_history(
    service: BlobServiceClient, start: datetime, end: datetime, report: TrainingReport | None = None
) -> pd.DataFrame:
    """Every hour of [start, end); raises InputReadError if any blob cannot be read."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        read: list[HourAggregates] = list(pool.map(lambda hour: read_hour_aggregates(service, hour), hours(start, end)))
    if report is not None:
        for hour in read:
            report.quarantined_rows.update(hour.quarantined)
            report.corrupt_blobs.update(hour.corrupt)
            report.duplicate_rows += hour.duplicates
            report.conflicting_rows += hour.conflicts
            report.rows_outside_their_hour += hour.outside_hour
    frames = [h.frame for h in read]
    return pd.concat(frames, ignore_index=True).sort_values([*KEYS, WINDOW_END]) if frames else pd.DataFrame()


def train_pair(
    rows: pd.DataFrame, features: Sequence[str], factory: EstimatorFactory, min_rows: int
) -> tuple[Any, int]:
    """The pair's fitted model and the windows it was fitted on (rows with a non-finite feature are left out);
    ``ModelError("too_few_windows")`` when fewer than ``min_rows`` are left."""
    matrix = rows[list(features)].to_numpy(dtype="float64", na_value=np.nan)
    matrix = matrix[np.isfinite(matrix).all(axis=1)]
    if len(matrix) < min_rows:
        raise ModelError(TOO_FEW_WINDOWS, f"only {len(matrix)} usable window(s), need at least {min_rows}")
    return factory().fit(matrix), len(matrix)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def train_and_publish(
    service: BlobServiceClient,
    start: datetime,
    end: datetime,
    *,
    features: Sequence[str] = DEFAULT_MODEL_FEATURES,
    model: ModelSpec | None = None,
    factory: EstimatorFactory | None = None,
    trusted_types: Sequence[str] = (),
    min_rows: int = 24,
    pairs: Sequence[Pair] | None = None,
    on_pair: Callable[[Pair], None] | None = None,
    shard_count: int = DEFAULT_SHARD_COUNT,
    history: pd.DataFrame | None = None,
) -> TrainingReport:
    """Fit a model for every pair with enough history in [start, end), then publish them all and update
    the packs of their shards (an entry per pair, none where the model cannot be compiled).

    ``model`` names the family (default: ``ocsvm``); ``factory`` is the function that builds its estimators when
    the caller already validated ``model.factory()``, or any function returning an unfitted estimator (without
    ``model``, the family is then read from what it returns). Each fitted model is serialised
    before anything is published, and one whose skops file holds a type outside the vetted list and
    ``trusted_types`` is skipped (``untrusted_model``): the scorer could not load it. ``history`` replaces the
    read of every hour in [start, end) (a training task reads only its shard's folders).

    Publishing follows ``publishing.publish_with_packs``: old pack entries out first, new ones in after, and
    PackUpdateError when the packs cannot be updated.
    """
    shard_name(0, shard_count)  # an invalid count fails here, not after publishing
    spec = model or ModelSpec()
    make = factory if factory is not None else spec.factory(len(features), trusted_types)
    report = TrainingReport()
    if history is None:
        history = read_history(service, start, end, report)
    wanted = set(pairs) if pairs is not None else None
    trained: dict[Pair, ReadyModel] = {}
    for (device, sensor), rows in history.groupby(list(KEYS), sort=True) if len(history) else []:
        pair = Pair(str(device), str(sensor))  # ids were validated (and bad rows quarantined) on read
        if wanted is not None and pair not in wanted:
            continue
        try:
            estimator, used = train_pair(rows, features, make, min_rows)
            report.windows_not_finite += len(rows) - used  # of trained pairs; a skipped pair's are all unused
            data = serialise_model(estimator, trusted_types)
        except ModelError as exc:  # too few windows, a model the scorer could not load (untrusted_model), ...
            report.skipped[pair] = Skip(exc.reason, _one_line(exc))
            continue
        except Exception as exc:  # one pair's failure (a fit that fails) never sinks the run
            report.skipped[pair] = Skip(FIT_FAILED, _one_line(exc))
            continue
        trained[pair] = ReadyModel(
            estimator,
            data,
            tuple(features),
            family=spec.family if model is not None else family_of(estimator),
            training_start=start,
            training_end=end,
            training_rows=used,
        )
    models = service.get_container_client(str(Container.MODELS))
    report.published, report.packs = publish_with_packs(models, shard_count, trained, on_pair)
    return report
