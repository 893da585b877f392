"""`trainer pack` never writes an older entry over a trainer's update made while it was compiling."""

from __future__ import annotations

from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from tests.workloads.helpers import aggregates_for, train_on
from workloads.common.aggregates import DEFAULT_MODEL_FEATURES
from workloads.common.layout import Container, pack_blob
from workloads.common.model_metadata import list_models
from workloads.common.model_pack import read_pack
from workloads.common.modelstore import publish_model
from workloads.common.pairs import Pair
from workloads.common.shards import shard_name, shard_of
from workloads.training import packs
from workloads.training.packs import PackUpdateError, pack_entry, rebuild_packs, update_packs

SHARDS = 4
PAIRS = [Pair(f"dev-{i}", "x") for i in range(8)]


def _publish(models: ContainerClient, pair: Pair, seed: int) -> str:
    estimator = train_on(aggregates_for([pair], windows=48, seed=seed))
    metadata = publish_model(models, pair, estimator, DEFAULT_MODEL_FEATURES)
    entry = pack_entry(pair, estimator, metadata.sha256, DEFAULT_MODEL_FEATURES)
    assert entry is not None
    update_packs(models, SHARDS, {pair: entry})
    return metadata.sha256


def test_a_pack_a_trainer_changed_during_a_rebuild_is_left_as_the_trainer_wrote_it(
    service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = service.get_container_client(str(Container.MODELS))
    for index, pair in enumerate(PAIRS):
        _publish(models, pair, seed=index)
    retrained = PAIRS[0]
    shard = shard_name(shard_of(retrained.device_id, SHARDS), SHARDS)
    newer: dict[str, str] = {}

    def listing_then_a_trainer(container: ContainerClient) -> Any:
        found = list_models(container)  # the rebuild has read the old model's metadata ...
        newer["sha"] = _publish(models, retrained, seed=99)  # ... when a trainer replaces it, entry and all
        return found

    monkeypatch.setattr(packs, "list_models", listing_then_a_trainer)
    with pytest.raises(PackUpdateError, match=rf"changed while they were rebuilt.*{shard}"):
        rebuild_packs(models, SHARDS)
    entries = read_pack(models.download_blob(pack_blob(shard)).readall())
    assert entries[(retrained.device_id, retrained.sensor)].model_sha256 == newer["sha"]  # not the older one
    # Every other shard was rebuilt, and a second rebuild, undisturbed, writes them all.
    monkeypatch.undo()
    update = rebuild_packs(models, SHARDS)
    assert sum(update.written.values()) == len(PAIRS) and len(update.written) == SHARDS
    for pair in PAIRS:
        blob = models.get_blob_client(f"{pair.device_id}/{pair.sensor}/model.skops")
        sha = blob.get_blob_properties().metadata["sha256"]
        pack = read_pack(
            models.download_blob(pack_blob(shard_name(shard_of(pair.device_id, SHARDS), SHARDS))).readall()
        )
        assert pack[(pair.device_id, pair.sensor)].model_sha256 == sha
