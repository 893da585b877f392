"""Planning one revision of an hour: which pairs to score, in which chunks, under which job id.

Pairs are grouped by the shard of their device (``shards.shard_of``) and chunked within a shard, so
every task's pairs share one model pack. The hour's rows are read once, here, and cut into one input
blob per task (``submit.write_inputs``): a task then reads its own pairs' share of the hour, never
the whole hour, whatever the fleet's size.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from azure.storage.blob import BlobServiceClient

from workloads.common.aggregates import KEYS
from workloads.common.hour_inputs import InputBlob, fingerprint, list_hour_inputs, read_hour_aggregates
from workloads.common.layout import Container, task_input_blob
from workloads.common.manifest import TaskManifest
from workloads.common.model_metadata import list_model_checksums
from workloads.common.pairs import Pair
from workloads.common.shards import shard_name, shard_of
from workloads.common.windows import floor_hour

_STACK = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")


def validate_stack(stack: str) -> str:
    if not _STACK.fullmatch(stack):
        raise ValueError(f"invalid stack name {stack!r}: use 1-31 lowercase letters, digits or '-'")
    return stack


def job_id_for(stack: str, hour: datetime, revision: int = 1) -> str:
    """One job per stack, hour and revision: a trigger that fires twice finds the same job.

    Fits Azure Batch's job id rules (letters, digits, '-' and '_', at most 64 characters): at most
    6 + 31 + 1 + 10 + 2 + 6 = 56.
    """
    if not 1 <= revision <= 999_999:
        raise ValueError(f"revision must be 1..999999, got {revision}")
    return f"score-{validate_stack(stack)}-{floor_hour(hour):%Y%m%d%H}-r{revision:03d}"


def task_id_for(index: int) -> str:
    return f"task-{index:05d}"


def chunk(pairs: Sequence[Pair], size: int) -> list[tuple[Pair, ...]]:
    """Sorted pairs in chunks of ``size``: the same inputs always give the same tasks."""
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")
    ordered = sorted(set(pairs))
    return [tuple(ordered[i : i + size]) for i in range(0, len(ordered), size)]


def shard_chunks(pairs: Sequence[Pair], size: int, shard_count: int) -> list[tuple[str, tuple[Pair, ...]]]:
    """(shard name, pairs) per task: shards in order, each shard's sorted pairs in chunks of ``size``.

    A task never spans two shards, so it reads one model pack; a shard larger than ``size`` becomes
    several tasks that share its pack. Each device is hashed once, not once per sensor.
    """
    shard_of_device = {device: shard_of(device, shard_count) for device in {p.device_id for p in pairs}}
    by_shard: dict[int, list[Pair]] = {}
    for pair in set(pairs):
        by_shard.setdefault(shard_of_device[pair.device_id], []).append(pair)
    return [
        (shard_name(shard, shard_count), part) for shard in sorted(by_shard) for part in chunk(by_shard[shard], size)
    ]


@dataclass(frozen=True)
class Trust:
    """Model trust the operator grants a run; it travels in every task's manifest."""

    pickle: bool = False
    types: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobPlan:
    job_id: str
    stack: str
    hour: datetime
    tasks: tuple[TaskManifest, ...]
    silent_pairs: tuple[Pair, ...]  # a model but no data this hour: worth a look, nothing to score
    inputs: tuple[InputBlob, ...] = ()
    input_issues: dict[str, Any] = field(default_factory=dict)  # corrupt blobs, quarantined rows, duplicates
    rows: pd.DataFrame | None = field(default=None, repr=False)  # the hour's rows, cut per task on submit

    @property
    def pairs(self) -> int:
        return sum(len(t.pairs) for t in self.tasks)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.inputs)


def plan_hour(
    service: BlobServiceClient,
    stack: str,
    hour: datetime,
    chunk_size: int,
    *,
    shard_count: int = 1,
    revision: int = 1,
    inputs: Sequence[InputBlob] | None = None,
    trust: Trust | None = None,
) -> JobPlan:
    """Every pair with data this hour is scheduled; the scorer logs pairs whose model is missing or bad.

    Scheduling pairs without a model (rather than dropping them here) keeps one place, the run log,
    that says what happened to every pair that sent data. Raises InputReadError when a blob of the
    hour cannot be read: a plan is never made on part of the hour.
    """
    hour = floor_hour(hour)
    job_id = job_id_for(stack, hour, revision)
    listed = tuple(inputs) if inputs is not None else tuple(list_hour_inputs(service, hour))
    names = tuple(b.name for b in listed)
    aggregates = read_hour_aggregates(service, hour, names)
    keys = aggregates.frame[list(KEYS)].drop_duplicates()
    with_data = {Pair(str(d), str(s)) for d, s in keys.itertuples(index=False)}
    models = list_model_checksums(service.get_container_client(str(Container.MODELS)))
    tasks = tuple(
        TaskManifest(
            job_id=job_id,
            task_id=task_id_for(i),
            hour=hour,
            pairs=pairs,
            inputs_blob=task_input_blob(hour, job_id, task_id_for(i)),
            shard=shard,
            models=_checksums(pairs, models),
            trust_pickle=trust.pickle if trust else False,
            trusted_types=trust.types if trust else (),
        )
        for i, (shard, pairs) in enumerate(shard_chunks(list(with_data), chunk_size, shard_count))
    )
    silent = tuple(sorted(set(models) - with_data))
    return JobPlan(job_id, stack, hour, tasks, silent, listed, aggregates.issues(), aggregates.frame)


def _checksums(pairs: Sequence[Pair], models: dict[Pair, str | None]) -> dict[str, str]:
    """The checksum of each pair's skops model as listed now (pickles have none: they never take the
    pack's fast path, only the per-pair path that applies the operator's trust options)."""
    return {str(pair): sha for pair in pairs if (sha := models.get(pair)) is not None}
