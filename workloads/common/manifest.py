"""The task manifest: what one scorer task must do. Written by the submitter, read by the scorer.

A task is one folder of an hour's aggregates: normally one shard's (``yyyy/MM/dd/HH/<shard>``, where the
stream job files every row by its own window end and device), or, for a shard too large for one task,
one slice of it (its devices split again by the same hash). The submitter only lists blobs to make it;
the task reads them, validates, deduplicates and scores its rows, refiles rows that belong to another
folder, and accounts for every row and pair in its run log. A folder that is not a shard of the current
count (the old processing-time layout, or a shard count since changed) gets a task too: all its rows are
refiled to their own folders, none is dropped.

It also carries the model trust options the operator chose for the run, and the scikit-learn version policy.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from workloads.common.ids import JobId, TaskId
from workloads.common.layout import hour_prefix
from workloads.common.model_versions import DEFAULT_POLICY, VersionPolicy
from workloads.common.shards import MAX_SHARD_COUNT, is_shard_folder
from workloads.common.windows import floor_hour

TRUSTED_TYPE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")
_FILE = re.compile(r"[^/]*\.parquet")
MAX_SLICES = 4096
# A shard folder with more aggregates than this in an hour is split into slices (some 800k rows of
# Parquet: seconds of scoring, well inside a task's memory). The stack's ``taskInputMiB``.
DEFAULT_TASK_INPUT_MIB = 64


def validate_trusted_type(value: str) -> str:
    if not TRUSTED_TYPE.fullmatch(value):
        raise ValueError(f"invalid trusted type {value!r}: expected a dotted Python path, e.g. sklearn.tree._tree.Tree")
    return value


class TaskManifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: JobId
    task_id: TaskId
    hour: datetime
    shard_count: int = Field(ge=1, le=MAX_SHARD_COUNT)  # of the stack: where every row belongs
    folder: str | None  # folder under the hour that the task reads (None: the hour folder itself)
    inputs: tuple[str, ...]  # the folder's aggregate blobs as listed by the plan
    slice_index: int = Field(default=0, ge=0)
    slices: int = Field(default=1, ge=1, le=MAX_SLICES)
    trust_pickle: bool = False
    trusted_types: tuple[str, ...] = ()
    sklearn_version_policy: VersionPolicy = DEFAULT_POLICY

    @property
    def shard(self) -> str | None:
        """The shard the task scores (its model pack's name); None for a folder that only gets refiled."""
        return self.folder if is_shard_folder(self.folder, self.shard_count) else None

    @property
    def accounts_for_blobs(self) -> bool:
        """Whether this task reports what is wrong with its blobs and refiles their strays: every slice reads
        the same blobs, so exactly one of them (the first) speaks for them."""
        return self.slice_index == 0

    @field_validator("hour")
    @classmethod
    def _on_the_hour(cls, value: datetime) -> datetime:
        if floor_hour(value) != value.astimezone(floor_hour(value).tzinfo):
            raise ValueError("hour must be on the hour")
        return floor_hour(value)

    @field_validator("trusted_types")
    @classmethod
    def _trusted_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted({validate_trusted_type(v) for v in value}))

    @field_validator("folder")
    @classmethod
    def _one_folder_name(cls, value: str | None) -> str | None:
        """One folder directly under the hour, as ``layout.parse_aggregate_blob`` allows: a blob deeper down is no
        input, so no task may be pointed at it."""
        if value is not None and (value in {"", ".", ".."} or "/" in value):
            raise ValueError(f"invalid folder {value!r}: one folder name under the hour, e.g. 's00007-of-00064'")
        return value

    @model_validator(mode="after")
    def _inputs_in_the_folder(self) -> TaskManifest:
        prefix = hour_prefix(self.hour) + (f"{self.folder}/" if self.folder else "")
        for name in self.inputs:
            if not name.startswith(prefix) or not _FILE.fullmatch(name[len(prefix) :]):
                raise ValueError(f"invalid aggregate blob {name!r}: expected a .parquet blob directly under {prefix}")
        # A blob listed twice would be read twice: its rows counted twice and every one taken for a duplicate.
        repeated = [f"{name!r} listed {count} times" for name, count in Counter(self.inputs).items() if count > 1]
        if repeated:
            raise ValueError(f"duplicated aggregate blob(s): {'; '.join(repeated)}; list each blob once")
        if self.slice_index >= self.slices:
            raise ValueError(f"slice {self.slice_index} of {self.slices}: use 0 to {self.slices - 1}")
        if self.slices > 1 and self.shard is None:
            raise ValueError("only a shard's folder is sliced")
        return self
