"""Model packs: many pairs' compiled models in one safe, numeric file per shard.

A scorer task would otherwise GET and unpack one skops file per pair; a pack turns that into one GET
per shard. The per-pair skops models stay the source of truth: each pack entry records the sha256 of
the model file it was compiled from, and the scorer uses an entry only while that equals the current
model's checksum, so a pair whose model was replaced on its own is never scored with a stale entry.

Format: an ``.npz`` archive (a zip of ``.npy`` arrays, readable by ``numpy.load(..., allow_pickle=False)``)
holding only numeric, boolean and fixed-width unicode arrays, so reading it cannot execute code.
Per pair: device id, sensor, the model's input features in order (comma-joined), kernel code, gamma,
coef0, degree, intercept, support-vector count, feature count and
whether there is a mean / scale; the variable-length parts (support vectors, dual coefficients,
means, scales) are concatenated in pair order, and each pair's offsets are the running sums of its
counts (stored counts, derived offsets: the two cannot disagree). The sha256 is stored as 32 raw bytes.

Members are stored uncompressed. Measured on 10,000 pairs of this platform's own models (the trainer's
StandardScaler + RBF OneClassSVM fitted on 288 simulated windows, 4 features, 9 to 20 support vectors,
14.2 on average; 2,500 distinct models, each used 4 times far apart so deflate gains nothing from the
copies), on one core of a 2-core VM: 7.97 MB stored (about 800 bytes a pair) against 6.41 MB deflated
(-20 %: support vectors are near-random float64); writing takes 34 ms, deflating adds 219 ms; numpy
opens the stored file in 4 ms, the deflated one in 26 ms; ``read_pack`` of the stored file (all checks,
10,000 models) takes 83 ms. A fifth fewer bytes is not worth six times the CPU at both ends, and stored
members keep a corrupt size field harmless: every member must fit inside the file, so a bad header
cannot make the reader allocate more than it was given.

The reader validates everything (member names, dtypes, shapes, lengths, offsets, kernel codes, ids,
finiteness, version) and raises :class:`PackError` for any malformed, foreign or newer file; a
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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from workloads.common.fastpath import KERNELS, CompiledModel, check_values
from workloads.common.pairs import validate_part

FORMAT_NAME: Final = "batchscoring.model-pack"
FORMAT_VERSION: Final = 2  # 2: features per entry
MAX_FEATURES: Final = 65536  # far beyond any model here; bounds count x feature products on read

_SHA256: Final = re.compile(r"[0-9a-f]{64}")
_FEATURE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_ZIP_DATE: Final = (1980, 1, 1, 0, 0, 0)  # the zip epoch: no wall-clock time in the bytes

# Member name -> (dtype, ndim); "U" stands for any little-endian fixed-width unicode.
_F8: Final = np.dtype("<f8")
_I8: Final = np.dtype("<i8")
_U1: Final = np.dtype("u1")
_BOOL: Final = np.dtype("?")
_PER_PAIR: Final[dict[str, np.dtype]] = {
    "kernel": _U1,
    "gamma": _F8,
    "coef0": _F8,
    "degree": _I8,
    "intercept": _F8,
    "n_sv": _I8,
    "n_features": _I8,
    "has_mean": _BOOL,
    "has_scale": _BOOL,
}
_CONCATENATED: Final = ("support_vectors", "dual_coef", "mean", "scale")
_STRINGS: Final = ("device_id", "sensor", "features")
_MEMBERS: Final = frozenset({"format", "version", "model_sha256", *_PER_PAIR, *_CONCATENATED, *_STRINGS})


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
    model: CompiledModel

    def __post_init__(self) -> None:
        validate_part("device id", self.device_id)
        validate_part("sensor name", self.sensor)
        if not isinstance(self.model_sha256, str) or not _SHA256.fullmatch(self.model_sha256):
            raise ValueError(f"invalid model sha256 {self.model_sha256!r}: expected 64 lowercase hex digits")
        if not isinstance(self.model, CompiledModel):
            raise ValueError(f"model must be a CompiledModel, got {type(self.model).__name__}")
        if not isinstance(self.features, tuple) or not all(
            isinstance(f, str) and _FEATURE.fullmatch(f) for f in self.features
        ):
            raise ValueError(f"invalid features {self.features!r}: expected a tuple of column names")
        if len(self.features) != self.model.n_features:
            raise ValueError(f"{len(self.features)} features named for a model of {self.model.n_features}")


def write_pack(entries: Sequence[PackEntry]) -> bytes:
    """The pack file for these entries (sorted by pair; ValueError if a pair appears twice)."""
    ordered = sorted(entries, key=lambda e: (e.device_id, e.sensor))
    for previous, entry in itertools.pairwise(ordered):
        if (previous.device_id, previous.sensor) == (entry.device_id, entry.sensor):
            raise ValueError(f"pair {entry.device_id}/{entry.sensor} appears twice")
    models = [e.model for e in ordered]
    codes = {kernel: code for code, kernel in enumerate(KERNELS)}

    def cat(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([p.reshape(-1) for p in parts]).astype(_F8) if parts else np.empty(0, _F8)

    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT_NAME),
        "version": np.array(FORMAT_VERSION, dtype=_I8),
        "device_id": np.array([e.device_id for e in ordered], dtype=str),
        "sensor": np.array([e.sensor for e in ordered], dtype=str),
        "features": np.array([",".join(e.features) for e in ordered], dtype=str),
        "model_sha256": np.array([bytes.fromhex(e.model_sha256) for e in ordered], dtype="S32")
        .view(_U1)
        .reshape(len(ordered), 32),
        "kernel": np.array([codes[m.kernel] for m in models], dtype=_U1),
        "gamma": np.array([m.gamma for m in models], dtype=_F8),
        "coef0": np.array([m.coef0 for m in models], dtype=_F8),
        "degree": np.array([m.degree for m in models], dtype=_I8),
        "intercept": np.array([m.intercept for m in models], dtype=_F8),
        "n_sv": np.array([m.support_vectors.shape[0] for m in models], dtype=_I8),
        "n_features": np.array([m.n_features for m in models], dtype=_I8),
        "has_mean": np.array([m.mean is not None for m in models], dtype=_BOOL),
        "has_scale": np.array([m.scale is not None for m in models], dtype=_BOOL),
        "support_vectors": cat([m.support_vectors for m in models]),
        "dual_coef": cat([m.dual_coef for m in models]),
        "mean": cat([m.mean for m in models if m.mean is not None]),
        "scale": cat([m.scale for m in models if m.scale is not None]),
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


def read_pack(data: bytes) -> dict[tuple[str, str], PackEntry]:
    """The entries of a pack, by (device_id, sensor); PackError if the bytes are not a valid pack."""
    arrays = _read_arrays(data)
    count = _check_layout(arrays)
    device_ids: list[str] = arrays["device_id"].tolist()
    sensors: list[str] = arrays["sensor"].tolist()
    features: list[str] = arrays["features"].tolist()
    digests = arrays["model_sha256"].tobytes().hex()
    hashes = [digests[64 * i : 64 * (i + 1)] for i in range(count)]
    kernels, degrees = arrays["kernel"].tolist(), arrays["degree"].tolist()
    gammas, coef0s, intercepts = arrays["gamma"].tolist(), arrays["coef0"].tolist(), arrays["intercept"].tolist()
    n_sv, n_features = arrays["n_sv"].tolist(), arrays["n_features"].tolist()
    has_mean, has_scale = arrays["has_mean"].tolist(), arrays["has_scale"].tolist()
    sv_at = dual_at = mean_at = scale_at = 0
    entries: dict[tuple[str, str], PackEntry] = {}
    for i in range(count):
        rows, width = n_sv[i], n_features[i]
        support_vectors = arrays["support_vectors"][sv_at : sv_at + rows * width].reshape(rows, width)
        dual_coef = arrays["dual_coef"][dual_at : dual_at + rows]
        mean = arrays["mean"][mean_at : mean_at + width] if has_mean[i] else None
        scale = arrays["scale"][scale_at : scale_at + width] if has_scale[i] else None
        sv_at, dual_at = sv_at + rows * width, dual_at + rows
        mean_at, scale_at = mean_at + width * has_mean[i], scale_at + width * has_scale[i]
        key = (device_ids[i], sensors[i])
        if key in entries:
            raise PackError(f"pair {key[0]}/{key[1]} appears twice")
        try:
            entries[key] = PackEntry(
                device_id=key[0],
                sensor=key[1],
                model_sha256=hashes[i],
                features=tuple(features[i].split(",")),
                model=CompiledModel(
                    kernel=KERNELS[kernels[i]],
                    gamma=gammas[i],
                    coef0=coef0s[i],
                    degree=degrees[i],
                    mean=mean,
                    scale=scale,
                    support_vectors=support_vectors,
                    dual_coef=dual_coef,
                    intercept=intercepts[i],
                ),
            )
        except ValueError as exc:
            raise PackError(f"entry {i} ({key[0]}/{key[1]}): {exc}") from None
    return entries


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
        if int(version) != FORMAT_VERSION:
            raise PackError(f"unknown model pack format version {int(version)}")
        if set(members) != _MEMBERS:
            missing, extra = sorted(_MEMBERS - set(members)), sorted(set(members) - _MEMBERS)
            raise PackError(f"malformed model pack: missing members {missing}, unexpected {extra}")
        return {name: _read_member(archive, member, len(data)) for name, member in members.items()}


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


def _check_layout(arrays: dict[str, np.ndarray]) -> int:
    """Dtypes, shapes, value ranges and the concatenated lengths; returns the number of pairs."""
    count = _check_shapes(arrays)
    _check_counts(arrays)
    return count


def _check_shapes(arrays: dict[str, np.ndarray]) -> int:
    """Every member's dtype and shape; returns the number of pairs."""
    for name, dtype in _PER_PAIR.items():
        if arrays[name].dtype != dtype or arrays[name].ndim != 1:
            raise PackError(f"malformed model pack: {name} must be a 1-d {dtype} array")
    count = int(arrays["kernel"].shape[0])
    for name in _STRINGS:
        array = arrays[name]
        if array.dtype.kind != "U" or array.dtype.byteorder == ">" or array.shape != (count,):
            raise PackError(f"malformed model pack: {name} must be {count} unicode strings")
    if arrays["model_sha256"].dtype != _U1 or arrays["model_sha256"].shape != (count, 32):
        raise PackError(f"malformed model pack: model_sha256 must be a ({count}, 32) uint8 array")
    for name in _PER_PAIR:
        if arrays[name].shape != (count,):
            raise PackError(f"malformed model pack: {name} has {arrays[name].shape[0]} entries, expected {count}")
    for name in _CONCATENATED:
        if arrays[name].dtype != _F8 or arrays[name].ndim != 1:
            raise PackError(f"malformed model pack: {name} must be a 1-d float64 array")
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
    expected = {
        "dual_coef": int(n_sv.sum()),
        "support_vectors": int((n_sv * n_features).sum()),  # bounded factors above: no int64 overflow
        "mean": int(n_features[arrays["has_mean"]].sum()),
        "scale": int(n_features[arrays["has_scale"]].sum()),
    }
    for name, length in expected.items():
        if arrays[name].shape[0] != length:
            raise PackError(f"malformed model pack: {name} holds {arrays[name].shape[0]} values, counts say {length}")
    try:  # one pass over the whole pack instead of one per model
        check_values(arrays["support_vectors"], arrays["dual_coef"], arrays["mean"], arrays["scale"])
    except ValueError as exc:
        raise PackError(f"malformed model pack: {exc}") from None
