"""The compiled fast path against scikit-learn itself, on many random (seeded) models."""

from __future__ import annotations

import subprocess
import sys
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import SGDOneClassSVM
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.svm import OneClassSVM

from workloads.common import fastpath
from workloads.common.fastpath import (
    FLAG_MARGIN,
    KERNELS,
    CompiledModel,
    Kernel,
    compile_model,
    decision_function,
    score,
    score_many,
)

SCALERS: list[dict[str, bool] | None] = [
    None,
    {"with_mean": True, "with_std": True},
    {"with_mean": False, "with_std": True},
    {"with_mean": True, "with_std": False},
    {"with_mean": False, "with_std": False},
]


@dataclass
class Case:
    estimator: Any
    rows: np.ndarray
    description: str


def random_case(rng: np.random.Generator, kernel: Kernel, index: int) -> Case:
    """A fitted model and rows to score, spanning the parameters the fast path claims.

    Support-vector counts from 1 to about 200 (tiny training sets with a small nu, up to 400 rows with
    a large one), gamma "scale" / "auto" / a float, every scaler variant, 1 to 12 features with
    sensor-like offsets and spreads, sometimes a constant (zero-variance) feature.
    """
    n_features = int(rng.integers(1, 13))
    n_train = int(rng.choice([2, 3, 5, 20, 100, 400]))
    offset = rng.uniform(-50, 1000, n_features) if rng.random() < 0.5 else np.zeros(n_features)
    spread = rng.uniform(0.05, 20, n_features)
    train = rng.normal(size=(n_train, n_features)) * spread + offset
    if n_features > 1 and rng.random() < 0.3:
        train[:, int(rng.integers(n_features))] = offset[0]  # a stuck sensor: zero variance
    gamma: str | float = str(rng.choice(["scale", "auto", "float"]))
    if gamma == "float":
        gamma = float(10 ** rng.uniform(-3, 1))
    svm = OneClassSVM(
        kernel=kernel,
        nu=float(rng.uniform(0.01, 0.95)),
        gamma=gamma,
        degree=int(rng.integers(1, 5)),
        coef0=float(rng.uniform(-1, 1)),
        max_iter=20_000,  # unscaled linear problems can take seconds to converge; any fitted model will do
    )
    scaler = SCALERS[index % len(SCALERS)]
    estimator: Any = svm if scaler is None else make_pipeline(StandardScaler(**scaler), svm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # libsvm's convergence notes on odd random problems
        estimator.fit(train)
    # Rows around and beyond the training data, so both flags occur.
    rows = train.mean(axis=0) + rng.normal(size=(int(rng.integers(1, 25)), n_features)) * 2 * spread
    return Case(estimator, rows, f"{kernel} #{index} scaler={scaler} gamma={gamma} svm={svm}")


def check_against_sklearn(case: Case) -> tuple[int, int]:
    """Assert the fast path's results equal scikit-learn's; returns (rows, rows left to the estimator
    although scikit-learn's decision is clearly away from the threshold)."""
    model = compile_model(case.estimator)
    assert model is not None, case.description
    result = score(model, case.rows)
    expected = case.estimator.decision_function(case.rows)
    expected_flags = case.estimator.predict(case.rows) == -1
    difference = np.abs(result.scores - expected)
    # The rounding bound holds; the values agree to 1e-9 (relative beyond magnitude 1, where a float64's
    # own spacing is already coarser).
    assert (difference <= result.error_bound).all(), (case.description, difference, result.error_bound)
    assert (difference <= 1e-9 * np.maximum(1.0, np.abs(expected))).all(), (case.description, difference)
    settled = ~result.borderline
    np.testing.assert_array_equal(result.flags[settled], expected_flags[settled], err_msg=case.description)
    # Borderline means exactly: not finite, or within the bound (or FLAG_MARGIN) of the threshold.
    np.testing.assert_array_equal(
        result.borderline, ~(np.abs(result.scores) > np.maximum(result.error_bound, FLAG_MARGIN))
    )
    assert result.scores.dtype == np.float64 and result.flags.dtype == bool and result.borderline.dtype == bool
    return len(expected), int((result.borderline & (np.abs(expected) > 1e-6)).sum())


@pytest.mark.parametrize("kernel", KERNELS)
def test_equals_sklearn_on_random_models(kernel: Kernel) -> None:
    rng = np.random.default_rng(sorted(KERNELS).index(kernel))
    n_support, rows, needless_fallbacks = [], 0, 0
    for index in range(150):
        case = random_case(rng, kernel, index)
        svm = case.estimator[-1] if isinstance(case.estimator, Pipeline) else case.estimator
        n_support.append(len(svm.support_vectors_))
        case_rows, case_needless = check_against_sklearn(case)
        rows, needless_fallbacks = rows + case_rows, needless_fallbacks + case_needless
    assert min(n_support) == 1 and max(n_support) >= 150, n_support  # the range the test claims to cover
    assert rows > 500
    # Random models include degenerate ones (a saturated sigmoid, a linear kernel on a tiny training
    # set) whose decisions are exactly 0: those rows are rightly borderline. No other row is.
    assert needless_fallbacks == 0


def test_the_platform_model_family_never_needs_the_fallback() -> None:
    """StandardScaler + RBF OneClassSVM as the trainer fits it: every row settled, errors far below 1e-9."""
    rng = np.random.default_rng(7)
    for _ in range(30):
        train = rng.normal(size=(288, 5)) * rng.uniform(0.1, 30, 5) + rng.uniform(-20, 1013, 5)
        estimator = make_pipeline(StandardScaler(), OneClassSVM(nu=0.01, gamma=0.1)).fit(train)
        rows = train[:12] + rng.normal(size=(12, 5)) * train.std(axis=0) * rng.uniform(0, 4)
        model = compile_model(estimator)
        assert model is not None
        result = score(model, rows)
        assert not result.borderline.any()
        assert (result.error_bound < 1e-11).all()
        np.testing.assert_array_equal(result.flags, estimator.predict(rows) == -1)
        np.testing.assert_allclose(result.scores, estimator.decision_function(rows), rtol=0, atol=1e-12)


def fitted(kernel: Kernel = "rbf", n_features: int = 3, seed: int = 0, **svm: Any) -> Any:
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(60, n_features)) * 3 + 10
    return make_pipeline(StandardScaler(), OneClassSVM(kernel=kernel, nu=0.2, gamma=0.3, **svm)).fit(train)


def test_one_row_and_zero_rows() -> None:
    estimator = fitted()
    model = compile_model(estimator)
    assert model is not None
    one = np.array([[10.0, 11.0, 9.0]])
    result = score(model, one)
    assert result.scores.shape == (1,)
    np.testing.assert_allclose(result.scores, estimator.decision_function(one), rtol=0, atol=1e-12)
    assert result.flags[0] == (estimator.predict(one)[0] == -1)
    empty = score(model, np.empty((0, 3)))
    assert empty.scores.shape == empty.flags.shape == empty.borderline.shape == empty.error_bound.shape == (0,)
    assert empty.scores.dtype == np.float64 and empty.flags.dtype == bool
    np.testing.assert_array_equal(decision_function(model, one), result.scores)


def test_score_many_equals_score_per_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mixed kernels, feature and row counts, and tiny batch limits so padding and batching both happen."""
    rng = np.random.default_rng(11)
    models: list[CompiledModel] = []
    matrices: list[np.ndarray] = []
    for index in range(80):
        kernel = KERNELS[index % len(KERNELS)]
        n_features = 1 + index % 3
        model = compile_model(fitted(kernel, n_features, seed=index, degree=1 + index % 4))
        assert model is not None
        models.append(model)
        matrices.append(rng.normal(size=(int(rng.integers(0, 15)), n_features)) * 4 + 10)
    expected = [score(m, x) for m, x in zip(models, matrices, strict=True)]
    for pairs, cells in ((4096, 1 << 19), (3, 200), (1, 1)):
        monkeypatch.setattr(fastpath, "BATCH_PAIRS", pairs)
        monkeypatch.setattr(fastpath, "BATCH_ELEMENTS", cells)
        results = score_many(models, matrices)
        assert len(results) == len(models)
        for got, want in zip(results, expected, strict=True):
            np.testing.assert_array_equal(got.scores, want.scores)
            np.testing.assert_array_equal(got.flags, want.flags)
            np.testing.assert_array_equal(got.borderline, want.borderline)
    assert score_many([], []) == []


def test_a_model_without_support_vectors_decides_by_its_intercept() -> None:
    """Not something libsvm fits, but a valid CompiledModel (and a pack may hold one): 0.0 + intercept."""
    rows = np.ones((3, 2))
    for intercept, anomaly in ((0.5, False), (-0.5, True)):
        model = CompiledModel("rbf", 0.1, 0.0, 3, None, None, np.empty((0, 2)), np.empty(0), intercept)
        result = score_many([model, model], [rows, rows[:1]])
        np.testing.assert_array_equal(result[0].scores, [intercept] * 3)
        assert (result[0].flags == anomaly).all() and not result[0].borderline.any()
        assert result[1].scores.shape == (1,)


def test_a_decision_of_exactly_zero_is_borderline_and_an_anomaly() -> None:
    """A degree-0 polynomial kernel is constant: libsvm's decision is exactly 0, so predict says -1."""
    estimator = fitted("poly", degree=0)
    rows = np.random.default_rng(1).normal(size=(5, 3))
    assert (estimator.decision_function(rows) == 0).all() and (estimator.predict(rows) == -1).all()
    model = compile_model(estimator)
    assert model is not None
    result = score(model, rows)
    assert result.borderline.all() and result.flags.all() and (result.scores == 0).all()


def test_non_finite_rows_are_borderline() -> None:
    model = compile_model(fitted())
    assert model is not None
    result = score(model, np.array([[np.nan, 1.0, 2.0], [10.0, 10.0, 10.0], [np.inf, 0.0, 0.0]]))
    # The infinite row gets a finite decision (its RBF kernel values are exactly 0) and is borderline anyway.
    assert np.isfinite(result.scores[2])
    np.testing.assert_array_equal(result.borderline, [True, False, True])


def unsupported() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    train = rng.normal(size=(40, 3))

    class MySVM(OneClassSVM):  # type: ignore[misc]
        pass

    class MyForest(IsolationForest):  # type: ignore[misc]
        pass

    return {
        "isolation forest subclass": MyForest(n_estimators=5, random_state=0).fit(train),
        "min-max scaler": make_pipeline(MinMaxScaler(), OneClassSVM()).fit(train),
        "two scalers": make_pipeline(StandardScaler(), StandardScaler(), OneClassSVM()).fit(train),
        "callable kernel": OneClassSVM(kernel=lambda a, b: a @ b.T).fit(train),
        "precomputed kernel": OneClassSVM(kernel="precomputed").fit(train @ train.T),
        "sparse fit": OneClassSVM().fit(sp.csr_matrix(train)),
        "unfitted": OneClassSVM(),
        "subclass": MySVM().fit(train),
        "sgd one-class svm": SGDOneClassSVM(random_state=0).fit(train),
        "svm then scaler": Pipeline([("svm", OneClassSVM().fit(train)), ("scaler", StandardScaler().fit(train))]),
        "not an estimator": "rbf",
    }


@pytest.mark.parametrize("name", sorted(unsupported()))
def test_unsupported_estimators_compile_to_none(name: str) -> None:
    assert compile_model(unsupported()[name]) is None


def test_passthrough_steps_are_skipped_like_the_pipeline_does() -> None:
    rng = np.random.default_rng(2)
    train = rng.normal(size=(50, 2)) * 5 + 3
    estimator = Pipeline([("skip", "passthrough"), ("scale", StandardScaler()), ("svm", OneClassSVM(nu=0.3))])
    estimator.fit(train)
    check_against_sklearn(Case(estimator, train[:10] * 1.5, "passthrough"))


def test_compiled_arrays_are_read_only_copies() -> None:
    estimator = fitted()
    model = compile_model(estimator)
    assert model is not None
    arrays = [model.support_vectors, model.dual_coef, model.mean, model.scale]
    for array in arrays:
        assert array is not None and not array.flags.writeable
    assert not np.shares_memory(model.support_vectors, estimator[-1].support_vectors_)


def test_bad_input_is_rejected() -> None:
    model = compile_model(fitted())
    assert model is not None
    with pytest.raises(ValueError, match=r"pair 0: expected a matrix of shape \(rows, 3\)"):
        score(model, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="models but"):
        score_many([model], [])
    with pytest.raises(ValueError, match="kernel"):
        CompiledModel("rbf2", 0.1, 0.0, 3, None, None, np.zeros((1, 2)), np.ones(1), 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dual_coef"):
        CompiledModel("rbf", 0.1, 0.0, 3, None, None, np.zeros((2, 2)), np.ones(1), 0.0)
    with pytest.raises(ValueError, match="mean"):
        CompiledModel("rbf", 0.1, 0.0, 3, np.zeros(3), None, np.zeros((2, 2)), np.ones(2), 0.0)
    with pytest.raises(ValueError, match="gamma"):
        CompiledModel("rbf", float("nan"), 0.0, 3, None, None, np.zeros((2, 2)), np.ones(2), 0.0)


def test_importing_the_fast_path_does_not_import_sklearn() -> None:
    code = "import sys, workloads.common.fastpath; print('sklearn' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
