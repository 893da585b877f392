"""The task manifest: what one scorer task must do. Written by the submitter, read by the scorer.

It carries everything a task needs to reproduce the planned work on any node: the hour, the pairs,
its inputs (the rows the submitter cut from the hour for this task, or, for a hand-made manifest,
the aggregate blobs to read), the shard whose model pack it may use with the checksum of each pair's
model at planning time (a pack entry compiled from any other model file is stale and not used), and
the model trust options the operator chose for the run.
"""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, ConfigDict, field_serializer, field_validator, model_validator

from workloads.common.ids import JobId, TaskId
from workloads.common.layout import hour_prefix, task_input_blob
from workloads.common.pairs import Pair
from workloads.common.shards import parse_shard_name, shard_of
from workloads.common.windows import floor_hour

SHA256 = re.compile(r"[0-9a-f]{64}")
TRUSTED_TYPE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")


def validate_trusted_type(value: str) -> str:
    if not TRUSTED_TYPE.fullmatch(value):
        raise ValueError(f"invalid trusted type {value!r}: expected a dotted Python path, e.g. sklearn.tree._tree.Tree")
    return value


class TaskManifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: JobId
    task_id: TaskId
    hour: datetime
    pairs: tuple[Pair, ...]
    inputs: tuple[str, ...] | None = None  # aggregate blobs to read; None: whatever the hour holds now
    inputs_blob: str | None = None  # ``logs`` blob with exactly this task's rows (instead of ``inputs``)
    shard: str | None = None  # every pair's device is in this shard; its model pack may serve them
    models: dict[str, str] = {}  # "device/sensor" -> sha256 of the pair's model when the task was planned
    trust_pickle: bool = False
    trusted_types: tuple[str, ...] = ()

    @field_validator("hour")
    @classmethod
    def _on_the_hour(cls, value: datetime) -> datetime:
        if floor_hour(value) != value.astimezone(floor_hour(value).tzinfo):
            raise ValueError("hour must be on the hour")
        return floor_hour(value)

    @field_validator("pairs", mode="before")
    @classmethod
    def _parse_pairs(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            return tuple(Pair.parse(v) if isinstance(v, str) else v for v in value)
        return value

    @field_validator("trusted_types")
    @classmethod
    def _trusted_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted({validate_trusted_type(v) for v in value}))

    @field_serializer("pairs")
    def _pairs_as_text(self, pairs: tuple[Pair, ...]) -> list[str]:
        return [str(p) for p in pairs]

    @model_validator(mode="after")
    def _inputs_in_the_hour(self) -> TaskManifest:
        prefix = hour_prefix(self.hour)
        for name in self.inputs or ():
            if not name.startswith(prefix) or ".." in name.split("/") or not name.endswith(".parquet"):
                raise ValueError(f"invalid aggregate blob {name!r}: expected a .parquet blob under {prefix}")
        if self.inputs_blob is not None:
            expected = task_input_blob(self.hour, self.job_id, self.task_id)
            if self.inputs is not None or self.inputs_blob != expected:
                raise ValueError(f"invalid inputs_blob {self.inputs_blob!r}: expected {expected!r} and no 'inputs'")
        return self

    @model_validator(mode="after")
    def _pairs_in_the_shard(self) -> TaskManifest:
        if self.shard is not None:
            shard, count = parse_shard_name(self.shard)
            strays = [str(p) for p in self.pairs if shard_of(p.device_id, count) != shard]
            if strays:
                raise ValueError(f"pairs {strays[:3]} are not in shard {self.shard}")
        names = {str(p) for p in self.pairs}
        for pair, digest in self.models.items():
            if pair not in names or not SHA256.fullmatch(digest):
                raise ValueError(f"invalid model checksum {pair!r}: {digest!r} (a pair of the task, 64 hex digits)")
        return self
