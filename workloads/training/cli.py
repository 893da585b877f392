"""``trainer``: train one model per device/sensor pair on a window of aggregates and publish it.

Works on Azurite (AZURE_STORAGE_CONNECTION_STRING) and on Azure (AZURE_STORAGE_ACCOUNT_URL, with
the Storage Blob Data Contributor role on the ``models`` container).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from workloads.common.aggregates import DEFAULT_MODEL_FEATURES, FEATURE_NAMES
from workloads.common.cli_errors import bad_input, fail, run_failures
from workloads.common.hour_inputs import InputReadError
from workloads.common.pairs import Pair
from workloads.common.storage import StorageSettings
from workloads.common.windows import format_hour, parse_hour
from workloads.training.train import train_and_publish

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def train(
    start: Annotated[str, typer.Option("--from", help="First hour of history, UTC, e.g. 2026-11-24T00.")],
    end: Annotated[str, typer.Option("--to", help="End of history (exclusive), UTC, e.g. 2026-11-25T00.")],
    features: Annotated[
        str, typer.Option(help=f"Comma-separated aggregate features, from {', '.join(FEATURE_NAMES)}.")
    ] = ",".join(DEFAULT_MODEL_FEATURES),
    pairs: Annotated[str | None, typer.Option(help="Only these DEVICE/SENSOR pairs (comma-separated).")] = None,
    min_rows: Annotated[int, typer.Option(min=2, help="Fewest usable windows a pair needs to get a model.")] = 24,
) -> None:
    """Fit StandardScaler + OneClassSVM per pair and publish each as a skops file; print a JSON summary."""
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
    with run_failures(InputReadError):
        report = train_and_publish(settings.client(), first, stop, features=chosen, min_rows=min_rows, pairs=only)
    typer.echo(
        json.dumps(
            {
                "from": format_hour(first),
                "to": format_hour(stop),
                "features": list(chosen),
                "published": len(report.published),
                "skipped": {str(p): why for p, why in sorted(report.skipped.items())},
                "quarantined_rows": report.quarantined_rows,
                "corrupt_blobs": report.corrupt_blobs,
                "duplicate_rows": report.duplicate_rows,
                "conflicting_rows": report.conflicting_rows,
            },
            indent=2,
        )
    )
    if not report.published:
        fail(f"no model published for {format_hour(first)}..{format_hour(stop)}: no pair had enough usable history")


if __name__ == "__main__":
    app()
