"""The compiled fast path: scikit-learn's OneClassSVM and IsolationForest (optionally after a StandardScaler) in numpy.

Calling a fitted pipeline costs about a millisecond per pair, almost all of it per-call validation;
the arithmetic of a small SVM is microseconds. So a supported model is *compiled* once into a few
arrays (:class:`CompiledModel`) and many pairs are scored together (:func:`score_many`): models are
grouped by kernel and feature count, padded to a common shape and evaluated with whole-array numpy
operations, so the Python cost is per batch, not per pair.

Results equal scikit-learn's. libsvm's one-class decision (``svm.cpp``, ``predict_values``) is
``sum_i sv_coef[i] * K(x, SV_i) - rho`` summed in support-vector order, with ``intercept_ == -rho``,
and ``predict`` is ``sum > 0 ? +1 : -1`` from that same sum; the kernels are ``exp(-gamma*|x-y|^2)``
(the squared distance from the differences, not the ``|x|^2+|y|^2-2xy`` expansion), ``x.y``,
``powi(gamma*x.y + coef0, degree)`` (binary powering) and ``tanh(gamma*x.y + coef0)``. This module
repeats those operations in the same order, so only the order inside each dot product (BLAS) and the
last bit of ``exp``/``tanh`` can differ. Each score comes with a worst-case bound on that difference;
a row whose decision is within ``max(FLAG_MARGIN, bound)`` of the threshold (or not finite) is marked
``borderline`` and the caller scores it with the estimator itself. Every other row's flag is
scikit-learn's, and every score is within its bound (far below 1e-9 for the models this platform trains).

IsolationForest has its own kernel (:mod:`workloads.common.forest_kernel`, equal to scikit-learn's
decision bit for bit); :func:`compile_model` and :func:`score_many` are the one entry point for both
families (:data:`Compiled`), dispatching by type.

Only numpy is imported here: scikit-learn is imported inside :func:`compile_model` for type checks,
so a scorer that reads compiled model packs never pays for importing it. Nothing here starts threads;
the caller bounds BLAS/OpenMP threads for its process.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

import numpy as np

from workloads.common.forest_kernel import ForestModel, compile_forest, score_forests

# Re-exported (the explicit "as" form mypy's strict mode asks for): callers import them from here.
from workloads.common.scored import FLAG_MARGIN as FLAG_MARGIN  # noqa: PLC0414
from workloads.common.scored import Scored as Scored  # noqa: PLC0414
from workloads.common.scored import empty as _empty

Kernel = Literal["rbf", "linear", "poly", "sigmoid"]
KERNELS: Final[tuple[Kernel, ...]] = ("rbf", "linear", "poly", "sigmoid")

BATCH_PAIRS: Final = 4096
"""At most this many pairs are evaluated together (bounded memory, and latency per batch)."""

BATCH_ELEMENTS: Final = 1 << 19
"""At most this many (support vector x row) cells per batch: each work array is then at most 4 MiB."""

_EPS: Final = float(np.finfo(np.float64).eps)  # 2**-52: twice the unit round-off, a built-in margin
_SAFETY: Final = 2.0  # on top of the first-order bounds below


@dataclass(frozen=True, eq=False)
class CompiledModel:
    """A fitted (StandardScaler +) OneClassSVM as plain arrays; sklearn-free to store and to score.

    ``decision(x) = sum(dual_coef * K(support_vectors, (x - mean) / scale)) + intercept``, with the
    centring and scaling skipped where ``mean`` / ``scale`` is None (no scaler, or ``with_mean`` /
    ``with_std`` off). ``eq=False``: arrays have no single truth value; compare fields explicitly.
    """

    kernel: Kernel
    gamma: float
    coef0: float
    degree: int
    mean: np.ndarray | None
    scale: np.ndarray | None
    support_vectors: np.ndarray
    dual_coef: np.ndarray
    intercept: float

    def __post_init__(self) -> None:
        """Reject inconsistent shapes and parameters here, once, so a bad model fails loudly.

        Only cheap checks: packs hold thousands of models. The values themselves (finite, non-zero
        scale) are checked by :func:`check_values`, which ``compile_model`` applies per model and the
        pack reader applies to a whole pack at once.
        """
        if self.kernel not in KERNELS:
            raise ValueError(f"unsupported kernel {self.kernel!r}: expected one of {KERNELS}")
        if isinstance(self.degree, bool) or not isinstance(self.degree, int) or self.degree < 0:
            raise ValueError(f"degree must be a non-negative int, got {self.degree!r}")
        for name in ("gamma", "coef0", "intercept"):
            value = getattr(self, name)
            if not isinstance(value, float) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite float, got {value!r}")
        if self.gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma!r}")
        sv = self.support_vectors
        if type(sv) is not np.ndarray or sv.dtype != np.float64 or sv.ndim != 2 or sv.shape[1] < 1:
            raise ValueError("support_vectors must be a float64 array of shape (n_sv, n_features >= 1)")
        dual = self.dual_coef
        if type(dual) is not np.ndarray or dual.dtype != np.float64 or dual.shape != (sv.shape[0],):
            raise ValueError(f"dual_coef must be a float64 array of shape ({sv.shape[0]},)")
        for name in ("mean", "scale"):
            array = getattr(self, name)
            if array is not None and (
                type(array) is not np.ndarray or array.dtype != np.float64 or array.shape != (sv.shape[1],)
            ):
                raise ValueError(f"{name} must be None or a float64 array of shape ({sv.shape[1]},)")

    @property
    def n_features(self) -> int:
        return int(self.support_vectors.shape[1])

    @property
    def n_support(self) -> int:
        return int(self.support_vectors.shape[0])


def check_values(
    support_vectors: np.ndarray, dual_coef: np.ndarray, mean: np.ndarray | None, scale: np.ndarray | None
) -> None:
    """ValueError unless all values are finite and no scale is 0 (arrays of one model or of many).

    scikit-learn never fits such a model (it stores 1.0 for a constant feature's scale); a file
    that holds one is corrupt, and scoring it would give NaN or a silently wrong decision.
    """
    for name, array in (("support vectors", support_vectors), ("dual coefficients", dual_coef)):
        if not np.isfinite(array).all():
            raise ValueError(f"{name} must be finite")
    if mean is not None and not np.isfinite(mean).all():
        raise ValueError("mean must be finite")
    if scale is not None and not (np.isfinite(scale).all() and scale.all()):
        raise ValueError("scale must be finite and non-zero (StandardScaler stores 1.0 for constant features)")


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _is_passthrough(step: object) -> bool:
    return isinstance(step, str) and step == "passthrough"


Compiled = CompiledModel | ForestModel
"""A compiled model of either family; :func:`score_many` takes any mix."""


def compile_model(estimator: object) -> Compiled | None:
    """The compiled form of a fitted estimator, or None where the fast path cannot promise equal results.

    Accepted: a fitted dense ``OneClassSVM`` with kernel rbf, linear, poly or sigmoid, or a fitted
    ``IsolationForest``, alone or as the last step of a ``Pipeline`` whose only other step is one
    ``StandardScaler`` (``passthrough`` steps are skipped, as the pipeline itself does). Exact types
    are required: a subclass may override ``decision_function`` or ``transform``. Everything else
    returns None and the caller uses the estimator's own methods.
    """
    from sklearn.ensemble import IsolationForest
    from sklearn.svm import OneClassSVM

    split = _split_pipeline(estimator)
    if split is None:
        return None
    scaler, final = split
    if type(final) is OneClassSVM:
        return _compile_svm(final, scaler)
    if type(final) is IsolationForest:
        n_features = getattr(final, "n_features_in_", None)
        if not isinstance(n_features, int):
            return None  # not fitted
        scaling = _scaler_arrays(scaler, n_features)
        return None if scaling is None else compile_forest(final, *scaling)
    return None


def _split_pipeline(estimator: object) -> tuple[object | None, object] | None:
    """(StandardScaler or None, final step), or None for any other pipeline."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if not isinstance(estimator, Pipeline):
        return None, estimator
    if type(estimator) is not Pipeline:
        return None
    # Pipeline skips None and "passthrough" steps; so does this.
    steps = [step for _, step in estimator.steps if step is not None and not _is_passthrough(step)]
    if not steps:
        return None
    *transforms, final = steps
    if len(transforms) > 1 or any(type(step) is not StandardScaler for step in transforms):
        return None
    return (transforms[0] if transforms else None), final


def _scaler_arrays(scaler: Any, n_features: int) -> tuple[np.ndarray | None, np.ndarray | None] | None:
    """The scaler's (mean, scale) as applied by its ``transform``, or None if it does not fit the model.

    StandardScaler.transform subtracts ``mean_`` only with ``with_mean`` and divides by ``scale_`` only
    with ``with_std`` (``scale_`` already holds 1.0 for constant features); the same attributes decide here.
    """
    if scaler is None:
        return None, None
    if getattr(scaler, "n_features_in_", None) != n_features:
        return None
    mean = _readonly(np.array(scaler.mean_, dtype=np.float64)) if scaler.with_mean else None
    scale = _readonly(np.array(scaler.scale_, dtype=np.float64)) if scaler.with_std else None
    return mean, scale


def _compile_svm(svm: Any, scaler: object | None) -> CompiledModel | None:
    """A fitted OneClassSVM (exact type already checked) as a :class:`CompiledModel`."""
    if not isinstance(svm.kernel, str) or svm.kernel not in KERNELS:
        return None  # a callable or precomputed kernel
    support_vectors = getattr(svm, "support_vectors_", None)
    if not isinstance(support_vectors, np.ndarray) or getattr(svm, "_sparse", True):
        return None  # not fitted, or fitted on sparse data (libsvm's sparse kernels sum differently)
    scaling = _scaler_arrays(scaler, support_vectors.shape[1])
    if scaling is None:
        return None
    mean, scale = scaling
    try:
        model = CompiledModel(
            kernel=cast(Kernel, str(svm.kernel)),
            gamma=float(svm._gamma),
            coef0=float(svm.coef0),
            degree=int(svm.degree),
            mean=mean,
            scale=scale,
            support_vectors=_readonly(np.array(support_vectors, dtype=np.float64, order="C")),
            dual_coef=_readonly(np.array(svm.dual_coef_, dtype=np.float64).reshape(-1)),
            intercept=float(np.asarray(svm.intercept_).reshape(-1)[0]),
        )
        check_values(model.support_vectors, model.dual_coef, model.mean, model.scale)
    except (ValueError, TypeError, IndexError):
        return None  # e.g. non-finite coefficients: leave it to the estimator
    return model


def decision_function(model: Compiled, matrix: np.ndarray) -> np.ndarray:
    """The decision values of one pair's rows (scikit-learn's ``decision_function``)."""
    return score(model, matrix).scores


def score(model: Compiled, matrix: np.ndarray) -> Scored:
    """Score one pair: the same code as :func:`score_many`, so both give the same numbers."""
    return score_many([model], [matrix])[0]


def _as_matrix(index: int, model: Compiled, matrix: np.ndarray) -> np.ndarray:
    array = np.asarray(matrix, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != model.n_features:
        raise ValueError(
            f"pair {index}: expected a matrix of shape (rows, {model.n_features}), got shape {array.shape}"
        )
    return array


def score_many(models: Sequence[Compiled], matrices: Sequence[np.ndarray]) -> list[Scored]:
    """Score many (model, rows) pairs at once; one :class:`Scored` per pair, in input order.

    Forests go to :func:`~workloads.common.forest_kernel.score_forests`. SVM pairs are grouped by
    kernel and feature count, sorted by support-vector count within a group (so padding stays small)
    and cut into batches of at most ``BATCH_PAIRS`` pairs and ``BATCH_ELEMENTS`` cells; padding
    support vectors carry a zero coefficient and padding rows are dropped, so they do not change any
    result. Rows must be finite for a meaningful flag (non-finite ones come back borderline); drop
    them before scoring, as the scorer does. Matrices are taken as float64, like the scorer's
    aggregates (scikit-learn would scale float32 input in float32).
    """
    if len(models) != len(matrices):
        raise ValueError(f"{len(models)} models but {len(matrices)} matrices")
    arrays = [
        _as_matrix(index, model, matrix) for index, (model, matrix) in enumerate(zip(models, matrices, strict=True))
    ]
    forests = [i for i, model in enumerate(models) if isinstance(model, ForestModel)]
    if not forests:
        return _score_svms(cast(Sequence[CompiledModel], models), arrays)
    svms = [i for i, model in enumerate(models) if not isinstance(model, ForestModel)]
    results: list[Scored] = [_empty()] * len(models)  # every slot is replaced below
    for members, scored in (
        (forests, score_forests([cast(ForestModel, models[i]) for i in forests], [arrays[i] for i in forests])),
        (svms, _score_svms([cast(CompiledModel, models[i]) for i in svms], [arrays[i] for i in svms])),
    ):
        for index, result in zip(members, scored, strict=True):
            results[index] = result
    return results


def _score_svms(models: Sequence[CompiledModel], arrays: Sequence[np.ndarray]) -> list[Scored]:
    """The OneClassSVM pairs of :func:`score_many` (matrices already checked)."""
    results: list[Scored | None] = [None] * len(models)
    n_rows = [array.shape[0] for array in arrays]
    n_sv = [model.support_vectors.shape[0] for model in models]
    groups: dict[tuple[str, int], list[int]] = {}
    for index, model in enumerate(models):
        if n_rows[index]:
            groups.setdefault((model.kernel, arrays[index].shape[1]), []).append(index)
        else:
            results[index] = _empty()
    for members in groups.values():
        members.sort(key=lambda i: (n_sv[i], n_rows[i]))
        start = 0
        while start < len(members):
            stop, max_rows = start, 0
            while stop < len(members) and stop - start < BATCH_PAIRS:
                rows = max(max_rows, n_rows[members[stop]])
                if stop > start and (stop - start + 1) * rows * max(1, n_sv[members[stop]]) > BATCH_ELEMENTS:
                    break
                max_rows, stop = rows, stop + 1
            batch = members[start:stop]
            scored = _score_batch([models[i] for i in batch], [arrays[i] for i in batch])
            for index, result in zip(batch, scored, strict=True):
                results[index] = result
            start = stop
    return [result if result is not None else _empty() for result in results]


def _gamma(n: float) -> float:
    """Higham's gamma_n with eps (= 2u) in place of u: a bound on n accumulated roundings."""
    return n * _EPS


def _score_batch(models: Sequence[CompiledModel], matrices: Sequence[np.ndarray]) -> list[Scored]:
    """Score pairs that share kernel and feature count, all arrays padded to one shape.

    Work arrays are laid out (support vector, pair, row) so that the loop over support vectors, which
    must follow libsvm's order, runs over contiguous (pair, row) slabs.
    """
    kernel, n_features = models[0].kernel, models[0].n_features
    n_pairs = len(models)
    n_sv = np.array([m.support_vectors.shape[0] for m in models], dtype=np.intp)
    n_rows = np.array([x.shape[0] for x in matrices], dtype=np.intp)
    max_sv, max_rows = int(n_sv.max()), int(n_rows.max())

    # Rows: centre and scale exactly as StandardScaler.transform does ((x - mean_) / scale_). A model
    # without one gets 0.0 / 1.0, which leave every value bit for bit unchanged.
    rows = np.concatenate(matrices)
    row_pair = np.repeat(np.arange(n_pairs), n_rows)
    row_pos = np.arange(rows.shape[0]) - np.repeat(np.cumsum(n_rows) - n_rows, n_rows)
    zeros, ones = np.zeros(n_features), np.ones(n_features)
    means = np.stack([zeros if m.mean is None else m.mean for m in models])
    scales = np.stack([ones if m.scale is None else m.scale for m in models])
    rows -= means[row_pair]
    rows /= scales[row_pair]
    x = np.zeros((n_features, n_pairs, max_rows))
    x[:, row_pair, row_pos] = rows.T
    # scikit-learn refuses NaN and infinity; an infinite row can still yield a finite decision here
    # (an RBF kernel value of exactly 0), so such rows are borderline whatever their decision.
    finite = np.ones((n_pairs, max_rows), dtype=bool)
    finite[row_pair, row_pos] = np.isfinite(rows).all(axis=1)

    sv_pair = np.repeat(np.arange(n_pairs), n_sv)
    sv_pos = np.arange(int(n_sv.sum())) - np.repeat(np.cumsum(n_sv) - n_sv, n_sv)
    sv = np.zeros((n_features, max_sv, n_pairs))
    coef = np.zeros((max_sv, n_pairs))
    if max_sv:
        sv[:, sv_pos, sv_pair] = np.concatenate([m.support_vectors for m in models]).T
        coef[sv_pos, sv_pair] = np.concatenate([m.dual_coef for m in models])
    gamma = np.array([m.gamma for m in models])[None, :, None]
    intercept = np.array([m.intercept for m in models])[:, None]

    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        values, error = _kernel(kernel, n_features, x, sv, gamma, models)
        # Sum in support-vector order from 0.0, as libsvm does; padding adds exact zeros.
        decision = np.zeros((n_pairs, max_rows))
        magnitude = np.zeros((n_pairs, max_rows))
        term = np.empty((n_pairs, max_rows))
        for s in range(max_sv):
            np.multiply(coef[s][:, None], values[s], out=term)
            decision += term
            magnitude += np.abs(term, out=term)
        decision += intercept
        # Each side (libsvm's and ours) rounds max_sv products and max_sv + 1 sums of these terms.
        error *= np.abs(coef)[:, :, None]
        bound = error.sum(axis=0)
        bound += 2 * _gamma(max_sv + 2) * (magnitude + np.abs(intercept))
        bound *= _SAFETY
        borderline = ~(np.abs(decision) > np.maximum(bound, FLAG_MARGIN)) | ~finite  # also True where NaN
        flags = ~(decision > 0)

    if (n_rows == max_rows).all():  # the common case: iterate rows of the batch arrays as views
        return [Scored(*arrays) for arrays in zip(decision, flags, borderline, bound, strict=True)]
    return [
        Scored(decision[i, :n], flags[i, :n], borderline[i, :n], bound[i, :n]) for i, n in enumerate(n_rows.tolist())
    ]


def _kernel(
    kernel: Kernel, n_features: int, x: np.ndarray, sv: np.ndarray, gamma: np.ndarray, models: Sequence[CompiledModel]
) -> tuple[np.ndarray, np.ndarray]:
    """Kernel values (sv, pair, row) and a bound on |ours - libsvm's| for each of them.

    Dot products and squared distances are summed feature by feature; libsvm's BLAS ddot may sum in
    another order, so each may differ by gamma_n times the sum of the absolute products (bounded by
    Cauchy-Schwarz for dot products).
    """
    shape = (sv.shape[1], x.shape[1], x.shape[2])
    work = np.empty(shape)
    if kernel == "rbf":
        distance = np.zeros(shape)
        for j in range(n_features):
            np.subtract(x[j][None, :, :], sv[j][:, :, None], out=work)
            distance += np.square(work, out=work)
        np.multiply(distance, -gamma, out=work)
        values = np.exp(work, out=work)
        # Both sides: the squared distance within gamma_{n+2} relatively (differences, squares, sum),
        # exp's slope there is gamma * K, and each exp is within 2 ulp. e^delta <= 1 + 2 delta for
        # delta <= 1; beyond that gamma * distance > 1e13 and both sides underflow to exactly 0.
        delta = np.multiply(distance, 2 * _gamma(n_features + 2) * gamma, out=distance)
        error = delta * (1 + 2 * delta)
        error += 4 * _EPS
        error *= values
        return values, error

    dot = np.zeros(shape)
    for j in range(n_features):
        dot += np.multiply(x[j][None, :, :], sv[j][:, :, None], out=work)
    norms = np.sqrt((sv * sv).sum(axis=0))[:, :, None] * np.sqrt((x * x).sum(axis=0))[None, :, :]
    dot_error = np.multiply(norms, 2 * _gamma(n_features + 1), out=work)  # both sides
    if kernel == "linear":
        return dot, dot_error

    coef0 = np.array([m.coef0 for m in models])[None, :, None]
    inner = gamma * dot + coef0
    inner_error = gamma * dot_error + 2 * _gamma(2) * (gamma * norms + np.abs(coef0))
    if kernel == "sigmoid":
        values = np.tanh(inner)
        return values, inner_error + 4 * _EPS * np.abs(values)  # tanh' <= 1; each tanh within 2 ulp

    degree = np.array([m.degree for m in models], dtype=np.int64)[None, :, None]
    values = _powi(inner, degree)
    # |(u + d)^n - u^n| <= n (|u| + d)^(n-1) d, plus 2 log2(n) + 2 roundings of powi on each side.
    reach = np.abs(inner) + inner_error
    steps = 2 * np.ceil(np.log2(degree + 1)) + 2
    pow_below = np.power(reach, np.maximum(degree - 1, 0))
    return values, degree * pow_below * inner_error + 2 * _gamma(1) * steps * pow_below * reach


def _powi(base: np.ndarray, degree: np.ndarray) -> np.ndarray:
    """libsvm's ``powi``: binary powering, the same multiplications in the same order."""
    result = np.ones(np.broadcast_shapes(base.shape, degree.shape))
    power = base.copy()
    remaining = np.broadcast_to(degree, result.shape).copy()
    while (remaining > 0).any():
        odd = (remaining & 1) == 1
        result = np.where(odd, result * power, result)
        power = power * power
        remaining >>= 1
    return result
