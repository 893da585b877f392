"""Every model family by name: trained, published, packed where a fast path exists, and scored through the
submitter on Azurite with the flags and scores of the estimator itself; parameters and factories checked."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest
from azure.storage.blob import BlobServiceClient
from typer.testing import CliRunner

from tests.workloads.helpers import HOUR, aggregates_for
from workloads.aggregator.publish import publish_aggregates
from workloads.common.aggregates import DEFAULT_MODEL_FEATURES
from workloads.common.frames import read_hour_predictions
from workloads.common.layout import Container
from workloads.common.model_metadata import list_models
from workloads.common.modelstore import load_model
from workloads.common.pairs import Pair
from workloads.submitter.cli import app as submitter
from workloads.training.cli import app as trainer
from workloads.training.families import FAMILIES, ModelSpec, parse_param

runner = CliRunner()
SHARDS = "4"
FAST = {"ocsvm", "iforest"}  # families the shard packs hold; the others are scored with their own models
PAIRS = {family: [Pair(f"{family}-{i}", "temp") for i in range(2)] for family in FAMILIES}


def custom_detector(n_estimators: int = 7) -> object:
    """A user's own factory (``--model tests.workloads.test_families:custom_detector``)."""
    from sklearn.ensemble import IsolationForest

    return IsolationForest(n_estimators=n_estimators, random_state=3)


def invoke(app: object, *args: str) -> dict[str, object]:
    result = runner.invoke(app, list(args))  # type: ignore[arg-type]
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_each_family_is_trained_packed_and_scored_as_its_estimator_scores(service: BlobServiceClient) -> None:
    everyone = [pair for pairs in PAIRS.values() for pair in pairs]
    publish_aggregates(service, aggregates_for(everyone, HOUR - timedelta(hours=6), windows=72, seed=1), 4)
    hour_rows = aggregates_for(everyone, HOUR, windows=12, seed=2)
    hour_rows.loc[0, "avg"] = 80.0  # one clear outlier, so every family flags something
    publish_aggregates(service, hour_rows, 4)
    window = ["--from", "2026-11-25T04", "--to", "2026-11-25T10", "--shard-count", SHARDS]
    for family, pairs in PAIRS.items():
        summary = invoke(trainer, "train", *window, "--model", family, "--pairs", ",".join(map(str, pairs)))
        assert summary["published"] == 2 and summary["model"] == family
        packed = summary["packs"]
        assert isinstance(packed, dict) and packed["pack_entries"] >= (2 if family in FAST else 0)
        assert packed["entries_left_out"] == {}

    models = service.get_container_client(str(Container.MODELS))
    published = list_models(models)
    assert {p: m.family for p, m in published.items() if not isinstance(m, str)} == {
        pair: family for family, pairs in PAIRS.items() for pair in pairs
    }
    invoke(submitter, "run", "--hour", "2026-11-25T10", "--workers", "0", "--shard-count", SHARDS)
    (report,) = invoke(submitter, "report", "--hour", "2026-11-25T10", "--json", "--model-family", "ocsvm")  # type: ignore[misc]
    assert (report["pairs_ok"], report["pairs_failed"]) == (len(everyone), 0), report["failures"]
    assert report["pairs_by_family"] == dict.fromkeys(sorted(FAMILIES), 2)
    assert (report["model_family_expected"], report["pairs_other_family"]) == ("ocsvm", 2 * (len(FAMILIES) - 1))
    table = runner.invoke(submitter, ["report", "--hour", "2026-11-25T10"], env={"SCORING_MODEL_FAMILY": "ocsvm"})
    assert "another family than the stack's modelFamily (ocsvm)" in " ".join(table.stdout.split())
    assert report["pairs_from_pack"] + report["pairs_from_models"] == len(everyone)
    assert report["pairs_from_pack"] >= 2 * len(FAST) - 2  # a pair with a borderline row takes its model's path

    predictions = read_hour_predictions(service, HOUR)
    for pair in everyone:
        mine = predictions[(predictions.device_id == pair.device_id) & (predictions.sensor == pair.sensor)]
        rows = hour_rows[(hour_rows.device_id == pair.device_id) & (hour_rows.sensor == pair.sensor)]
        estimator = load_model(models, pair).estimator
        x = rows.sort_values("window_end")[list(DEFAULT_MODEL_FEATURES)].to_numpy()
        got = mine.sort_values("window_end")
        np.testing.assert_array_equal(got["is_anomaly"].to_numpy(), estimator.predict(x) == -1)
        np.testing.assert_allclose(got["score"].to_numpy(), estimator.decision_function(x), rtol=0, atol=1e-9)


def test_a_users_factory_and_its_parameters(service: BlobServiceClient) -> None:
    pair = Pair("own-1", "temp")
    publish_aggregates(service, aggregates_for([pair], HOUR - timedelta(hours=3), windows=36))
    model = f"{__name__}:custom_detector"
    summary = invoke(
        trainer,
        "train",
        "--from",
        "2026-11-25T07",
        "--to",
        "2026-11-25T10",
        "--model",
        model,
        "--param",
        "n_estimators=3",
    )
    assert summary["published"] == 1 and summary["params"] == {"n_estimators": 3}
    metadata = list_models(service.get_container_client(str(Container.MODELS)))[pair]
    assert not isinstance(metadata, str) and metadata.family == model
    assert len(load_model(service.get_container_client(str(Container.MODELS)), pair).estimator.estimators_) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "svm"], "unknown model 'svm': choose one of ocsvm, iforest, lof, elliptic"),
        (["--param", "nuu=0.1"], "OneClassSVM has no parameter 'nuu' (did you mean 'nu'?)"),
        (["--param", "nu=2"], "The 'nu' parameter of OneClassSVM must be a float in the range (0.0, 1.0]"),
        (["--model", "iforest", "--param", "n_estimators=many"], "'n_estimators' parameter of IsolationForest"),
        (["--model", "lof", "--param", "novelty=false"], "lof needs novelty=true"),
        (["--param", "nu"], "expected key=value"),
        (["--features", "avg,avg"], "--features names a feature twice"),
        (["--model", "no_such_module:make"], "cannot import the model factory no_such_module:make"),
        (["--model", f"{__name__}:custom_detector", "--param", "depth=3"], "--param does not fit"),
        (["--model", f"{__name__}:PAIRS"], "is a dict, not a function"),
        (["--model", "iforest", "--param", "max_features=5"], "max_features must be <= n_features"),  # 4 features
        (["--model", "lof", "--param", "metric=canberra"], "--trusted-type sklearn.metrics._dist_metrics.Canberra"),
    ],
)
def test_wrong_models_and_parameters_are_bad_input(settings: object, args: list[str], message: str) -> None:
    result = runner.invoke(trainer, ["train", "--from", "2026-11-25T07", "--to", "2026-11-25T10", *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_parameters_are_checked_against_the_features_the_models_read() -> None:
    five = ("avg", "min", "max", "stdev", "count")
    assert ModelSpec(family="iforest", params={"max_features": 5}).factory(len(five))  # fits 5 columns
    with pytest.raises(ValueError, match="max_features must be <= n_features"):
        ModelSpec(family="iforest", params={"max_features": 3}).factory(2)


def test_parameters_are_read_as_json_scalars_or_text() -> None:
    assert [parse_param(p) for p in ("nu=0.05", "n_estimators=200", "bootstrap=true", "max_samples=auto")] == [
        ("nu", 0.05),
        ("n_estimators", 200),
        ("bootstrap", True),
        ("max_samples", "auto"),
    ]
    spec = ModelSpec(family="iforest", params={"n_estimators": 5})
    assert ModelSpec.model_validate_json(spec.model_dump_json()) == spec  # what a training task's manifest carries
    assert type(spec.factory()()).__name__ == "IsolationForest"
    assert [type(s).__name__ for _, s in ModelSpec(family="lof").factory()().steps] == [
        "StandardScaler",
        "LocalOutlierFactor",
    ]
