"""``submitter``: plan an hour, chunk its pairs into tasks and submit them (locally or to Azure Batch).

In Azure, the Logic App starts this as a container with its settings in environment variables; by
hand, ``submitter run --backend batch --hour 2026-11-25T16 --wait`` re-runs or backfills an hour.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from azure.storage.blob import BlobServiceClient
from pydantic import ValidationError
from rich.table import Table

from workloads.common import envvars
from workloads.common.console import console
from workloads.common.runlog import PairStatus
from workloads.common.storage import StorageSettings
from workloads.common.windows import HOUR, format_hour, last_complete_hour, parse_hour
from workloads.submitter.plan import JobPlan, plan_hour, validate_stack
from workloads.submitter.record import JobRecord, JobStatus, write_record
from workloads.submitter.report import JobReport, collect
from workloads.submitter.submit import SubmitResult, submit_plan

if TYPE_CHECKING:
    from workloads.submitter.batch import BatchBackend, TaskCounts

app = typer.Typer(add_completion=False, help=__doc__)
err = console(stderr=True)


class BackendName(StrEnum):
    LOCAL = "local"
    BATCH = "batch"


def _hour(hour: str | None, lateness_minutes: int) -> datetime:
    if hour is None:
        return last_complete_hour(datetime.now(UTC), timedelta(minutes=lateness_minutes))
    return parse_hour(hour)


def _bad(exc: Exception) -> typer.BadParameter:
    return typer.BadParameter(str(exc))


Hour = Annotated[
    str | None,
    typer.Option(
        envvar="SCORING_HOUR", help="Hour to score, UTC, e.g. 2026-11-25T16. Default: the last complete hour."
    ),
]
Stack = Annotated[str, typer.Option(envvar=envvars.STACK, help="Stack name; part of the deterministic job id.")]
ChunkSize = Annotated[
    int, typer.Option(envvar=envvars.CHUNK_SIZE, min=1, max=10_000, help="Device/sensor pairs per task.")
]
Lateness = Annotated[
    int,
    typer.Option(
        envvar=envvars.LATENESS_MINUTES, min=0, max=180, help="Minutes after an hour ends before it counts as complete."
    ),
]


@app.command()
def plan(hour: Hour = None, stack: Stack = "local", chunk_size: ChunkSize = 50, lateness_minutes: Lateness = 5) -> None:
    """Print the plan for an hour as JSON (job id, tasks, pairs) without submitting anything."""
    try:
        settings, when = StorageSettings.from_env(), _hour(hour, lateness_minutes)
        job = plan_hour(settings.client(), validate_stack(stack), when, chunk_size)
    except (ValidationError, ValueError) as exc:
        raise _bad(exc) from None
    typer.echo(json.dumps(_plan_json(job), indent=2))


def _plan_json(job: JobPlan) -> dict[str, object]:
    return {
        "job_id": job.job_id,
        "hour": format_hour(job.hour),
        "pairs": job.pairs,
        "tasks": [{"task_id": t.task_id, "pairs": [str(p) for p in t.pairs]} for t in job.tasks],
        "silent_pairs": [str(p) for p in job.silent_pairs],
        "aggregate_errors": job.aggregate_errors,
    }


def _batch_backend() -> BatchBackend:
    # Imported here so the local path does not need azure-batch, nor the Batch path scikit-learn.
    from azure.batch import BatchClient
    from azure.identity import DefaultAzureCredential

    from workloads.submitter.batch import BatchBackend
    from workloads.submitter.batch_settings import BatchSettings

    settings = BatchSettings.from_env()
    client = BatchClient(settings.account_url, DefaultAzureCredential())
    return BatchBackend(client, settings, log=err.print)


def _run_local(
    settings: StorageSettings, service: BlobServiceClient, job: JobPlan, workers: int, force: bool, trust_pickle: bool
) -> SubmitResult:
    try:
        from workloads.scorer.task import ScorerOptions
        from workloads.submitter.local import LocalBackend
    except ImportError as exc:  # the submitter image ships without the scorer and scikit-learn
        raise typer.BadParameter(
            f"the local backend needs the scorer and its 'scoring' extra ({exc}); use --backend batch here"
        ) from None

    options = ScorerOptions(trust_pickle=trust_pickle)
    with LocalBackend(settings, service, workers=workers, options=options) as local:
        return submit_plan(service, job, local, force=force)


def _wait(backend: BatchBackend, job: JobPlan, poll_seconds: float, timeout_minutes: int) -> None:
    from rich.progress import BarColumn, Progress, TextColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} tasks"))
    with Progress(*columns, console=err) as progress:
        bar = progress.add_task(f"waiting for {job.job_id}", total=len(job.tasks))
        backend.wait(
            job.job_id,
            len(job.tasks),
            poll_seconds=poll_seconds,
            timeout=timedelta(minutes=timeout_minutes),
            on_poll=lambda counts: progress.update(bar, completed=counts.finished),
        )


@app.command()
def run(
    hour: Hour = None,
    stack: Stack = "local",
    chunk_size: ChunkSize = 50,
    lateness_minutes: Lateness = 5,
    backend: Annotated[
        BackendName, typer.Option(envvar=envvars.BACKEND, help="Where tasks run: local processes or Azure Batch.")
    ] = BackendName.LOCAL,
    workers: Annotated[int, typer.Option(min=0, max=64, help="Local backend: worker processes (0: in-process).")] = 2,
    force: Annotated[bool, typer.Option(help="Local backend: score again even if the hour's job completed.")] = False,
    trust_pickle: Annotated[
        bool, typer.Option(help="Local backend: allow pickle models (only if you trust them).")
    ] = False,
    wait: Annotated[
        bool, typer.Option(help="Batch backend: wait for the job, print its report, exit 1 on failures.")
    ] = False,
    poll_seconds: Annotated[float, typer.Option(min=1, help="Batch backend: seconds between status polls.")] = 15,
    timeout_minutes: Annotated[int, typer.Option(min=1, help="Batch backend: give up waiting after this long.")] = 120,
) -> None:
    """Plan the hour and run (local) or submit (batch) its job; prints the job record as JSON."""
    try:
        settings, when = StorageSettings.from_env(), _hour(hour, lateness_minutes)
        validate_stack(stack)
        batch = _batch_backend() if backend is BackendName.BATCH else None
    except (ValidationError, ValueError) as exc:
        raise _bad(exc) from None
    service = settings.client()
    job = plan_hour(service, stack, when, chunk_size)
    err.print(f"{job.job_id}: {job.pairs} pair(s) in {len(job.tasks)} task(s); {len(job.silent_pairs)} silent pair(s)")
    if batch is None:
        result = _run_local(settings, service, job, workers, force, trust_pickle)
    else:
        result = submit_plan(service, job, batch)
    if result.skipped:
        err.print(f"job {job.job_id} was already submitted; nothing submitted again")
    if result.record is not None:
        typer.echo(result.record.model_dump_json(indent=2))
    if batch is not None and wait and job.tasks:
        _wait(batch, job, poll_seconds, timeout_minutes)
        counts = batch.counts(job.job_id)
        reports = [r for r in collect(service, job.hour) if r.job_id == job.job_id]
        if result.record is not None:
            _record_completion(service, result.record, counts, reports)
            for job_report in reports:
                job_report.record = result.record
        _print_reports(reports, as_json=False)
        if counts.failed or any(r.failures for r in reports):
            raise typer.Exit(1)
    if result.record is not None and result.record.task_errors:
        raise typer.Exit(1)


def _record_completion(
    service: BlobServiceClient, record: JobRecord, counts: TaskCounts, reports: list[JobReport]
) -> None:
    """After --wait, the job record says how the job ended, as the local backend's records do."""
    pairs = [p for r in reports for p in r.pairs]
    finished = counts.pending == 0
    record.status = JobStatus.FAILED if counts.failed else JobStatus.COMPLETED if finished else JobStatus.SUBMITTED
    record.finished_at = datetime.now(UTC) if finished else None
    record.ok = sum(p.status is PairStatus.OK for p in pairs)
    record.failed = sum(p.status is PairStatus.FAILED for p in pairs)
    record.no_data = sum(p.status is PairStatus.NO_DATA for p in pairs)
    record.anomalies = sum(p.anomalies for p in pairs)
    write_record(service, record)


def _print_reports(reports: list[JobReport], *, as_json: bool) -> None:
    summaries = [r.summary() for r in reports]
    if as_json:
        typer.echo(json.dumps(summaries, indent=2))
        return
    out = console()
    table = Table(title="Jobs")
    columns = (
        "hour",
        "job_id",
        "status",
        "tasks_logged",
        "pairs_ok",
        "pairs_failed",
        "pairs_no_data",
        "anomalies",
        "task_seconds_mean",
        "task_seconds_max",
        "pair_ms_p50",
        "pair_ms_max",
    )
    for column in columns:
        table.add_column(
            column.replace("_", " "), justify="left" if column in ("hour", "job_id", "status") else "right"
        )
    for summary in summaries:
        table.add_row(*("-" if summary[c] is None else str(summary[c]) for c in columns))
    out.print(table)
    failures = [(s["job_id"], f) for s in summaries for f in s["failures"]]
    if failures:
        failed = Table(title="Failed pairs")
        for column in ("job", "task", "pair", "reason", "error"):
            failed.add_column(column)
        for job_id, f in failures:
            failed.add_row(job_id, f["task"], f["pair"], f["reason"] or "", f["error"] or "")
        out.print(failed)


@app.command()
def report(
    hour: Hour = None,
    last: Annotated[int, typer.Option(min=1, max=24 * 31, help="Report this many hours, ending with --hour.")] = 1,
    lateness_minutes: Lateness = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Jobs, tasks, per-pair failures and timings of an hour (or the last N) from the run logs."""
    try:
        settings, newest = StorageSettings.from_env(), _hour(hour, lateness_minutes)
    except (ValidationError, ValueError) as exc:
        raise _bad(exc) from None
    service = settings.client()
    reports = [r for i in range(last) for r in collect(service, newest - i * HOUR)]
    _print_reports(reports, as_json=as_json)


if __name__ == "__main__":
    app()
