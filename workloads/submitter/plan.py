"""Planning one revision of an hour: which pairs to score, in which chunks, under which job id."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from azure.storage.blob import BlobServiceClient

from workloads.common.aggregates import KEYS
from workloads.common.hour_inputs import InputBlob, fingerprint, list_hour_inputs, read_hour_aggregates
from workloads.common.layout import Container
from workloads.common.manifest import TaskManifest
from workloads.common.model_metadata import list_models
from workloads.common.pairs import Pair
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
    with_model = set(list_models(service.get_container_client(str(Container.MODELS))))
    tasks = tuple(
        TaskManifest(
            job_id=job_id,
            task_id=task_id_for(i),
            hour=hour,
            pairs=pairs,
            inputs=names,
            trust_pickle=trust.pickle if trust else False,
            trusted_types=trust.types if trust else (),
        )
        for i, pairs in enumerate(chunk(list(with_data), chunk_size))
    )
    silent = tuple(sorted(with_model - with_data))
    return JobPlan(job_id, stack, hour, tasks, silent, listed, aggregates.issues())
