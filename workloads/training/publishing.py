"""Publishing a batch of ready models and keeping their shards' packs in step: shared by training and import.

The pairs' pack entries are taken out *before* their model files are replaced, and the new ones put in after:
a pack entry is never older than the file it stands for, whatever step fails (the scorer trusts the pack's
checksums; the hourly plan does not list every model). Raises PackUpdateError when the packs cannot be
updated: before publishing, nothing changed; after, the models are published and are scored without the
packs' help until ``trainer pack`` runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core.exceptions import AzureError
from azure.storage.blob import ContainerClient

from workloads.common.model_pack import PackEntry
from workloads.common.modelstore import publish_model
from workloads.common.pairs import Pair
from workloads.training.packs import PackUpdate, PackUpdateError, pack_entry, update_packs


@dataclass(frozen=True)
class ReadyModel:
    """A fitted or imported model, serialised (its types checked) and described, waiting to be published."""

    estimator: Any
    data: bytes  # the skops file
    features: tuple[str, ...]
    family: str
    sklearn_version: str | None = None  # None: the runtime's (a model fitted here)
    training_start: datetime | None = None
    training_end: datetime | None = None
    training_rows: int | None = None


def publish_with_packs(
    models: ContainerClient,
    shard_count: int,
    ready: Mapping[Pair, ReadyModel],
    on_pair: Callable[[Pair], None] | None = None,
) -> tuple[dict[Pair, str], PackUpdate | None]:
    """Publish every model and update its shard's pack; (pair -> published sha256, packs written or None)."""
    if not ready:
        return {}, None
    try:
        retired = update_packs(models, shard_count, dict.fromkeys(ready))
    except (AzureError, PackUpdateError) as exc:
        raise PackUpdateError(
            f"nothing published: the old pack entries of {len(ready)} pair(s) could not be retired first ({_line(exc)})"
        ) from exc
    published: dict[Pair, str] = {}
    for pair, model in ready.items():
        metadata = publish_model(
            models,
            pair,
            model.estimator,
            model.features,
            data=model.data,
            family=model.family,
            sklearn_version=model.sklearn_version,
            training_start=model.training_start,
            training_end=model.training_end,
            training_rows=model.training_rows,
        )
        published[pair] = metadata.sha256
        if on_pair is not None:
            on_pair(pair)
    changes: dict[Pair, PackEntry | None] = {}
    invalid: dict[Pair, str] = {}
    for pair, model in ready.items():
        try:
            changes[pair] = pack_entry(pair, model.estimator, published[pair], model.features, model.sklearn_version)
        except ValueError as exc:  # e.g. metadata naming more features than the model reads: no entry, per pair
            changes[pair], invalid[pair] = None, f"invalid_entry: {exc}"
    try:
        # The retire step's writes count too: it may be the only one that touched a shard (entries of models the
        # fast path cannot compile), or the one that found a pack unreadable and replaced it.
        added = update_packs(models, shard_count, changes, verify_models=True)
        added.skipped.update(invalid)
        return published, retired.then(added)
    except (AzureError, PackUpdateError) as exc:
        raise PackUpdateError(
            f"{len(published)} model(s) published, but their model packs were not updated ({_line(exc)}); "
            "the scorer uses the per-pair models until `trainer pack` runs"
        ) from exc


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
