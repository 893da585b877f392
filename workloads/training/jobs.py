"""Training jobs on the pool: the task manifest, the job's identity, where its blobs live, its run log lines.

A training job retrains every pair of the fleet on a history window, one task per shard: each task reads only
its shard's aggregate folders of each hour in ``[start, end)``, trains the shard's pairs and updates only that
shard's model pack. Everything about a job lives in one folder of the ``logs`` container::

    training/<job id>/job.json                     what was submitted: window, model, tasks (for a later summary)
    training/<job id>/manifests/<task id>.json     one TrainingManifest per task (its Batch command line names it)
    training/<job id>/tasks/<task id>.jsonl        the task's run log: a line per skipped pair, then the task line
    training/<job id>/output/<task id>/std*.txt    Batch's stdout/stderr of the task

The job id is a function of the stack, the window and a hash of everything that decides the models (shard count,
features, model spec, min rows, trusted types), so submitting the same training twice finds the same job and the
same manifests (on Batch a job still active gets only the tasks it lacks; a completed one accepts none, and
``trainer submit`` refuses it: ``pool_batch.TrainingBatchBackend.check_open``); task ids come from shard
numbers, so they are stable too.
The run log grows with problems, not with pairs: trained pairs are counted on the task line, only skipped pairs
get a line of their own, with their reason.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from workloads.common.aggregates import FEATURE_NAMES
from workloads.common.ids import JobId, TaskId, validate_job_id, validate_task_id
from workloads.common.manifest import validate_trusted_type
from workloads.common.shards import MAX_SHARD_COUNT, parse_shard_name, shard_name
from workloads.common.windows import HOUR, floor_hour
from workloads.training.families import ModelSpec

TRAINING_FOLDER: Final = "training"
# The window's hours appear in the job id (up to 4 digits, so 416 days); a Batch id has at most 64 characters:
# "train-" + stack (31) + "-" + YYYYMMDDHH + "-" + hours + "h-" + 8 hex digits <= 6 + 31 + 1 + 10 + 1 + 5 + 1 + 8 = 63.
MAX_WINDOW_HOURS: Final = 9999
_SPEC_HASH_CHARS: Final = 8


def _on_the_hour(value: datetime) -> datetime:
    if floor_hour(value) != value.astimezone(floor_hour(value).tzinfo):
        raise ValueError(f"{value.isoformat()} is not on the hour")
    return floor_hour(value)


class TrainingManifest(BaseModel):
    """What one training task does: train every pair of one shard on that shard's history of ``[start, end)``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: JobId
    task_id: TaskId
    shard_count: int = Field(ge=1, le=MAX_SHARD_COUNT)
    shard: str  # the shard's folder name under each hour, e.g. s00003-of-00016
    start: datetime  # first hour of history
    end: datetime  # end of history, exclusive
    features: tuple[str, ...]
    model: ModelSpec
    min_rows: int = Field(ge=2)
    trusted_types: tuple[str, ...] = ()

    @field_validator("start", "end")
    @classmethod
    def _hours(cls, value: datetime) -> datetime:
        return _on_the_hour(value)

    @field_validator("features")
    @classmethod
    def _features(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(FEATURE_NAMES))
        if unknown or not value or len(set(value)) != len(value):
            raise ValueError(f"features must be distinct names from {list(FEATURE_NAMES)}, got {list(value)}")
        return value

    @field_validator("trusted_types")
    @classmethod
    def _trusted_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted({validate_trusted_type(v) for v in value}))

    @model_validator(mode="after")
    def _consistent(self) -> TrainingManifest:
        if parse_shard_name(self.shard)[1] != self.shard_count:
            raise ValueError(f"shard {self.shard!r} is not one of {self.shard_count} shards")
        if self.end <= self.start:
            raise ValueError(f"end {self.end:%Y-%m-%dT%H} must come after start {self.start:%Y-%m-%dT%H}")
        if self.window_hours > MAX_WINDOW_HOURS:
            raise ValueError(f"a window of {self.window_hours} hours is longer than {MAX_WINDOW_HOURS}")
        return self

    @property
    def window_hours(self) -> int:
        return int((self.end - self.start) / HOUR)

    @property
    def shard_index(self) -> int:
        return parse_shard_name(self.shard)[0]


def spec_hash(
    start: datetime,
    end: datetime,
    *,
    shard_count: int,
    features: tuple[str, ...],
    model: ModelSpec,
    min_rows: int,
    trusted_types: tuple[str, ...],
) -> str:
    """A short hash of everything that decides the trained models, so different trainings get different jobs."""
    text = json.dumps(
        {
            "start": f"{floor_hour(start):%Y%m%d%H}",
            "end": f"{floor_hour(end):%Y%m%d%H}",
            "shard_count": shard_count,
            "features": list(features),
            "model": model.model_dump(mode="json"),
            "min_rows": min_rows,
            "trusted_types": sorted(set(trusted_types)),
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:_SPEC_HASH_CHARS]


def training_job_id(stack: str, start: datetime, end: datetime, digest: str) -> str:
    """``train-<stack>-<end YYYYMMDDHH>-<hours>h-<spec hash>``: deterministic, readable, a valid Batch job id.
    ``stack`` is validated by the caller (``submitter.plan.validate_stack``: this module ships in the task image,
    which has no submitter)."""
    hours = int((floor_hour(end) - floor_hour(start)) / HOUR)
    if not 1 <= hours <= MAX_WINDOW_HOURS:
        raise ValueError(f"a training window is 1 to {MAX_WINDOW_HOURS} hours, got {hours}")
    return validate_job_id(f"train-{stack}-{floor_hour(end):%Y%m%d%H}-{hours}h-{digest}")


def training_task_id(shard: int, shard_count: int) -> str:
    """``shard-00003``: one task per shard, so a resubmission maps every shard to the same task."""
    shard_name(shard, shard_count)  # range check
    return f"shard-{shard:05d}"


def job_folder(job_id: str) -> str:
    return f"{TRAINING_FOLDER}/{validate_job_id(job_id)}/"


def job_blob(job_id: str) -> str:
    return f"{job_folder(job_id)}job.json"


def manifest_blob(job_id: str, task_id: str) -> str:
    return f"{job_folder(job_id)}manifests/{validate_task_id(task_id)}.json"


def run_log_blob(job_id: str, task_id: str) -> str:
    return f"{job_folder(job_id)}tasks/{validate_task_id(task_id)}.jsonl"


def output_prefix(job_id: str) -> str:
    """Where Batch uploads each task's stdout/stderr: ``<this><task id>/``."""
    return f"{job_folder(job_id)}output/"


_MANIFEST: Final = re.compile(
    rf"{TRAINING_FOLDER}/(?P<job>[A-Za-z0-9_-]{{1,64}})/manifests/(?P<task>[A-Za-z0-9_-]{{1,64}})\.json"
)


def parse_manifest_blob(name: str) -> tuple[str, str]:
    """(job id, task id) of a training manifest's name; anything outside a training job's folder is refused."""
    match = _MANIFEST.fullmatch(name)
    if match is None:
        raise ValueError(
            f"invalid training manifest location {name!r}: expected "
            f"{TRAINING_FOLDER}/<job id>/manifests/<task id>.json in the 'logs' container"
        )
    return match["job"], match["task"]


class TrainingJob(BaseModel):
    """``job.json``: what a submission asked for, so its tasks' logs can be summed later (``--no-wait``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: JobId
    stack: str
    start: datetime
    end: datetime
    shard_count: int
    features: tuple[str, ...]
    model: ModelSpec
    min_rows: int
    trusted_types: tuple[str, ...] = ()
    tasks: dict[str, str]  # task id -> shard
    backend: str
    submitted_at: datetime
    blobs_outside_shard_folders: int = 0  # aggregate blobs of the window in no shard folder: no task reads them


# -- the run log -------------------------------------------------------------------------------------------------


class SkippedPairLine(BaseModel):
    """A pair the task found rows for but trained no model for, and why."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["skipped"] = "skipped"
    job_id: JobId
    task_id: TaskId
    device_id: str
    sensor: str
    reason: str  # stable code (train.Skip.reason): too_few_windows, untrusted_model, fit_failed, ...
    error: str  # the whole message


class TrainingTaskLine(BaseModel):
    """The task's account: pairs trained and skipped (by reason), every row it read, the packs it wrote."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["task"] = "task"
    job_id: JobId
    task_id: TaskId
    shard: str
    start: datetime
    end: datetime
    host: str
    started_at: datetime
    finished_at: datetime
    error: str | None = None  # the task could not do its work (unreadable history, packs not updated): retried
    hours_listed: int = 0
    aggregate_blobs: int = 0
    rows_read: int = 0  # rows decoded from the shard's blobs, quarantined ones included
    rows: int = 0  # rows of the shard's own devices and hours, before deduplication
    rows_of_other_shards: int = 0  # in the shard's folder but of another shard's device: not trained on here
    windows_not_finite: int = 0  # windows of trained pairs left out of their fit (a feature NaN or infinite)
    rows_outside_their_hour: int = 0  # in the folder of another hour than their window end's: not trained on
    quarantined: dict[str, dict[str, int]] = Field(default_factory=dict)  # blob -> reason -> malformed rows
    corrupt_blobs: dict[str, str] = Field(default_factory=dict)  # blob -> why it could not be decoded
    duplicate_rows: int = 0
    conflicting_rows: int = 0
    pairs: int = 0  # pairs with rows in the shard's history
    trained: int = 0
    skipped: dict[str, int] = Field(default_factory=dict)  # reason -> pairs
    packs_written: int = 0
    pack_entries: int = 0
    pack_left_out: dict[str, int] = Field(default_factory=dict)  # reason -> pairs trained but given no pack entry
    timings_ms: dict[str, float] = Field(default_factory=dict)

    @property
    def quarantined_rows(self) -> int:
        return sum(sum(reasons.values()) for reasons in self.quarantined.values())


def to_jsonl(task: TrainingTaskLine, skipped: list[SkippedPairLine]) -> bytes:
    return ("\n".join([*(s.model_dump_json() for s in skipped), task.model_dump_json()]) + "\n").encode()


def parse_jsonl(data: bytes) -> tuple[TrainingTaskLine | None, list[SkippedPairLine]]:
    task: TrainingTaskLine | None = None
    skipped: list[SkippedPairLine] = []
    for line in data.decode().splitlines():
        if '"kind":"task"' in line:
            task = TrainingTaskLine.model_validate_json(line)
        elif line.strip():
            skipped.append(SkippedPairLine.model_validate_json(line))
    return task, skipped
