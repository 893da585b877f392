from __future__ import annotations

import hashlib
import pickle
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import skops.io
from azure.storage.blob import BlobServiceClient
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor

from tests.workloads.helpers import HOUR, OWN_TYPE, OwnDetector, aggregates_for, train_on
from workloads.aggregator.publish import publish_aggregates
from workloads.common.aggregates import DEFAULT_MODEL_FEATURES
from workloads.common.layout import Container, model_blob
from workloads.common.model_metadata import ModelFormat, list_models
from workloads.common.model_versions import VersionPolicy, runtime_sklearn_version, version_mismatch
from workloads.common.modelstore import ModelCache, ModelError, load_model, publish_model, serialise_model
from workloads.common.pairs import Pair
from workloads.training.train import Skip, train_and_publish

PAIR = Pair("dev-1", "temperature")
FEATURES = DEFAULT_MODEL_FEATURES


def models(service: BlobServiceClient):  # type: ignore[no-untyped-def]
    return service.get_container_client(str(Container.MODELS))


def test_published_model_loads_and_predicts_identically(service: BlobServiceClient) -> None:
    frame = aggregates_for([PAIR], windows=60)
    estimator = train_on(frame)
    meta = publish_model(models(service), PAIR, estimator, FEATURES, training_rows=60)
    loaded = load_model(models(service), PAIR)
    x = frame[list(FEATURES)].to_numpy()
    np.testing.assert_array_equal(loaded.estimator.predict(x), estimator.predict(x))  # type: ignore[attr-defined]
    assert loaded.metadata == meta
    assert meta.format is ModelFormat.SKOPS and meta.features == FEATURES and meta.training_rows == 60
    assert list_models(models(service)) == {PAIR: meta}


def test_the_supported_families_load_without_naming_a_type(service: BlobServiceClient) -> None:
    """IsolationForest's trees and LOF's KD-tree are outside skops' defaults but on the vetted list."""
    x = aggregates_for([PAIR], windows=60)[list(FEATURES)].to_numpy()
    for estimator in (
        IsolationForest(n_estimators=10, random_state=0).fit(x),
        LocalOutlierFactor(novelty=True, algorithm="kd_tree").fit(x),
        LocalOutlierFactor(novelty=True, algorithm="ball_tree", metric="chebyshev").fit(x),
    ):
        publish_model(models(service), PAIR, estimator, FEATURES)
        loaded = load_model(models(service), PAIR)
        np.testing.assert_array_equal(loaded.estimator.predict(x), estimator.predict(x))
        assert loaded.metadata.estimator == type(estimator).__name__


def test_types_outside_the_vetted_list_need_to_be_trusted_by_name(service: BlobServiceClient) -> None:
    x = aggregates_for([PAIR], windows=60)[list(FEATURES)].to_numpy()
    own = OwnDetector(nu=0.1).fit(x)
    publish_model(models(service), PAIR, own, FEATURES)
    with pytest.raises(ModelError, match=rf"{OWN_TYPE}.*--trusted-type {OWN_TYPE}") as refused:
        load_model(models(service), PAIR)
    assert refused.value.reason == "untrusted_model"
    loaded = load_model(models(service), PAIR, trusted_types=(OWN_TYPE,))
    np.testing.assert_array_equal(loaded.estimator.predict(x), own.predict(x))
    with pytest.raises(ModelError, match=OWN_TYPE) as unpublishable:
        serialise_model(own)
    assert unpublishable.value.reason == "untrusted_model"
    data = serialise_model(own, trusted_types=(OWN_TYPE,))
    assert skops.io.loads(data, trusted=[OWN_TYPE]).predict(x).tolist() == own.predict(x).tolist()


def test_version_policy_refuses_a_model_of_another_minor_version(service: BlobServiceClient) -> None:
    x = aggregates_for([PAIR], windows=60)[list(FEATURES)].to_numpy()
    meta = publish_model(models(service), PAIR, train_on(aggregates_for([PAIR])), FEATURES).to_blob_metadata()
    major, minor, *_ = runtime_sklearn_version().split(".")
    blob = models(service).get_blob_client(model_blob(PAIR))
    cache = ModelCache()
    assert load_model(models(service), PAIR, cache=cache)  # cached under the runtime's own version
    for recorded, refused_by in {
        f"{major}.{minor}.999": {VersionPolicy.EXACT},
        f"{major}.{int(minor) + 1}.0": {VersionPolicy.EXACT, VersionPolicy.MINOR},
        f"{int(major) + 1}.0.0": {VersionPolicy.EXACT, VersionPolicy.MINOR, VersionPolicy.MAJOR},
        "unknown": {VersionPolicy.EXACT, VersionPolicy.MINOR, VersionPolicy.MAJOR},
    }.items():
        blob.set_blob_metadata({**meta, "sklearn_version": recorded})
        for policy in VersionPolicy:
            if policy in refused_by:
                with pytest.raises(ModelError, match=f"scikit-learn {recorded}|{recorded!r}") as refused:
                    load_model(models(service), PAIR, cache=cache, version_policy=policy)
                assert refused.value.reason == "version_mismatch"
            else:
                loaded = load_model(models(service), PAIR, cache=cache, version_policy=policy)
                np.testing.assert_array_equal(loaded.estimator.predict(x), loaded.estimator.predict(x))
    assert version_mismatch("1.9.1", VersionPolicy.MINOR, runtime="1.9.0") is None
    assert "policy minor" in str(version_mismatch("1.8.2", VersionPolicy.MINOR, runtime="1.9.0"))


def test_missing_and_corrupt_models_raise_model_errors(service: BlobServiceClient) -> None:
    with pytest.raises(ModelError) as missing:
        load_model(models(service), PAIR)
    assert missing.value.reason == "missing_model"

    publish_model(models(service), PAIR, train_on(aggregates_for([PAIR])), FEATURES)
    blob = models(service).get_blob_client(model_blob(PAIR))
    metadata = blob.get_blob_properties().metadata
    blob.upload_blob(b"garbage", overwrite=True, metadata=metadata)
    with pytest.raises(ModelError, match="checksum mismatch") as corrupt:
        load_model(models(service), PAIR)
    assert corrupt.value.reason == "corrupt_model"

    # Bytes that match their checksum but are not a skops file.
    blob.upload_blob(
        b"garbage", overwrite=True, metadata={**metadata, "sha256": hashlib.sha256(b"garbage").hexdigest()}
    )
    with pytest.raises(ModelError, match="cannot read skops file"):
        load_model(models(service), PAIR)

    blob.upload_blob(b"garbage", overwrite=True)  # no metadata at all
    with pytest.raises(ModelError, match="invalid model metadata"):
        load_model(models(service), PAIR)


def test_pickle_is_refused_unless_trusted(service: BlobServiceClient) -> None:
    estimator = train_on(aggregates_for([PAIR]))
    data = pickle.dumps(estimator)
    meta = publish_model(models(service), PAIR, estimator, FEATURES).to_blob_metadata()
    meta.update(format="pickle", sha256=hashlib.sha256(data).hexdigest())
    models(service).upload_blob(model_blob(PAIR), data, overwrite=True, metadata=meta)
    with pytest.raises(ModelError, match="--trust-pickle") as refused:
        load_model(models(service), PAIR)
    assert refused.value.reason == "untrusted_model"
    assert type(load_model(models(service), PAIR, trust_pickle=True).estimator).__name__ == "Pipeline"


def test_cache_revalidates_by_etag(service: BlobServiceClient) -> None:
    cache = ModelCache()
    publish_model(models(service), PAIR, train_on(aggregates_for([PAIR])), FEATURES)
    first = load_model(models(service), PAIR, cache=cache)
    assert load_model(models(service), PAIR, cache=cache) is first  # unchanged: served from the cache
    publish_model(models(service), PAIR, train_on(aggregates_for([PAIR], seed=5)), FEATURES)
    retrained = load_model(models(service), PAIR, cache=cache)
    assert retrained is not first and retrained.metadata.sha256 != first.metadata.sha256


def test_train_and_publish_reads_history_and_skips_thin_pairs(service: BlobServiceClient) -> None:
    rich, thin = Pair("a", "x"), Pair("b", "y")
    for hours_back in range(2, 4):
        publish_aggregates(service, aggregates_for([rich], HOUR - timedelta(hours=hours_back), seed=hours_back))
    last = HOUR - timedelta(hours=1)
    publish_aggregates(service, pd.concat([aggregates_for([rich], last), aggregates_for([thin], last, windows=3)]))
    report = train_and_publish(service, HOUR - timedelta(hours=3), HOUR, min_rows=24)
    assert set(report.published) == {rich}
    assert report.skipped[thin] == Skip("too_few_windows", "only 3 usable window(s), need at least 24")
    assert load_model(models(service), rich).metadata.training_rows == 36
    assert report.windows_not_finite == 0  # the thin pair is skipped, not counted as unusable windows

    rows = aggregates_for([rich], last, windows=12, seed=7)
    rows.loc[rows.index[:2], "stdev"] = float("nan")  # two windows a fit cannot use
    again = train_and_publish(service, last, HOUR, min_rows=10, history=rows)
    assert (set(again.published), again.windows_not_finite) == ({rich}, 2)
    assert load_model(models(service), rich).metadata.training_rows == 10
