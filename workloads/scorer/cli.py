"""``scorer``: score one shard folder (or slice) of an hour's aggregates (what a Batch task runs).

Exit codes: 0 the task ran (pair failures are in the run log), 1 the task failed (inputs unreadable,
storage unreachable: Batch retries it), 2 bad arguments or manifest, 3 with --fail-on-pair-errors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from azure.core.exceptions import AzureError

from workloads.common import envvars
from workloads.common.cli_errors import bad_input, fail, run_failures
from workloads.common.hour_inputs import InputReadError, list_hour_inputs
from workloads.common.layout import hour_prefix
from workloads.common.manifest import TaskManifest, validate_trusted_type
from workloads.common.model_versions import VersionPolicy
from workloads.common.modelstore import DEFAULT_MAX_CONCURRENT_LOADS, DEFAULT_MAX_MODEL_MIB
from workloads.common.runlog import error_line
from workloads.common.shards import parse_shard_name
from workloads.common.storage import StorageSettings
from workloads.common.windows import parse_hour
from workloads.scorer.entry import load_manifest, run_manifest
from workloads.scorer.task import ScorerOptions

app = typer.Typer(add_completion=False, help=__doc__)


def _manifest(
    settings: StorageSettings,
    hour: str | None,
    shard: str | None,
    job_id: str,
    task_id: str,
    manifest_file: Path | None,
) -> TaskManifest:
    if manifest_file is not None:
        return TaskManifest.model_validate_json(manifest_file.read_text())
    if hour is None or not shard:
        raise ValueError("give --manifest, --manifest-file, or both --hour and --shard")
    when = parse_hour(hour)
    count = parse_shard_name(shard)[1]
    folder = f"{hour_prefix(when)}{shard}/"
    blobs = [b.name for b in list_hour_inputs(settings.client(), when) if b.name.startswith(folder)]
    return TaskManifest(job_id=job_id, task_id=task_id, hour=when, shard_count=count, folder=shard, inputs=tuple(blobs))


@app.command()
def score(
    manifest: Annotated[
        str | None,
        typer.Option(help="Manifest blob in the 'logs' container: YYYY/MM/DD/HH/<job>/manifests/<task>.json."),
    ] = None,
    manifest_file: Annotated[
        Path | None, typer.Option(help="Manifest JSON file on local disk.", exists=True, dir_okay=False)
    ] = None,
    hour: Annotated[str | None, typer.Option(help="Hour to score, UTC, e.g. 2026-11-25T16 (with --shard).")] = None,
    shard: Annotated[
        str | None, typer.Option(help="Shard folder of that hour to score, e.g. s00003-of-00016 (with --hour).")
    ] = None,
    job_id: Annotated[str, typer.Option(help="Job id: names the run-log and prediction folder (with --hour).")] = (
        "manual"
    ),
    task_id: Annotated[str, typer.Option(help="Task id; names the run-log blob (with --hour).")] = "task-manual",
    trust_pickle: Annotated[
        bool, typer.Option(help="Allow models stored as pickle. Only for models you trust.")
    ] = False,
    trusted_type: Annotated[list[str] | None, typer.Option(help="Extra type skops may load (repeatable).")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Pairs fetched and scored in parallel.")] = 16,
    max_model_mib: Annotated[
        int,
        typer.Option(
            envvar=envvars.MAX_MODEL_MIB,
            min=1,
            help="Refuse a model that would inflate past this many MiB (its pair fails: model_too_large).",
        ),
    ] = DEFAULT_MAX_MODEL_MIB,
    max_concurrent_loads: Annotated[
        int,
        typer.Option(
            envvar=envvars.MAX_CONCURRENT_LOADS,
            min=1,
            max=256,
            help="Models the task deserialises at once (bounds its memory for models being loaded).",
        ),
    ] = DEFAULT_MAX_CONCURRENT_LOADS,
    sklearn_version_policy: Annotated[
        VersionPolicy | None,
        typer.Option(
            envvar=envvars.SKLEARN_VERSION_POLICY,
            help="How much of a model's recorded scikit-learn version must equal this runtime's (exact, minor, "
            "major, any); default: the manifest's (the stack's sklearnVersionPolicy). A model outside it fails its "
            "pair (version_mismatch).",
        ),
    ] = None,
    fail_on_pair_errors: Annotated[
        bool, typer.Option(help="Exit 3 when any pair failed (default: log and exit 0).")
    ] = False,
) -> None:
    """Score one shard folder of an hour, write predictions and a JSON-lines run log, print the task summary as JSON.

    Storage comes from AZURE_STORAGE_CONNECTION_STRING (Azurite) or AZURE_STORAGE_ACCOUNT_URL
    (Azure, managed identity). Trust options of the manifest apply; these flags can only add to them.
    """
    # Storage errors while fetching the manifest are failures (1); a bad or missing manifest is input (2).
    with run_failures(), bad_input():
        settings = StorageSettings.from_env()
        types = tuple(validate_trusted_type(t) for t in trusted_type or ())
        if manifest is not None:
            task = load_manifest(settings, manifest)
        else:
            task = _manifest(settings, hour, shard, job_id, task_id, manifest_file)
    options = ScorerOptions(
        trust_pickle=trust_pickle,
        trusted_types=types,
        concurrency=concurrency,
        max_model_mib=max_model_mib,
        max_concurrent_loads=max_concurrent_loads,
        version_policy=sklearn_version_policy,
    )
    with run_failures(InputReadError):
        try:
            report = run_manifest(settings, task, options)
        except (AzureError, OSError, InputReadError):
            raise
        except Exception as exc:  # anything else too ends in one line and exit 1 (the run log has it as well)
            fail(f"task failed: {error_line(exc)}")
    typer.echo(json.dumps({**report.task.model_dump(mode="json"), "log_blob": f"logs/{report.log_blob}"}))
    if fail_on_pair_errors and report.task.failed:
        raise typer.Exit(3)


if __name__ == "__main__":
    app()
