"""Scoring one pair's windows with its model: pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from workloads.common.modelstore import ModelError
from workloads.common.pairs import Pair


def feature_matrix(rows: pd.DataFrame, features: Sequence[str], estimator: Any) -> tuple[np.ndarray, np.ndarray]:
    """The model's input rows and a mask of the rows that were usable.

    Raises ModelError when the model and the data disagree on the features: the pair cannot be scored
    at all. Rows with non-finite values are masked out so one bad window does not cost the hour.
    """
    missing = [f for f in features if f not in rows.columns]
    if missing:
        raise ModelError("bad_features", f"aggregates lack the model's feature(s) {missing}")
    expected = getattr(estimator, "n_features_in_", len(features))
    if expected != len(features):
        raise ModelError(
            "bad_features",
            f"model expects {expected} features but its metadata lists {len(features)}: {list(features)}",
        )
    matrix = rows[list(features)].to_numpy(dtype="float64", na_value=np.nan)
    finite = np.isfinite(matrix).all(axis=1)
    return matrix[finite], finite


def score_rows(estimator: Any, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Anomaly score (lower is more anomalous) and flag, exactly as the estimator itself computes them.

    ``predict`` == -1 is scikit-learn's outlier convention (OneClassSVM, IsolationForest,
    LocalOutlierFactor(novelty=True), EllipticEnvelope); the score is ``decision_function`` where the
    estimator has one, else ``score_samples``, else the prediction itself.
    """
    flags = np.asarray(estimator.predict(matrix)) == -1
    for method in ("decision_function", "score_samples"):
        if hasattr(estimator, method):
            return np.asarray(getattr(estimator, method)(matrix), dtype="float64"), flags
    return np.where(flags, -1.0, 1.0), flags


PREDICTION_SCHEMA = pa.schema(
    [
        ("device_id", pa.string()),
        ("sensor", pa.string()),
        ("window_end", pa.timestamp("us", tz="UTC")),
        ("score", pa.float64()),
        ("is_anomaly", pa.bool_()),
        ("model_sha256", pa.string()),
    ]
)


def predictions_table(
    pair: Pair, window_ends: pd.Series, finite: np.ndarray, scores: np.ndarray, flags: np.ndarray, sha: str
) -> pa.Table:
    """The pair's predictions, built as Arrow columns directly: a pandas frame per pair costs more
    than the model does."""
    n = len(scores)
    return pa.Table.from_arrays(
        [
            pa.array([pair.device_id] * n, pa.string()),
            pa.array([pair.sensor] * n, pa.string()),
            pa.array(window_ends.to_numpy()[finite]).cast(pa.timestamp("us", tz="UTC")),
            pa.array(scores, pa.float64()),
            pa.array(flags, pa.bool_()),
            pa.array([sha] * n, pa.string()),
        ],
        schema=PREDICTION_SCHEMA,
    )
