"""Identifiers that end up in blob paths and Batch requests, validated wherever they enter.

Job and task ids come from manifests, command lines and job records; each of them becomes a path
segment under ``logs/``. Allowing only Azure Batch's id alphabet (letters, digits, ``-`` and ``_``,
at most 64 characters) rules out ``/``, ``..`` and empty segments, so no id can steer a write into
another hour or another container.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

_BATCH_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def validate_batch_id(kind: str, value: object) -> str:
    if not isinstance(value, str) or not _BATCH_ID.fullmatch(value):
        raise ValueError(f"invalid {kind} {value!r}: use 1-64 letters, digits, '-' or '_' (Azure Batch id rules)")
    return value


def validate_job_id(value: object) -> str:
    return validate_batch_id("job id", value)


def validate_task_id(value: object) -> str:
    return validate_batch_id("task id", value)


# For pydantic models: a field of these types is validated wherever the model is built or parsed.
JobId = Annotated[str, AfterValidator(validate_job_id)]
TaskId = Annotated[str, AfterValidator(validate_task_id)]
