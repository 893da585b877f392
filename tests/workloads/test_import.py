"""``trainer import`` on a mixed folder: what is published, converted, probed and refused, and why."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from azure.storage.blob import BlobServiceClient
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM
from typer.testing import CliRunner

from tests.workloads.helpers import HOUR, aggregates_for
from workloads.aggregator.publish import publish_aggregates
from workloads.common.aggregates import DEFAULT_MODEL_FEATURES
from workloads.common.layout import Container, pack_blob
from workloads.common.model_metadata import list_models
from workloads.common.model_pack import read_pack
from workloads.common.model_versions import VersionPolicy, runtime_sklearn_version
from workloads.common.modelstore import ModelError, load_model
from workloads.common.pairs import Pair
from workloads.common.shards import shard_name, shard_of
from workloads.training.cli import app as trainer

runner = CliRunner()
FEATURES = list(DEFAULT_MODEL_FEATURES)


class OwnScaler(StandardScaler):
    """A type no list vets: its model must be refused unless named with --trusted-type."""


def fitted(estimator: object, pair: Pair, n_features: int = 4) -> object:
    rows = aggregates_for([pair], windows=60)[FEATURES].to_numpy()[:, :n_features]
    return estimator.fit(rows)  # type: ignore[attr-defined]


def joblib_file(estimator: object) -> bytes:
    """What ``joblib.dump`` writes, dumped in a fresh interpreter: the suite's Pulumi tests import
    pulumi.dynamic, which patches the pure-Python pickler joblib uses (it recurses on joblib's array wrappers)."""
    script = "import joblib, pickle, sys; joblib.dump(pickle.loads(sys.stdin.buffer.read()), sys.argv[1])"
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "model.joblib"
        subprocess.run([sys.executable, "-c", script, str(target)], input=pickle.dumps(estimator), check=True)
        return target.read_bytes()


def write(root: Path, pair: Pair, name: str, data: bytes) -> None:
    folder = root / pair.device_id / pair.sensor
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def mixed_folder(root: Path) -> dict[str, Pair]:
    """Good skops (an SVM pipeline and a forest), pickles, a model of 3 features, an untrusted type, a typo."""
    pairs = {
        name: Pair(f"imp-{i}", "temp")
        for i, name in enumerate(
            ["skops_svm", "skops_forest", "pickle", "joblib", "wrong_features", "untrusted", "two_files"]
        )
    }
    write(
        root,
        pairs["skops_svm"],
        "model.skops",
        sio.dumps(fitted(make_pipeline(StandardScaler(), OneClassSVM(nu=0.05, gamma=0.1)), pairs["skops_svm"])),
    )
    write(
        root,
        pairs["skops_forest"],
        "model.skops",
        sio.dumps(fitted(IsolationForest(n_estimators=10, random_state=0), pairs["skops_forest"])),
    )
    write(
        root,
        pairs["pickle"],
        "model.pkl",
        pickle.dumps(fitted(make_pipeline(StandardScaler(), LocalOutlierFactor(novelty=True)), pairs["pickle"])),
    )
    forest = fitted(IsolationForest(n_estimators=5, random_state=1), pairs["joblib"])
    write(root, pairs["joblib"], "model.joblib", joblib_file(forest))
    write(
        root,
        pairs["wrong_features"],
        "model.skops",
        sio.dumps(fitted(OneClassSVM(), pairs["wrong_features"], n_features=3)),
    )
    write(
        root,
        pairs["untrusted"],
        "model.skops",
        sio.dumps(fitted(make_pipeline(OwnScaler(), OneClassSVM()), pairs["untrusted"])),
    )
    write(root, pairs["two_files"], "a.skops", b"x")
    write(root, pairs["two_files"], "b.skops", b"y")
    (root / "stray.skops").write_bytes(b"z")  # names no pair: refused, not passed over
    return pairs


def invoke(*args: str) -> tuple[int, dict[str, object]]:
    result = runner.invoke(trainer, ["import", *args])
    assert result.stdout.startswith("{"), result.output
    return result.exit_code, json.loads(result.stdout)


def test_a_mixed_folder_without_trust_publishes_only_the_safe_models(
    service: BlobServiceClient, tmp_path: Path
) -> None:
    pairs = mixed_folder(tmp_path)
    publish_aggregates(service, aggregates_for(list(pairs.values()), windows=12))
    code, summary = invoke(
        str(tmp_path), "--from", f"{HOUR:%Y-%m-%dT%H}", "--to", "2026-11-25T11", "--shard-count", "4"
    )
    assert code == 3, summary
    refused = summary["refused"]
    assert isinstance(refused, dict)
    assert set(refused) == {str(pairs[n]) for n in ("pickle", "joblib", "wrong_features", "untrusted", "two_files")} | {
        "stray.skops"
    }
    assert (
        refused["stray.skops"]
        == "bad_layout: stray.skops is not in a <device_id>/<sensor>/ folder, so it names no pair"
    )
    assert refused[str(pairs["pickle"])].startswith("untrusted_pickle: model.pkl is a pkl file")
    assert "--trust-pickle" in refused[str(pairs["joblib"])]
    assert refused[str(pairs["wrong_features"])].startswith("bad_features: the model reads 3 feature(s)")
    assert refused[str(pairs["untrusted"])].startswith("untrusted_model:")
    assert f"--trusted-type {__name__}.OwnScaler" in refused[str(pairs["untrusted"])]
    assert refused[str(pairs["two_files"])].startswith("bad_layout: expected one model file")
    assert summary["published"] == 2 and summary["probed_on"] == {"history": 2}
    published = list_models(service.get_container_client(str(Container.MODELS)))
    assert set(published) == {pairs["skops_svm"], pairs["skops_forest"]}
    families = {pair: meta.family for pair, meta in published.items() if not isinstance(meta, str)}
    assert families == {pairs["skops_svm"]: "ocsvm", pairs["skops_forest"]: "iforest"}
    # The published form is training's: the SVM's pack entry holds the published checksum.
    models = service.get_container_client(str(Container.MODELS))
    svm = pairs["skops_svm"]
    pack = read_pack(models.download_blob(pack_blob(shard_name(shard_of(svm.device_id, 4), 4))).readall())
    assert pack[(svm.device_id, svm.sensor)].model_sha256 == published[svm].sha256  # type: ignore[union-attr]


def test_trusting_pickles_converts_them_to_skops(service: BlobServiceClient, tmp_path: Path) -> None:
    pairs = mixed_folder(tmp_path)
    code, summary = invoke(
        str(tmp_path), "--trust-pickle", "--trusted-type", f"{__name__}.OwnScaler", "--shard-count", "4"
    )
    refused = {str(pairs["wrong_features"]), str(pairs["two_files"]), "stray.skops"}
    assert code == 3 and set(summary["refused"]) == refused  # type: ignore[arg-type]
    assert summary["converted_from_pickle"] == 2 and summary["probed_on"] == {"zeros": 5}
    models = service.get_container_client(str(Container.MODELS))
    for name in ("pickle", "joblib"):
        meta = list_models(models)[pairs[name]]
        assert not isinstance(meta, str) and meta.format.value == "skops"
        x = aggregates_for([pairs[name]], windows=5)[FEATURES].to_numpy()
        assert load_model(models, pairs[name]).estimator.predict(x).shape == (5,)  # loads with no trust at all


def test_a_mapping_file_names_pairs_and_features_and_dry_run_publishes_nothing(
    service: BlobServiceClient, tmp_path: Path
) -> None:
    three = Pair("map-1", "temp")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "three.skops").write_bytes(sio.dumps(fitted(OneClassSVM(), three, n_features=3)))
    mapping = tmp_path / "models.csv"
    mapping.write_text(
        "device_id,sensor,path,features\nmap-1,temp,m/three.skops,avg;min;max\nmap-2,temp,m/none.skops,\n../x,temp,m/three.skops,\n"
    )
    code, summary = invoke(str(mapping), "--dry-run")
    assert code == 3 and summary["ready"] == 1 and summary["published"] == 0
    refused = summary["refused"]
    assert isinstance(refused, dict)
    assert refused["map-2/temp"].startswith("unreadable_file:")
    assert refused["models.csv:4"].startswith("bad_mapping:")
    assert list_models(service.get_container_client(str(Container.MODELS))) == {}


def test_a_model_saved_by_another_scikit_learn_is_refused_by_the_policy(
    service: BlobServiceClient, tmp_path: Path
) -> None:
    pair = Pair("old-1", "temp")
    data = pickle.dumps(fitted(OneClassSVM(), pair))
    runtime = runtime_sklearn_version().encode()
    assert data.count(runtime) == 1 and len(runtime) == len(b"1.2.0")
    write(tmp_path, pair, "model.pkl", data.replace(runtime, b"1.2.0"))  # as scikit-learn 1.2.0 would have saved it
    code, summary = invoke(str(tmp_path), "--trust-pickle")
    assert code == 1
    assert summary["refused"][str(pair)].startswith("version_mismatch: model was trained with scikit-learn 1.2.0")  # type: ignore[index]
    code, summary = invoke(str(tmp_path), "--trust-pickle", "--sklearn-version-policy", "any")
    assert code == 0, summary
    meta = list_models(service.get_container_client(str(Container.MODELS)))[pair]
    assert not isinstance(meta, str) and meta.sklearn_version == "1.2.0"  # recorded as it was, not as the runtime's
    models = service.get_container_client(str(Container.MODELS))
    with pytest.raises(ModelError, match=r"scikit-learn 1\.2\.0") as refused:
        load_model(models, pair)  # the scorer's default policy refuses it too
    assert refused.value.reason == "version_mismatch"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # InconsistentVersionWarning: what policy "any" accepts
        loaded = load_model(models, pair, version_policy=VersionPolicy.ANY)
    assert np.isfinite(loaded.estimator.decision_function(np.zeros((1, 4)))).all()


def test_an_empty_folder_is_bad_input(tmp_path: Path, settings: object) -> None:
    result = runner.invoke(trainer, ["import", str(tmp_path)])
    assert result.exit_code == 2 and "no model files" in result.output


@pytest.mark.parametrize("args", [["--from", "2026-11-25T10"], ["--features", "avg,nope"]])
def test_import_options_are_checked(tmp_path: Path, settings: object, args: list[str]) -> None:
    result = runner.invoke(trainer, ["import", str(tmp_path), *args])
    assert result.exit_code == 2
