"""The backend interface: where the tasks of a planned job run (local processes or Azure Batch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from workloads.common.runlog import TaskLog
from workloads.submitter.plan import JobPlan
from workloads.submitter.record import JobStatus


@dataclass
class JobOutcome:
    status: JobStatus
    tasks: list[TaskLog] = field(default_factory=list)  # known at once only for synchronous backends
    task_errors: dict[str, str] = field(default_factory=dict)


class Backend(Protocol):
    name: str

    def already_submitted(self, plan: JobPlan) -> bool:
        """Whether this job id was handed to the backend before (then submitting again is a no-op)."""
        ...

    def submit(self, plan: JobPlan, manifests: dict[str, str]) -> JobOutcome:
        """Run or enqueue one task per manifest (task id -> manifest blob in the ``logs`` container)."""
        ...
