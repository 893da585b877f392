"""The task manifest: what one scorer task must do. Written by the submitter, read by the scorer."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, field_serializer, field_validator

from workloads.common.pairs import Pair
from workloads.common.windows import floor_hour


class TaskManifest(BaseModel):
    model_config = ConfigDict(frozen=True)

    job_id: str
    task_id: str
    hour: datetime
    pairs: tuple[Pair, ...]

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

    @field_serializer("pairs")
    def _pairs_as_text(self, pairs: tuple[Pair, ...]) -> list[str]:
        return [str(p) for p in pairs]
