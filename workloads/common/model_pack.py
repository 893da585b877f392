"""Model packs: many pairs' compiled models in one safe, numeric file per shard.

A scorer task would otherwise GET and unpack one skops file per pair; a pack turns that into one GET
per shard. The per-pair skops models stay the source of truth: each pack entry records the sha256 of
the model file it was compiled from, and the scorer uses an entry only while that equals the current
model's checksum, so a pair whose model was replaced on its own is never scored with a stale entry.

Format (version 3): an ``.npz`` archive (a zip of ``.npy`` arrays, readable by
``numpy.load(..., allow_pickle=False)``) holding only numeric, boolean and fixed-width unicode arrays, so
reading it cannot execute code. Per pair, in pair order: device id, sensor, the model's input features in
order (comma-joined), the scikit-learn version that fitted the model (so the scorer applies its version
policy to the entry as to the model), the sha256 (32 raw bytes), the family code (0 OneClassSVM, 1 IsolationForest),
feature count and whether there is a mean / scale (means and scales concatenated in pair order). Per
OneClassSVM pair (in pair order among them): kernel code, gamma, coef0, degree, intercept and
support-vector count, with support vectors and dual coefficients concatenated. Per IsolationForest pair:
tree count, ``offset_`` and the denominator; per tree its node count; per node its feature (int16, -1 at
a leaf), right-child offset (int32, how many nodes after it; the left child is the next node; 0 at a
leaf) and value (float64: the threshold, or the path length a leaf adds), all concatenated. Counts are
stored and offsets derived (running sums), so the two cannot disagree. Version 2 (OneClassSVMs only, no
family, version or forest members) is still read; its entries have no known scikit-learn version, so the
scorer's policy sends their pairs to the per-pair path until ``trainer pack`` rewrites the pack.

Members are stored uncompressed. Measured on 10,000 pairs of this platform's own models (the trainer's
StandardScaler + RBF OneClassSVM fitted on 288 simulated windows, 4 features, 9 to 20 support vectors,
14.2 on average; 2,500 distinct models, each used 4 times far apart so deflate gains nothing from the
copies), on one core of a 2-core VM: 7.97 MB stored (about 800 bytes a pair) against 6.41 MB deflated
(-20 %: support vectors are near-random float64); writing takes 34 ms, deflating adds 219 ms; numpy
opens the stored file in 4 ms, the deflated one in 26 ms; ``read_pack`` of the stored file (all checks,
10,000 models) takes 83 ms. A fifth fewer bytes is not worth six times the CPU at both ends, and stored
members keep a corrupt size field harmless: every member must fit inside the file, so a bad header
cannot make the reader allocate more than it was given.

An IsolationForest is much larger: the iforest family's default (100 trees, max_samples 256) fitted on
288 windows of 4 features has 14,200 to 17,300 nodes (15,600 on average, 100 such pairs measured), so
14 bytes a node make **219 KB a pair** stored (77 KB deflated: -65 %, its small integers and few distinct
leaf values compress well); its skops file is 3.06 MB. 100 such pairs write in 54 ms and ``read_pack``
(all checks) takes 87 ms. A shard of forests should therefore hold fewer pairs than one of SVMs; the
tree checks run on at most ``CHECK_NODES`` nodes at a time so that their work arrays stay small.

The reader validates everything (member names, dtypes, shapes, lengths, offsets, kernel and family
codes, ids, finiteness, version, and every tree's structure: children inside their tree and pointing
forward, one parent per node, bounded depth) and raises :class:`PackError` for any malformed, foreign or newer file; a
corrupt pack is never an IndexError and never a wrong model (every member also carries the zip CRC-32,
checked on read). Writing is deterministic: entries are sorted by pair and the zip timestamps fixed,
so the same models always give the same bytes.
"""

from __future__ import annotations

import io
import itertools
import math
import re
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from workloads.common.fastpath import KERNELS, Compiled, CompiledModel, check_values
from workloads.common.forest_kernel import MAX_FOREST_FEATURES, MAX_TREE_NODES, ForestModel, check_forests
from workloads.common.model_versions import runtime_sklearn_version
from workloads.common.pairs import validate_part

FORMAT_NAME: Final = "batchscoring.model-pack"
PACK_FAMILIES: Final[dict[type, str]] = {CompiledModel: "ocsvm", ForestModel: "iforest"}  # the trainer's names
FORMAT_VERSION: Final = 3  # 2: features per entry; 3: model families (IsolationForest)
READABLE_VERSIONS: Final = (2, 3)  # a version-2 pack holds OneClassSVMs only, and reads as such
MAX_FEATURES: Final = 65536  # far beyond any model here; bounds count x feature products on read
SVM, FOREST = 0, 1  # family codes
CHECK_NODES: Final = 1 << 20  # forest nodes checked per call (bounded work memory on read)

_SHA256: Final = re.compile(r"[0-9a-f]{64}")
_FEATURE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_ZIP_DATE: Final = (1980, 1, 1, 0, 0, 0)  # the zip epoch: no wall-clock time in the bytes

# Member name -> (dtype, ndim); "U" stands for any little-endian fixed-width unicode.
_F8: Final = np.dtype("<f8")
_I8: Final = np.dtype("<i8")
_U1: Final = np.dtype("u1")
_BOOL: Final = np.dtype("?")
_PER_PAIR: Final[dict[str, np.dtype]] = {"family": _U1, "n_features": _I8, "has_mean": _BOOL, "has_scale": _BOOL}
_PER_SVM: Final[dict[str, np.dtype]] = {
    "kernel": _U1,
    "gamma": _F8,
    "coef0": _F8,
    "degree": _I8,
    "intercept": _F8,
    "n_sv": _I8,
}
_PER_FOREST: Final[dict[str, np.dtype]] = {"forest_n_trees": _I8, "forest_offset": _F8, "forest_denominator": _F8}
# Concatenated arrays: name -> dtype; lengths follow from the counts.
_CONCATENATED: Final[dict[str, np.dtype]] = {
    "support_vectors": _F8,
    "dual_coef": _F8,
    "mean": _F8,
    "scale": _F8,
    "tree_nodes": _I8,
    "node_feature": np.dtype("<i2"),
    "node_right": np.dtype("<i4"),
    "node_value": _F8,
}
_STRINGS: Final = ("device_id", "sensor", "features", "sklearn_version")
_VERSION_TEXT: Final = re.compile(r"[0-9A-Za-z.+-]{0,32}")
_MEMBERS: Final = frozenset(
    {"format", "version", "model_sha256", *_PER_PAIR, *_PER_SVM, *_PER_FOREST, *_CONCATENATED, *_STRINGS}
)
_NEW_IN_3: Final = frozenset(
    {"family", "sklearn_version", *_PER_FOREST, "tree_nodes", "node_feature", "node_right", "node_value"}
)


class PackError(ValueError):
    """The bytes are not a model pack this code can read (malformed, foreign or from a newer version)."""


@dataclass(frozen=True, eq=False)
class PackEntry:
    """One pair's compiled model, the aggregate columns it reads (in order) and the sha256 of the
    per-pair model file it was compiled from."""

    device_id: str
    sensor: str
    model_sha256: str
    features: tuple[str, ...]
    model: Compiled
    # The scikit-learn that fitted the model (its metadata's), so that the scorer applies the version policy to
    # the entry as it would to the model; "" where unknown (a version-2 pack): refused by every policy but any.
    sklearn_version: str = field(default_factory=runtime_sklearn_version)

    def __post_init__(self) -> None:
        validate_part("device id", self.device_id)
        validate_part("sensor name", self.sensor)
        if not isinstance(self.model_sha256, str) or not _SHA256.fullmatch(self.model_sha256):
            raise ValueError(f"invalid model sha256 {self.model_sha256!r}: expected 64 lowercase hex digits")
        if not isinstance(self.model, CompiledModel | ForestModel):
            raise ValueError(f"model must be a CompiledModel or ForestModel, got {type(self.model).__name__}")
        if not isinstance(self.features, tuple) or not all(
            isinstance(f, str) and _FEATURE.fullmatch(f) for f in self.features
        ):
            raise ValueError(f"invalid features {self.features!r}: expected a tuple of column names")
        if len(self.features) != self.model.n_features:
            raise ValueError(f"{len(self.features)} features named for a model of {self.model.n_features}")
        if not isinstance(self.sklearn_version, str) or not _VERSION_TEXT.fullmatch(self.sklearn_version):
            raise ValueError(f"invalid scikit-learn version {self.sklearn_version!r}")


def write_pack(entries: Sequence[PackEntry]) -> bytes:
    """The pack file for these entries (sorted by pair; ValueError if a pair appears twice)."""
    ordered = sorted(entries, key=lambda e: (e.device_id, e.sensor))
    for previous, entry in itertools.pairwise(ordered):
        if (previous.device_id, previous.sensor) == (entry.device_id, entry.sensor):
            raise ValueError(f"pair {entry.device_id}/{entry.sensor} appears twice")
    models = [e.model for e in ordered]
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT_NAME),
        "version": np.array(FORMAT_VERSION, dtype=_I8),
        "device_id": np.array([e.device_id for e in ordered], dtype=str),
        "sensor": np.array([e.sensor for e in ordered], dtype=str),
        "features": np.array([",".join(e.features) for e in ordered], dtype=str),
        "sklearn_version": np.array([e.sklearn_version for e in ordered], dtype="<U32"),
        "model_sha256": np.array([bytes.fromhex(e.model_sha256) for e in ordered], dtype="S32")
        .view(_U1)
        .reshape(len(ordered), 32),
        "family": np.array([FOREST if isinstance(m, ForestModel) else SVM for m in models], dtype=_U1),
        "n_features": np.array([m.n_features for m in models], dtype=_I8),
        "has_mean": np.array([m.mean is not None for m in models], dtype=_BOOL),
        "has_scale": np.array([m.scale is not None for m in models], dtype=_BOOL),
        "mean": _cat([m.mean for m in models if m.mean is not None], _F8),
        "scale": _cat([m.scale for m in models if m.scale is not None], _F8),
        **_svm_arrays([m for m in models if isinstance(m, CompiledModel)]),
        **_forest_arrays([m for m in models if isinstance(m, ForestModel)]),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, array, version=(1, 0), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def _cat(parts: Sequence[np.ndarray], dtype: np.dtype) -> np.ndarray:
    return np.concatenate([p.reshape(-1) for p in parts]).astype(dtype) if parts else np.empty(0, dtype)


def _svm_arrays(models: Sequence[CompiledModel]) -> dict[str, np.ndarray]:
    """The OneClassSVM members: per SVM pair (in pair order) and concatenated."""
    codes = {kernel: code for code, kernel in enumerate(KERNELS)}
    return {
        "kernel": np.array([codes[m.kernel] for m in models], dtype=_U1),
        "gamma": np.array([m.gamma for m in models], dtype=_F8),
        "coef0": np.array([m.coef0 for m in models], dtype=_F8),
        "degree": np.array([m.degree for m in models], dtype=_I8),
        "intercept": np.array([m.intercept for m in models], dtype=_F8),
        "n_sv": np.array([m.support_vectors.shape[0] for m in models], dtype=_I8),
        "support_vectors": _cat([m.support_vectors for m in models], _F8),
        "dual_coef": _cat([m.dual_coef for m in models], _F8),
    }


def _forest_arrays(models: Sequence[ForestModel]) -> dict[str, np.ndarray]:
    """The IsolationForest members: per forest pair (in pair order), per tree and per node."""
    return {
        "forest_n_trees": np.array([m.n_trees for m in models], dtype=_I8),
        "forest_offset": np.array([m.offset for m in models], dtype=_F8),
        "forest_denominator": np.array([m.denominator for m in models], dtype=_F8),
        "tree_nodes": _cat([m.tree_nodes for m in models], _I8),
        "node_feature": _cat([m.feature for m in models], _CONCATENATED["node_feature"]),
        "node_right": _cat([m.right for m in models], _CONCATENATED["node_right"]),
        "node_value": _cat([m.value for m in models], _F8),
    }


def read_pack(data: bytes) -> dict[tuple[str, str], PackEntry]:
    """The entries of a pack, by (device_id, sensor); PackError if the bytes are not a valid pack."""
    arrays = _read_arrays(data)
    count, forest_depths = _check_layout(arrays)
    device_ids: list[str] = arrays["device_id"].tolist()
    sensors: list[str] = arrays["sensor"].tolist()
    features: list[str] = arrays["features"].tolist()
    versions: list[str] = arrays["sklearn_version"].tolist()
    digests = arrays["model_sha256"].tobytes().hex()
    hashes = [digests[64 * i : 64 * (i + 1)] for i in range(count)]
    means, scales = _slices(arrays, "mean", "has_mean"), _slices(arrays, "scale", "has_scale")
    svms, forests = _svm_models(arrays, means, scales), _forest_models(arrays, means, scales, forest_depths)
    entries: dict[tuple[str, str], PackEntry] = {}
    for i, family in enumerate(arrays["family"].tolist()):
        key = (device_ids[i], sensors[i])
        if key in entries:
            raise PackError(f"pair {key[0]}/{key[1]} appears twice")
        try:
            model = next(forests) if family == FOREST else next(svms)
            entries[key] = PackEntry(key[0], key[1], hashes[i], tuple(features[i].split(",")), model, versions[i])
        except ValueError as exc:
            raise PackError(f"entry {i} ({key[0]}/{key[1]}): {exc}") from None
    return entries


def _slices(arrays: dict[str, np.ndarray], name: str, flag: str) -> list[np.ndarray | None]:
    """Per pair, its part of a concatenated per-feature array (``mean``, ``scale``), or None."""
    widths, present = arrays["n_features"].tolist(), arrays[flag].tolist()
    at, parts = 0, []
    for width, has in zip(widths, present, strict=True):
        parts.append(arrays[name][at : at + width] if has else None)
        at += width if has else 0
    return parts


def _svm_models(
    arrays: dict[str, np.ndarray], means: list[np.ndarray | None], scales: list[np.ndarray | None]
) -> Iterator[CompiledModel]:
    """The OneClassSVMs, in pair order (raises ValueError for an inconsistent one)."""
    pairs = np.flatnonzero(arrays["family"] == SVM).tolist()
    kernels, degrees = arrays["kernel"].tolist(), arrays["degree"].tolist()
    gammas, coef0s, intercepts = arrays["gamma"].tolist(), arrays["coef0"].tolist(), arrays["intercept"].tolist()
    n_sv, n_features = arrays["n_sv"].tolist(), arrays["n_features"].tolist()
    sv_at = dual_at = 0
    for j, i in enumerate(pairs):
        rows, width = n_sv[j], n_features[i]
        yield CompiledModel(
            kernel=KERNELS[kernels[j]],
            gamma=gammas[j],
            coef0=coef0s[j],
            degree=degrees[j],
            mean=means[i],
            scale=scales[i],
            support_vectors=arrays["support_vectors"][sv_at : sv_at + rows * width].reshape(rows, width),
            dual_coef=arrays["dual_coef"][dual_at : dual_at + rows],
            intercept=intercepts[j],
        )
        sv_at, dual_at = sv_at + rows * width, dual_at + rows


def _forest_models(
    arrays: dict[str, np.ndarray],
    means: list[np.ndarray | None],
    scales: list[np.ndarray | None],
    depths: np.ndarray,
) -> Iterator[ForestModel]:
    """The IsolationForests, in pair order, their node arrays views of the pack's (read-only) ones."""
    pairs = np.flatnonzero(arrays["family"] == FOREST).tolist()
    n_trees = arrays["forest_n_trees"].tolist()
    offsets, denominators = arrays["forest_offset"].tolist(), arrays["forest_denominator"].tolist()
    n_features, tree_nodes = arrays["n_features"].tolist(), arrays["tree_nodes"]
    tree_at = node_at = 0
    for k, i in enumerate(pairs):
        counts = tree_nodes[tree_at : tree_at + n_trees[k]]
        nodes = int(counts.sum())
        yield ForestModel(
            n_features=n_features[i],
            mean=means[i],
            scale=scales[i],
            offset=offsets[k],
            denominator=denominators[k],
            tree_nodes=counts,
            feature=arrays["node_feature"][node_at : node_at + nodes],
            right=arrays["node_right"][node_at : node_at + nodes],
            value=arrays["node_value"][node_at : node_at + nodes],
            depth=int(depths[k]),
        )
        tree_at, node_at = tree_at + n_trees[k], node_at + nodes


def _read_arrays(data: bytes) -> dict[str, np.ndarray]:
    """Every member as a read-only array, after checking names, format and version."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
    except Exception as exc:  # zipfile raises a dozen types on damaged input; all mean "not a pack"
        raise PackError(f"not a model pack: not a readable zip archive ({exc})") from None
    if len(set(names)) != len(names):
        raise PackError("not a model pack: duplicate archive members")
    members = {name.removesuffix(".npy"): name for name in names if name.endswith(".npy")}
    if len(members) != len(names) or "format" not in members or "version" not in members:
        raise PackError(f"not a model pack: unexpected archive members {sorted(names)[:8]}")
    with archive:
        marker = _read_member(archive, members["format"], len(data))
        if marker.dtype.kind != "U" or marker.shape != () or str(marker[()]) != FORMAT_NAME:
            raise PackError("not a model pack: wrong format marker")
        version = _read_member(archive, members["version"], len(data))
        if version.dtype != _I8 or version.shape != ():
            raise PackError("not a model pack: malformed version")
        if int(version) > FORMAT_VERSION:
            raise PackError(
                f"model pack format version {int(version)} is newer than this reader's ({FORMAT_VERSION}): "
                "update the scorer or republish the pack"
            )
        if int(version) not in READABLE_VERSIONS:
            raise PackError(f"unknown model pack format version {int(version)}")
        expected = _MEMBERS if int(version) == FORMAT_VERSION else _MEMBERS - _NEW_IN_3
        if set(members) != expected:
            missing, extra = sorted(expected - set(members)), sorted(set(members) - expected)
            raise PackError(f"malformed model pack: missing members {missing}, unexpected {extra}")
        arrays = {name: _read_member(archive, member, len(data)) for name, member in members.items()}
    return arrays if int(version) == FORMAT_VERSION else _as_version_3(arrays)


def _as_version_3(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A version-2 pack (OneClassSVMs only) with the members version 3 added: every pair an SVM, no forests."""
    n_features = arrays["n_features"]
    count = n_features.shape[0] if n_features.ndim == 1 else 0  # a wrong shape is refused by _check_shapes
    added = {name: np.empty(0, dtype) for name, dtype in {**_PER_FOREST, **_CONCATENATED}.items() if name in _NEW_IN_3}
    unknown = np.full(count, "", dtype="<U1")  # no version recorded: the scorer's policy refuses the entries
    return {**arrays, **added, "family": np.full(count, SVM, dtype=_U1), "sklearn_version": unknown}


def _read_member(archive: zipfile.ZipFile, member: str, limit: int) -> np.ndarray:
    """One ``.npy`` member, read from its header without ever unpickling or over-allocating."""
    info = archive.getinfo(member)
    if info.compress_type != zipfile.ZIP_STORED or info.file_size > limit:
        raise PackError(f"malformed model pack: member {member} is compressed or larger than the file")
    try:
        with archive.open(info) as stream:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
            else:
                raise PackError(f"malformed model pack: member {member} has npy version {version}")
            if dtype.hasobject or fortran:
                raise PackError(f"malformed model pack: member {member} holds objects or is not C-ordered")
            size = math.prod(shape) * dtype.itemsize  # Python ints: a forged shape cannot wrap around
            if min(shape, default=0) < 0 or dtype.itemsize == 0 or size > info.file_size:
                raise PackError(f"malformed model pack: member {member} does not hold what its header says")
            raw = stream.read()
            if len(raw) != size:
                raise PackError(f"malformed model pack: member {member} holds {len(raw)} bytes, header says {size}")
            return np.reshape(np.frombuffer(raw, dtype=dtype), shape)  # frombuffer on bytes: read-only
    except PackError:
        raise
    except Exception as exc:  # BadZipFile (CRC), NotImplementedError, struct.error, ValueError, ...
        raise PackError(f"malformed model pack: member {member}: {exc}") from None


def _check_layout(arrays: dict[str, np.ndarray]) -> tuple[int, np.ndarray]:
    """Dtypes, shapes, value ranges, the concatenated lengths and the forests' trees; returns the
    number of pairs and each forest's depth."""
    count = _check_shapes(arrays)
    _check_counts(arrays)
    return count, _check_trees(arrays)


def _check_shapes(arrays: dict[str, np.ndarray]) -> int:
    """Every member's dtype and shape; returns the number of pairs."""
    for group in (_PER_PAIR, _PER_SVM, _PER_FOREST):
        for name, dtype in group.items():
            if arrays[name].dtype != dtype or arrays[name].ndim != 1:
                raise PackError(f"malformed model pack: {name} must be a 1-d {dtype} array")
    family = arrays["family"]
    count = int(family.shape[0])
    if (family > FOREST).any():
        raise PackError(f"malformed model pack: unknown family code(s) {sorted(set(family.tolist()))}")
    for name in _STRINGS:
        array = arrays[name]
        if array.dtype.kind != "U" or array.dtype.byteorder == ">" or array.shape != (count,):
            raise PackError(f"malformed model pack: {name} must be {count} unicode strings")
    if arrays["model_sha256"].dtype != _U1 or arrays["model_sha256"].shape != (count, 32):
        raise PackError(f"malformed model pack: model_sha256 must be a ({count}, 32) uint8 array")
    n_svm = int((family == SVM).sum())
    for group, length in ((_PER_PAIR, count), (_PER_SVM, n_svm), (_PER_FOREST, count - n_svm)):
        for name in group:
            if arrays[name].shape != (length,):
                raise PackError(f"malformed model pack: {name} has {arrays[name].shape[0]} entries, expected {length}")
    for name, dtype in _CONCATENATED.items():
        if arrays[name].dtype != dtype or arrays[name].ndim != 1:
            raise PackError(f"malformed model pack: {name} must be a 1-d {dtype} array")
    return count


def _check_counts(arrays: dict[str, np.ndarray]) -> None:
    """Value ranges, and the concatenated arrays' lengths against the per-pair counts."""
    for name in ("has_mean", "has_scale"):
        if (arrays[name].view(_U1) > 1).any():
            raise PackError(f"malformed model pack: {name} holds values other than 0 and 1")
    if (arrays["kernel"] >= len(KERNELS)).any():
        raise PackError(f"malformed model pack: unknown kernel code(s) {sorted(set(arrays['kernel'].tolist()))}")
    n_sv, n_features = arrays["n_sv"], arrays["n_features"]
    if (n_sv < 0).any() or (n_sv > arrays["dual_coef"].shape[0]).any() or (arrays["degree"] < 0).any():
        raise PackError("malformed model pack: support-vector count or degree out of range")
    if ((n_features < 1) | (n_features > MAX_FEATURES)).any():
        raise PackError(f"malformed model pack: feature counts must be 1 to {MAX_FEATURES}")
    forest = arrays["family"] == FOREST
    if (n_features[forest] > MAX_FOREST_FEATURES).any():
        raise PackError(f"malformed model pack: a forest's feature count must be at most {MAX_FOREST_FEATURES}")
    n_trees = arrays["forest_n_trees"]
    if ((n_trees < 1) | (n_trees > arrays["tree_nodes"].shape[0])).any():
        raise PackError("malformed model pack: a forest's tree count out of range")
    expected = {
        "dual_coef": int(n_sv.sum()),
        "support_vectors": int((n_sv * n_features[~forest]).sum()),  # bounded factors above: no int64 overflow
        "mean": int(n_features[arrays["has_mean"]].sum()),
        "scale": int(n_features[arrays["has_scale"]].sum()),
        "tree_nodes": int(n_trees.sum()),  # each at most the length of tree_nodes: no overflow
    }
    for name, length in expected.items():
        if arrays[name].shape[0] != length:
            raise PackError(f"malformed model pack: {name} holds {arrays[name].shape[0]} values, counts say {length}")
    try:  # one pass over the whole pack instead of one per model
        check_values(arrays["support_vectors"], arrays["dual_coef"], arrays["mean"], arrays["scale"])
    except ValueError as exc:
        raise PackError(f"malformed model pack: {exc}") from None


def _check_trees(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Every forest's trees checked (:func:`check_forests`), many forests per call but at most about
    ``CHECK_NODES`` nodes (the check's work arrays take ~50 bytes a node); returns each forest's depth."""
    n_trees, tree_nodes = arrays["forest_n_trees"], arrays["tree_nodes"]
    if not n_trees.shape[0]:
        if any(arrays[name].shape[0] for name in ("tree_nodes", "node_feature", "node_right", "node_value")):
            raise PackError("malformed model pack: tree or node arrays without forests")
        return np.empty(0, np.int64)
    if ((tree_nodes < 1) | (tree_nodes > MAX_TREE_NODES)).any():  # first: no overflow in the sums below
        raise PackError(f"malformed model pack: tree node counts must be 1 to {MAX_TREE_NODES}")
    first_tree = np.cumsum(n_trees) - n_trees
    node_ends = np.cumsum(tree_nodes)  # tree_nodes' length is sum(n_trees), checked before
    widths = np.repeat(arrays["n_features"][arrays["family"] == FOREST], n_trees)
    if any(arrays[name].shape[0] != int(node_ends[-1]) for name in ("node_feature", "node_right", "node_value")):
        raise PackError(f"malformed model pack: node arrays must hold {int(node_ends[-1])} nodes, as the trees say")
    forest_ends = node_ends[first_tree + n_trees - 1]  # increasing: every count is >= 1
    depths, forest = [], 0
    while forest < n_trees.shape[0]:
        tree = int(first_tree[forest])
        node = int(node_ends[tree - 1]) if tree else 0
        # The forests ending within CHECK_NODES nodes from here (at least one).
        stop = int(np.searchsorted(forest_ends, node + CHECK_NODES, side="right"))
        stop = min(max(stop, forest + 1), n_trees.shape[0])
        trees = slice(tree, int(first_tree[stop - 1] + n_trees[stop - 1]))
        nodes = slice(node, int(node_ends[trees.stop - 1]))
        try:
            tree_depths = check_forests(
                tree_nodes[trees],
                arrays["node_feature"][nodes],
                arrays["node_right"][nodes],
                arrays["node_value"][nodes],
                widths[trees],
            )
        except ValueError as exc:
            raise PackError(f"malformed model pack: {exc}") from None
        depths.append(np.maximum.reduceat(tree_depths, first_tree[forest:stop] - tree))
        forest = stop
    return np.concatenate(depths)
