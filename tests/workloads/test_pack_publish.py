"""Model packs written by the trainer (``update_packs``) and by ``trainer pack`` (``rebuild_packs``), on Azurite."""

from __future__ import annotations

import hashlib
import json
import pickle
import threading
from collections.abc import Callable
from datetime import timedelta

import numpy as np
import pytest
import skops.io as sio
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient
from sklearn.covariance import EllipticEnvelope
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM
from typer.testing import CliRunner

from tests.faults import FaultProxy, Rule
from tests.workloads.helpers import HOUR, aggregates_for, hour_manifests, pair_logs, train_on
from workloads.aggregator.publish import publish_aggregates
from workloads.common import fastpath
from workloads.common.aggregates import DEFAULT_MODEL_FEATURES
from workloads.common.layout import Container, model_blob, pack_blob
from workloads.common.model_metadata import list_models
from workloads.common.model_pack import PackEntry, read_pack, write_pack
from workloads.common.model_versions import VersionPolicy, runtime_sklearn_version
from workloads.common.modelstore import load_model, publish_model
from workloads.common.pairs import Pair
from workloads.common.runlog import PairStatus
from workloads.common.shards import DEFAULT_SHARD_COUNT, parse_shard_name, shard_name, shard_of
from workloads.common.storage import StorageSettings
from workloads.scorer.task import score_task
from workloads.training import packs
from workloads.training.cli import app as trainer
from workloads.training.packs import PackUpdateError, pack_entry, rebuild_packs, update_packs
from workloads.training.publishing import ReadyModel, publish_with_packs
from workloads.training.train import train_and_publish

FEATURES = DEFAULT_MODEL_FEATURES
SHARDS = 4
# Devices a, e -> shard 3, o -> shard 1, f -> shard 0 (of 4); shard 2 holds nobody (p would be there).
FLEET = [Pair("a", "x"), Pair("a", "y"), Pair("e", "x"), Pair("f", "x"), Pair("o", "x")]
BY_SHARD = {3: {Pair("a", "x"), Pair("a", "y"), Pair("e", "x")}, 1: {Pair("o", "x")}, 0: {Pair("f", "x")}}
START, END = HOUR - timedelta(hours=3), HOUR
runner = CliRunner()


def models_of(service: BlobServiceClient) -> ContainerClient:
    return service.get_container_client(str(Container.MODELS))


def shard(index: int, count: int = SHARDS) -> str:
    return shard_name(index, count)


def pack_of(service: BlobServiceClient, index: int, count: int = SHARDS) -> dict[Pair, PackEntry]:
    data = models_of(service).download_blob(pack_blob(shard(index, count))).readall()
    return {Pair(*key): entry for key, entry in read_pack(data).items()}


def publish_history(service: BlobServiceClient, pairs: list[Pair] = FLEET) -> None:
    """Three hours of 12 windows per pair before HOUR: 36 usable rows, above the default minimum of 24."""
    for back in range(1, 4):
        publish_aggregates(service, aggregates_for(pairs, HOUR - timedelta(hours=back), seed=back))


def entry_for(pair: Pair, seed: int = 0) -> PackEntry:
    """A real compiled model under a made-up checksum, for tests that only move entries around."""
    entry = pack_entry(pair, train_on(aggregates_for([pair], windows=60, seed=seed)), _sha(f"{pair}{seed}"), FEATURES)
    assert entry is not None
    return entry


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_training_writes_each_shard_a_pack_of_its_pairs_that_scores_like_the_models(
    service: BlobServiceClient,
) -> None:
    publish_history(service)
    report = train_and_publish(service, START, END, shard_count=SHARDS)
    assert set(report.published) == set(FLEET)
    assert report.packs is not None
    assert report.packs.written == {shard(s): len(pairs) for s, pairs in BY_SHARD.items()}
    assert report.packs.rebuilt_unreadable == {} and report.packs.conflicts_retried == 0
    with pytest.raises(ResourceNotFoundError):  # nobody in shard 2: no pack written
        models_of(service).get_blob_client(pack_blob(shard(2))).get_blob_properties()

    published = list_models(models_of(service))
    rows = aggregates_for(FLEET, HOUR, seed=9)
    for index, pairs in BY_SHARD.items():
        pack = pack_of(service, index)
        assert set(pack) == pairs
        for pair, entry in pack.items():
            metadata = published[pair]
            assert not isinstance(metadata, str)
            assert entry.model_sha256 == report.published[pair] == metadata.sha256
            assert entry.features == metadata.features == FEATURES
            estimator = load_model(models_of(service), pair).estimator
            x = rows[(rows.device_id == pair.device_id) & (rows.sensor == pair.sensor)][list(FEATURES)].to_numpy()
            x = np.vstack([x, x * 1.5])  # some anomalous rows too
            scored = fastpath.score(entry.model, x)
            np.testing.assert_allclose(scored.scores, estimator.decision_function(x), rtol=0, atol=1e-9)
            settled = ~scored.borderline
            np.testing.assert_array_equal(scored.flags[settled], (estimator.predict(x) == -1)[settled])


def test_retraining_some_pairs_replaces_their_entries_and_keeps_the_others(service: BlobServiceClient) -> None:
    publish_history(service)
    first = train_and_publish(service, START, END, shard_count=SHARDS)
    retrained = [Pair("a", "y"), Pair("o", "x")]
    second = train_and_publish(
        service,
        START,
        END,
        pairs=retrained,
        factory=lambda: make_pipeline(StandardScaler(), OneClassSVM(nu=0.05, gamma=0.3)),
        shard_count=SHARDS,
    )
    assert second.packs is not None and second.packs.written == {shard(3): 3, shard(1): 1}
    for index, pairs in BY_SHARD.items():
        pack = pack_of(service, index)
        assert set(pack) == pairs
        for pair, entry in pack.items():
            expected = second.published[pair] if pair in retrained else first.published[pair]
            assert entry.model_sha256 == expected
    assert all(second.published[p] != first.published[p] for p in retrained)


def test_a_model_the_fast_path_cannot_compile_gets_no_entry_and_loses_its_old_one(service: BlobServiceClient) -> None:
    publish_history(service)
    train_and_publish(service, START, END, shard_count=SHARDS)
    forests = [Pair("a", "x"), Pair("o", "x")]
    report = train_and_publish(
        service,
        START,
        END,
        pairs=forests,
        factory=lambda: EllipticEnvelope(random_state=0),
        shard_count=SHARDS,
    )
    assert set(report.published) == set(forests)  # the models themselves are published all the same
    assert report.packs is not None and report.packs.written == {shard(3): 2, shard(1): 0}
    assert set(pack_of(service, 3)) == {Pair("a", "y"), Pair("e", "x")}
    assert pack_of(service, 1) == {}

    # A new pair whose model does not compile, in a shard whose pack never held it: nothing to write.
    publish_history(service, [Pair("u", "x")])
    again = train_and_publish(
        service, START, END, pairs=[Pair("u", "x")], factory=lambda: EllipticEnvelope(random_state=0), shard_count=4
    )
    assert again.packs is not None and again.packs.written == {}
    assert set(pack_of(service, 0)) == {Pair("f", "x")}


def test_the_fleet_lies_in_the_shards_these_tests_name() -> None:
    """The tests below name shards; this says where the hash puts their devices, so a changed hash fails here."""
    assert {s: {p for p in FLEET if shard_of(p.device_id, SHARDS) == s} for s in range(SHARDS)} == {
        **BY_SHARD,
        2: set(),
    }
    assert (shard_of("u", SHARDS), shard_of("p", SHARDS), shard_of("o", 2)) == (0, 2, 1)


def test_training_without_a_shard_count_updates_the_packs_of_the_default_count(service: BlobServiceClient) -> None:
    publish_history(service)
    report = train_and_publish(service, START, END)
    by_shard: dict[str, set[Pair]] = {}
    for pair in FLEET:
        by_shard.setdefault(shard(shard_of(pair.device_id, DEFAULT_SHARD_COUNT), DEFAULT_SHARD_COUNT), set()).add(pair)
    assert report.packs is not None
    assert report.packs.written == {name: len(pairs) for name, pairs in by_shard.items()}
    listed = sorted(b.name for b in models_of(service).list_blobs(name_starts_with="packs/"))
    assert listed == sorted(pack_blob(name) for name in by_shard)
    for name, pairs in by_shard.items():
        entries = pack_of(service, parse_shard_name(name)[0], DEFAULT_SHARD_COUNT)
        assert {p: e.model_sha256 for p, e in entries.items()} == {p: report.published[p] for p in pairs}


def current_checksums(service: BlobServiceClient) -> dict[Pair, str]:
    """Each published model's sha256, as its blob's metadata names it."""
    checksums = {}
    for pair, metadata in list_models(models_of(service)).items():
        assert not isinstance(metadata, str)
        checksums[pair] = metadata.sha256
    return checksums


def every_pack_entry(service: BlobServiceClient) -> dict[Pair, str]:
    """Every entry of every pack: pair -> the checksum it claims (a pair is in one pack)."""
    models = models_of(service)
    entries: dict[Pair, str] = {}
    for blob in models.list_blobs(name_starts_with="packs/"):
        for key, entry in read_pack(models.download_blob(blob.name).readall()).items():
            assert Pair(*key) not in entries
            entries[Pair(*key)] = entry.model_sha256
    return entries


def retrain_differently() -> object:
    return make_pipeline(StandardScaler(), OneClassSVM(nu=0.05, gamma=0.3))


def test_a_failure_to_retire_the_old_entries_publishes_nothing(
    service: BlobServiceClient, faulty_settings: StorageSettings, fault_proxy: FaultProxy
) -> None:
    publish_history(service)
    first = train_and_publish(service, START, END, shard_count=SHARDS)
    packs_before = every_pack_entry(service)
    assert packs_before == first.published
    refused = fault_proxy.add(Rule(r"/models/packs/", method="PUT", status=500, error_code="InternalError"))
    with pytest.raises(PackUpdateError, match=r"nothing published: the old pack entries of 5 pair\(s\)"):
        train_and_publish(faulty_settings.client(), START, END, factory=retrain_differently, shard_count=SHARDS)
    assert refused.hits > 0  # the retire step tried, and failed
    assert fault_proxy.requests(r"/model\.skops$", "PUT") == []  # no model file was even attempted
    assert current_checksums(service) == first.published  # every model as it was
    assert every_pack_entry(service) == packs_before  # and every pack


def test_publishing_stopped_midway_leaves_no_pack_entry_older_than_its_model(
    service: BlobServiceClient, faulty_settings: StorageSettings, fault_proxy: FaultProxy
) -> None:
    publish_history(service)
    first = train_and_publish(service, START, END, shard_count=SHARDS)
    retrained = [Pair("a", "x"), Pair("a", "y"), Pair("e", "x"), Pair("o", "x")]  # f/x keeps its model and entry
    # Published in pair order: a/x and a/y get new models, then e/x cannot be written and the run stops.
    fault_proxy.add(Rule(r"/models/e/x/model\.skops$", method="PUT", status=500, error_code="InternalError"))
    with pytest.raises(AzureError):
        train_and_publish(
            faulty_settings.client(), START, END, pairs=retrained, factory=retrain_differently, shard_count=SHARDS
        )
    now = current_checksums(service)
    changed = {p for p in FLEET if now[p] != first.published[p]}
    assert changed == {Pair("a", "x"), Pair("a", "y")}  # it did stop midway
    entries = every_pack_entry(service)
    assert entries == {Pair("f", "x"): first.published[Pair("f", "x")]}  # the retrained pairs' entries are retired
    assert all(entries[p] == now[p] for p in entries)  # no entry older than its model file

    # And so the scorer, which trusts a pack's checksums, scores each pair with the model file now published.
    publish_aggregates(service, aggregates_for(FLEET, HOUR), shard_count=SHARDS)
    lines = pair_logs([score_task(service, m) for m in hour_manifests(service, HOUR, shard_count=SHARDS)])
    assert set(lines) == set(FLEET)
    assert {p: (line.status, line.model_sha256) for p, line in lines.items()} == {
        p: (PairStatus.OK, now[p]) for p in FLEET
    }
    assert {p for p, line in lines.items() if line.path == "pack"} == {Pair("f", "x")}


def test_an_unreadable_pack_is_rebuilt_from_the_changes_and_reported(service: BlobServiceClient) -> None:
    publish_history(service)
    train_and_publish(service, START, END, shard_count=SHARDS)
    models_of(service).upload_blob(pack_blob(shard(3)), b"not a pack", overwrite=True)
    report = train_and_publish(service, START, END, pairs=[Pair("a", "x")], shard_count=SHARDS)
    assert report.packs is not None
    assert list(report.packs.rebuilt_unreadable) == [shard(3)]
    assert "not a model pack" in report.packs.rebuilt_unreadable[shard(3)]
    assert set(pack_of(service, 3)) == {Pair("a", "x")}  # the others fall back to their models until a rebuild
    assert set(pack_of(service, 1)) == {Pair("o", "x")}


def _wrap_reads(monkeypatch: pytest.MonkeyPatch, after_read: Callable[[BlobClient, int], object]) -> None:
    """Run ``after_read(blob, call number)`` after each pack read, i.e. between a read and its write."""
    original = packs._read_shard
    calls = [0]
    lock = threading.Lock()

    def read(blob: BlobClient) -> tuple[dict[tuple[str, str], PackEntry], str | None, str | None]:
        result = original(blob)
        with lock:
            calls[0] += 1
            number = calls[0]
        after_read(blob, number)
        return result

    monkeypatch.setattr(packs, "_read_shard", read)


def test_a_pack_changed_between_read_and_write_is_reread_and_merged(
    service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, c = Pair("a", "x"), Pair("a", "y"), Pair("e", "x")  # all in shard 3
    update_packs(models_of(service), SHARDS, {a: entry_for(a)})

    def another_writer(blob: BlobClient, number: int) -> None:
        if number == 1:  # someone else adds c after our read: our If-Match write must fail
            current = read_pack(blob.download_blob().readall())
            blob.upload_blob(write_pack([*current.values(), entry_for(c)]), overwrite=True)

    _wrap_reads(monkeypatch, another_writer)
    report = update_packs(models_of(service), SHARDS, {b: entry_for(b)})
    assert report.conflicts_retried == 1 and report.written == {shard(3): 3}
    assert set(pack_of(service, 3)) == {a, b, c}


def test_a_pack_deleted_between_read_and_write_is_recreated(
    service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = Pair("a", "x"), Pair("a", "y")
    update_packs(models_of(service), SHARDS, {a: entry_for(a)})
    _wrap_reads(monkeypatch, lambda blob, n: blob.delete_blob() if n == 1 else None)
    report = update_packs(models_of(service), SHARDS, {b: entry_for(b)})
    assert report.conflicts_retried == 1 and set(pack_of(service, 3)) == {b}


def test_two_trainers_creating_the_same_pack_both_land(
    service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = Pair("a", "x"), Pair("a", "y")
    both_read = threading.Barrier(2, timeout=30)

    def wait_for_the_other(_blob: BlobClient, number: int) -> None:
        if number <= 2:  # both see no pack before either writes: one If-None-Match write must lose
            both_read.wait()

    _wrap_reads(monkeypatch, wait_for_the_other)
    entries = {a: entry_for(a), b: entry_for(b)}
    results = []
    threads = [
        threading.Thread(target=lambda p=p: results.append(update_packs(models_of(service), SHARDS, {p: entries[p]})))
        for p in (a, b)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and sum(r.conflicts_retried for r in results) == 1
    pack = pack_of(service, 3)
    assert set(pack) == {a, b} and {p: e.model_sha256 for p, e in pack.items()} == {
        p: e.model_sha256 for p, e in entries.items()
    }


def test_a_pack_that_keeps_changing_raises_after_bounded_retries(
    service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = Pair("a", "x"), Pair("a", "y")
    update_packs(models_of(service), SHARDS, {a: entry_for(a)})
    _wrap_reads(monkeypatch, lambda blob, _n: blob.set_blob_metadata({"touched": "yes"}))  # new etag every time
    with pytest.raises(PackUpdateError, match="kept changing: 5 conditional writes"):
        update_packs(models_of(service), SHARDS, {b: entry_for(b)})
    assert set(pack_of(service, 3)) == {a}


def test_a_pack_failure_after_publishing_says_the_models_are_published(
    service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish_history(service)
    _wrap_reads(monkeypatch, lambda blob, _n: blob.set_blob_metadata({"touched": "yes"}) if blob.exists() else None)
    models_of(service).upload_blob(pack_blob(shard(3)), write_pack([]), overwrite=True)
    with pytest.raises(PackUpdateError, match=r"5 model\(s\) published, but their model packs were not updated"):
        train_and_publish(service, START, END, shard_count=SHARDS)
    assert set(list_models(models_of(service))) == set(FLEET)


def test_rebuild_replaces_every_pack_and_skips_what_it_cannot_compile(service: BlobServiceClient) -> None:
    models = models_of(service)
    good = [Pair("a", "x"), Pair("e", "x"), Pair("f", "x")]
    shas = {p: publish_model(models, p, train_on(aggregates_for([p], windows=60)), FEATURES).sha256 for p in good}
    pickled, forest = Pair("a", "y"), Pair("o", "x")
    estimator = train_on(aggregates_for([pickled], windows=60))
    data = pickle.dumps(estimator)
    metadata = publish_model(models, pickled, estimator, FEATURES).to_blob_metadata()
    metadata.update(format="pickle", sha256=hashlib.sha256(data).hexdigest())
    models.upload_blob(model_blob(pickled), data, overwrite=True, metadata=metadata)
    x = aggregates_for([forest], windows=60)[list(FEATURES)].to_numpy()
    shas[forest] = publish_model(
        models, forest, IsolationForest(n_estimators=5, random_state=0).fit(x), FEATURES
    ).sha256
    lof, old = Pair("o", "y"), Pair("a", "z")  # no fast path; a model of another scikit-learn minor version
    publish_model(models, lof, LocalOutlierFactor(novelty=True).fit(x), FEATURES)
    old_metadata = publish_model(models, old, train_on(aggregates_for([old], windows=60)), FEATURES).to_blob_metadata()
    major, minor, *_ = runtime_sklearn_version().split(".")
    older = f"{major}.{int(minor) - 1}.0"
    models.get_blob_client(model_blob(old)).set_blob_metadata({**old_metadata, "sklearn_version": older})
    # Stale packs: an entry for a model that no longer exists, and one in a shard that will be empty.
    update_packs(
        models, SHARDS, {Pair("e", "gone"): entry_for(Pair("e", "gone")), Pair("p", "x"): entry_for(Pair("p", "x"))}
    )
    models.upload_blob(pack_blob(shard(1)), b"corrupt", overwrite=True)

    report = rebuild_packs(models, SHARDS)
    assert report.written == {shard(0): 1, shard(1): 1, shard(2): 0, shard(3): 2}
    assert set(report.skipped) == {pickled, lof, old}
    assert report.skipped[pickled].startswith("pickle:")
    assert report.skipped[lof] == "not_compilable: LocalOutlierFactor"
    assert report.skipped[old].startswith("version_mismatch: model was trained with scikit-learn")
    assert {p: e.model_sha256 for p, e in pack_of(service, 3).items()} == {p: shas[p] for p in good[:2]}
    assert {p: e.model_sha256 for p, e in pack_of(service, 0).items()} == {Pair("f", "x"): shas[Pair("f", "x")]}
    assert {p: e.model_sha256 for p, e in pack_of(service, 1).items()} == {forest: shas[forest]}  # vetted types
    assert pack_of(service, 2) == {}

    relaxed = rebuild_packs(models, SHARDS, version_policy=VersionPolicy.MAJOR)
    assert set(relaxed.skipped) == {pickled, lof}
    assert pack_of(service, 3)[old].sklearn_version == older  # the scorer's policy decides, entry by entry


def test_pack_cli_rebuilds_and_exits_2_on_bad_input_and_1_on_storage_failures(
    service: BlobServiceClient, azurite: tuple[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pair = Pair("o", "x")
    sha = publish_model(models_of(service), pair, train_on(aggregates_for([pair], windows=60)), FEATURES).sha256
    result = runner.invoke(trainer, ["pack", "--shard-count", "2"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary == {
        "shard_count": 2,
        "packs_written": 2,
        "pack_entries": 1,
        "rebuilt_unreadable": {},
        "conflicts_retried": 0,
        "skipped": {},
    }
    assert {p: e.model_sha256 for p, e in pack_of(service, 1, 2).items()} == {pair: sha}

    assert runner.invoke(trainer, ["pack", "--shard-count", "0"]).exit_code == 2
    default = runner.invoke(trainer, ["pack"])  # the one default every tool shares
    assert default.exit_code == 0, default.output
    assert json.loads(default.stdout)["packs_written"] == DEFAULT_SHARD_COUNT
    assert {
        p: e.model_sha256 for p, e in pack_of(service, shard_of("o", DEFAULT_SHARD_COUNT), DEFAULT_SHARD_COUNT).items()
    } == {pair: sha}
    bad_type = runner.invoke(trainer, ["pack", "--shard-count", "2", "--trusted-type", "not a type"])
    assert bad_type.exit_code == 2 and "invalid trusted type" in bad_type.output
    monkeypatch.setenv("SCORING_SHARD_COUNT", "3")
    assert json.loads(runner.invoke(trainer, ["pack"]).stdout)["packs_written"] == 3

    port, conn = azurite
    dead = conn.replace(f":{port}/", ":9/")  # the discard port: nothing listens
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", dead)
    monkeypatch.setenv("AZURE_STORAGE_RETRY_TOTAL", "0")
    monkeypatch.setenv("AZURE_STORAGE_TIMEOUT_SECONDS", "2")
    down = runner.invoke(trainer, ["pack", "--shard-count", "2"])
    assert down.exit_code == 1 and "error:" in down.output


def test_trainer_cli_updates_packs_under_both_invocations(service: BlobServiceClient) -> None:
    publish_history(service)
    window = ["--from", "2026-11-25T07", "--to", "2026-11-25T10"]
    legacy = runner.invoke(trainer, [*window, "--shard-count", "4"])  # the form from before `pack` existed
    assert legacy.exit_code == 0, legacy.output
    assert json.loads(legacy.stdout)["packs"] == {
        "packs_written": 3,
        "pack_entries": 5,
        "rebuilt_unreadable": {},
        "conflicts_retried": 0,
        "entries_left_out": {},
    }
    plain = runner.invoke(trainer, ["train", *window])  # the default count: packs are always kept in step
    assert plain.exit_code == 0, plain.output
    shards = {shard_of(p.device_id, DEFAULT_SHARD_COUNT) for p in FLEET}
    assert json.loads(plain.stdout)["packs"] == {
        "packs_written": len(shards),
        "pack_entries": 5,
        "rebuilt_unreadable": {},
        "conflicts_retried": 0,
        "entries_left_out": {},
    }
    assert all(pack_of(service, s, DEFAULT_SHARD_COUNT) for s in shards)
    assert runner.invoke(trainer, ["train", *window, "--shard-count", "0"]).exit_code == 2


def test_two_publishers_of_one_pair_never_leave_an_entry_of_the_model_that_lost(service: BlobServiceClient) -> None:
    """A publishes m1; B retires, publishes m2 and adds its entry; then A adds its entry for m1. Without the check
    the pack would serve m1 while the model file is m2; with it, A's entry is dropped as superseded."""
    models = models_of(service)
    pair = Pair("a", "x")

    def ready(seed: int) -> ReadyModel:
        estimator = train_on(aggregates_for([pair], windows=60, seed=seed))
        return ReadyModel(estimator, sio.dumps(estimator), FEATURES, family="ocsvm")

    def b_publishes_meanwhile(_: Pair) -> None:
        publish_with_packs(models, SHARDS, {pair: ready(2)})

    published_a, packs_a = publish_with_packs(models, SHARDS, {pair: ready(1)}, on_pair=b_publishes_meanwhile)
    assert packs_a is not None and packs_a.skipped == {pair: "superseded: its model was replaced meanwhile"}
    assert packs_a.left_out() == {"superseded": 1}  # what trainer train/import and a training task's log count
    current = list_models(models)[pair]
    assert not isinstance(current, str) and current.sha256 != published_a[pair]  # B's model is the one published
    entry = pack_of(service, shard_of(pair.device_id, SHARDS))[pair]
    assert entry.model_sha256 == current.sha256  # B's entry stays: it matches the model
