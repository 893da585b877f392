"""What the compiled fast path returns per pair, shared by every model family's kernel.

Its own module so that the families' kernels (``fastpath`` for OneClassSVM, ``forest_kernel`` for
IsolationForest) can share it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

FLAG_MARGIN: Final = 1e-9
"""Rows with ``|decision| <= max(FLAG_MARGIN, error bound)`` are borderline: left to the estimator."""


@dataclass(frozen=True, eq=False)
class Scored:
    """One pair's results, row for row.

    ``scores``: the decision function (lower is more anomalous); ``flags``: True where scikit-learn's
    ``predict`` is -1 (an anomaly); ``borderline``: True where this path cannot vouch for the flag
    (decision within the rounding bound of the threshold, or a row or decision not finite): score
    those rows with the estimator itself. ``error_bound``: a worst-case bound on
    ``|scores - scikit-learn's decision|``, row for row.
    """

    scores: np.ndarray
    flags: np.ndarray
    borderline: np.ndarray
    error_bound: np.ndarray


def empty() -> Scored:
    """The result for a pair without rows."""
    return Scored(np.empty(0, np.float64), np.empty(0, bool), np.empty(0, bool), np.empty(0, np.float64))
