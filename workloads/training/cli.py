"""``trainer``: train one model per device/sensor pair on a window of aggregates and publish it.

``trainer train`` fits and publishes models of a family (``--model``) and updates the shards' model packs;
``trainer import`` publishes models trained elsewhere; ``trainer pack`` rebuilds every shard's model pack from
the published models; ``trainer submit`` trains as one task per shard on the local backend or the Batch pool
(``trainer task`` is what each task runs, ``trainer summary`` sums a job's logs). ``trainer --from ...`` still
means ``trainer train --from ...``, as it did when training was the only command.

Works on Azurite (AZURE_STORAGE_CONNECTION_STRING) and on Azure (AZURE_STORAGE_ACCOUNT_URL, with
the Storage Blob Data Contributor role on the ``models`` container).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from workloads.common.aggregates import DEFAULT_MODEL_FEATURES, FEATURE_NAMES
from workloads.common.cli_errors import bad_input, fail, run_failures
from workloads.common.cli_options import ShardCount, TrustedType, VersionPolicyOption
from workloads.common.hour_inputs import InputReadError
from workloads.common.layout import Container
from workloads.common.manifest import validate_trusted_type
from workloads.common.model_versions import DEFAULT_POLICY
from workloads.common.modelstore import DEFAULT_MAX_MODEL_MIB, MIB
from workloads.common.pairs import Pair
from workloads.common.shards import DEFAULT_SHARD_COUNT
from workloads.common.storage import StorageSettings
from workloads.common.windows import format_hour, parse_hour
from workloads.training import pool_cli
from workloads.training.families import FAMILIES, ModelSpec, parse_param
from workloads.training.importer import ImportOptions, files_from_layout, files_from_mapping, import_models, probe_rows
from workloads.training.packs import PackUpdate, PackUpdateError, rebuild_packs
from workloads.training.publishing import publish_with_packs
from workloads.training.train import describe_skips, read_history, skip_counts, train_and_publish


class _TrainByDefault(TyperGroup):
    """Runs ``train`` when the first argument is one of its options, so that scripts written when
    ``train`` was the app's only command (``trainer --from ... --to ...``) keep working."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # ctx: typer's vendored click Context
        if args and args[0].startswith("-") and args[0] not in self.get_help_option_names(ctx):
            args = ["train", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(add_completion=False, help=__doc__, cls=_TrainByDefault)


def _features(text: str) -> tuple[str, ...]:
    chosen = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = sorted(set(chosen) - set(FEATURE_NAMES))
    if unknown or not chosen:
        raise ValueError(f"unknown feature(s) {unknown}; choose from {list(FEATURE_NAMES)}")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"--features names a feature twice: {list(chosen)}")  # a model reads each column once
    return chosen


def _published_packs_summary(update: PackUpdate) -> dict[str, object]:
    """After publishing: the packs written, and every pair its pack was left without (superseded by another
    publisher, an entry that could not be built), which the scorer serves from its own model."""
    return {**_packs_summary(update), "entries_left_out": {str(p): why for p, why in sorted(update.skipped.items())}}


def _packs_summary(update: PackUpdate) -> dict[str, object]:
    return {
        "packs_written": len(update.written),
        "pack_entries": sum(update.written.values()),
        "rebuilt_unreadable": update.rebuilt_unreadable,
        "conflicts_retried": update.conflicts_retried,
    }


@app.command()
def train(
    start: Annotated[str, typer.Option("--from", help="First hour of history, UTC, e.g. 2026-11-24T00.")],
    end: Annotated[str, typer.Option("--to", help="End of history (exclusive), UTC, e.g. 2026-11-25T00.")],
    features: Annotated[
        str, typer.Option(help=f"Comma-separated aggregate features, from {', '.join(FEATURE_NAMES)}.")
    ] = ",".join(DEFAULT_MODEL_FEATURES),
    pairs: Annotated[str | None, typer.Option(help="Only these DEVICE/SENSOR pairs (comma-separated).")] = None,
    min_rows: Annotated[int, typer.Option(min=2, help="Fewest usable windows a pair needs to get a model.")] = 24,
    shard_count: ShardCount = DEFAULT_SHARD_COUNT,
    model: Annotated[
        str,
        typer.Option(
            help=f"Model family: {', '.join(f'{k} ({v.summary})' for k, v in FAMILIES.items())}; "
            "or module:function, your own factory returning an unfitted estimator."
        ),
    ] = "ocsvm",
    param: Annotated[
        list[str] | None,
        typer.Option(help="Hyper-parameter key=value of the family's estimator or your factory (repeatable)."),
    ] = None,
    trusted_type: TrustedType = None,
) -> None:
    """Fit one model per pair and publish each as a skops file; print a JSON summary."""
    with bad_input():
        settings = StorageSettings.from_env()
        first, stop = parse_hour(start), parse_hour(end)
        if stop <= first:
            raise ValueError(f"--to ({end}) must come after --from ({start})")
        chosen = _features(features)
        only = [Pair.parse(p) for p in pairs.split(",") if p.strip()] if pairs else None
        spec = ModelSpec(family=model, params=dict(parse_param(p) for p in param or ()))
        types = tuple(validate_trusted_type(t) for t in trusted_type or ())
        factory = spec.factory(len(chosen), types)  # validated once, here, as bad input: before any history is read
    with run_failures(InputReadError, PackUpdateError):
        report = train_and_publish(
            settings.client(),
            first,
            stop,
            features=chosen,
            model=spec,
            factory=factory,
            trusted_types=types,
            min_rows=min_rows,
            pairs=only,
            shard_count=shard_count,
        )
    typer.echo(
        json.dumps(
            {
                "from": format_hour(first),
                "to": format_hour(stop),
                "features": list(chosen),
                "model": spec.family,
                "params": spec.params,
                "published": len(report.published),
                "skipped": {str(p): str(skip) for p, skip in sorted(report.skipped.items())},  # "reason: message"
                "quarantined_rows": report.quarantined_rows,
                "corrupt_blobs": report.corrupt_blobs,
                "duplicate_rows": report.duplicate_rows,
                "rows_outside_their_hour": report.rows_outside_their_hour,
                "windows_not_finite": report.windows_not_finite,
                "conflicting_rows": report.conflicting_rows,
                "packs": _published_packs_summary(report.packs) if report.packs is not None else None,
            },
            indent=2,
        )
    )
    if not report.published:
        why = (
            f"every pair was skipped ({describe_skips(skip_counts(report.skipped))})"
            if report.skipped
            else "no pair has aggregates in the window"
        )
        fail(f"no model published for {format_hour(first)}..{format_hour(stop)}: {why}")


@app.command()
def pack(
    shard_count: ShardCount = DEFAULT_SHARD_COUNT,
    trusted_type: TrustedType = None,
    sklearn_version_policy: VersionPolicyOption = DEFAULT_POLICY,
) -> None:
    """Rebuild every shard's model pack from the published skops models; print a JSON summary.

    Replaces each pack outright (empty where a shard has no compilable model), so run it after
    changing the shard count, after a pack was reported unreadable, or to drop deleted models.
    """
    with bad_input():
        settings = StorageSettings.from_env()
        types = tuple(validate_trusted_type(t) for t in trusted_type or ())
    with run_failures(PackUpdateError):
        models = settings.client().get_container_client(str(Container.MODELS))
        update = rebuild_packs(models, shard_count, trusted_types=types, version_policy=sklearn_version_policy)
    typer.echo(
        json.dumps(
            {
                "shard_count": shard_count,
                **_packs_summary(update),
                "skipped": {str(p): why for p, why in sorted(update.skipped.items())},
            },
            indent=2,
        )
    )


@app.command("import")
def import_(
    source: Annotated[
        Path,
        typer.Argument(
            exists=True,
            help="A folder laid out as <device_id>/<sensor>/<model file>, or a CSV mapping device_id,sensor,path"
            "[,features] (paths relative to the CSV).",
        ),
    ],
    features: Annotated[
        str, typer.Option(help="The aggregate features the models read, in order (a mapping's column overrides).")
    ] = ",".join(DEFAULT_MODEL_FEATURES),
    trust_pickle: Annotated[
        bool,
        typer.Option(
            help="Also import .joblib/.pkl/.pickle files (loading them can run any code): converted to skops."
        ),
    ] = False,
    trusted_type: TrustedType = None,
    sklearn_version_policy: VersionPolicyOption = DEFAULT_POLICY,
    start: Annotated[
        str | None, typer.Option("--from", help="First hour of history to probe each model on its pair's latest row.")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="End of that history (exclusive).")] = None,
    max_model_mib: Annotated[int, typer.Option(min=1, help="Refuse a model that would take more to load.")] = (
        DEFAULT_MAX_MODEL_MIB
    ),
    shard_count: ShardCount = DEFAULT_SHARD_COUNT,
    dry_run: Annotated[bool, typer.Option(help="Check and probe every model, publish nothing.")] = False,
) -> None:
    """Publish models trained elsewhere, one file per pair, after checking and probing each; print a JSON summary.

    Exit 0: every model found was published; 3: some were refused (listed with the reason); 1: none was.
    """
    with bad_input():
        settings = StorageSettings.from_env()
        chosen = _features(features)
        options = ImportOptions(
            features=chosen,
            trust_pickle=trust_pickle,
            trusted_types=tuple(validate_trusted_type(t) for t in trusted_type or ()),
            version_policy=sklearn_version_policy,
            max_bytes=max_model_mib * MIB,
        )
        if (start is None) != (end is None):
            raise ValueError("give both --from and --to (the history to probe on), or neither")
        window = (parse_hour(start), parse_hour(end)) if start and end else None
        if source.is_dir():
            files, refused = files_from_layout(source, chosen)
        else:
            files, refused = files_from_mapping(source, chosen)
        if not files and not refused:
            raise ValueError(f"no model files under {source}: expected <device_id>/<sensor>/<file>.skops|.joblib|.pkl")
    with run_failures(InputReadError, PackUpdateError):
        history = read_history(settings.client(), *window) if window else None
        probes = probe_rows(history) if history is not None else {}
        ready, report = import_models(files, options, probes)
        report.refused = {**refused, **report.refused}
        if not dry_run:
            models = settings.client().get_container_client(str(Container.MODELS))
            report.published, packs = publish_with_packs(models, shard_count, ready)
    typer.echo(
        json.dumps(
            {
                "source": str(source),
                "found": report.found + len(refused),
                "published": len(report.published) if not dry_run else 0,
                "ready": len(ready),
                "converted_from_pickle": len(report.converted),
                "probed_on": report.probed_on,
                "refused": dict(sorted(report.refused.items())),
                "packs": _published_packs_summary(packs) if not dry_run and packs is not None else None,
                "dry_run": dry_run,
            },
            indent=2,
        )
    )
    if not ready:
        fail(f"no model imported from {source}: every one was refused (see 'refused')")
    if report.refused:
        raise typer.Exit(3)


# Training as tasks on the pool, one per shard (workloads/training/pool_cli.py): ``trainer submit --days N``, the
# ``trainer task --manifest <blob>`` each task runs, and ``trainer summary --job-id`` of a submitted job.
app.command("task")(pool_cli.task)
app.command("submit")(pool_cli.submit)
app.command("summary")(pool_cli.summary)


if __name__ == "__main__":
    app()
