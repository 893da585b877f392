"""The backend interface: where the tasks of a planned job run (local processes or Azure Batch).

A scoring revision is submitted as a plan (``Backend.submit``); any other job of the same task image (a
training job: ``workloads/training/pool.py``) as a ``JobSpec`` and one ``TaskCommand`` per task
(``TaskBackend.submit_tasks``). Every task is one program of the task image run on one manifest blob.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final, Literal, Protocol

from workloads.submitter.plan import JobPlan


@dataclass
class JobOutcome:
    finished: bool  # every task ran to its end (successfully or not); False: still queued or running
    task_errors: dict[str, str] = field(default_factory=dict)  # tasks that failed or were never added


Program = Literal["scorer", "trainer"]
# What each program of the task image is given before ``--manifest <blob>``: the scorer is the image's ENTRYPOINT
# and takes the manifest alone; the trainer's task is its ``task`` command.
PROGRAM_ARGS: Final[dict[Program, tuple[str, ...]]] = {"scorer": (), "trainer": ("task",)}


@dataclass(frozen=True)
class TaskCommand:
    """One task: a program of the task image run on one manifest blob (``logs`` container)."""

    program: Program
    manifest: str

    @property
    def args(self) -> tuple[str, ...]:
        """The program's arguments: a Batch task's command line (a manifest blob name holds no spaces)."""
        return (*PROGRAM_ARGS[self.program], "--manifest", self.manifest)


@dataclass(frozen=True)
class JobSpec:
    """A job that is not a scoring revision: its id, a name for people, where task outputs go."""

    job_id: str
    display_name: str
    output_prefix: str  # in ``logs``: each task's stdout/stderr under ``<output_prefix><task id>/``
    task_max_wall: timedelta | None = None  # None: the backend's own limit
    # A job-level wall clock bounds a scoring revision (its claim times out after it). A training job has no claim,
    # and its tasks may queue behind each other on a small pool for longer than any one task's limit: unbounded.
    bounded: bool = True


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


class TaskBackend(Protocol):
    name: str

    def submit_tasks(self, job: JobSpec, tasks: dict[str, TaskCommand]) -> JobOutcome:
        """Run or enqueue one task per command (task id -> command); idempotent for one job id, like ``submit``."""
        ...

    def poll(self, job_id: str) -> JobOutcome:
        """How a job submitted earlier stands now."""
        ...
