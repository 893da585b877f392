"""The Azure Batch backend: one job per stack+hour, one container task per shard folder (or slice) of the hour;
and any other job of the same image (a training job: one task per shard) through ``submit_tasks``.

Uses the generated ``azure-batch`` 15.x client. Submission is idempotent: the job id is
deterministic, an existing job is resumed by adding only the tasks it lacks, and a completed job is
left alone. Tasks are added in collections of at most 100 (the service's limit per call); a task the
service could not add because of a server-side error is retried with backoff, throttling (429) is
retried by the SDK's pipeline honouring Retry-After.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from azure.batch import BatchClient
from azure.batch import models as batchmodels
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from workloads.common import envvars
from workloads.common.layout import Container, hour_prefix
from workloads.submitter.backend import JobOutcome, JobSpec, TaskCommand
from workloads.submitter.batch_settings import NODE_START_ALLOWANCE, BatchSettings
from workloads.submitter.plan import JobPlan

MAX_TASKS_PER_CALL = 100
TASK_ADD_ATTEMPTS = 4
IMAGE_ENTRYPOINT = "scorer"  # the task image's ENTRYPOINT (Dockerfile, target scorer)


def _scoring_job(plan: JobPlan) -> JobSpec:
    """A scoring revision as a job: its task outputs beside the hour's run logs."""
    return JobSpec(
        job_id=plan.job_id,
        display_name=f"scoring {plan.stack} {plan.hour:%Y-%m-%dT%H}",
        output_prefix=f"{hour_prefix(plan.hour)}{plan.job_id}/output/",
    )


def chunked(
    items: Sequence[batchmodels.BatchTaskCreateOptions], size: int = MAX_TASKS_PER_CALL
) -> list[list[batchmodels.BatchTaskCreateOptions]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


@dataclass
class TaskCounts:
    active: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed

    @property
    def pending(self) -> int:
        return self.active + self.running


@dataclass
class BatchBackend:
    client: BatchClient
    settings: BatchSettings
    log: Callable[[str], None] = print
    sleep: Callable[[float], None] = time.sleep
    notes: list[str] = field(default_factory=list)

    name = "batch"

    def _say(self, message: str) -> None:
        self.notes.append(message)
        self.log(message)

    # -- what one task is ---------------------------------------------------------------------------
    def task_for(self, plan: JobPlan, task_id: str, manifest_blob: str) -> batchmodels.BatchTaskCreateOptions:
        """A container task running the scorer image's ENTRYPOINT with the manifest as its arguments."""
        return self.container_task(_scoring_job(plan), task_id, TaskCommand("scorer", manifest_blob))

    def container_task(self, job: JobSpec, task_id: str, command: TaskCommand) -> batchmodels.BatchTaskCreateOptions:
        """A container task of the task image running ``command``'s program on its manifest.

        "If the container image for a Batch task is configured with an ENTRYPOINT script, you can set your command
        line to either use the default ENTRYPOINT or override it", and containerRunOptions "are additional arguments
        you provide to the docker create command that Batch uses to create and run the container"
        (learn.microsoft.com/azure/batch/batch-docker-container-workloads, "Container task command line"). So the
        scorer (the image's ENTRYPOINT) gets the manifest as its command line, and any other program of the image
        is its entry point by ``--entrypoint <program>`` in the run options, with its arguments as the command line.
        """
        identity = batchmodels.BatchNodeIdentityReference(resource_id=self.settings.scorer_identity_id)
        logs_url = f"{self.settings.storage_account_url.rstrip('/')}/{Container.LOGS.value}"
        output_path = f"{job.output_prefix}{task_id}"
        environment = [
            batchmodels.EnvironmentSetting(name=envvars.STORAGE_ACCOUNT_URL, value=self.settings.storage_account_url)
        ]
        client_id = self.settings.scorer_client_id
        if command.program == "trainer" and self.settings.trainer_client_id:
            client_id = self.settings.trainer_client_id  # a pool identity allowed to write models, when there is one
        if client_id:
            environment.append(batchmodels.EnvironmentSetting(name=envvars.AZURE_CLIENT_ID, value=client_id))
        if self.settings.telemetry_connection_string:
            environment.append(
                batchmodels.EnvironmentSetting(
                    name=envvars.APPINSIGHTS_CONNECTION_STRING, value=self.settings.telemetry_connection_string
                )
            )
        run_options = "--rm" if command.program == IMAGE_ENTRYPOINT else f"--rm --entrypoint {command.program}"
        return batchmodels.BatchTaskCreateOptions(
            id=task_id,
            display_name=f"{job.job_id} {task_id}",
            command_line=" ".join(command.args),
            container_settings=batchmodels.BatchTaskContainerSettings(
                image_name=self.settings.scorer_image,
                container_run_options=run_options,
                registry=batchmodels.ContainerRegistryReference(
                    registry_server=self.settings.scorer_image.split("/", 1)[0], identity_reference=identity
                ),
            ),
            environment_settings=environment,
            constraints=batchmodels.BatchTaskConstraints(
                max_task_retry_count=self.settings.max_task_retries,
                max_wall_clock_time=job.task_max_wall or timedelta(minutes=self.settings.max_wall_minutes),
            ),
            # stdout/stderr land beside the run log, whatever the exit code.
            output_files=[
                batchmodels.OutputFile(
                    file_pattern="../std*.txt",
                    destination=batchmodels.OutputFileDestination(
                        container=batchmodels.OutputFileBlobContainerDestination(
                            container_url=logs_url, path=output_path, identity_reference=identity
                        )
                    ),
                    upload_options=batchmodels.OutputFileUploadConfiguration(
                        upload_condition=batchmodels.OutputFileUploadCondition.TASK_COMPLETION
                    ),
                )
            ],
        )

    # -- Backend protocol ---------------------------------------------------------------------------
    def poll(self, job_id: str) -> JobOutcome:
        """Finished once Batch has terminated the job (``terminatejob`` after its last task); the
        tasks that failed after their retries are named, and the run logs say the rest."""
        try:
            job = self.client.get_job(job_id)
        except ResourceNotFoundError:
            return JobOutcome(finished=True, task_errors={"*": f"job {job_id} not found in the Batch account"})
        if job.state is not batchmodels.BatchJobState.COMPLETED:
            return JobOutcome(finished=False)
        return JobOutcome(finished=True, task_errors=self.failed_tasks(job_id))

    def failed_tasks(self, job_id: str) -> dict[str, str]:
        """Task id -> why, for every task of the job that failed after its retries."""
        failed = self.client.list_tasks(
            job_id, filter="executionInfo/result eq 'failure'", select=["id", "executionInfo"]
        )
        errors = {}
        for task in failed:
            info = task.execution_info
            detail = info.failure_info.message if info and info.failure_info else None
            code = info.exit_code if info else None
            errors[str(task.id)] = f"failed after retries (exit code {code}){': ' + detail if detail else ''}"
        return errors

    def existing_tasks(self, job_id: str) -> set[str]:
        return {task.id for task in self.client.list_tasks(job_id, select=["id"])}

    def submit(self, plan: JobPlan, manifests: dict[str, str]) -> JobOutcome:
        return self.submit_tasks(
            _scoring_job(plan), {task_id: TaskCommand("scorer", blob) for task_id, blob in manifests.items()}
        )

    def job_max_wall(self, job: JobSpec) -> timedelta:
        """The job's wall-clock limit: ``BatchSettings.job_max_wall``, or as long for a job's own task limit."""
        if job.task_max_wall is None:
            return self.settings.job_max_wall
        return job.task_max_wall * (self.settings.max_task_retries + 1) + NODE_START_ALLOWANCE

    def submit_tasks(self, job: JobSpec, tasks: dict[str, TaskCommand]) -> JobOutcome:
        existing: set[str] = set()
        try:
            self.client.create_job(
                batchmodels.BatchJobCreateOptions(
                    id=job.job_id,
                    display_name=job.display_name,
                    pool_info=batchmodels.BatchPoolInfo(pool_id=self.settings.pool_id),
                    # Terminate only once every task is added: a job with no tasks yet would
                    # otherwise count as complete and end at once.
                    all_tasks_complete_mode=batchmodels.BatchAllTasksCompleteMode.NO_ACTION,
                    # Bounds the revision: after it no task can write, so the claim timeout derived from it
                    # (BatchSettings.claim_timeout) never hands the hour over while this job still runs.
                    # "If this property is not specified, there is no time limit on how long the Job may run"
                    # (BatchJobConstraints.maxWallClockTime): only an unbounded job leaves it out.
                    constraints=batchmodels.BatchJobConstraints(max_wall_clock_time=self.job_max_wall(job))
                    if job.bounded
                    else None,
                )
            )
            self._say(f"created job {job.job_id} on pool {self.settings.pool_id}")
        except ResourceExistsError:
            existing = self.existing_tasks(job.job_id)
            self._say(f"job {job.job_id} exists with {len(existing)} task(s): resuming, adding only missing tasks")
        added = [
            self.container_task(job, task_id, command)
            for task_id, command in sorted(tasks.items())
            if task_id not in existing
        ]
        errors = self.add_tasks(job.job_id, added)
        self.client.update_job(
            job.job_id,
            batchmodels.BatchJobUpdateOptions(
                all_tasks_complete_mode=batchmodels.BatchAllTasksCompleteMode.TERMINATE_JOB
            ),
        )
        self._say(
            f"added {len(added) - len(errors)} task(s) to {job.job_id}" + (f", {len(errors)} failed" if errors else "")
        )
        return JobOutcome(finished=False, task_errors=errors)

    def add_tasks(self, job_id: str, tasks: Sequence[batchmodels.BatchTaskCreateOptions]) -> dict[str, str]:
        """Add tasks 100 per call; retry server-side failures; return task id -> error for the rest."""
        errors: dict[str, str] = {}
        for chunk in chunked(tasks):
            pending = {task.id: task for task in chunk}
            for attempt in range(TASK_ADD_ATTEMPTS):
                if attempt:
                    self.sleep(min(30.0, 2.0**attempt))
                try:
                    result = self.client.create_task_collection(
                        job_id, batchmodels.BatchTaskGroup(task_values=list(pending.values()))
                    )
                except HttpResponseError as exc:
                    if exc.status_code is not None and exc.status_code >= 500:
                        continue  # the whole call failed server-side: retry the same tasks
                    raise
                retry: dict[str, batchmodels.BatchTaskCreateOptions] = {}
                for outcome in result.result_values or []:
                    code = outcome.error.code if outcome.error else None
                    if outcome.status == batchmodels.BatchTaskAddStatus.SERVER_ERROR:
                        retry[outcome.task_id] = pending[outcome.task_id]
                    elif outcome.status == batchmodels.BatchTaskAddStatus.CLIENT_ERROR and code != "TaskExists":
                        errors[outcome.task_id] = f"{code}: {outcome.error.message if outcome.error else ''}"
                pending = retry
                if not pending:
                    break
            for task_id in pending:
                errors[task_id] = f"not added after {TASK_ADD_ATTEMPTS} attempts (server errors)"
        return errors

    # -- waiting --------------------------------------------------------------------------------------
    def counts(self, job_id: str) -> TaskCounts:
        c = self.client.get_job_task_counts(job_id).task_counts
        return TaskCounts(active=c.active, running=c.running, succeeded=c.succeeded, failed=c.failed)

    def wait(
        self,
        job_id: str,
        total: int,
        *,
        poll_seconds: float = 15.0,
        timeout: timedelta = timedelta(hours=2),
        on_poll: Callable[[TaskCounts], None] | None = None,
    ) -> TaskCounts:
        """Poll task counts until every task finished (or the timeout passes)."""
        deadline = time.monotonic() + timeout.total_seconds()
        while True:
            counts = self.counts(job_id)
            if on_poll is not None:
                on_poll(counts)
            if counts.finished >= total or time.monotonic() > deadline:
                return counts
            self.sleep(poll_seconds)
