"""Keeping the per-shard model packs in step with the per-pair models.

A scorer task reads one pack per shard instead of one skops file per pair, so packs are what make a
large fleet cheap to score. The per-pair models stay the source of truth, but the scorer trusts a pack
entry's ``model_sha256`` without looking at the model file (the hourly plan no longer lists a million
models), so no entry may ever be older than its file: the trainer retires a pair's entry *before* it
replaces the file and adds the new entry after (``train.train_and_publish``), and a rebuild never
writes over a pack that changed while it was compiling. A pack that is missing or lost costs speed
(pairs take the per-pair path), never correctness.

Two ways to write packs:

- :func:`update_packs`, after training: read-modify-write of just the shards whose pairs changed.
  Several trainers (or a trainer and ``trainer pack``) may touch the same shard, so every write is
  conditional on the version read (If-Match its ETag, or If-None-Match ``*`` for a new pack) and a
  lost race is re-read and re-applied, never silently overwritten.
- :func:`rebuild_packs`, ``trainer pack``: compiles every published skops model and replaces every
  shard's pack, each write conditional on the pack's version listed *before* the models were read, so
  a trainer's update made meanwhile is never overwritten by an older entry (that shard is reported and
  left as the trainer wrote it). It repairs whatever updates could not: a pack found unreadable, entries
  of deleted models or of models written by other tools, a changed shard count.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Final, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobClient, ContainerClient

from workloads.common.fastpath import compile_model
from workloads.common.layout import PACK_FOLDER, model_blob, pack_blob
from workloads.common.model_metadata import ModelFormat, list_models
from workloads.common.model_pack import PackEntry, PackError, read_pack, write_pack
from workloads.common.model_versions import DEFAULT_POLICY, VersionPolicy, runtime_sklearn_version
from workloads.common.modelstore import ModelError, load_model
from workloads.common.pairs import Pair
from workloads.common.shards import shard_name, shard_of

MAX_ATTEMPTS: Final = 5
"""Conditional writes of one shard's pack before giving up (each lost race re-reads the pack)."""

WORKERS: Final = 8

_T = TypeVar("_T")
_R = TypeVar("_R")


class PackUpdateError(RuntimeError):
    """A pack could not be written; the per-pair models are unaffected and still used by the scorer."""


@dataclass
class PackUpdate:
    """What a pack update or rebuild did, for reports and the CLI summary."""

    written: dict[str, int] = field(default_factory=dict)  # shard name -> entries in the pack now
    rebuilt_unreadable: dict[str, str] = field(default_factory=dict)  # shard name -> why the old pack was unusable
    conflicts_retried: int = 0  # conditional writes lost to another writer, then re-read and retried
    skipped: dict[Pair, str] = field(default_factory=dict)  # pair -> why it has no entry (rebuild, or superseded)

    def left_out(self) -> dict[str, int]:
        """Pairs left without an entry, by reason (the code before the colon of each ``skipped`` value)."""
        return dict(sorted(Counter(why.split(":", 1)[0] for why in self.skipped.values()).items()))

    def then(self, later: PackUpdate) -> PackUpdate:
        """Both updates as one (``later`` wrote last): what a training run's retire-then-add steps did."""
        return PackUpdate(
            written={**self.written, **later.written},
            rebuilt_unreadable={**self.rebuilt_unreadable, **later.rebuilt_unreadable},
            conflicts_retried=self.conflicts_retried + later.conflicts_retried,
            skipped={**self.skipped, **later.skipped},
        )


def pack_entry(
    pair: Pair, estimator: object, metadata_sha256: str, features: Sequence[str], sklearn_version: str | None = None
) -> PackEntry | None:
    """The pack entry of a published model, or None where the fast path does not support the estimator.

    ``sklearn_version`` is the one the model's metadata records (default: this runtime's, for a model fitted here).
    """
    model = compile_model(estimator)
    if model is None:
        return None
    version = sklearn_version or runtime_sklearn_version()
    return PackEntry(pair.device_id, pair.sensor, metadata_sha256, tuple(features), model, version)


def update_packs(
    models: ContainerClient,
    shard_count: int,
    changes: Mapping[Pair, PackEntry | None],
    *,
    verify_models: bool = False,
) -> PackUpdate:
    """Apply ``changes`` to the packs of their shards: an entry replaces the pair's, None removes it.

    ``verify_models`` (what publishing uses): before each conditional write, an entry is added only while its
    pair's published model still has the entry's checksum, and a pair whose model changed loses its old entry
    too. Two publishers of the same pair (two training jobs, an import and a training) each retire, publish,
    then add; whoever publishes last makes the other's entry disagree with the model, and since the check and
    the write happen inside the same read-modify-write (a later retire changes the pack's ETag), the entry
    left is the published model's, or none (``superseded``): the pair then takes the per-pair path.

    Shards are updated concurrently, each with conditional writes (see the module docstring); a shard
    still losing after :data:`MAX_ATTEMPTS` raises :class:`PackUpdateError`. A pack that exists but
    cannot be read (:class:`PackError`) is replaced by one holding the changes only, and reported in
    ``rebuilt_unreadable``: the entries it held for other pairs are lost, so those pairs are scored
    from their per-pair models until ``trainer pack`` rebuilds the packs.
    """
    by_shard: dict[str, dict[Pair, PackEntry | None]] = defaultdict(dict)
    for pair, entry in changes.items():
        if entry is not None and (entry.device_id, entry.sensor) != (pair.device_id, pair.sensor):
            raise ValueError(f"pack entry {entry.device_id}/{entry.sensor} given for pair {pair}")
        by_shard[shard_name(shard_of(pair.device_id, shard_count), shard_count)][pair] = entry
    update = PackUpdate()
    items = sorted(by_shard.items())

    def one(item: tuple[str, dict[Pair, PackEntry | None]]) -> _ShardOutcome:
        current = partial(_published_sha256, models) if verify_models else None
        return _update_shard(models.get_blob_client(pack_blob(item[0])), *item, current)

    outcomes = _map(one, items, WORKERS)
    for (shard, _), outcome in zip(items, outcomes, strict=True):
        if outcome.written is not None:
            update.written[shard] = outcome.written
        if outcome.unreadable is not None:
            update.rebuilt_unreadable[shard] = outcome.unreadable
        update.conflicts_retried += outcome.conflicts
        update.skipped.update(dict.fromkeys(outcome.superseded, "superseded: its model was replaced meanwhile"))
    return update


@dataclass(frozen=True)
class _ShardOutcome:
    written: int | None  # entries in the pack now; None: nothing needed writing
    unreadable: str | None  # why the old pack could not be read
    conflicts: int  # conditional writes lost and retried
    superseded: tuple[Pair, ...] = ()  # entries not added: the pair's model changed since (``verify_models``)


def _published_sha256(models: ContainerClient, pairs: Sequence[Pair]) -> dict[Pair, str | None]:
    """Each pair's published model checksum now (its blob's metadata; None without a model), HEADs in parallel."""

    def head(pair: Pair) -> str | None:
        try:
            return models.get_blob_client(model_blob(pair)).get_blob_properties().metadata.get("sha256")
        except ResourceNotFoundError:
            return None

    return dict(zip(pairs, _map(head, pairs, WORKERS), strict=True))


def _read_shard(blob: BlobClient) -> tuple[dict[tuple[str, str], PackEntry], str | None, str | None]:
    """(entries, etag, why unreadable) of a pack; no pack is empty with no etag, an unreadable one
    is empty with its etag (so the rewrite is still conditional on the version that was read)."""
    try:
        downloader = blob.download_blob()
        data = downloader.readall()
    except ResourceNotFoundError:
        return {}, None, None
    etag = str(downloader.properties.etag)
    try:
        return read_pack(data), etag, None
    except PackError as exc:
        return {}, etag, str(exc)


def _update_shard(
    blob: BlobClient,
    shard: str,
    changes: Mapping[Pair, PackEntry | None],
    current: Callable[[Sequence[Pair]], dict[Pair, str | None]] | None = None,
) -> _ShardOutcome:
    """Read, modify and conditionally write one shard's pack, retrying lost races; with ``current`` (the models'
    checksums now), only entries that match their pair's published model are added (see ``update_packs``)."""
    for attempt in range(MAX_ATTEMPTS):
        entries, etag, unreadable = _read_shard(blob)
        changed = unreadable is not None
        added = [pair for pair, entry in changes.items() if entry is not None]
        published = current(added) if current is not None and added else {}
        superseded: list[Pair] = []
        for pair, entry in changes.items():
            key = (pair.device_id, pair.sensor)
            if entry is not None and (current is None or published[pair] == entry.model_sha256):
                entries[key], changed = entry, True
                continue
            if entry is not None:
                superseded.append(pair)
                if key in entries and entries[key].model_sha256 == published[pair]:
                    continue  # the other publisher's entry: it matches the model now published
            if entries.pop(key, None) is not None:
                changed = True
        if not changed:
            return _ShardOutcome(None, None, attempt, tuple(superseded))  # nothing the pack holds changes
        data = write_pack(list(entries.values()))
        try:
            if etag is None:
                blob.upload_blob(data, overwrite=False)  # If-None-Match: *
            else:
                blob.upload_blob(data, overwrite=True, etag=etag, match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceExistsError):
            continue  # another writer got there first: re-read and re-apply
        except ResourceNotFoundError:
            if etag is None:
                raise  # no container: not a race
            continue  # the pack read was deleted since: re-read and re-apply
        return _ShardOutcome(len(entries), unreadable, attempt, tuple(superseded))
    raise PackUpdateError(
        f"model pack {pack_blob(shard)} kept changing: {MAX_ATTEMPTS} conditional writes lost to other writers"
    )


def rebuild_packs(
    models: ContainerClient,
    shard_count: int,
    *,
    trusted_types: Sequence[str] = (),
    version_policy: VersionPolicy = DEFAULT_POLICY,
    workers: int = WORKERS,
) -> PackUpdate:
    """Compile every published skops model and replace every shard's pack with them.

    Pickled models are never loaded here (packs exist to avoid running code from model files), and
    models that cannot be loaded or compiled are left out with the reason in ``skipped`` (among them a model
    whose recorded scikit-learn version the policy refuses, ``version_mismatch``): the scorer
    falls back to their per-pair models. Every shard gets a pack, empty if need be, so no stale pack
    outlives the rebuild. A pack changed by a trainer since the rebuild began is left as it is (its entries
    are at least as new as the rebuild's) and PackUpdateError names it after every other pack is written.
    """
    shards: dict[str, list[PackEntry]] = {shard_name(s, shard_count): [] for s in range(shard_count)}
    update = PackUpdate()
    # Versions first, models second: any write to a pack after this listing makes our write of it fail.
    versions = {blob.name: str(blob.etag) for blob in models.list_blobs(name_starts_with=f"{PACK_FOLDER}/")}
    wanted: list[Pair] = []
    for pair, metadata in sorted(list_models(models).items()):
        if isinstance(metadata, str):
            update.skipped[pair] = f"corrupt_model: {metadata}"
        elif metadata.format is not ModelFormat.SKOPS:
            update.skipped[pair] = f"{metadata.format.value}: packs are compiled from skops models only"
        else:
            wanted.append(pair)

    def compiled(pair: Pair) -> PackEntry | str:
        try:
            loaded = load_model(models, pair, trusted_types=trusted_types, version_policy=version_policy)
        except ModelError as exc:
            return f"{exc.reason}: {exc}"
        try:
            metadata = loaded.metadata
            entry = pack_entry(pair, loaded.estimator, metadata.sha256, metadata.features, metadata.sklearn_version)
        except ValueError as exc:  # e.g. metadata naming more features than the model reads
            return f"invalid_entry: {exc}"
        return entry if entry is not None else f"not_compilable: {type(loaded.estimator).__name__}"

    for pair, result in zip(wanted, _map(compiled, wanted, workers), strict=True):
        if isinstance(result, str):
            update.skipped[pair] = result
        else:
            shards[shard_name(shard_of(pair.device_id, shard_count), shard_count)].append(result)

    def write(item: tuple[str, list[PackEntry]]) -> int | None:
        shard, entries = item
        name, data = pack_blob(shard), write_pack(entries)
        etag = versions.get(name)
        try:
            if etag is None:
                models.upload_blob(name, data, overwrite=False)
            else:
                models.upload_blob(name, data, overwrite=True, etag=etag, match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceExistsError):
            return None  # a trainer wrote it meanwhile: its entries are newer than ours
        return len(entries)

    items = list(shards.items())
    results = _map(write, items, workers)
    update.written = {shard: n for (shard, _), n in zip(items, results, strict=True) if n is not None}
    changed = [shard for (shard, _), n in zip(items, results, strict=True) if n is None]
    if changed:
        raise PackUpdateError(
            f"{len(changed)} pack(s) changed while they were rebuilt and were left as the trainer wrote them "
            f"(e.g. {pack_blob(changed[0])}); run `trainer pack` again to rebuild them too"
        )
    return update


def _map(function: Callable[[_T], _R], items: Sequence[_T], workers: int) -> list[_R]:
    """``function`` over ``items`` on up to ``workers`` threads (storage round trips), results in order."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items)))) as pool:
        return list(pool.map(function, items))
