"""A deterministic fleet of simulated devices with injected, recorded anomalies.

Each (pair, hour) draws from its own random stream, seeded by (seed, device, sensor, hour), so any
time range yields the same readings as the hours it covers: simulating 00-06 and then 06-12 equals
simulating 00-12.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import numpy as np
import pandas as pd

from workloads.common.aggregates import MESSAGE_READINGS, MessageShape
from workloads.common.pairs import Pair
from workloads.common.windows import hours


@dataclass(frozen=True)
class SensorProfile:
    name: str
    baseline: float
    spread: float  # device-to-device variation of the baseline
    daily_amplitude: float
    noise: float


PROFILES = (
    SensorProfile("temperature", 21.0, 4.0, 0.8, 0.25),
    SensorProfile("humidity", 45.0, 8.0, 2.0, 0.8),
    SensorProfile("pressure", 1013.0, 5.0, 0.6, 0.3),
    SensorProfile("vibration", 0.50, 0.15, 0.02, 0.03),
)


class AnomalyKind(StrEnum):
    SPIKE = "spike"  # large excursions for a short while
    LEVEL_SHIFT = "level_shift"  # offset well outside the daily range
    STUCK = "stuck"  # the sensor repeats one value
    NOISE_BURST = "noise_burst"  # many times the usual noise


@dataclass(frozen=True)
class Anomaly:
    pair: Pair
    start: datetime
    end: datetime
    kind: AnomalyKind


@dataclass(frozen=True)
class FleetSpec:
    devices: int = 25
    sensors: int = 4
    interval: timedelta = timedelta(seconds=10)
    anomaly_rate: float = 0.08  # probability that a pair has one anomaly in a given hour
    seed: int = 7

    def __post_init__(self) -> None:
        if not 1 <= self.devices <= 100_000:
            raise ValueError("devices must be between 1 and 100000")
        if not 1 <= self.sensors <= 4 * 8:
            raise ValueError("sensors must be between 1 and 32")
        if not timedelta(seconds=1) <= self.interval <= timedelta(minutes=5) or 3600 % self.interval.total_seconds():
            raise ValueError("interval must divide an hour and lie between 1 s and 5 min")
        if not 0.0 <= self.anomaly_rate <= 1.0:
            raise ValueError("anomaly_rate must be between 0 and 1")

    def sensor_profiles(self) -> list[tuple[str, SensorProfile]]:
        """Sensor names cycle through the profiles: temperature, ..., temperature-2, ..."""
        named = []
        for i in range(self.sensors):
            profile = PROFILES[i % len(PROFILES)]
            suffix = "" if i < len(PROFILES) else f"-{i // len(PROFILES) + 1}"
            named.append((profile.name + suffix, profile))
        return named

    def pairs(self) -> list[Pair]:
        return [Pair(device_id(d), s) for d in range(self.devices) for s, _ in self.sensor_profiles()]


def device_id(index: int) -> str:
    return f"dev-{index:05d}"


def _pair_hour(
    spec: FleetSpec, d: int, s: int, name: str, profile: SensorProfile, hour: datetime
) -> tuple[np.ndarray, np.ndarray, Anomaly | None]:
    device_rng = np.random.default_rng([spec.seed, d, s])
    base = profile.baseline + device_rng.normal(0, profile.spread)
    phase = device_rng.uniform(0, 2 * np.pi)
    step = spec.interval.total_seconds()
    n = int(3600 / step)
    offsets = np.arange(1, n + 1) * step  # readings at (hour, hour + 1h]
    epoch_seconds = hour.timestamp() + offsets
    rng = np.random.default_rng([spec.seed, d, s, int(hour.timestamp() // 3600)])
    values = base + profile.daily_amplitude * np.sin(2 * np.pi * epoch_seconds / 86400 + phase)
    values += rng.normal(0, profile.noise, n)
    anomaly = None
    if rng.random() < spec.anomaly_rate:
        kind = list(AnomalyKind)[rng.integers(len(AnomalyKind))]
        duration = rng.uniform(8, 20) * 60
        start = rng.uniform(0, 3600 - duration)
        inside = (offsets > start) & (offsets <= start + duration)
        sign = rng.choice([-1.0, 1.0])
        if kind is AnomalyKind.SPIKE:
            values[inside] += sign * rng.uniform(10, 16) * profile.noise * (rng.random(inside.sum()) < 0.3)
        elif kind is AnomalyKind.LEVEL_SHIFT:
            values[inside] += sign * (3 * profile.daily_amplitude + rng.uniform(6, 10) * profile.noise)
        elif kind is AnomalyKind.STUCK:
            values[inside] = values[np.argmax(inside)]
        else:
            values[inside] += rng.normal(0, 8 * profile.noise, inside.sum())
        anomaly = Anomaly(
            Pair(device_id(d), name),
            hour + timedelta(seconds=start),
            hour + timedelta(seconds=start + duration),
            kind,
        )
    return epoch_seconds, values, anomaly


def simulate(spec: FleetSpec, start: datetime, end: datetime) -> tuple[pd.DataFrame, list[Anomaly]]:
    """Readings in (start, end] for every pair (start and end on the hour), with the injected anomalies."""
    frames: list[pd.DataFrame] = []
    anomalies: list[Anomaly] = []
    names = spec.sensor_profiles()
    for hour in hours(start, end):
        for d in range(spec.devices):
            for s, (name, profile) in enumerate(names):
                seconds, values, anomaly = _pair_hour(spec, d, s, name, profile, hour)
                frames.append(
                    pd.DataFrame(
                        {
                            "device_id": device_id(d),
                            "sensor": name,
                            "timestamp": pd.to_datetime(seconds, unit="s", utc=True),
                            "value": values,
                        }
                    )
                )
                if anomaly is not None:
                    anomalies.append(anomaly)
    if not frames:
        return pd.DataFrame(columns=["device_id", "sensor", "timestamp", "value"]), []
    return pd.concat(frames, ignore_index=True), anomalies


WindowKey = tuple[Pair, datetime]


def anomalous_windows(
    anomalies: list[Anomaly], window: timedelta, min_overlap: float = 0.5
) -> tuple[set[WindowKey], set[WindowKey]]:
    """Ground truth per window, as (pair, window end): the anomalous windows and the ambiguous ones.

    A window at least ``min_overlap`` covered by an anomaly is anomalous; one touched less than that
    is ambiguous (a flag there is neither right nor wrong) and is left out of precision and recall.
    """
    anomalous: set[WindowKey] = set()
    touched: set[WindowKey] = set()
    for anomaly in anomalies:
        first_end = pd.Timestamp(anomaly.start).ceil(pd.Timedelta(window)).to_pydatetime()
        end = first_end if first_end > anomaly.start else first_end + window
        while end - window < anomaly.end:
            overlap = min(end, anomaly.end) - max(end - window, anomaly.start)
            (anomalous if overlap >= window * min_overlap else touched).add((anomaly.pair, end))
            end += window
    return anomalous, touched - anomalous


def to_messages(readings: pd.DataFrame, shape: MessageShape) -> pd.DataFrame:
    """The readings as the messages a fleet in ``shape`` sends: one row per message.

    ``READING`` is the readings themselves. ``DEVICE`` is one row per device and timestamp with ``readings``, a dict
    {sensor: value}, the payload real devices usually send (one event instead of one per sensor, which is what
    Event Hubs and Stream Analytics are billed and sized by). A JSON object holds each name once, so a repeated
    (device, timestamp, sensor) keeps its last value. Other columns are not carried.
    """
    if shape is MessageShape.READING:
        return readings
    columns = ["device_id", "timestamp", MESSAGE_READINGS]
    if readings.empty:
        return pd.DataFrame(columns=columns)
    ordered = readings.sort_values(["device_id", "timestamp"], kind="stable")
    rows: list[tuple[object, object, dict[str, object]]] = []
    for device, timestamp, sensor, value in zip(
        ordered["device_id"], ordered["timestamp"], ordered["sensor"], ordered["value"], strict=True
    ):
        if not rows or rows[-1][0] != device or rows[-1][1] != timestamp:
            rows.append((device, timestamp, {}))
        rows[-1][2][sensor] = value
    return pd.DataFrame(rows, columns=columns)


def message_json(message: dict[str, object]) -> str:
    """One message as the JSON event body the stream job reads (timestamps in ISO 8601 UTC, as TIMESTAMP BY reads)."""
    body = {k: (v.isoformat() if isinstance(v, pd.Timestamp | datetime) else v) for k, v in message.items()}
    return json.dumps(body, separators=(",", ":"), allow_nan=False)
