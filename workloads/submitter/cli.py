"""``submitter``: reconcile recent hours, or score one hour, locally or on Azure Batch; report on them.

In Azure, the Logic App starts ``submitter reconcile`` as a container with its settings in
environment variables; by hand, ``submitter run --backend batch --hour 2026-11-25T16 --wait`` scores
(or, with --force, re-scores) one hour. Exit codes: 0 done, 1 a revision or the run failed, 2 bad
input or configuration (including an hour that is not complete yet).
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from azure.storage.blob import BlobServiceClient
from rich.table import Table

from workloads.common import envvars, telemetry
from workloads.common.cli_errors import bad_input, fail, run_failures
from workloads.common.cli_options import ShardCount, VersionPolicyOption
from workloads.common.console import console
from workloads.common.hour_state import CLAIM_TIMEOUT, Action, AttemptStatus, complete_at
from workloads.common.manifest import DEFAULT_TASK_INPUT_MIB, validate_trusted_type
from workloads.common.model_versions import DEFAULT_POLICY, VersionPolicy
from workloads.common.shards import DEFAULT_SHARD_COUNT
from workloads.common.storage import StorageSettings
from workloads.common.windows import HOUR, SETTLE, format_hour, last_complete_hour, parse_hour
from workloads.submitter.backend import Backend
from workloads.submitter.plan import MIB, JobPlan, Trust, plan_hour, validate_stack
from workloads.submitter.reconcile import HourResult, Reconciler, ReconcileSettings
from workloads.submitter.report import HourReport, collect, issue_lines, monitor_hint

if TYPE_CHECKING:
    from workloads.submitter.batch import BatchBackend

app = typer.Typer(add_completion=False, help=__doc__)
err = console(stderr=True)


class BackendName(StrEnum):
    LOCAL = "local"
    BATCH = "batch"


Hour = Annotated[
    str | None,
    typer.Option(envvar="SCORING_HOUR", help="Hour, UTC, e.g. 2026-11-25T16. Default: the last complete hour."),
]
Stack = Annotated[str, typer.Option(envvar=envvars.STACK, help="Stack name; part of the deterministic job id.")]
TaskInputMiB = Annotated[
    int,
    typer.Option(
        envvar=envvars.TASK_INPUT_MIB,
        min=1,
        max=4096,
        help="A shard folder with more aggregate MiB than this is split into slices, a task each.",
    ),
]
Settle = Annotated[
    int,
    typer.Option(
        "--lateness-minutes",
        envvar=envvars.LATENESS_MINUTES,
        min=0,
        max=180,
        help="Settle time: minutes after an hour ends before it counts as complete (covers the stream job's "
        "late-arrival tolerance and output delay).",
    ),
]
BackendOption = Annotated[
    BackendName, typer.Option(envvar=envvars.BACKEND, help="Where tasks run: local processes or Azure Batch.")
]
Workers = Annotated[int, typer.Option(min=0, max=64, help="Local backend: worker processes (0: in-process).")]
TrustPickle = Annotated[bool, typer.Option(help="Allow pickle models (only if you trust them); sent to every task.")]
TrustedTypes = Annotated[
    str,
    typer.Option(
        envvar=envvars.TRUSTED_TYPES,
        help="Comma-separated extra types skops may load (e.g. sklearn.tree._tree.Tree); sent to every task.",
    ),
]
ClaimTimeout = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=7 * 24 * 60,
        help="Minutes after which a revision still in flight counts as abandoned (by the storage service's clock). "
        "Default: Batch, the job's wall-clock limit + 15 min (BATCH_TASK_MAX_WALL_MINUTES x (1 + retries) + 1 h); "
        "local, 180 (a local run whose process is gone is replaced at once).",
    ),
]
DEFAULT_SETTLE = int(SETTLE.total_seconds() // 60)


_CLOCK: dict[str, datetime] = {}  # set by the hidden --now: replays and the soak (``make soak``) run on a fake clock


def _now() -> datetime:
    return _CLOCK.get("now") or datetime.now(UTC)


@app.callback()
def _main(
    now: Annotated[
        str | None,
        typer.Option(
            hidden=True,
            help="Pretend it is this UTC time (ISO 8601), e.g. to replay a night. Claims still age by the "
            "storage service's clock.",
        ),
    ] = None,
) -> None:
    if now is not None:
        with bad_input():
            when = datetime.fromisoformat(now)
            _CLOCK["now"] = when if when.tzinfo else when.replace(tzinfo=UTC)


def _last_complete(settle_minutes: int) -> datetime:
    return last_complete_hour(_now(), timedelta(minutes=settle_minutes))


def _trust(trust_pickle: bool, trusted_types: str, version_policy: VersionPolicy) -> Trust:
    types = tuple(validate_trusted_type(t.strip()) for t in trusted_types.split(",") if t.strip())
    return Trust(pickle=trust_pickle, types=tuple(sorted(set(types))), version_policy=version_policy)


def _settings(
    stack: str,
    task_input_mib: int,
    shard_count: int,
    lateness_minutes: int,
    claim_timeout_minutes: int | None,
    trust_pickle: bool,
    trusted_types: str,
    version_policy: VersionPolicy,
    **extra: int,
) -> ReconcileSettings:
    """The reconcile and run commands' shared settings, validated (bad values raise ValueError: exit 2)."""
    return ReconcileSettings(
        stack=validate_stack(stack),
        max_task_bytes=task_input_mib * MIB,
        shard_count=shard_count,
        settle=timedelta(minutes=lateness_minutes),
        claim_timeout=timedelta(minutes=claim_timeout_minutes) if claim_timeout_minutes else CLAIM_TIMEOUT,
        trust=_trust(trust_pickle, trusted_types, version_policy),
        **extra,
    )


def _claim_timeout_of(runner: Backend, settings: ReconcileSettings, minutes: int | None) -> ReconcileSettings:
    """A Batch run's default claim timeout comes from its job's wall-clock limit (``BatchSettings``)."""
    from workloads.submitter.batch import BatchBackend

    if minutes is None and isinstance(runner, BatchBackend):
        return replace(settings, claim_timeout=runner.settings.claim_timeout)
    return settings


def _open_backend(name: BackendName, settings: StorageSettings, workers: int, stack: ExitStack) -> Backend:
    """The backend, validated from its settings here (bad settings exit 2, before anything runs); a local
    pool is shut down when ``stack`` closes."""
    if name is BackendName.BATCH:
        return _batch_backend()
    try:
        from workloads.submitter.local import LocalBackend
    except ImportError as exc:  # the submitter image ships without the scorer and scikit-learn
        fail(f"the local backend needs the scorer and its 'scoring' extra ({exc}); use --backend batch here", 2)
    return stack.enter_context(LocalBackend(settings, workers=workers))


def _batch_backend() -> BatchBackend:
    # Imported here so the local path does not need azure-batch, nor the Batch path scikit-learn.
    from azure.batch import BatchClient
    from azure.identity import DefaultAzureCredential

    from workloads.submitter.batch import BatchBackend
    from workloads.submitter.batch_settings import BatchSettings

    settings = BatchSettings.from_env()
    client = BatchClient(settings.account_url, DefaultAzureCredential())
    return BatchBackend(client, settings, log=err.print)


def _results_table(results: list[HourResult]) -> Table:
    table = Table(title="Reconciled hours")
    for column in ("hour", "action", "reason", "job id", "status", "pairs", "ok", "failed", "why"):
        table.add_column(column)
    for r in results:
        rec = r.record
        table.add_row(
            format_hour(r.hour),
            r.action.value,
            r.reason.value if r.reason else "",
            r.job_id or "",
            r.status.value if r.status else "",
            str(rec.pairs) if rec else "",
            str(rec.ok) if rec else "",
            str(rec.failed) if rec else "",
            r.why,
        )
    return table


def _result_json(r: HourResult) -> dict[str, object]:
    return {
        "hour": format_hour(r.hour),
        "action": r.action.value,
        "why": r.why,
        "reason": r.reason.value if r.reason else None,
        "job_id": r.job_id,
        "status": r.status.value if r.status else None,
        "record": r.record.model_dump(mode="json") if r.record else None,
    }


def _finish(results: list[HourResult]) -> None:
    """Print the results; exit 1 when an hour failed or was scored without some of its inputs."""
    typer.echo(json.dumps([_result_json(r) for r in results], indent=2))
    err.print(_results_table(results))
    failed = [f"{format_hour(r.hour)} {r.why}" for r in results if r.failed]
    lost = [
        f"{format_hour(r.hour)} scored without {len(r.lost_inputs)} corrupt aggregate blob(s), their rows lost: "
        + ", ".join(f"aggregates/{name}" for name in r.lost_inputs)
        for r in results
        if r.lost_inputs
    ]
    parts = [f"{len(failed)} hour(s) failed: " + "; ".join(failed)] if failed else []
    parts += [f"{len(lost)} hour(s) incomplete: " + "; ".join(lost)] if lost else []
    if parts:
        fail(" | ".join(parts)[:800])


@app.command()
def reconcile(
    stack: Stack = "local",
    task_input_mib: TaskInputMiB = DEFAULT_TASK_INPUT_MIB,
    shard_count: ShardCount = DEFAULT_SHARD_COUNT,
    lateness_minutes: Settle = DEFAULT_SETTLE,
    hours: Annotated[
        int, typer.Option(envvar=envvars.RECONCILE_HOURS, min=1, max=24 * 7, help="How many recent hours to look at.")
    ] = 24,
    backend: BackendOption = BackendName.LOCAL,
    workers: Workers = 2,
    trust_pickle: TrustPickle = False,
    trusted_types: TrustedTypes = "",
    sklearn_version_policy: VersionPolicyOption = DEFAULT_POLICY,
    claim_timeout_minutes: ClaimTimeout = None,
) -> None:
    """Score every complete hour of the window that needs it (never scored, failed, inputs changed);
    finish revisions submitted earlier; print one line per hour saying what was done and why."""
    with bad_input():
        storage = StorageSettings.from_env()
        settings = _settings(
            stack,
            task_input_mib,
            shard_count,
            lateness_minutes,
            claim_timeout_minutes,
            trust_pickle,
            trusted_types,
            sklearn_version_policy,
            hours=hours,
        )
        service = storage.client()
    telemetry.setup("batchscoring-submitter")
    with ExitStack() as resources:
        with bad_input():
            runner = _open_backend(backend, storage, workers, resources)
        settings = _claim_timeout_of(runner, settings, claim_timeout_minutes)
        with run_failures():
            results = Reconciler(service, runner, settings, log=err.print).run(_now())
    _finish(results)


@app.command()
def run(
    hour: Hour = None,
    stack: Stack = "local",
    task_input_mib: TaskInputMiB = DEFAULT_TASK_INPUT_MIB,
    shard_count: ShardCount = DEFAULT_SHARD_COUNT,
    lateness_minutes: Settle = DEFAULT_SETTLE,
    backend: BackendOption = BackendName.LOCAL,
    workers: Workers = 2,
    force: Annotated[bool, typer.Option(help="Score a new revision even if the hour is scored on its inputs.")] = False,
    trust_pickle: TrustPickle = False,
    trusted_types: TrustedTypes = "",
    sklearn_version_policy: VersionPolicyOption = DEFAULT_POLICY,
    claim_timeout_minutes: ClaimTimeout = None,
    wait: Annotated[
        bool, typer.Option(help="Batch backend: wait for the job, finalise the hour, print its report.")
    ] = False,
    poll_seconds: Annotated[float, typer.Option(min=1, help="Batch backend: seconds between status polls.")] = 15,
    timeout_minutes: Annotated[int, typer.Option(min=1, help="Batch backend: give up waiting after this long.")] = 120,
) -> None:
    """Score one complete hour now (a new revision when it needs one, or with --force)."""
    with bad_input():
        storage = StorageSettings.from_env()
        when = parse_hour(hour) if hour is not None else _last_complete(lateness_minutes)
        settle = timedelta(minutes=lateness_minutes)
        if _now() < complete_at(when, settle):
            raise ValueError(
                f"hour {format_hour(when)} is not complete until {complete_at(when, settle):%Y-%m-%dT%H:%M}Z "
                f"(its windows may still be written; settle time {lateness_minutes} min): nothing scored"
            )
        settings = _settings(
            stack,
            task_input_mib,
            shard_count,
            lateness_minutes,
            claim_timeout_minutes,
            trust_pickle,
            trusted_types,
            sklearn_version_policy,
        )
        service = storage.client()
    telemetry.setup("batchscoring-submitter")
    with ExitStack() as resources:
        with bad_input():
            runner = _open_backend(backend, storage, workers, resources)
        settings = _claim_timeout_of(runner, settings, claim_timeout_minutes)
        with run_failures():
            reconciler = Reconciler(service, runner, settings, log=err.print)
            result = reconciler.hour(when, _now(), force=force)
            if wait and result.status is AttemptStatus.SUBMITTED and result.record is not None:
                _wait(runner, result, poll_seconds, timeout_minutes)
                result = reconciler.hour(when, _now())
            if wait:
                _print_reports([collect(service, when, _now(), settle)], as_json=False)
    if result.action is Action.SKIP and result.job_id is None:
        err.print(f"{format_hour(when)}: {result.why}; nothing submitted (--force scores a new revision)")
    _finish([result])


def _wait(runner: Backend, result: HourResult, poll_seconds: float, timeout_minutes: int) -> None:
    from rich.progress import BarColumn, Progress, TextColumn

    from workloads.submitter.batch import BatchBackend

    if not isinstance(runner, BatchBackend) or result.record is None or result.job_id is None:
        return
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} tasks"))
    with Progress(*columns, console=err) as progress:
        bar = progress.add_task(f"waiting for {result.job_id}", total=result.record.tasks)
        runner.wait(
            result.job_id,
            result.record.tasks,
            poll_seconds=poll_seconds,
            timeout=timedelta(minutes=timeout_minutes),
            on_poll=lambda counts: progress.update(bar, completed=counts.finished),
        )


@app.command()
def plan(
    hour: Hour = None,
    stack: Stack = "local",
    task_input_mib: TaskInputMiB = DEFAULT_TASK_INPUT_MIB,
    shard_count: ShardCount = DEFAULT_SHARD_COUNT,
    lateness_minutes: Settle = DEFAULT_SETTLE,
) -> None:
    """Print what a revision of the hour would be (tasks: folder, slice, blobs) without submitting.

    It lists the hour's blobs and reads no rows, exactly like the planning step of reconcile.
    """
    with bad_input():
        storage = StorageSettings.from_env()
        when = parse_hour(hour) if hour is not None else _last_complete(lateness_minutes)
        validate_stack(stack)
    with run_failures():
        job = plan_hour(storage.client(), stack, when, shard_count=shard_count, max_task_bytes=task_input_mib * MIB)
    typer.echo(json.dumps(_plan_json(job), indent=2))


def _plan_json(job: JobPlan) -> dict[str, object]:
    return {
        "job_id": job.job_id,
        "hour": format_hour(job.hour),
        "shards": job.shards,
        "tasks": [
            {"task_id": t.task_id, "folder": t.folder, "slice": f"{t.slice_index}/{t.slices}", "blobs": len(t.inputs)}
            for t in job.tasks
        ],
        "inputs": [b.name for b in job.inputs],
        "fingerprint": job.fingerprint,
    }


REPORT_COLUMNS = (
    "hour",
    "status",
    "revision",
    "reason",
    "tasks_logged",
    "pairs_ok",
    "pairs_failed",
    "pairs_no_data",
    "anomalies",
    "task_seconds_max",
)


def _print_reports(reports: list[HourReport], *, as_json: bool) -> None:
    summaries = [r.summary() for r in reports]
    if as_json:
        typer.echo(json.dumps(summaries, indent=2))
        return
    out = console()
    table = Table(title="Hours")
    for column in REPORT_COLUMNS:
        table.add_column(
            column.replace("_", " "), justify="left" if column in ("hour", "status", "reason") else "right"
        )
    for summary in summaries:
        table.add_row(*("-" if summary[c] is None else str(summary[c]) for c in REPORT_COLUMNS))
    out.print(table)
    issues = [(s["hour"], kind, text) for s in summaries for kind, text in issue_lines(s)]
    if issues:
        found = Table(title="Inputs and tasks")
        for column in ("hour", "issue", "detail"):
            found.add_column(column)
        for row in issues:
            found.add_row(*(str(v) for v in row))
        out.print(found)
    failures = [(s["hour"], f) for s in summaries for f in s["failures"]]
    if failures:
        failed = Table(title="Failed pairs")
        for column in ("hour", "task", "pair", "reason", "error"):
            failed.add_column(column)
        for hour, f in failures:
            failed.add_row(str(hour), f["task"], f["pair"], f["reason"] or "", f["error"] or "")
        out.print(failed)


@app.command()
def report(
    hour: Hour = None,
    last: Annotated[int, typer.Option(min=1, max=24 * 31, help="Report this many hours, ending with --hour.")] = 1,
    lateness_minutes: Settle = DEFAULT_SETTLE,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    model_family: Annotated[
        str | None,
        typer.Option(
            envvar=envvars.MODEL_FAMILY,
            help="The family the fleet is expected to use (the stack's modelFamily): pairs scored by another "
            "are counted and named (scoring itself follows each model's metadata).",
        ),
    ] = None,
    html_file: Annotated[
        Path | None,
        typer.Option(
            "--html", help="Also write one self-contained HTML page with charts to this file.", dir_okay=False
        ),
    ] = None,
) -> None:
    """Per hour: status (not ready, pending, scoring, scored, stale, failed), revision and why, pairs,
    anomalies, timings, unreadable or corrupt inputs, quarantined and duplicate rows, failed pairs."""
    with bad_input():
        storage = StorageSettings.from_env()
        newest = parse_hour(hour) if hour is not None else _last_complete(lateness_minutes)
        service: BlobServiceClient = storage.client()
    settle = timedelta(minutes=lateness_minutes)
    days: dict[str, tuple[str, ...]] = {}  # each day listed once for all its hours
    with run_failures():
        reports = [collect(service, newest - i * HOUR, _now(), settle, days) for i in reversed(range(last))]
    for one in reports:
        one.expected_family = model_family
    _print_reports(reports, as_json=as_json)
    if not as_json:
        console().print(monitor_hint(newest - (last - 1) * HOUR, newest), markup=False, highlight=False)
    if html_file is not None:
        with run_failures():
            _write_html(service, reports, html_file)


def _write_html(service: BlobServiceClient, reports: list[HourReport], path: Path) -> None:
    import pandas as pd

    from workloads.common.frames import read_hour_predictions
    from workloads.submitter.html_report import render

    frames = [frame for r in reports if not (frame := read_hour_predictions(service, r.hour)).empty]
    predictions = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    path.write_text(render(reports, predictions, _now(), "Batch scoring: hours report"), encoding="utf-8")
    err.print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    app()
