"""Publishing and loading per-pair models in a safe format.

Models are skops files: loading one cannot run arbitrary code, and any type outside skops' trusted
defaults (scikit-learn, numpy, scipy) and the project's vetted list (``vetted_types``) is refused unless the
operator names it. Pickle is accepted only with an explicit ``trust_pickle``. A model recorded under a
scikit-learn version the policy does not accept (``model_versions``) is refused before it is loaded.

scikit-learn and skops are imported on first use, not with this module: together they take about
2 s to import on a loaded node, and a scorer task whose pairs are all served by its shard's model
pack never needs them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import pickle
import threading
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError, ResourceNotModifiedError
from azure.storage.blob import ContainerClient

from workloads.common import envvars
from workloads.common.layout import model_blob
from workloads.common.model_metadata import ModelFormat, ModelMetadata
from workloads.common.model_versions import DEFAULT_POLICY, VersionPolicy, version_mismatch
from workloads.common.pairs import Pair
from workloads.common.vetted_types import check_structures, trusted_for_loading

MIB = 2**20
# The default cap on a model's uncompressed size: far above a pair's model (the trainer's default pipeline
# is some 34 KiB, whether fitted on 72 windows or 3,000), far below what a task's node can hold.
DEFAULT_MAX_MODEL_MIB = 256
# The default number of models a task deserialises at once: loading briefly holds a model's inflated arrays
# about twice (a 38 MiB skops file peaked at 84 MiB of allocations).
DEFAULT_MAX_CONCURRENT_LOADS = 4


class ModelError(Exception):
    """A model that cannot be used; ``reason`` is a stable code for logs and reports."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class LoadedModel:
    estimator: Any
    metadata: ModelMetadata
    etag: str


def serialise_model(estimator: Any, trusted_types: Sequence[str] = ()) -> bytes:
    """The estimator as a skops file, refused (``untrusted_model``) if loading it would need a type outside
    skops' defaults, the vetted list and ``trusted_types``: the scorer could not load it either."""
    import skops.io as sio

    data: bytes = sio.dumps(estimator)
    untrusted = sorted(set(sio.get_untrusted_types(data=data)) - set(trusted_for_loading(trusted_types)))
    if untrusted:
        raise ModelError("untrusted_model", untrusted_message(untrusted))
    return data


def untrusted_message(types: Sequence[str]) -> str:
    """Names the types and how to admit them, for every command that can (trainer, scorer, submitter)."""
    options = " ".join(f"--trusted-type {t}" for t in types)
    return (
        f"the model needs type(s) {', '.join(types)}, outside skops' defaults and the vetted list; if you trust "
        f"the code they come from, pass {options} (and list them in the stack's trustedTypes for scheduled scoring)"
    )


def publish_model(
    models: ContainerClient,
    pair: Pair,
    estimator: Any,
    features: Sequence[str],
    *,
    data: bytes | None = None,
    family: str | None = None,
    sklearn_version: str | None = None,
    training_start: datetime | None = None,
    training_end: datetime | None = None,
    training_rows: int | None = None,
) -> ModelMetadata:
    """Write the model and its metadata in one Put Blob, replacing any previous version atomically.

    ``data`` is the estimator's skops file when the caller already serialised (and checked) it; without it,
    the estimator is serialised as it is, whatever its types (``serialise_model`` is the checked way).
    ``sklearn_version`` is the version that fitted an imported model (default: this runtime's).
    """
    import sklearn
    import skops.io as sio

    if data is None:
        data = sio.dumps(estimator)
    metadata = ModelMetadata(
        format=ModelFormat.SKOPS,
        sha256=hashlib.sha256(data).hexdigest(),
        features=tuple(features),
        estimator=type(estimator).__name__,
        sklearn_version=sklearn_version or sklearn.__version__,
        family=family,
        trained_at=datetime.now(UTC),
        training_start=training_start,
        training_end=training_end,
        training_rows=training_rows,
    )
    models.upload_blob(model_blob(pair), data, overwrite=True, metadata=metadata.to_blob_metadata())
    return metadata


def _size(size: int) -> str:
    return f"{size / MIB:.1f} MiB" if size >= MIB else f"{size / 1024:.1f} KiB"


def _too_large(what: str, max_bytes: int) -> ModelError:
    """The refusal names both sizes and how to raise the cap (the scorer's option and environment variable)."""
    return ModelError(
        "model_too_large",
        f"{what}, over the cap of {max_bytes / MIB:g} MiB; if it is expected, raise the cap with the scorer's "
        f"--max-model-mib or {envvars.MAX_MODEL_MIB}",
    )


def skops_size(data: bytes) -> int:
    """The bytes a skops file (a zip) inflates to, from its central directory alone: nothing is decompressed.

    The declared sizes bound what loading can produce: Python's zipfile never returns more than a member's
    declared ``file_size`` (and fails its CRC check if the data was cut short), so a file cannot inflate past
    what it declares. Raises ModelError("corrupt_model") for data that is no zip."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ModelError("corrupt_model", f"cannot read skops file: {type(exc).__name__}: {exc}") from None


def deserialise(
    data: bytes,
    metadata: ModelMetadata,
    *,
    trust_pickle: bool = False,
    trusted_types: Sequence[str] = (),
    max_bytes: int | None = None,
    version_policy: VersionPolicy = DEFAULT_POLICY,
) -> Any:
    """The estimator in ``data``, once its checksum, scikit-learn version, trust and size allow it.

    ``max_bytes`` caps what loading may allocate, checked before anything is inflated: a skops file's
    uncompressed size (a deflated file of a few hundred KiB can inflate to gigabytes and take the node's
    memory, and every other pair of the task, with it), a pickle's length. A refusal is the pair's failure
    (``model_too_large``), not the task's.
    """
    digest = hashlib.sha256(data).hexdigest()
    if digest != metadata.sha256:
        raise ModelError(
            "corrupt_model",
            f"checksum mismatch: blob has {digest[:12]}, metadata says {metadata.sha256[:12]}",
        )
    check_version(metadata.sklearn_version, version_policy)
    if metadata.format is ModelFormat.PICKLE:
        if not trust_pickle:
            raise ModelError("untrusted_model", "model is a pickle; refusing to load it without --trust-pickle")
        if max_bytes is not None and len(data) > max_bytes:
            raise _too_large(f"pickled model is {_size(len(data))}", max_bytes)
        return pickle.loads(data)
    return load_skops(data, trusted_types, max_bytes)


def load_skops(data: bytes, trusted_types: Sequence[str] = (), max_bytes: int | None = None) -> Any:
    """The estimator in a skops file, once its inflated size and its types allow it (ModelError otherwise)."""
    if max_bytes is not None and (inflated := skops_size(data)) > max_bytes:
        raise _too_large(f"skops model inflates to {_size(inflated)} (from a {_size(len(data))} file)", max_bytes)
    import skops.io as sio

    trusted = trusted_for_loading(trusted_types)
    try:
        estimator = sio.loads(data, trusted=trusted)
    except sio.exceptions.UntrustedTypesFoundException:
        untrusted = sorted(set(sio.get_untrusted_types(data=data)) - set(trusted))
        raise ModelError("untrusted_model", untrusted_message(untrusted)) from None
    except Exception as exc:
        raise ModelError("corrupt_model", f"cannot read skops file: {type(exc).__name__}: {exc}") from None
    check_loaded(estimator)
    return estimator


def check_loaded(estimator: Any) -> None:
    """ModelError("corrupt_model") unless the vetted Cython objects inside are consistent (``check_structures``):
    checked before anything scores with the model, since their code does not check bounds."""
    try:
        check_structures(estimator)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ModelError("corrupt_model", f"inconsistent model structure: {exc}") from None


def check_version(recorded: str, policy: VersionPolicy) -> None:
    """ModelError("version_mismatch") when the policy refuses a model's recorded scikit-learn version."""
    why = version_mismatch(recorded, policy)
    if why is not None:
        raise ModelError("version_mismatch", why)


CacheKey = tuple[Pair, bool, tuple[str, ...]]


class ModelCache:
    """Models already loaded by this process, revalidated by ETag so a retrained model is picked up.

    A revalidation is a conditional GET answered by 304 without a body: it saves the download and
    the deserialisation, which is what dominates when one worker scores several hours. The key holds
    the trust options the model was loaded under, so a model loaded with ``trust_pickle`` or extra
    trusted types is never served to a later call that did not grant them.
    """

    def __init__(self) -> None:
        self._models: dict[CacheKey, LoadedModel] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(pair: Pair, trust_pickle: bool, trusted_types: Sequence[str]) -> CacheKey:
        return pair, trust_pickle, tuple(sorted(set(trusted_types)))

    def get(self, key: CacheKey) -> LoadedModel | None:
        with self._lock:
            return self._models.get(key)

    def put(self, key: CacheKey, model: LoadedModel) -> None:
        with self._lock:
            self._models[key] = model

    def __len__(self) -> int:
        return len(self._models)


def load_model(
    models: ContainerClient,
    pair: Pair,
    *,
    cache: ModelCache | None = None,
    trust_pickle: bool = False,
    trusted_types: Sequence[str] = (),
    max_bytes: int | None = None,
    load_slots: threading.Semaphore | None = None,
    version_policy: VersionPolicy = DEFAULT_POLICY,
) -> LoadedModel:
    """The pair's model, from ``cache`` when unchanged (a revalidation, no download or deserialisation).

    ``load_slots`` bounds how many deserialisations run at once (the task's share of memory for models
    being inflated); it is held only around ``deserialise``, not while downloading or for a cached model.
    A model in the cache was loaded under some process's cap and is served whatever this call's
    ``max_bytes``: it already takes its memory, serving it costs none more.
    """
    key = ModelCache.key(pair, trust_pickle, trusted_types)
    cached = cache.get(key) if cache is not None else None
    try:
        if cached is not None:
            downloader = models.download_blob(
                model_blob(pair), etag=cached.etag, match_condition=MatchConditions.IfModified
            )
        else:
            downloader = models.download_blob(model_blob(pair))
        data = downloader.readall()
    except (ResourceNotModifiedError, ResourceModifiedError):
        # If-None-Match failed, i.e. the model is unchanged: Azure answers 304, Azurite 412.
        assert cached is not None
        check_version(
            cached.metadata.sklearn_version, version_policy
        )  # this call's policy, not the one it was loaded under
        return cached
    except ResourceNotFoundError:
        raise ModelError("missing_model", f"no model at models/{model_blob(pair)}") from None
    try:
        metadata = ModelMetadata.from_blob_metadata(downloader.properties.metadata or {})
    except ValueError as exc:
        raise ModelError("corrupt_model", str(exc)) from None
    with load_slots if load_slots is not None else contextlib.nullcontext():
        estimator = deserialise(
            data,
            metadata,
            trust_pickle=trust_pickle,
            trusted_types=trusted_types,
            max_bytes=max_bytes,
            version_policy=version_policy,
        )
    loaded = LoadedModel(estimator, metadata, str(downloader.properties.etag))
    if cache is not None:
        cache.put(key, loaded)
    return loaded
