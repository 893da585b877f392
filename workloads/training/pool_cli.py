"""``trainer task``, ``trainer submit`` and ``trainer summary``: training as tasks on the pool (or local workers).

``trainer submit --days N`` retrains every shard's pairs on the last N days: one task per shard with history,
run by the local backend's workers (``--backend local``) or as a Batch job on the stack's pool with the task
image and the trainer as entry point (``--backend batch``); it prints the summed run logs as JSON and exits 1
if any task failed (after its retries) or wrote no log, or if pairs had history but every one was skipped.
``trainer task --manifest <blob>`` is what each task runs. ``trainer summary --job-id`` sums a job's logs later
(after ``--no-wait``).

The commands are registered on the ``trainer`` app by ``cli.py``. ``task`` runs in the task image, which has no
submitter package: everything of the submission side is imported inside ``submit`` and ``summary``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from workloads.common import envvars
from workloads.common.aggregates import DEFAULT_MODEL_FEATURES, FEATURE_NAMES
from workloads.common.cli_errors import bad_input, fail, run_failures
from workloads.common.cli_options import ShardCount
from workloads.common.hour_inputs import InputReadError
from workloads.common.manifest import validate_trusted_type
from workloads.common.shards import DEFAULT_SHARD_COUNT
from workloads.common.storage import StorageSettings
from workloads.common.windows import SETTLE, last_complete_hour, parse_hour
from workloads.training.families import FAMILIES, ModelSpec, parse_param
from workloads.training.jobs import MAX_WINDOW_HOURS
from workloads.training.packs import PackUpdateError
from workloads.training.task import TrainingManifestError, TrainingTaskError, run_training_manifest
from workloads.training.train import describe_skips

if TYPE_CHECKING:
    from workloads.submitter.batch import BatchBackend
    from workloads.training.pool import TrainingSummary


class BackendName(StrEnum):
    LOCAL = "local"
    BATCH = "batch"


def task(
    manifest: Annotated[
        str, typer.Option(help="The task's manifest: training/<job id>/manifests/<task id>.json in 'logs'.")
    ],
) -> None:
    """Train one shard's pairs on its history (what a Batch task of a training job runs); print its task line.

    Exit 1 when its history cannot be read or its packs cannot be updated (the run log says why; Batch retries
    the task), 2 for a bad manifest. A pair that cannot be trained is skipped with its reason, not a failure.
    """
    with bad_input(TrainingManifestError):
        settings = StorageSettings.from_env()
    with bad_input(TrainingManifestError), run_failures(TrainingTaskError, InputReadError, PackUpdateError):
        line = run_training_manifest(settings, manifest)
    typer.echo(line.model_dump_json())


def submit(
    days: Annotated[int, typer.Option(min=1, max=MAX_WINDOW_HOURS // 24, help="Days of history to train on.")],
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="End of the history (exclusive), UTC, e.g. 2026-11-25T00. Default: the end of the last complete hour.",
        ),
    ] = None,
    stack: Annotated[
        str, typer.Option(envvar=envvars.STACK, help="Stack name; part of the deterministic job id.")
    ] = "local",
    model: Annotated[
        str, typer.Option(help=f"Model family: {', '.join(FAMILIES)}; or module:function, your own factory.")
    ] = "ocsvm",
    param: Annotated[
        list[str] | None, typer.Option(help="Hyper-parameter key=value of the family's estimator (repeatable).")
    ] = None,
    features: Annotated[
        str, typer.Option(help=f"Comma-separated aggregate features, from {', '.join(FEATURE_NAMES)}.")
    ] = ",".join(DEFAULT_MODEL_FEATURES),
    min_rows: Annotated[int, typer.Option(min=2, help="Fewest usable windows a pair needs to get a model.")] = 24,
    shard_count: ShardCount = DEFAULT_SHARD_COUNT,
    trusted_type: Annotated[
        list[str] | None, typer.Option(help="A type skops may load beyond the vetted list (repeatable).")
    ] = None,
    backend: Annotated[
        BackendName, typer.Option(envvar=envvars.BACKEND, help="Where tasks run: local processes or Azure Batch.")
    ] = BackendName.LOCAL,
    workers: Annotated[int, typer.Option(min=0, max=64, help="Local backend: worker processes (0: in-process).")] = 2,
    max_task_retries: Annotated[
        int,
        typer.Option(min=0, max=10, help="Local: retries of a failed task (Batch: BATCH_TASK_MAX_RETRIES)."),
    ] = 1,
    task_max_wall_minutes: Annotated[
        int | None,
        typer.Option(min=1, max=10080, help="Batch: wall-clock limit of a task. Default: BATCH_TASK_MAX_WALL_MINUTES."),
    ] = None,
    wait: Annotated[
        bool, typer.Option(help="Batch: wait for the job and print the summary; --no-wait prints the job id.")
    ] = True,
    poll_seconds: Annotated[float, typer.Option(min=1, help="Batch: seconds between status polls.")] = 15,
    timeout_minutes: Annotated[int, typer.Option(min=1, help="Batch: give up waiting after this long.")] = 240,
) -> None:
    """Retrain every shard's pairs on the last --days of history as one task per shard; print a JSON summary.

    Lists the shards that have aggregates in the window (no rows read), writes a manifest per shard under
    logs/training/<job id>/, runs the tasks, sums their run logs: tasks ok and failed (after retries), pairs
    trained, skipped by reason, rows. Exit 1 if any task failed or wrote no log, or if every pair was skipped
    (the reasons counted).
    """
    from workloads.training.pool import TrainingRequest, batch_waiter, run_training

    with bad_input():
        storage = StorageSettings.from_env()
        end = parse_hour(to) if to is not None else last_complete_hour(datetime.now(UTC), SETTLE) + timedelta(hours=1)
        chosen = tuple(f.strip() for f in features.split(",") if f.strip())
        spec = ModelSpec(family=model, params=dict(parse_param(p) for p in param or ()))
        spec.factory()  # a wrong parameter fails here, as bad input, before anything is submitted
        request = TrainingRequest(
            stack=stack,
            start=end - timedelta(days=days),
            end=end,
            shard_count=shard_count,
            features=chosen,
            model=spec,
            min_rows=min_rows,
            trusted_types=tuple(sorted({validate_trusted_type(t) for t in trusted_type or ()})),
        )
        job_id = request.job_id  # validates the stack and the window
        service = storage.client()
        runner = _batch_backend() if backend is BackendName.BATCH else None
    max_wall = timedelta(minutes=task_max_wall_minutes) if task_max_wall_minutes else None
    with run_failures(ValueError):
        if runner is not None:
            waiter = batch_waiter(runner, poll_seconds, timedelta(minutes=timeout_minutes)) if wait else None
            summary = run_training(service, request, runner, wait=waiter, task_max_wall=max_wall)
        else:
            from workloads.submitter.local import LocalBackend

            with LocalBackend(storage, workers=workers, max_task_retries=max_task_retries) as local:
                summary = run_training(service, request, local)
    if runner is not None and not wait:
        typer.echo(json.dumps({"job_id": job_id, "tasks": summary.tasks}))
        return
    _finish(summary)


def summary(
    job_id: Annotated[str, typer.Option(help="A training job's id, as `trainer submit` printed it.")],
) -> None:
    """Sum a training job's run logs now (e.g. after ``submit --no-wait``); exit 1 unless every task succeeded and
    some pair was trained."""
    from workloads.submitter.backend import JobOutcome
    from workloads.training.pool import read_training_job, summarise

    with bad_input():
        service = StorageSettings.from_env().client()
    with run_failures(ValueError):
        job = read_training_job(service, job_id)
        result = summarise(service, job.job_id, job.tasks, JobOutcome(finished=True), job.blobs_outside_shard_folders)
    _finish(result)


def _finish(result: TrainingSummary) -> None:
    typer.echo(json.dumps(result.as_json(), indent=2))
    if not result.tasks:
        fail(f"training job {result.job_id}: no shard has aggregates in the window, nothing trained")
    problems = [f"{len(result.failed)} task(s) failed"] if result.failed else []
    problems += [f"{len(result.missing_logs)} task(s) wrote no run log"] if result.missing_logs else []
    problems += [] if result.finished else ["the job had not finished when waiting ended"]
    if result.pairs and not result.trained:  # every task may have succeeded, and yet no model was published
        problems.append(f"no model trained, every pair was skipped ({describe_skips(result.skipped)})")
    if problems:
        fail(f"training job {result.job_id}: {'; '.join(problems)}")


def _batch_backend() -> BatchBackend:
    # Imported here: the local path needs no azure-batch, and the task image has no submitter.
    from azure.batch import BatchClient
    from azure.identity import DefaultAzureCredential

    from workloads.common.console import console
    from workloads.submitter.batch import BatchBackend
    from workloads.submitter.batch_settings import BatchSettings

    settings = BatchSettings.from_env()
    return BatchBackend(
        BatchClient(settings.account_url, DefaultAzureCredential()), settings, log=console(stderr=True).print
    )
