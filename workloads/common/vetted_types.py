"""The skops types the supported model families need beyond skops' own defaults, each with why it is safe.

skops refuses any type outside its defaults (plain scikit-learn estimators, numpy, scipy) unless the
loader names it; the families this platform trains (``workloads.training.families``) need a handful of
scikit-learn's Cython classes, found with ``skops.io.get_untrusted_types`` on each family fitted with every
algorithm and metric its estimator accepts for dense input. Every one of them is rebuilt by skops from its
``__reduce__`` output: the class itself (a fixed, importable scikit-learn type), constructor arguments that
are numbers or arrays, and a state of numbers and arrays given to ``__setstate__``. No function, module or
attribute named by the file is called or imported, which is what makes skops safe where pickle is not.

What trust does *not* cover: these classes index their arrays without bounds checks (Cython), so a forged
file could make scoring read out of bounds or crash its task. The model's checksum (on the same blob) and the
``models`` container's access control are what keep forged files out, as for every other model.

Users never type these names for the supported families; anything else is refused with a message naming
the types and the ``--trusted-type`` option that admits them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

_DISTANCE: Final = (
    "a distance metric of a neighbours tree (sklearn/metrics/_dist_metrics.pyx.tp): state is the exponent p and "
    "two float arrays (__setstate__ assigns them to typed memoryviews, which refuse any other dtype)"
)

VETTED_TYPES: Final[dict[str, str]] = {
    "sklearn.tree._tree.Tree": (
        "each tree of an IsolationForest (sklearn/tree/_tree.pyx): built from integer counts, its __setstate__ "
        "takes the node and value arrays and checks their dtype and shape (_check_node_ndarray, _check_value_ndarray)"
    ),
    "sklearn.neighbors._kd_tree.KDTree": (
        "LocalOutlierFactor's neighbour index with algorithm kd_tree/auto (sklearn/neighbors/_binary_tree.pxi.tp): "
        "__reduce__ is newObj(KDTree) plus a tuple of arrays, integers and its distance metric, itself audited"
    ),
    "sklearn.neighbors._ball_tree.BallTree": (
        "LocalOutlierFactor's neighbour index with algorithm ball_tree (same BinaryTree code as KDTree)"
    ),
    "sklearn.metrics._dist_metrics.EuclideanDistance64": f"LocalOutlierFactor's default metric: {_DISTANCE}",
    "sklearn.metrics._dist_metrics.ManhattanDistance64": f"metric manhattan or minkowski p=1: {_DISTANCE}",
    "sklearn.metrics._dist_metrics.ChebyshevDistance64": f"metric chebyshev: {_DISTANCE}",
    "sklearn.metrics._dist_metrics.MinkowskiDistance64": f"metric minkowski with p other than 1 or 2: {_DISTANCE}",
}


def trusted_for_loading(extra: Iterable[str] = ()) -> list[str]:
    """What ``skops.io.loads(trusted=...)`` gets: the vetted types and the operator's own, sorted, no repeats
    (skops adds its defaults to this list)."""
    return sorted({*VETTED_TYPES, *extra})
