"""The run log: one JSON line per pair and one per task, in ``logs/{hour}/{job}/tasks/{task}.jsonl``.

Every job writes the same shape to the same place, so per-job and per-pair times can be read for
any hour with one listing.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from workloads.common.ids import JobId, TaskId


class PairStatus(StrEnum):
    OK = "ok"
    NO_DATA = "no_data"  # nothing to score this hour: skipped, not an error
    FAILED = "failed"


class _TaskLine(BaseModel):
    """What every line of a run log carries: which job, task and hour it belongs to."""

    model_config = ConfigDict(frozen=True)

    job_id: JobId
    task_id: TaskId
    hour: datetime


class PairLog(_TaskLine):
    kind: Literal["pair"] = "pair"
    device_id: str
    sensor: str
    status: PairStatus
    rows: int = 0
    anomalies: int = 0
    dropped_rows: int = 0
    model_sha256: str | None = None
    reason: str | None = None  # stable code: missing_model, corrupt_model, bad_features, bad_data...
    path: Literal["pack", "model"] | None = None  # scored from the shard's model pack or the pair's own model
    family: str | None = None  # of the model that scored it (metadata's ``family``; ``model_metadata.family_of``)
    error: str | None = None
    timings_ms: dict[str, float] = Field(default_factory=dict)


class TaskLog(_TaskLine):
    """A task's outcome and its account of every row it read: its own rows are its pairs' rows plus the
    duplicates and conflicts dropped; the first slice of a folder also accounts for its blobs (rows decoded
    = quarantined + refiled + the rows of every slice), so the hour's sums balance (``finalise``)."""

    kind: Literal["task"] = "task"
    host: str
    started_at: datetime
    finished_at: datetime
    folder: str | None = None  # under the hour: the shard the task read, or a folder whose rows it refiled
    slice_index: int = 0
    slices: int = 1
    pairs: int  # pairs found in its rows: one pair line each
    ok: int
    no_data: int  # pairs with a model in the shard's pack (of this slice) but no rows this hour
    failed: int
    anomalies: int
    aggregate_blobs: int
    error: str | None = None  # the task could not do its work (e.g. unreadable inputs): it failed, Batch retries it
    rows_read: int = 0  # rows decoded from the folder's blobs (first slice only)
    rows: int = 0  # rows of its own folder and slice
    corrupt_blobs: dict[str, str] = Field(default_factory=dict)  # aggregate blobs that could not be decoded
    quarantined: dict[str, dict[str, int]] = Field(default_factory=dict)  # blob -> reason -> malformed rows
    refiled: dict[str, int] = Field(default_factory=dict)  # partition -> rows that belonged there, moved
    duplicate_rows: int = 0
    conflicting_rows: int = 0
    models_cached: int = 0
    pack: str | None = None  # the shard's model pack: "used", "missing", "unreadable: ...", None without a shard
    pack_pairs: int = 0  # pairs scored from the pack (compiled fast path)
    model_pairs: int = 0  # pairs scored with their own model: not in the pack, or a borderline row
    families: dict[str, int] = Field(default_factory=dict)  # model family -> pairs it scored (ok)
    timings_ms: dict[str, float] = Field(default_factory=dict)

    @property
    def quarantined_rows(self) -> int:
        return sum(sum(reasons.values()) for reasons in self.quarantined.values())

    @property
    def refiled_rows(self) -> int:
        return sum(self.refiled.values())


def error_line(exc: BaseException) -> str:
    """An exception as one log-friendly line: its type and the first line of its message."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}".rstrip(": ")


def to_jsonl(task: TaskLog, pairs: list[PairLog]) -> bytes:
    lines = [p.model_dump_json() for p in pairs] + [task.model_dump_json()]
    return ("\n".join(lines) + "\n").encode()


def parse_jsonl(data: bytes) -> tuple[TaskLog | None, list[PairLog]]:
    task: TaskLog | None = None
    pairs: list[PairLog] = []
    for line in data.decode().splitlines():
        if '"kind":"task"' in line:
            task = TaskLog.model_validate_json(line)
        elif line.strip():
            pairs.append(PairLog.model_validate_json(line))
    return task, pairs
