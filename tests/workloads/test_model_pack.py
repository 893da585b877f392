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
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM

from workloads.common.fastpath import KERNELS, Compiled, CompiledModel, compile_model, score
from workloads.common.forest_kernel import ForestModel
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


def entry(device_id: str, sensor: str, digest: str, model: Compiled) -> PackEntry:
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


def assert_identical(got: Compiled, want: Compiled) -> None:
    """Bit for bit: values, signs of zero, dtypes and shapes."""
    assert type(got) is type(want)
    if isinstance(got, ForestModel):
        assert isinstance(want, ForestModel)
        assert (got.n_features, got.depth) == (want.n_features, want.depth)
        floats, arrays = ("offset", "denominator"), ("mean", "scale", "tree_nodes", "feature", "right", "value")
    else:
        assert isinstance(want, CompiledModel)
        assert got.kernel == want.kernel and got.degree == want.degree
        floats, arrays = ("gamma", "coef0", "intercept"), ("mean", "scale", "support_vectors", "dual_coef")
    for name in floats:
        assert bits(getattr(got, name)) == bits(getattr(want, name)), name
    for name in arrays:
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


def forest_entries(count: int = 6, seed: int = 1) -> list[PackEntry]:
    """Real compiled forests: with and without a scaler, a feature subsample, 1 to 12 trees."""
    rng = np.random.default_rng(seed)
    entries = []
    for i in range(count):
        n_features = 1 + i % 4
        train = rng.normal(size=(40, n_features)) * 3 + 10
        forest = IsolationForest(
            n_estimators=1 + 11 * (i % 2), max_features=0.5 if i % 3 == 2 else 1.0, contamination=0.1, random_state=i
        )
        estimator = make_pipeline(StandardScaler(with_mean=i % 4 != 1), forest) if i % 2 else forest
        model = compile_model(estimator.fit(train))
        assert isinstance(model, ForestModel)
        entries.append(entry(f"dev-f{i:03d}", SENSORS[i % 4], sha(f"forest {i}"), model))
    return entries


def mixed_entries() -> list[PackEntry]:
    return sample_entries(12) + forest_entries()


def test_mixed_packs_round_trip_bit_for_bit() -> None:
    entries = mixed_entries()
    data = write_pack(entries)
    packed = read_pack(data)
    assert data == write_pack(list(reversed(entries)))  # deterministic, order-independent
    assert len(packed) == len(entries)
    for item in entries:
        got = packed[(item.device_id, item.sensor)]
        assert (got.model_sha256, got.features) == (item.model_sha256, item.features)
        assert_identical(got.model, item.model)
        rows = np.random.default_rng(4).normal(size=(7, item.model.n_features)) * 3 + 10
        assert score(got.model, rows).scores.tobytes() == score(item.model, rows).scores.tobytes()
    forest = packed[(entries[-1].device_id, entries[-1].sensor)].model
    assert isinstance(forest, ForestModel) and not forest.value.flags.writeable


def test_a_forest_only_pack_round_trips() -> None:
    entries = forest_entries(3)
    assert len(read_pack(write_pack(entries))) == 3


def as_version_2(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A version-3 pack of OneClassSVMs only, written as version 2 did (no family, version or forest members)."""
    dropped = {"family", "sklearn_version", "forest_n_trees", "forest_offset", "forest_denominator", "tree_nodes"}
    kept = {k: v for k, v in arrays.items() if k not in dropped and not k.startswith("node_")}
    return {**kept, "version": np.array(2)}


def test_a_version_2_pack_still_reads() -> None:
    entries = sample_entries()
    packed = read_pack(rewritten(as_version_2(members(write_pack(entries)))))
    assert len(packed) == len(entries)
    for item in entries:
        assert_identical(packed[(item.device_id, item.sensor)].model, item.model)
        assert packed[(item.device_id, item.sensor)].sklearn_version == ""  # unknown: the policy sends it per pair
    with pytest.raises(PackError, match="unexpected"):  # version 2 cannot hold forests
        read_pack(rewritten({**members(write_pack(mixed_entries())), "version": np.array(2)}))


def _first(array: np.ndarray, where: np.ndarray, value: Any) -> np.ndarray:
    """A copy of ``array`` with ``value`` at the first position where ``where`` holds."""
    copy = array.copy()
    copy[int(np.flatnonzero(where)[0])] = value
    return copy


FOREST_MUTATIONS: dict[str, tuple[Any, str]] = {
    "unknown family": (lambda a: {**a, "family": np.full_like(a["family"], 2)}, "unknown family"),
    "svm marked forest": (lambda a: {**a, "family": _first(a["family"], a["family"] == 0, 1)}, "entries, expected"),
    "missing nodes": (lambda a: {k: v for k, v in a.items() if k != "node_value"}, "missing members"),
    "zero trees": (lambda a: {**a, "forest_n_trees": np.r_[0, a["forest_n_trees"][1:]]}, "tree count out of range"),
    "one tree too many": (lambda a: {**a, "forest_n_trees": a["forest_n_trees"] + 1}, "tree_nodes holds"),
    "node count": (lambda a: {**a, "tree_nodes": np.r_[a["tree_nodes"][0] + 1, a["tree_nodes"][1:]]}, "node arrays"),
    "empty tree": (lambda a: {**a, "tree_nodes": np.r_[0, a["tree_nodes"][1:]]}, "tree node counts"),
    "int32 features": (lambda a: {**a, "node_feature": a["node_feature"].astype(np.int32)}, "1-d int16"),
    "feature beyond": (
        lambda a: {**a, "node_feature": _first(a["node_feature"], a["node_feature"] >= 0, 99)},
        "input column",
    ),
    "leaf with a child": (
        lambda a: {**a, "node_right": _first(a["node_right"], a["node_feature"] < 0, 2)},
        "right offset 0",
    ),
    "child backwards": (
        lambda a: {**a, "node_right": _first(a["node_right"], a["node_feature"] >= 0, -3)},
        "point forward",
    ),
    "child onto left": (
        lambda a: {**a, "node_right": _first(a["node_right"], a["node_feature"] >= 0, 1)},
        "point forward",
    ),
    "child beyond its tree": (
        lambda a: {**a, "node_right": _first(a["node_right"], a["node_feature"] >= 0, 10**6)},
        "point forward",
    ),
    "nan threshold": (
        lambda a: {**a, "node_value": _first(a["node_value"], a["node_feature"] >= 0, np.nan)},
        "finite",
    ),
    "negative leaf": (
        lambda a: {**a, "node_value": _first(a["node_value"], a["node_feature"] < 0, -1.0)},
        "path length >= 0",
    ),
    "nan offset": (lambda a: {**a, "forest_offset": np.r_[np.nan, a["forest_offset"][1:]]}, "offset must be"),
    "negative denominator": (
        lambda a: {**a, "forest_denominator": np.r_[-1.0, a["forest_denominator"][1:]]},
        "denominator must be",
    ),
    "forest too wide": (
        lambda a: {**a, "n_features": _first(a["n_features"], a["family"] == 1, 40_000)},
        "at most 32767",
    ),
}


@pytest.mark.parametrize("name", sorted(FOREST_MUTATIONS))
def test_malformed_forest_members_are_a_pack_error(name: str) -> None:
    mutate, message = FOREST_MUTATIONS[name]
    with pytest.raises(PackError, match=message):
        read_pack(rewritten(mutate(members(write_pack(mixed_entries())))))


def test_corrupt_bytes_never_give_a_wrong_forest() -> None:
    """As for SVMs: every flipped byte of a small forest pack is a PackError or changes nothing read."""
    data = write_pack(forest_entries(1))
    original = read_pack(data)
    for position in range(0, len(data), 3):
        corrupt = bytearray(data)
        corrupt[position] ^= 0x5A
        try:
            packed = read_pack(bytes(corrupt))
        except PackError:
            continue
        assert packed.keys() == original.keys(), position
        for key, item in packed.items():
            assert_identical(item.model, original[key].model)


def test_forests_are_checked_in_chunks_with_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    from workloads.common import model_pack

    data = write_pack(mixed_entries())
    whole = read_pack(data)
    monkeypatch.setattr(model_pack, "CHECK_NODES", 1)  # one forest per call
    chunked = read_pack(data)
    for key, item in whole.items():
        assert_identical(chunked[key].model, item.model)
    arrays = members(data)
    arrays["node_right"] = _first(arrays["node_right"][::-1], arrays["node_feature"][::-1] < 0, 2)[::-1]
    with pytest.raises(PackError, match="right offset 0"):  # the last forest's last leaf: checked too
        read_pack(rewritten(arrays))
    with pytest.raises(PackError, match="node arrays must hold"):
        read_pack(rewritten({**members(data), "node_value": np.r_[members(data)["node_value"], 1.0]}))
