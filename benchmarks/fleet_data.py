"""The fleet benchmark's synthetic fleet: a few trained models cloned to many pairs, one hour of rows.

Eight ``StandardScaler + OneClassSVM`` pipelines (different nu, gamma and feature sets, four or five of
the aggregate features; family ``ocsvm``) or ``StandardScaler + IsolationForest`` pipelines (family
``iforest``: the iforest family's defaults, 100 trees of up to 256 samples, a random_state per template;
the scaler, which the platform's iforest family does without, only lets a clone move to its pair's level
as below) are trained on a day of synthetic 5-minute windows each. Every pair gets a
clone of one of them, moved to its own level and scale: the clone's scaler is shifted and stretched
by the same affine map as the pair's rows, so each pair has its own model (its own arrays, bytes and
sha256) whose decisions on its own rows are as good as the template's on its training data.

Everything is a function of ``(pairs, seed)``: the benchmark's measurement processes rebuild the
same fleet instead of shipping it between processes, so models, rows and matrices never disagree.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from azure.storage.blob import BlobServiceClient
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM

from workloads.common.aggregates import AGGREGATE_COLUMNS, FEATURE_NAMES, WINDOW_END
from workloads.common.layout import Container
from workloads.common.model_pack import PackEntry
from workloads.common.modelstore import publish_model
from workloads.common.pairs import Pair

SENSORS = ("temperature", "vibration")
WINDOWS_PER_HOUR = 12
WINDOW = timedelta(minutes=5)
HISTORY_WINDOWS = 288  # a day of windows, what the project trains on
DEFAULT_HOUR = datetime(2026, 1, 1, 12, tzinfo=UTC)
ANOMALY_RATE = 0.03
FAMILIES = ("ocsvm", "iforest")  # the detector behind each template's StandardScaler

# Feature columns as generated, in FEATURE_NAMES order: avg, min, max, stdev, count.
_AVG, _MIN, _MAX, _STDEV, _COUNT = (FEATURE_NAMES.index(n) for n in ("avg", "min", "max", "stdev", "count"))
# How a pair's level and scale move each feature: x -> x * scale + level (level only for the values).
_SCALED = np.array([True, True, True, True, False])
_SHIFTED = np.array([True, True, True, False, False])
assert FEATURE_NAMES == ("avg", "min", "max", "stdev", "count"), "the generator below writes these columns"


@dataclass(frozen=True)
class TemplateSpec:
    features: tuple[str, ...]
    nu: float
    gamma: float | str
    noise: float  # within-window spread of the readings, in the template's own units
    drift: float  # slow movement of the window average over a day


TEMPLATES: tuple[TemplateSpec, ...] = (
    TemplateSpec(("avg", "min", "max", "stdev"), 0.01, 0.1, 0.5, 1.0),  # the project's default estimator
    TemplateSpec(("avg", "min", "max", "stdev"), 0.02, 0.05, 0.8, 2.0),
    TemplateSpec(("avg", "min", "max", "stdev"), 0.05, 0.2, 0.3, 0.5),
    TemplateSpec(("avg", "min", "max", "stdev"), 0.01, "scale", 1.0, 1.5),
    TemplateSpec(("avg", "min", "max", "stdev", "count"), 0.01, 0.1, 0.5, 1.0),
    TemplateSpec(("avg", "min", "max", "stdev", "count"), 0.05, 0.3, 0.6, 0.8),
    TemplateSpec(("avg", "min", "max", "stdev"), 0.1, 0.5, 0.4, 1.2),
    TemplateSpec(("avg", "max", "stdev", "count"), 0.02, 0.1, 0.7, 0.7),
)


def _windows(rng: np.random.Generator, n: int, spec: TemplateSpec, phase: np.ndarray) -> np.ndarray:
    """``n`` windows of one template's normal behaviour, all five features; ``phase`` in [0, 1) of a day."""
    out = np.empty((n, len(FEATURE_NAMES)))
    avg = spec.drift * np.sin(2 * np.pi * phase) + rng.normal(0.0, 0.15, n)
    stdev = spec.noise * rng.gamma(16.0, 1 / 16, n)
    out[:, _AVG] = avg
    out[:, _MIN] = avg - stdev * rng.uniform(1.3, 2.4, n)
    out[:, _MAX] = avg + stdev * rng.uniform(1.3, 2.4, n)
    out[:, _STDEV] = stdev
    out[:, _COUNT] = 30 - rng.binomial(3, 0.1, n)
    return out


def _inject(rng: np.random.Generator, rows: np.ndarray, spec: TemplateSpec, rate: float) -> None:
    """Spikes, level shifts, stuck sensors and noise bursts in about ``rate`` of the windows."""
    hit = np.flatnonzero(rng.random(len(rows)) < rate)
    kinds = rng.integers(0, 4, len(hit))
    for kind, index in zip(kinds, hit, strict=True):
        row = rows[index]
        if kind == 0:  # spike
            row[_MAX] += 10 * spec.noise + 2
            row[_AVG] += spec.noise
            row[_STDEV] *= 2.5
        elif kind == 1:  # level shift
            row[[_AVG, _MIN, _MAX]] += 4 * spec.drift + 3
        elif kind == 2:  # stuck sensor
            row[_MIN] = row[_MAX] = row[_AVG]
            row[_STDEV] = 0.0
        else:  # noise burst
            row[_STDEV] *= 5
            row[_MIN] -= 6 * spec.noise
            row[_MAX] += 6 * spec.noise


def _columns(spec: TemplateSpec) -> list[int]:
    return [FEATURE_NAMES.index(f) for f in spec.features]


@dataclass(frozen=True)
class Template:
    spec: TemplateSpec
    estimator: Pipeline


def train_templates(seed: int, family: str = "ocsvm") -> tuple[Template, ...]:
    """The real training runs (a day of windows each); clones are derived from these."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}: expected one of {FAMILIES}")
    found = []
    for index, spec in enumerate(TEMPLATES):
        rng = np.random.default_rng([seed, 1, index])
        phase = np.arange(HISTORY_WINDOWS) / HISTORY_WINDOWS
        rows = _windows(rng, HISTORY_WINDOWS, spec, phase)
        _inject(rng, rows, spec, ANOMALY_RATE)
        detector: Any = (
            OneClassSVM(nu=spec.nu, gamma=spec.gamma) if family == "ocsvm" else IsolationForest(random_state=index)
        )
        estimator = make_pipeline(StandardScaler(), detector)
        found.append(Template(spec, estimator.fit(rows[:, _columns(spec)])))
    return tuple(found)


@dataclass(frozen=True)
class SyntheticFleet:
    """``pairs`` device/sensor pairs (``dev-000001/temperature``, ``dev-000001/vibration``, ...), one hour."""

    pairs: int
    seed: int = 7
    hour: datetime = DEFAULT_HOUR
    anomaly_rate: float = ANOMALY_RATE
    family: str = "ocsvm"

    @cached_property
    def templates(self) -> tuple[Template, ...]:
        return train_templates(self.seed, self.family)

    @cached_property
    def pair_ids(self) -> tuple[Pair, ...]:
        per_device = len(SENSORS)
        return tuple(Pair(f"dev-{i // per_device + 1:06d}", SENSORS[i % per_device]) for i in range(self.pairs))

    @cached_property
    def _params(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per pair: template index, level, scale."""
        rng = np.random.default_rng([self.seed, 2])
        template = rng.integers(0, len(TEMPLATES), self.pairs)
        level = rng.uniform(-20.0, 80.0, self.pairs)
        scale = rng.uniform(0.2, 5.0, self.pairs)
        return template, level, scale

    @cached_property
    def values(self) -> np.ndarray:
        """All features of every pair's windows, shape (pairs, WINDOWS_PER_HOUR, 5), in the pair's units."""
        template, level, scale = self._params
        out = np.empty((self.pairs, WINDOWS_PER_HOUR, len(FEATURE_NAMES)))
        phase = np.arange(WINDOWS_PER_HOUR) / HISTORY_WINDOWS + self.hour.hour / 24
        for index, spec in enumerate(TEMPLATES):
            members = np.flatnonzero(template == index)
            if not len(members):
                continue
            rng = np.random.default_rng([self.seed, 3, index])
            rows = _windows(rng, len(members) * WINDOWS_PER_HOUR, spec, np.tile(phase, len(members)))
            _inject(rng, rows, spec, self.anomaly_rate)
            out[members] = rows.reshape(len(members), WINDOWS_PER_HOUR, -1)
        out[:, :, _SCALED] *= scale[:, None, None]
        out[:, :, _SHIFTED] += level[:, None, None]
        out[:, :, _COUNT] = np.round(out[:, :, _COUNT])
        return out

    @cached_property
    def window_ends(self) -> pd.DatetimeIndex:
        return pd.date_range(self.hour, periods=WINDOWS_PER_HOUR, freq=WINDOW, unit="us")

    def features(self, index: int) -> tuple[str, ...]:
        return TEMPLATES[int(self._params[0][index])].features

    def matrix(self, index: int) -> np.ndarray:
        """The pair's model input: its windows in order, its model's features (all finite)."""
        spec = TEMPLATES[int(self._params[0][index])]
        return np.ascontiguousarray(self.values[index][:, _columns(spec)])

    def matrices(self, indices: Sequence[int] | None = None) -> list[np.ndarray]:
        return [self.matrix(i) for i in (range(self.pairs) if indices is None else indices)]

    def model(self, index: int) -> Pipeline:
        """The pair's own estimator: its template's clone with the scaler moved to the pair's level and scale."""
        template_index, level, scale = (p[index] for p in self._params)
        template = self.templates[int(template_index)]
        columns = _columns(template.spec)
        clone = copy.deepcopy(template.estimator)
        scaler: StandardScaler = clone.steps[0][1]
        factor = np.where(_SCALED[columns], scale, 1.0)
        offset = np.where(_SHIFTED[columns], level, 0.0)
        scaler.mean_ = template.estimator.steps[0][1].mean_ * factor + offset
        scaler.scale_ = template.estimator.steps[0][1].scale_ * factor
        scaler.var_ = scaler.scale_**2
        return clone

    def models(self, indices: Sequence[int] | None = None) -> Iterator[Pipeline]:
        for i in range(self.pairs) if indices is None else indices:
            yield self.model(i)

    def frame(self) -> pd.DataFrame:
        """The hour's aggregate rows, in the schema the aggregator writes (sorted by pair and window)."""
        n = self.pairs * WINDOWS_PER_HOUR
        flat = self.values.reshape(n, -1)
        columns: dict[str, Any] = {
            "device_id": pd.array(np.repeat([p.device_id for p in self.pair_ids], WINDOWS_PER_HOUR), dtype="string"),
            "sensor": pd.array(np.repeat([p.sensor for p in self.pair_ids], WINDOWS_PER_HOUR), dtype="string"),
            WINDOW_END: self.window_ends[np.tile(np.arange(WINDOWS_PER_HOUR), self.pairs)],
        }
        for position, name in enumerate(FEATURE_NAMES):
            columns[name] = flat[:, position].astype("int64" if name == "count" else "float64")
        return pd.DataFrame(columns)[list(AGGREGATE_COLUMNS)]


def sample_indices(pairs: int, size: int, seed: int = 11) -> list[int]:
    """``size`` pair indices spread over the fleet (all of them when ``size >= pairs``), sorted."""
    if size >= pairs:
        return list(range(pairs))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(pairs, size, replace=False))


def write_skops_models(fleet: SyntheticFleet, indices: Sequence[int], folder: Path) -> None:
    """One skops file per pair (``<index>.skops``), the bytes the project publishes."""
    import skops.io as sio

    folder.mkdir(parents=True, exist_ok=True)
    for index in indices:
        (folder / f"{index}.skops").write_bytes(sio.dumps(fleet.model(index)))


def write_pickle_models(fleet: SyntheticFleet, indices: Sequence[int], folder: Path) -> None:
    """One pickle per pair, for the reference style only (our own, trusted files)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in indices:
        (folder / f"{index}.pkl").write_bytes(pickle.dumps(fleet.model(index), protocol=pickle.HIGHEST_PROTOCOL))


def publish_fleet(service: BlobServiceClient, fleet: SyntheticFleet, shard_count: int = 1, threads: int = 8) -> None:
    """The hour's aggregates (in ``shard_count`` shard folders, as the stream job writes them), every pair's
    model and the shards' model packs, through the project's own publishing code (as the trainer publishes them)."""
    from workloads.aggregator.publish import publish_aggregates
    from workloads.training.packs import pack_entry, update_packs

    publish_aggregates(service, fleet.frame(), shard_count)  # the same shard folders as the packs
    models = service.get_container_client(str(Container.MODELS))
    start, end = fleet.hour - timedelta(days=1), fleet.hour

    def publish(index: int) -> tuple[Pair, PackEntry | None]:
        pair, model, features = fleet.pair_ids[index], fleet.model(index), fleet.features(index)
        metadata = publish_model(
            models,
            pair,
            model,
            features,
            training_start=start,
            training_end=end,
            training_rows=HISTORY_WINDOWS,
        )
        return pair, pack_entry(pair, model, metadata.sha256, features)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        entries = dict(pool.map(publish, range(fleet.pairs)))
    update_packs(models, shard_count, entries)
