"""``submitter``: plan an hour, chunk its pairs into tasks and submit them (locally or to Azure Batch)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated

import typer
from pydantic import ValidationError

from workloads.common.storage import StorageSettings
from workloads.common.windows import format_hour, last_complete_hour, parse_hour
from workloads.scorer.task import ScorerOptions
from workloads.submitter.local import LocalBackend
from workloads.submitter.plan import plan_hour, validate_stack
from workloads.submitter.submit import submit_plan

app = typer.Typer(add_completion=False, help=__doc__)


class BackendName(StrEnum):
    LOCAL = "local"


def _hour(hour: str | None, lateness_minutes: int) -> datetime:
    if hour is None:
        return last_complete_hour(datetime.now(UTC), timedelta(minutes=lateness_minutes))
    return parse_hour(hour)


Hour = Annotated[
    str | None,
    typer.Option(
        envvar="SCORING_HOUR", help="Hour to score, UTC, e.g. 2026-11-25T16. Default: the last complete hour."
    ),
]
Stack = Annotated[str, typer.Option(envvar="SCORING_STACK", help="Stack name; part of the deterministic job id.")]
ChunkSize = Annotated[
    int, typer.Option(envvar="SCORING_CHUNK_SIZE", min=1, max=10_000, help="Device/sensor pairs per task.")
]
Lateness = Annotated[
    int,
    typer.Option(
        envvar="SCORING_LATENESS_MINUTES",
        min=0,
        max=180,
        help="Minutes after an hour ends before it counts as complete.",
    ),
]


@app.command()
def plan(hour: Hour = None, stack: Stack = "local", chunk_size: ChunkSize = 50, lateness_minutes: Lateness = 5) -> None:
    """Print the plan for an hour as JSON (job id, tasks, pairs) without submitting anything."""
    try:
        settings, when = StorageSettings.from_env(), _hour(hour, lateness_minutes)
        job = plan_hour(settings.client(), validate_stack(stack), when, chunk_size)
    except (ValidationError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(
        json.dumps(
            {
                "job_id": job.job_id,
                "hour": format_hour(job.hour),
                "pairs": job.pairs,
                "tasks": [{"task_id": t.task_id, "pairs": [str(p) for p in t.pairs]} for t in job.tasks],
                "silent_pairs": [str(p) for p in job.silent_pairs],
                "aggregate_errors": job.aggregate_errors,
            },
            indent=2,
        )
    )


@app.command()
def run(
    hour: Hour = None,
    stack: Stack = "local",
    chunk_size: ChunkSize = 50,
    lateness_minutes: Lateness = 5,
    backend: Annotated[
        BackendName, typer.Option(envvar="SCORING_BACKEND", help="Where tasks run.")
    ] = BackendName.LOCAL,
    workers: Annotated[
        int, typer.Option(min=0, max=64, help="Local backend: worker processes (0: in this process).")
    ] = 2,
    force: Annotated[bool, typer.Option(help="Score again even if this hour's job already completed.")] = False,
    trust_pickle: Annotated[
        bool, typer.Option(help="Allow models stored as pickle. Only for models you trust.")
    ] = False,
) -> None:
    """Plan the hour and run its job; prints the job record as JSON. Exit 1 when a task failed."""
    try:
        settings, when = StorageSettings.from_env(), _hour(hour, lateness_minutes)
        validate_stack(stack)
    except (ValidationError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None
    service = settings.client()
    job = plan_hour(service, stack, when, chunk_size)
    with LocalBackend(settings, service, workers=workers, options=ScorerOptions(trust_pickle=trust_pickle)) as local:
        result = submit_plan(service, job, local, force=force)
    if result.skipped:
        typer.echo(f"job {job.job_id} already completed; nothing submitted (use --force to score again)", err=True)
    if result.record is not None:
        typer.echo(result.record.model_dump_json(indent=2))
        if result.record.task_errors:
            raise typer.Exit(1)


if __name__ == "__main__":
    app()
