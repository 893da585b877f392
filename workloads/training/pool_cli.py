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
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from workloads.common import envvars
from workloads.common.aggregates import DEFAULT_MODEL_FEATURES, FEATURE_NAMES
from workloads.common.cli_errors import bad_input, fail, run_failures
from workloads.common.cli_options import ShardCount, TrustedType
from workloads.common.console import console
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
    from workloads.training.pool import TrainingSummary
    from workloads.training.pool_batch import TrainingBatchBackend


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
    the task), 2 for a bad manifest, or one naming a module:function model factory other than the one its
    environment allows (SCORING_TRAINING_FACTORY, set by `trainer submit`). A pair that cannot be trained is skipped
    with its reason, not a failure.
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
    trusted_type: TrustedType = None,
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
    from workloads.training.cli import _features
    from workloads.training.pool import TrainingRequest, batch_waiter, run_training

    with bad_input():
        storage = StorageSettings.from_env()
        end = parse_hour(to) if to is not None else last_complete_hour(datetime.now(UTC), SETTLE) + timedelta(hours=1)
        chosen = _features(features)
        spec = ModelSpec(family=model, params=dict(parse_param(p) for p in param or ()))
        types = tuple(sorted({validate_trusted_type(t) for t in trusted_type or ()}))
        spec.factory(len(chosen), types)  # a wrong parameter fails here, as bad input, before anything is submitted
        request = TrainingRequest(
            stack=stack,
            start=end - timedelta(days=days),
            end=end,
            shard_count=shard_count,
            features=chosen,
            model=spec,
            min_rows=min_rows,
            trusted_types=types,
        )
        job_id = request.job_id  # validates the stack and the window
        # The factory the user chose, and only it, may be imported by the tasks (task.check_factory_allowed).
        environment = {envvars.TRAINING_FACTORY: spec.family} if spec.is_custom else {}
        service = storage.client()
        runner = _batch_backend(environment) if backend is BackendName.BATCH else None
    if runner is not None:
        from workloads.training.pool_batch import TrainingJobClosedError

        with bad_input(TrainingJobClosedError), run_failures():
            runner.check_open(job_id)
        if spec.is_custom:
            warn(
                f"the model factory {spec.family} must be importable in the scorer image the pool runs "
                "(it is imported there by each task, not here)"
            )
    max_wall = timedelta(minutes=task_max_wall_minutes) if task_max_wall_minutes else None
    with run_failures(ValueError):
        if runner is not None:
            waiter = batch_waiter(runner, poll_seconds, timedelta(minutes=timeout_minutes)) if wait else None
            summary = run_training(service, request, runner, wait=waiter, task_max_wall=max_wall)
        else:
            from workloads.submitter.local import LocalBackend

            # The local workers are this user's processes: they get the same allowance through their environment
            # (set before they start, restored after).
            with (
                _environment(environment),
                LocalBackend(storage, workers=workers, max_task_retries=max_task_retries) as local,
            ):
                summary = run_training(service, request, local)
    if runner is not None and not wait:
        typer.echo(json.dumps({"job_id": job_id, "tasks": summary.tasks, "notes": summary.notes}))
        for note in summary.notes:
            warn(note)
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
    for note in result.notes:
        warn(note)
    if not result.tasks:
        fail(f"training job {result.job_id}: no shard has aggregates in the window, nothing trained")
    problems = [f"{len(result.failed)} task(s) failed"] if result.failed else []
    problems += [f"{len(result.missing_logs)} task(s) wrote no run log"] if result.missing_logs else []
    problems += [] if result.finished else ["the job had not finished when waiting ended"]
    if result.pairs and not result.trained:  # every task may have succeeded, and yet no model was published
        problems.append(f"no model trained, every pair was skipped ({describe_skips(result.skipped)})")
    if problems:
        fail(f"training job {result.job_id}: {'; '.join(problems)}")


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in this process's environment (and so in the workers it starts) until the block ends."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def warn(message: str) -> None:
    console(stderr=True).print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)


def _batch_backend(task_environment: Mapping[str, str]) -> TrainingBatchBackend:
    # Imported here: the local path needs no azure-batch, and the task image has no submitter.
    from azure.batch import BatchClient
    from azure.identity import DefaultAzureCredential

    from workloads.submitter.batch_settings import BatchSettings
    from workloads.training.pool_batch import TrainingBatchBackend

    settings = BatchSettings.from_env()
    return TrainingBatchBackend(
        BatchClient(settings.account_url, DefaultAzureCredential()),
        settings,
        log=console(stderr=True).print,
        task_environment=task_environment,
    )
