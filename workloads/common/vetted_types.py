"""The skops types the supported model families need beyond skops' own defaults, each with why it is safe.

skops refuses any type outside its defaults (plain scikit-learn estimators, numpy, scipy) unless the
loader names it; the families this platform trains (``workloads.training.families``) need a handful of
scikit-learn's Cython classes, found with ``skops.io.get_untrusted_types`` on each family fitted with each of
its algorithms and the Minkowski metrics (euclidean, manhattan, chebyshev, minkowski with any p). Other metrics
(canberra, braycurtis, haversine, ...) are left to ``--trusted-type``: the trainer refuses such a parameter
at once, naming the type. Every one of them is rebuilt by skops from its
``__reduce__`` output: the class itself (a fixed, importable scikit-learn type), constructor arguments that
are numbers or arrays, and a state of numbers and arrays given to ``__setstate__``. No function, module or
attribute named by the file is called or imported, which is what makes skops safe where pickle is not.

What loading alone does not cover: these classes index their arrays without bounds checks (Cython), so a
forged file could make scoring read out of bounds and crash its task (the checksum cannot help: whoever forges
the file computes it). So every loaded model's vetted objects are checked by :func:`check_structures` before it
scores: the structure scikit-learn's own fitting always gives, refused (``corrupt_model``) otherwise.

Users never type these names for the supported families; anything else is refused with a message naming
the types and the ``--trusted-type`` option that admits them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import numpy as np

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


def check_structures(estimator: object) -> None:
    """ValueError unless every vetted Cython object inside ``estimator`` is internally consistent.

    skops rebuilds these classes from arrays (the reason they are safe to *load*), but their Cython code then
    indexes those arrays without bounds checks: a forged tree whose child points past its nodes, or a KD-tree
    whose index array points past its data, would read out of bounds when the model scores (a crash, or
    garbage). So every loaded model is checked here, once, before anything scores with it: the structure
    scikit-learn's own fitting always produces, and nothing more. Walks the estimator's attributes (lists,
    tuples, dicts and scikit-learn objects), so a pipeline or an ensemble is checked in full.
    """
    from sklearn.neighbors._ball_tree import BallTree
    from sklearn.neighbors._kd_tree import KDTree
    from sklearn.tree._tree import Tree

    seen: set[int] = set()
    stack: list[object] = [estimator]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, Tree):
            _check_tree(item)
        elif isinstance(item, KDTree | BallTree):
            _check_binary_tree(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif type(item).__module__.startswith("sklearn.") and hasattr(item, "__dict__"):
            stack.extend(vars(item).values())


def _check_tree(tree: Any) -> None:
    """A decision tree as scikit-learn's builders make it: children after their parent and inside the tree,
    both or neither (-1 at a leaf), and a feature of the input at every split (sklearn/tree/_tree.pyx apply)."""
    count = int(tree.node_count)
    left, right, feature = tree.children_left, tree.children_right, tree.feature
    if not (len(left) == len(right) == len(feature) == count == tree.value.shape[0]) or count < 1:
        raise ValueError(f"a tree's node arrays disagree on its {count} node(s)")
    leaf = left == -1
    if not np.array_equal(leaf, right == -1):
        raise ValueError("a tree node has one child")
    index = np.arange(count)
    split = ~leaf
    inside = (
        (left[split] > index[split]) & (right[split] > index[split]) & (left[split] < count) & (right[split] < count)
    )
    if not inside.all():
        raise ValueError("a tree node's child is not after it inside the tree")
    if ((feature[split] < 0) | (feature[split] >= int(tree.n_features))).any():
        raise ValueError(f"a tree splits on a feature outside its {int(tree.n_features)} input(s)")


def _check_binary_tree(tree: Any) -> None:
    """A KD-tree or ball tree as scikit-learn builds it (sklearn/neighbors/_binary_tree.pxi.tp): the index array
    a permutation of the data's rows, 2**levels - 1 nodes, each node's row range inside the data, every inner
    node's children (2i+1, 2i+2) inside the tree, and a distance metric whose arrays fit the features."""
    data, idx_array, node_data, node_bounds, _, n_levels, n_nodes, *_, metric, sample_weight = tree.__getstate__()
    if data.ndim != 2 or idx_array.shape != (data.shape[0],):
        raise ValueError("a neighbours tree's index does not cover its data")
    if not np.array_equal(np.sort(idx_array), np.arange(data.shape[0])):
        raise ValueError("a neighbours tree's index is not a permutation of its rows")
    if n_nodes != 2**n_levels - 1 or node_data.shape != (n_nodes,) or node_bounds.shape[1:] != (n_nodes, data.shape[1]):
        raise ValueError("a neighbours tree's node arrays disagree on its node count")
    start, end = node_data["idx_start"], node_data["idx_end"]
    if ((start < 0) | (start > end) | (end > data.shape[0])).any():
        raise ValueError("a neighbours tree's node points outside its data")
    inner = np.flatnonzero(node_data["is_leaf"] == 0)
    if (2 * inner + 2 >= n_nodes).any():
        raise ValueError("a neighbours tree's inner node has no children inside the tree")
    if sample_weight is not None and np.shape(sample_weight) != (data.shape[0],):
        raise ValueError("a neighbours tree's sample weights do not cover its data")
    _, vec, _ = metric.__getstate__()  # (p, vec, mat); only Minkowski reads vec, one weight per feature
    if type(metric).__name__ == "MinkowskiDistance64" and np.size(vec) not in (0, data.shape[1]):
        raise ValueError("a neighbours tree's metric weights do not fit its features")
