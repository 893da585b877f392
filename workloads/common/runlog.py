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
    error: str | None = None
    timings_ms: dict[str, float] = Field(default_factory=dict)


class TaskLog(_TaskLine):
    kind: Literal["task"] = "task"
    host: str
    started_at: datetime
    finished_at: datetime
    pairs: int
    ok: int
    no_data: int
    failed: int
    anomalies: int
    aggregate_blobs: int
    error: str | None = None  # the task could not do its work (e.g. unreadable inputs): it failed, Batch retries it
    corrupt_blobs: dict[str, str] = Field(default_factory=dict)  # aggregate blobs that could not be decoded
    quarantined_rows: int = 0  # rows of the hour read by this task that were left out as malformed
    duplicate_rows: int = 0
    conflicting_rows: int = 0
    models_cached: int = 0
    pack: str | None = None  # the shard's model pack: "used", "missing", "unreadable: ...", None without a shard
    pack_pairs: int = 0  # pairs scored from the pack (compiled fast path)
    model_pairs: int = 0  # pairs scored with their own model: not in the pack, stale in it, or a borderline row
    timings_ms: dict[str, float] = Field(default_factory=dict)


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
