from __future__ import annotations

import hashlib
import io
import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM

from workloads.common.fastpath import KERNELS, CompiledModel, compile_model, score
from workloads.common.model_pack import FORMAT_VERSION, PackEntry, PackError, read_pack, write_pack

SENSORS = ("temperature", "humidity", "pressure", "vibration")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def random_model(rng: np.random.Generator, index: int) -> CompiledModel:
    n_features = int(rng.integers(1, 13))
    n_sv = int(rng.integers(0, 40)) if index % 7 else 0  # a model without support vectors is still a model
    return CompiledModel(
        kernel=KERNELS[index % len(KERNELS)],
        gamma=float(rng.uniform(0, 2)),
        coef0=float(rng.normal()),
        degree=int(rng.integers(0, 6)),
        mean=rng.normal(size=n_features) if index % 3 else None,
        scale=rng.uniform(0.1, 5, n_features) if index % 2 else None,
        support_vectors=rng.normal(size=(n_sv, n_features)),
        dual_coef=rng.uniform(0, 1, n_sv),
        intercept=-0.0 if index == 5 else float(rng.normal()),
    )


def entry(device_id: str, sensor: str, digest: str, model: CompiledModel) -> PackEntry:
    return PackEntry(device_id, sensor, digest, tuple(f"f{i}" for i in range(model.n_features)), model)


def sample_entries(count: int = 40, seed: int = 0) -> list[PackEntry]:
    rng = np.random.default_rng(seed)
    entries = [
        entry(f"dev-{i // 4:04d}", SENSORS[i % 4], sha(f"model {i}"), random_model(rng, i)) for i in range(count)
    ]
    train = rng.normal(size=(100, 5)) * 4 + 20
    fitted = compile_model(make_pipeline(StandardScaler(), OneClassSVM(nu=0.05, gamma=0.1)).fit(train))
    assert fitted is not None
    entries.append(entry("plant.7_line-3", "flow", sha("fitted"), fitted))
    return entries


def bits(value: float) -> bytes:
    return np.float64(value).tobytes()


def assert_identical(got: CompiledModel, want: CompiledModel) -> None:
    """Bit for bit: values, signs of zero, dtypes and shapes."""
    assert got.kernel == want.kernel and got.degree == want.degree
    for name in ("gamma", "coef0", "intercept"):
        assert bits(getattr(got, name)) == bits(getattr(want, name)), name
    for name in ("mean", "scale", "support_vectors", "dual_coef"):
        a, b = getattr(got, name), getattr(want, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), name


def test_round_trip_is_bit_for_bit() -> None:
    entries = sample_entries()
    packed = read_pack(write_pack(entries))
    assert len(packed) == len(entries)
    for entry in entries:
        got = packed[(entry.device_id, entry.sensor)]
        assert (got.device_id, got.sensor, got.model_sha256, got.features) == (
            entry.device_id,
            entry.sensor,
            entry.model_sha256,
            entry.features,
        )
        assert_identical(got.model, entry.model)
        assert not got.model.support_vectors.flags.writeable  # a pack's models cannot be altered in place
    fitted = entries[-1]
    rows = np.random.default_rng(3).normal(size=(12, 5)) * 4 + 20
    a, b = score(fitted.model, rows), score(packed[(fitted.device_id, fitted.sensor)].model, rows)
    assert a.scores.tobytes() == b.scores.tobytes() and (a.flags == b.flags).all()


def test_empty_pack_round_trips() -> None:
    assert read_pack(write_pack([])) == {}


def test_writing_is_deterministic_and_order_independent() -> None:
    entries = sample_entries()
    assert write_pack(entries) == write_pack(list(reversed(entries)))


def test_numpy_loads_a_pack_without_pickle() -> None:
    with np.load(io.BytesIO(write_pack(sample_entries())), allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    assert int(arrays["version"]) == FORMAT_VERSION
    assert all(not array.dtype.hasobject for array in arrays.values())


def test_write_rejects_duplicates_and_bad_entries() -> None:
    first = sample_entries(1)[0]
    with pytest.raises(ValueError, match="appears twice"):
        write_pack([first, first])
    with pytest.raises(ValueError, match="sha256"):
        PackEntry("dev-1", "temperature", "ABC", first.features, first.model)
    with pytest.raises(ValueError, match="device id"):
        PackEntry("../dev", "temperature", sha("x"), first.features, first.model)
    with pytest.raises(ValueError, match="features"):
        PackEntry("dev-1", "temperature", sha("x"), ("a,b", "c"), first.model)
    with pytest.raises(ValueError, match="features named for a model"):
        PackEntry("dev-1", "temperature", sha("x"), first.features[:-1], first.model)


def test_a_pack_is_read_back_in_another_process(tmp_path: Path) -> None:
    entries = sample_entries()
    path = tmp_path / "pack.npz"
    path.write_bytes(write_pack(entries))
    code = (
        "import json, sys; from pathlib import Path; from workloads.common.model_pack import read_pack; "
        "pack = read_pack(Path(sys.argv[1]).read_bytes()); "
        "print(json.dumps(sorted([k[0], k[1], e.model_sha256, e.model.kernel, e.model.support_vectors.tobytes().hex(), "
        "e.model.intercept.hex()] for k, e in pack.items())))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    expected = sorted(
        [
            e.device_id,
            e.sensor,
            e.model_sha256,
            e.model.kernel,
            e.model.support_vectors.tobytes().hex(),
            e.model.intercept.hex(),
        ]
        for e in entries
    )
    assert json.loads(done.stdout) == expected


def members(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def rewritten(arrays: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_a_pack_rewritten_by_numpy_itself_still_reads() -> None:
    entries = sample_entries()
    assert len(read_pack(rewritten(members(write_pack(entries))))) == len(entries)


def _bool_with_value_2(array: np.ndarray) -> np.ndarray:
    raw = array.view(np.uint8).copy()
    raw[0] = 2
    return raw.view(bool)


MUTATIONS: dict[str, tuple[Any, str]] = {
    "newer version": (lambda a: {**a, "version": np.array(FORMAT_VERSION + 1)}, "newer than this reader"),
    "version 0": (lambda a: {**a, "version": np.array(0)}, "unknown model pack format version"),
    "version as float": (lambda a: {**a, "version": np.array(1.0)}, "malformed version"),
    "foreign marker": (lambda a: {**a, "format": np.array("something-else")}, "wrong format marker"),
    "no marker": (lambda a: {k: v for k, v in a.items() if k != "format"}, "unexpected archive members"),
    "missing member": (lambda a: {k: v for k, v in a.items() if k != "scale"}, "missing members"),
    "extra member": (lambda a: {**a, "extra": np.zeros(1)}, "unexpected"),
    "unknown kernel": (lambda a: {**a, "kernel": np.full_like(a["kernel"], 9)}, "unknown kernel code"),
    "short per-pair array": (lambda a: {**a, "gamma": a["gamma"][:-1]}, "gamma has"),
    "count beyond the data": (lambda a: {**a, "n_sv": a["n_sv"] + 1}, "out of range|holds"),
    "one count too many": (lambda a: {**a, "n_sv": np.r_[a["n_sv"][:-1], a["n_sv"][-1] + 1]}, "dual_coef holds"),
    "negative count": (lambda a: {**a, "n_sv": np.r_[-1, a["n_sv"][1:]]}, "out of range"),
    "negative degree": (lambda a: {**a, "degree": np.r_[-1, a["degree"][1:]]}, "out of range"),
    "zero features": (lambda a: {**a, "n_features": np.r_[0, a["n_features"][1:]]}, "feature counts"),
    "float32 vectors": (lambda a: {**a, "support_vectors": a["support_vectors"].astype(np.float32)}, "float64"),
    "2-d vectors": (lambda a: {**a, "dual_coef": a["dual_coef"].reshape(1, -1)}, "1-d float64"),
    "nan vector": (lambda a: {**a, "support_vectors": np.r_[np.nan, a["support_vectors"][1:]]}, "finite"),
    "zero scale": (lambda a: {**a, "scale": np.r_[0.0, a["scale"][1:]]}, "non-zero"),
    "nan gamma": (lambda a: {**a, "gamma": np.r_[np.nan, a["gamma"][1:]]}, "gamma must be a finite float"),
    "bool byte 2": (lambda a: {**a, "has_mean": _bool_with_value_2(a["has_mean"])}, "other than 0 and 1"),
    "short sha": (lambda a: {**a, "model_sha256": a["model_sha256"][:, :31]}, "model_sha256"),
    "numeric ids": (lambda a: {**a, "device_id": np.arange(len(a["device_id"]))}, "unicode strings"),
    "bad device id": (lambda a: {**a, "device_id": np.r_[["../x"], a["device_id"][1:]]}, "invalid device id"),
    "empty features": (lambda a: {**a, "features": np.r_[[""], a["features"][1:]]}, "invalid features"),
    "feature count": (lambda a: {**a, "features": np.r_[["f0"], a["features"][1:]]}, "features named for a model"),
    "missing features": (lambda a: {k: v for k, v in a.items() if k != "features"}, "missing members"),
    "duplicate pair": (
        lambda a: {
            **a,
            "device_id": np.r_[a["device_id"][1:2], a["device_id"][1:]],
            "sensor": a["sensor"][[1, *range(1, len(a["sensor"]))]],
        },
        "appears twice",
    ),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_malformed_packs_are_a_pack_error(name: str) -> None:
    mutate, message = MUTATIONS[name]
    with pytest.raises(PackError, match=message):
        read_pack(rewritten(mutate(members(write_pack(sample_entries())))))


class _Exploit:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.mkdir, (self.target,))


def test_pickles_are_never_loaded(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(target))
    object_member = rewritten(
        {**members(write_pack(sample_entries())), "device_id": np.array([_Exploit(target)], dtype=object)}
    )
    object_npy = io.BytesIO()
    np.save(object_npy, np.array([_Exploit(target)], dtype=object), allow_pickle=True)
    for data in (payload, object_member, object_npy.getvalue()):
        with pytest.raises(PackError):
            read_pack(data)
    assert not target.exists()


def test_foreign_bytes_are_a_pack_error() -> None:
    plain_npy = io.BytesIO()
    np.save(plain_npy, np.arange(10.0))
    compressed = io.BytesIO()
    arrays: dict[str, Any] = members(write_pack(sample_entries()))
    np.savez_compressed(compressed, **arrays)
    for data in (b"", b"hello", plain_npy.getvalue(), b"PK\x03\x04" + bytes(100), compressed.getvalue()):
        with pytest.raises(PackError):
            read_pack(data)


def test_truncated_packs_are_a_pack_error() -> None:
    data = write_pack(sample_entries())
    for length in (1, 100, len(data) // 3, len(data) // 2, len(data) - 22, len(data) - 1):
        with pytest.raises(PackError):
            read_pack(data[:length])


def test_corrupt_bytes_never_give_a_wrong_model() -> None:
    """Flip bytes all over the file: each result is a PackError or exactly the original pack
    (a byte in, say, a zip timestamp changes nothing that is read)."""
    data = write_pack(sample_entries(2))
    original = read_pack(data)
    for position in range(len(data)):
        corrupt = bytearray(data)
        corrupt[position] ^= 0x5A
        try:
            packed = read_pack(bytes(corrupt))
        except PackError:
            continue
        assert packed.keys() == original.keys(), position
        for key, entry in packed.items():
            assert entry.model_sha256 == original[key].model_sha256, position
            assert_identical(entry.model, original[key].model)
