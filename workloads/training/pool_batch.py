"""Training jobs on Azure Batch: the submitter's Batch backend, with the training's own task environment, and the
check that a training job can still take tasks.

Imported only by ``trainer submit --backend batch``: the local path needs no azure-batch, and the task image has no
submitter package.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from azure.batch import models as batchmodels
from azure.core.exceptions import ResourceNotFoundError

from workloads.submitter.backend import JobSpec, TaskCommand
from workloads.submitter.batch import BatchBackend

# "All Tasks have terminated, and the system will not accept any more Tasks or any further changes to the Job"
# (BatchJobState.Completed, learn.microsoft.com/dotnet/api/azure.compute.batch.batchjobstate.completed); a
# terminating job is on its way there. A training job ends so (onAllTasksComplete: terminatejob) once its tasks ran.
CLOSED_STATES = frozenset({batchmodels.BatchJobState.COMPLETED, batchmodels.BatchJobState.TERMINATING})


class TrainingJobClosedError(ValueError):
    """The training's Batch job has completed (or is terminating): it accepts no more tasks."""


@dataclass
class TrainingBatchBackend(BatchBackend):
    """The Batch backend whose tasks also get ``task_environment`` (e.g. ``SCORING_TRAINING_FACTORY``): a Batch
    task's environment settings are fixed when the task is added, unlike the manifest blob it reads."""

    task_environment: Mapping[str, str] = field(default_factory=dict)

    def container_task(self, job: JobSpec, task_id: str, command: TaskCommand) -> batchmodels.BatchTaskCreateOptions:
        task = super().container_task(job, task_id, command)
        task.environment_settings = [
            *(task.environment_settings or []),
            *(batchmodels.EnvironmentSetting(name=k, value=v) for k, v in sorted(self.task_environment.items())),
        ]
        return task

    def check_open(self, job_id: str) -> None:
        """TrainingJobClosedError when the job exists and can take no more tasks; nothing when it is absent
        (``submit`` creates it) or still active (``submit`` adds only the tasks it lacks)."""
        try:
            job = self.client.get_job(job_id, select=["id", "state"])
        except ResourceNotFoundError:
            return
        if job.state in CLOSED_STATES:
            state = "completed" if job.state is batchmodels.BatchJobState.COMPLETED else "terminating"
            raise TrainingJobClosedError(
                f"training job {job_id} is {state} on Batch and accepts no more tasks (the same "
                f"training was submitted before and ran to its end): `trainer summary --job-id {job_id}` shows "
                "its outcome. To train again, change --to, --days or a model option (another job id), or delete "
                f"the Batch job first (`az batch job delete --job-id {job_id}`) to run it under the same id"
            )
