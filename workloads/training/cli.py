"""``trainer``: train one model per device/sensor pair on a window of aggregates and publish it.

``trainer train`` fits and publishes models (and, with a shard count, updates the shards' model packs);
``trainer pack`` rebuilds every shard's model pack from the published models. ``trainer --from ...``
still means ``trainer train --from ...``, as it did when training was the only command.

Works on Azurite (AZURE_STORAGE_CONNECTION_STRING) and on Azure (AZURE_STORAGE_ACCOUNT_URL, with
the Storage Blob Data Contributor role on the ``models`` container).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from workloads.common.aggregates import DEFAULT_MODEL_FEATURES, FEATURE_NAMES
from workloads.common.cli_errors import bad_input, fail, run_failures
from workloads.common.cli_options import ShardCount
from workloads.common.hour_inputs import InputReadError
from workloads.common.layout import Container
from workloads.common.manifest import validate_trusted_type
from workloads.common.pairs import Pair
from workloads.common.shards import DEFAULT_SHARD_COUNT
from workloads.common.storage import StorageSettings
from workloads.common.windows import format_hour, parse_hour
from workloads.training.families import FAMILIES, ModelSpec, parse_param
from workloads.training.packs import PackUpdate, PackUpdateError, rebuild_packs
from workloads.training.train import train_and_publish


class _TrainByDefault(TyperGroup):
    """Runs ``train`` when the first argument is one of its options, so that scripts written when
    ``train`` was the app's only command (``trainer --from ... --to ...``) keep working."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # ctx: typer's vendored click Context
        if args and args[0].startswith("-") and args[0] not in self.get_help_option_names(ctx):
            args = ["train", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(add_completion=False, help=__doc__, cls=_TrainByDefault)

TrustedType = Annotated[
    list[str] | None,
    typer.Option(
        help="A type skops may load beyond its defaults and the vetted list (repeatable), for a model family of "
        "your own; the supported families never need one."
    ),
]


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
        chosen = tuple(f.strip() for f in features.split(",") if f.strip())
        unknown = sorted(set(chosen) - set(FEATURE_NAMES))
        if unknown or not chosen:
            raise ValueError(f"unknown feature(s) {unknown}; choose from {list(FEATURE_NAMES)}")
        only = [Pair.parse(p) for p in pairs.split(",") if p.strip()] if pairs else None
        spec = ModelSpec(family=model, params=dict(parse_param(p) for p in param or ()))
        spec.factory()  # validated here, as bad input: a wrong parameter fails before any history is read
        types = tuple(validate_trusted_type(t) for t in trusted_type or ())
    with run_failures(InputReadError, PackUpdateError):
        report = train_and_publish(
            settings.client(),
            first,
            stop,
            features=chosen,
            model=spec,
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
                "skipped": {str(p): why for p, why in sorted(report.skipped.items())},
                "quarantined_rows": report.quarantined_rows,
                "corrupt_blobs": report.corrupt_blobs,
                "duplicate_rows": report.duplicate_rows,
                "rows_outside_their_hour": report.rows_outside_their_hour,
                "conflicting_rows": report.conflicting_rows,
                "packs": _packs_summary(report.packs) if report.packs is not None else None,
            },
            indent=2,
        )
    )
    if not report.published:
        fail(f"no model published for {format_hour(first)}..{format_hour(stop)}: no pair had enough usable history")


@app.command()
def pack(
    shard_count: ShardCount = DEFAULT_SHARD_COUNT,
    trusted_type: TrustedType = None,
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
        update = rebuild_packs(models, shard_count, trusted_types=types)
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


if __name__ == "__main__":
    app()
