"""The compiled IsolationForest against scikit-learn itself, on a few hundred random (seeded) forests."""

from __future__ import annotations

import subprocess
import sys
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.svm import OneClassSVM

from workloads.common import forest_kernel
from workloads.common.fastpath import FLAG_MARGIN, CompiledModel, compile_model, score, score_many
from workloads.common.forest_kernel import MAX_DEPTH, ForestModel, check_forests

SCALERS: list[dict[str, bool] | None] = [
    None,
    {"with_mean": True, "with_std": True},
    {"with_mean": False, "with_std": True},
    {"with_mean": True, "with_std": False},
]
TREE_COUNTS = [1, 2, 3, 5, 8, 13, 25, 50, 100, 150]
TREE_WEIGHTS = np.array([6, 5, 5, 5, 4, 4, 3, 2, 1, 1], dtype=float) / 36


@dataclass
class Case:
    estimator: Any
    model: ForestModel
    rows: np.ndarray
    description: str


def random_case(rng: np.random.Generator, index: int) -> Case:
    """A fitted forest and rows to score, spanning the parameters the kernel claims.

    1 to 8 features with sensor-like offsets; half the data sets rounded (ties) and some with a stuck
    sensor or duplicated rows; tree counts 1 to 150 (mostly small: the test's time budget); every
    max_samples form, max_features below 1, bootstrap, contamination "auto" or a float; every scaler
    variant. The rows to score include the training rows, rows beyond them and, for forests without a
    scaler, values on, just below and just above split thresholds (in float32, where the comparison is).
    """
    n_features = int(rng.integers(1, 9))
    n_train = int(rng.choice([2, 4, 20, 60, 150]))
    spread = rng.uniform(0.05, 20, n_features)
    train = rng.normal(size=(n_train, n_features)) * spread + rng.uniform(-50, 1000, n_features)
    if rng.random() < 0.5:
        train = np.round(train, int(rng.integers(-1, 2)))  # ties
    if n_features > 1 and rng.random() < 0.2:
        train[:, int(rng.integers(n_features))] = 7.0  # a stuck sensor
    if rng.random() < 0.2:
        train = np.concatenate([train, train[: max(1, n_train // 3)]])  # duplicated rows
    contamination: str | float = "auto" if rng.random() < 0.5 else float(rng.uniform(0.01, 0.5))
    forest = IsolationForest(
        n_estimators=int(rng.choice(TREE_COUNTS, p=TREE_WEIGHTS)),
        max_samples=[("auto"), 0.5, 1.0, int(rng.integers(1, 40))][index % 4],
        max_features=float(rng.choice([1.0, 0.5, 0.75])),
        bootstrap=bool(rng.random() < 0.3),
        contamination=contamination,
        random_state=index,
    )
    scaler = SCALERS[index % len(SCALERS)]
    estimator: Any = forest if scaler is None else make_pipeline(StandardScaler(**scaler), forest)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_samples larger than the data set
        estimator.fit(train)
    model = compile_model(estimator)
    assert isinstance(model, ForestModel), f"#{index} {forest}"
    beyond = train.mean(axis=0) + rng.normal(size=(int(rng.integers(1, 20)), n_features)) * 3 * spread
    parts = [train, beyond]
    if scaler is None:
        parts.append(threshold_rows(rng, model, train))
    return Case(estimator, model, np.concatenate(parts), f"#{index} scaler={scaler} {forest}")


def threshold_rows(rng: np.random.Generator, model: ForestModel, train: np.ndarray) -> np.ndarray:
    """Training rows with one value moved onto a split threshold: the float64 threshold itself and
    the float32 values just below and above it (the tree compares the row's float32 value)."""
    internal = np.flatnonzero(model.feature >= 0)
    if not internal.size:
        return np.empty((0, model.n_features))
    rows = []
    for node in rng.choice(internal, size=min(8, internal.size), replace=False):
        threshold = model.value[node]
        below = np.float32(threshold)
        while below > threshold:
            below = np.nextafter(below, np.float32(-np.inf))
        above = np.nextafter(below, np.float32(np.inf))
        for value in (threshold, float(below), float(above)):
            row = train[int(rng.integers(train.shape[0]))].copy()
            row[model.feature[node]] = value
            rows.append(row)
    return np.array(rows)


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    rng = np.random.default_rng(20261202)
    return [random_case(rng, index) for index in range(240)]


def test_scores_equal_sklearn_bit_for_bit(cases: list[Case]) -> None:
    """All forests scored in one ``score_many``: every score equals ``decision_function`` exactly,
    every flag equals ``predict`` except borderline rows (decision within FLAG_MARGIN of 0)."""
    results = score_many([case.model for case in cases], [case.rows for case in cases])
    worst, rows, borderline, flagged = 0.0, 0, 0, 0
    for case, result in zip(cases, results, strict=True):
        want = case.estimator.decision_function(case.rows)
        flags = case.estimator.predict(case.rows) == -1
        worst = max(worst, float(np.abs(result.scores - want).max()))
        assert ((result.flags == flags) | result.borderline).all(), case.description
        assert (result.borderline == (np.abs(want) <= FLAG_MARGIN)).all(), case.description
        assert (result.error_bound < FLAG_MARGIN).all()
        rows, borderline, flagged = (
            rows + len(want),
            borderline + int(result.borderline.sum()),
            flagged + int(flags.sum()),
        )
    trees = sum(case.model.n_trees for case in cases)
    print(f"\n{len(cases)} forests ({trees} trees), {rows} rows ({flagged} flagged), max |diff| {worst}, "
          f"{borderline} borderline")  # fmt: skip
    assert worst == 0.0


def test_batching_does_not_change_results(cases: list[Case], monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = cases[:40]
    want = score_many([c.model for c in chosen], [c.rows for c in chosen])
    for items, nodes in ((1, 1), (5000, 2000)):
        monkeypatch.setattr(forest_kernel, "BATCH_ITEMS", items)
        monkeypatch.setattr(forest_kernel, "BATCH_NODES", nodes)
        got = score_many([c.model for c in chosen], [c.rows for c in chosen])
        for a, b in zip(want, got, strict=True):
            np.testing.assert_array_equal(a.scores, b.scores)
            np.testing.assert_array_equal(a.borderline, b.borderline)


def test_mixed_families_in_one_call(cases: list[Case]) -> None:
    rng = np.random.default_rng(3)
    train = rng.normal(size=(60, 3))
    svm = make_pipeline(StandardScaler(), OneClassSVM(nu=0.2)).fit(train)
    svm_model = compile_model(svm)
    assert isinstance(svm_model, CompiledModel)
    forest = cases[1]
    results = score_many([svm_model, forest.model, svm_model], [train, forest.rows, train[:0]])
    np.testing.assert_array_equal(results[1].scores, forest.estimator.decision_function(forest.rows))
    np.testing.assert_allclose(results[0].scores, svm.decision_function(train), rtol=0, atol=1e-12)
    assert results[2].scores.shape == (0,)


def test_single_sample_forest_has_a_zero_denominator() -> None:
    """max_samples=1: every tree is one leaf and sklearn sets depths / denominator to 1 (score -0.5)."""
    train = np.arange(10.0).reshape(5, 2)
    forest = IsolationForest(n_estimators=3, max_samples=1, contamination=0.2, random_state=0).fit(train)
    model = compile_model(forest)
    assert isinstance(model, ForestModel) and model.denominator == 0.0 and model.depth == 0
    result = score(model, train)
    np.testing.assert_array_equal(result.scores, forest.decision_function(train))


def test_sparse_fitted_forest_scores_dense_rows_like_sklearn() -> None:
    """Unlike libsvm, a tree fitted on sparse input has the same nodes and sklearn scores dense rows
    with the same dense traversal, so such a forest compiles."""
    rng = np.random.default_rng(4)
    train = rng.normal(size=(80, 3)) * (rng.random((80, 3)) < 0.5)
    forest = IsolationForest(n_estimators=20, random_state=0).fit(sp.csc_matrix(train))
    model = compile_model(forest)
    assert model is not None
    np.testing.assert_array_equal(score(model, train).scores, forest.decision_function(train))


def test_non_finite_rows_are_borderline() -> None:
    train = np.random.default_rng(5).normal(size=(50, 3))
    model = compile_model(IsolationForest(n_estimators=10, random_state=0).fit(train))
    assert model is not None
    result = score(model, np.array([[np.nan, 1.0, 2.0], [0.0, 0.0, 0.0], [np.inf, 0.0, 0.0], [1e300, 0, 0]]))
    np.testing.assert_array_equal(result.borderline, [True, False, True, False])


def unsupported() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    train = rng.normal(size=(40, 3))

    class MyForest(IsolationForest):  # type: ignore[misc]
        pass

    return {
        "subclass": MyForest(n_estimators=3).fit(train),
        "unfitted": IsolationForest(),
        "min-max scaler": make_pipeline(MinMaxScaler(), IsolationForest(n_estimators=3)).fit(train),
        "two scalers": make_pipeline(StandardScaler(), StandardScaler(), IsolationForest(n_estimators=3)).fit(train),
        "forest then scaler": Pipeline(
            [("forest", IsolationForest(n_estimators=3).fit(train)), ("scaler", StandardScaler().fit(train))]
        ),
        "scaler of another width": Pipeline(
            [("scaler", StandardScaler().fit(train[:, :2])), ("forest", IsolationForest(n_estimators=3).fit(train))]
        ),
    }


@pytest.mark.parametrize("name", sorted(unsupported()))
def test_unsupported_variants_compile_to_none(name: str) -> None:
    assert compile_model(unsupported()[name]) is None


def test_non_finite_thresholds_compile_to_none() -> None:
    """A forest fitted on infinite values (sklearn's fit accepts them) may hold inf thresholds."""
    train = np.random.default_rng(6).normal(size=(40, 2))
    train[::3, 0] = np.inf
    forest = IsolationForest(n_estimators=10, random_state=0).fit(train)
    thresholds = np.concatenate([t.tree_.threshold for t in forest.estimators_])
    model = compile_model(forest)
    assert (model is None) == (not np.isfinite(thresholds).all())


def test_compiled_arrays_are_read_only_copies(cases: list[Case]) -> None:
    model = cases[0].model
    for array in (model.tree_nodes, model.feature, model.right, model.value):
        assert not array.flags.writeable


def small_forest() -> ForestModel:
    """Two trees: a stump (root splits feature 1 at 0.5) and a single leaf."""
    return ForestModel(
        n_features=2,
        mean=None,
        scale=None,
        offset=-0.5,
        denominator=2.0,
        tree_nodes=np.array([3, 1], dtype=np.int64),
        feature=np.array([1, -1, -1, -1], dtype=np.int16),
        right=np.array([2, 0, 0, 0], dtype=np.int32),
        value=np.array([0.5, 1.0, 2.0, 0.0]),
        depth=1,
    )


def test_a_hand_built_forest_scores_as_defined() -> None:
    result = score(small_forest(), np.array([[9.0, 0.5], [9.0, 0.75]]))
    want = -(2 ** -np.array([1.0 / 2.0, 2.0 / 2.0])) + 0.5
    np.testing.assert_array_equal(result.scores, want)


def check(model: ForestModel) -> np.ndarray:
    return check_forests(model.tree_nodes, model.feature, model.right, model.value, np.full(model.n_trees, 2))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"feature": np.array([2, -1, -1, -1], np.int16)}, "input column"),
        ({"feature": np.array([-2, -1, -1, -1], np.int16)}, "input column"),
        ({"right": np.array([1, 0, 0, 0], np.int32)}, "point forward"),
        ({"right": np.array([3, 0, 0, 0], np.int32)}, "point forward"),
        ({"right": np.array([-1, 0, 0, 0], np.int32)}, "point forward"),
        ({"right": np.array([2, 0, 0, 1], np.int32)}, "right offset 0"),
        ({"value": np.array([np.nan, 1.0, 2.0, 0.0])}, "finite"),
        ({"value": np.array([0.5, -1.0, 2.0, 0.0])}, "path length >= 0"),
        ({"tree_nodes": np.array([3, 2], np.int64)}, "node arrays"),
        ({"tree_nodes": np.array([4, 0], np.int64)}, "counts"),
    ],
)
def test_malformed_trees_are_refused(change: dict[str, np.ndarray], message: str) -> None:
    model = small_forest()
    np.testing.assert_array_equal(check(model), [1, 0])
    with pytest.raises(ValueError, match=message):
        check_forests(
            *(change.get(name, getattr(model, name)) for name in ("tree_nodes", "feature", "right", "value")),
            np.full(2, 2),
        )


def test_two_parents_and_excess_depth_are_refused() -> None:
    # Node 0 -> (1, 3); node 1 -> (2, 3): node 3 has two parents, node 4 none.
    shared = ForestModel(
        2,
        None,
        None,
        0.0,
        1.0,
        np.array([5], np.int64),
        np.array([0, 0, -1, -1, -1], np.int16),
        np.array([3, 2, 0, 0, 0], np.int32),
        np.zeros(5),
        2,
    )
    with pytest.raises(ValueError, match="exactly one parent"):
        check(shared)
    n = MAX_DEPTH + 1  # a chain of MAX_DEPTH + 1 splits
    feature = np.concatenate([np.zeros(n, np.int16), np.full(n + 1, -1, np.int16)])
    right = np.zeros(2 * n + 1, np.int32)
    right[:n] = 2 * (n - np.arange(n))  # every left child is the next split, every right child a leaf at the end
    with pytest.raises(ValueError, match="deeper"):
        check_forests(np.array([2 * n + 1]), feature, right, np.zeros(2 * n + 1), np.array([1]))


def test_bad_models_are_rejected() -> None:
    model = small_forest()
    with pytest.raises(ValueError, match="feature must be"):
        replace(model, feature=model.feature.astype(np.int32))
    with pytest.raises(ValueError, match="offset"):
        replace(model, offset=float("nan"))
    with pytest.raises(ValueError, match="denominator"):
        replace(model, denominator=-1.0)
    with pytest.raises(ValueError, match="mean"):
        replace(model, mean=np.zeros(3))
    with pytest.raises(ValueError, match="tree_nodes"):
        replace(model, tree_nodes=np.array([], np.int64), feature=model.feature[:0])
    with pytest.raises(ValueError, match="deeper than its model's depth"):
        score(replace(model, depth=0), np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"pair 0: expected a matrix of shape \(rows, 2\)"):
        score(model, np.zeros((2, 3)))


def test_importing_the_forest_kernel_does_not_import_sklearn() -> None:
    code = "import sys, workloads.common.forest_kernel; print('sklearn' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
