"""The backend interface: where the tasks of a planned job run (local processes or Azure Batch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from workloads.submitter.plan import JobPlan


@dataclass
class JobOutcome:
    finished: bool  # every task ran to its end (successfully or not); False: still queued or running
    task_errors: dict[str, str] = field(default_factory=dict)  # tasks that failed or were never added


class Backend(Protocol):
    name: str

    def submit(self, plan: JobPlan, manifests: dict[str, str]) -> JobOutcome:
        """Run or enqueue one task per manifest (task id -> manifest blob in the ``logs`` container).

        Idempotent for one job id: submitting a job that exists adds only what it lacks.
        """
        ...

    def poll(self, job_id: str) -> JobOutcome:
        """How a job submitted earlier (perhaps by another process) stands now."""
        ...
