"""Planning one revision of an hour from one listing: which folders to read, in which tasks, under which job id.

Planning reads no rows. The stream job files every row by its own window end and device shard
(``yyyy/MM/dd/HH/<shard>/``), so the hour's listing already says which shards have data and how many
bytes: one task per shard folder, or per slice of a shard whose blobs exceed ``max_task_bytes`` (its
devices split again by the same hash). Each task reads its own folder, validates, deduplicates and
scores its rows, refiles rows that belong elsewhere and accounts for all of them in its run log; a
folder that is no shard of the current count (the old layout, a changed count) gets a task that refiles
its rows. So planning costs O(blobs listed), and nothing about it grows with rows or pairs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from azure.storage.blob import BlobServiceClient

from workloads.common.hour_inputs import HourInputs, InputBlob, fingerprint, list_hour_inputs
from workloads.common.layout import parse_aggregate_blob
from workloads.common.manifest import DEFAULT_TASK_INPUT_MIB, MAX_SLICES, TaskManifest
from workloads.common.model_versions import DEFAULT_POLICY, VersionPolicy
from workloads.common.shards import is_shard_folder
from workloads.common.windows import floor_hour

MIB = 1024 * 1024
DEFAULT_TASK_BYTES = DEFAULT_TASK_INPUT_MIB * MIB
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


def revision_of(job_id: str) -> int | None:
    """The revision of a job id ``job_id_for`` made; None for any other name (a manual scorer run's folder)."""
    match = re.fullmatch(r"score-.+-\d{10}-r(\d{3,6})", job_id)
    return int(match[1]) if match else None


def task_id_for(index: int) -> str:
    return f"task-{index:05d}"


@dataclass(frozen=True)
class Trust:
    """Model trust the operator grants a run, and the scikit-learn versions it accepts; in every task's manifest."""

    pickle: bool = False
    types: tuple[str, ...] = ()
    version_policy: VersionPolicy = DEFAULT_POLICY


@dataclass(frozen=True)
class JobPlan:
    job_id: str
    stack: str
    hour: datetime
    tasks: tuple[TaskManifest, ...]
    inputs: tuple[InputBlob, ...] = ()
    ignored: tuple[str, ...] = ()  # blobs under the hour that are no input (``HourInputs``): read by no task

    @property
    def fingerprint(self) -> str:
        """Of the inputs only: the ignored blobs cannot change the hour's outcome (``hour_inputs.fingerprint``)."""
        return fingerprint(self.inputs)

    @property
    def shards(self) -> int:
        return len({t.folder for t in self.tasks if t.shard is not None})


def folders(blobs: Sequence[InputBlob], hour: datetime) -> dict[str | None, list[InputBlob]]:
    """The hour's blobs by the folder under the hour they sit in (None: the hour folder itself)."""
    grouped: dict[str | None, list[InputBlob]] = {}
    for blob in blobs:
        place = parse_aggregate_blob(blob.name)
        if place is None or place.hour != hour:
            raise ValueError(f"{blob.name!r} is not an aggregate blob of hour {hour:%Y-%m-%dT%H}")
        grouped.setdefault(place.folder, []).append(blob)
    return grouped


def slices_for(blobs: Sequence[InputBlob], max_task_bytes: int) -> int:
    """How many tasks share one shard: enough that none reads much more than ``max_task_bytes`` of its rows."""
    return min(MAX_SLICES, max(1, math.ceil(sum(b.size for b in blobs) / max_task_bytes)))


def plan_hour(
    service: BlobServiceClient,
    stack: str,
    hour: datetime,
    *,
    shard_count: int,
    max_task_bytes: int = DEFAULT_TASK_BYTES,
    revision: int = 1,
    inputs: Sequence[InputBlob] | None = None,
    trust: Trust | None = None,
    ignored: Sequence[str] | None = None,
) -> JobPlan:
    """One task per folder of the hour (per slice of a large shard); a listing, no reads.

    The blobs ignored under the hour are kept on the plan, so its record names them: ``ignored``, or else those
    that came with ``inputs`` when it is the ``HourInputs`` of a listing (how the reconciler calls this), or
    else those of the plan's own listing.
    """
    if max_task_bytes < 1:
        raise ValueError(f"max_task_bytes must be at least 1, got {max_task_bytes}")
    hour = floor_hour(hour)
    job_id = job_id_for(stack, hour, revision)
    listing = inputs if inputs is not None else list_hour_inputs(service, hour)
    if ignored is None:
        ignored = listing.ignored if isinstance(listing, HourInputs) else ()
    listed = tuple(listing)
    trust = trust or Trust()
    tasks: list[TaskManifest] = []
    for folder, blobs in sorted(folders(listed, hour).items(), key=lambda item: item[0] or ""):
        slices = slices_for(blobs, max_task_bytes) if is_shard_folder(folder, shard_count) else 1
        for index in range(slices):
            tasks.append(
                TaskManifest(
                    job_id=job_id,
                    task_id=task_id_for(len(tasks)),
                    hour=hour,
                    shard_count=shard_count,
                    folder=folder,
                    inputs=tuple(b.name for b in blobs),
                    slice_index=index,
                    slices=slices,
                    trust_pickle=trust.pickle,
                    trusted_types=trust.types,
                    sklearn_version_policy=trust.version_policy,
                )
            )
    return JobPlan(job_id, stack, hour, tuple(tasks), listed, tuple(sorted(ignored)))
