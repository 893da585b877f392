"""The compiled fast path for IsolationForest: every tree as flat arrays, many pairs traversed at once.

scikit-learn scores a forest tree by tree, each with its own ``apply`` call and input checks (about
5 ms for 100 trees on a dozen rows); the traversal itself is a few comparisons per tree and row. So a
fitted forest is *compiled* once into node arrays (:class:`ForestModel`) and many pairs are scored
together (:func:`score_forests`): all (tree, row) items of a batch walk their trees in lock step, one
whole-array step per tree level.

Results equal scikit-learn's bit for bit, because the same operations run in the same order
(``sklearn/ensemble/_iforest.py``, scikit-learn 1.9):

- ``score_samples`` validates X with ``dtype=np.float32``: rows (after the StandardScaler, in float64)
  are rounded to float32 once, as ``astype`` does.
- ``_parallel_compute_tree_depths`` indexes X with ``estimators_features_[t]`` only when
  ``_max_features != X.shape[1]`` (``_compute_chunked_score_samples``; ``_bagging.py``
  ``_parallel_build_estimators`` fits the trees on ``X[:, features]`` under the same condition), then
  ``tree.apply``: ``_tree.pyx`` ``_apply_dense`` goes left while ``X[i, feature] <= threshold``, a
  float32 value against a float64 threshold, which C compares exactly in double. Compiled nodes hold
  the original column (``features[feature]``), so no per-tree column subset is needed.
- Per tree it adds ``_decision_path_lengths[leaf] + _average_path_length_per_tree[leaf] - 1.0`` to
  ``depths`` (float64, starting at 0.0) in tree order; compiled leaves hold that value, computed by
  the same two roundings, and the kernel adds them one tree at a time (never numpy's pairwise sum).
- ``2 ** -(depths / denominator)`` with ``denominator = len(estimators_) * _average_path_length(
  [_max_samples])`` (1.0 in place of the quotient where it is 0), negated; ``decision_function`` is
  that minus ``offset_``, and ``predict`` flags ``decision < 0``.

What can still differ is the last bit of ``2 ** x`` (another libm or SIMD path on another machine)
and the order of the tree sum if the estimator is run under a threaded joblib backend; each row's
``error_bound`` covers both, and rows within ``max(FLAG_MARGIN, bound)`` of 0 are ``borderline``,
left to the estimator, as in the OneClassSVM path.

Tree layout: scikit-learn's depth-first builder numbers a node's left child ``node + 1`` (its
subtree follows it) and the right child after that subtree; compiling checks this and stores only
the right child. Only numpy is imported here; the compile step reads the fitted estimator's
attributes and imports scikit-learn's own ``_average_path_length`` for the denominator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from workloads.common.scored import FLAG_MARGIN, Scored

MAX_TREE_NODES: Final = 1 << 22
"""Larger trees are not compiled (and not read from packs): node indices stay far inside int32."""

MAX_DEPTH: Final = 256
"""Deeper trees are refused; IsolationForest limits depth to ceil(log2(max_samples)) <= 64."""

MAX_FOREST_FEATURES: Final = 32767
"""Node features are stored as int16."""

BATCH_ITEMS: Final = 1 << 16
"""At most this many (tree x row) items are traversed together (unless one pair has more)."""

BATCH_NODES: Final = 1 << 17
"""At most this many nodes per batch (unless one pair has more): the batch's node table (14 bytes a
node, 1.8 MiB) then stays in cache, which the random lookups of the traversal need. Measured on the
2-core development VM (AMD EPYC), 2,000 distinct 100-tree forests of 4 features (15,600 nodes each),
12 rows a pair: 0.24 ms a pair with 2**14 nodes a batch, 0.13 with 2**16, 0.11 with 2**17 and 2**18,
0.14 with 2**19 (the table no longer fits)."""

_EPS: Final = float(np.finfo(np.float64).eps)
_SAFETY: Final = 2.0
_LN2: Final = math.log(2.0)


@dataclass(frozen=True, eq=False)
class ForestModel:
    """A fitted (StandardScaler +) IsolationForest as plain arrays; sklearn-free to store and to score.

    Trees are concatenated (``tree_nodes`` counts each tree's nodes). Per node: ``feature``, the input
    column it splits on, -1 at a leaf; ``right``, how many nodes after it its right child comes (the
    left child is the next node; position-independent, so trees concatenate without rewriting), 0 at
    a leaf; ``value``, the threshold (go left where the float32 row
    value is ``<=`` it) or, at a leaf, the path length scikit-learn adds. ``depth`` is the deepest
    leaf's depth over all trees (edges from the root): the number of traversal steps. ``eq=False``:
    arrays have no single truth value.

    The structure itself (children within their tree and pointing forward, one parent per node,
    depth) is checked by :func:`check_forests`, which :func:`compile_forest` applies per model and the
    pack reader to a whole pack at once; here only cheap shape checks.
    """

    n_features: int
    mean: np.ndarray | None
    scale: np.ndarray | None
    offset: float
    denominator: float
    tree_nodes: np.ndarray
    feature: np.ndarray
    right: np.ndarray
    value: np.ndarray
    depth: int

    def __post_init__(self) -> None:
        """Reject inconsistent shapes and parameters once, so a bad model fails loudly."""
        if isinstance(self.n_features, bool) or not isinstance(self.n_features, int):
            raise ValueError(f"n_features must be an int, got {self.n_features!r}")
        if not 1 <= self.n_features <= MAX_FOREST_FEATURES:
            raise ValueError(f"n_features must be 1 to {MAX_FOREST_FEATURES}, got {self.n_features}")
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or not 0 <= self.depth <= MAX_DEPTH:
            raise ValueError(f"depth must be an int from 0 to {MAX_DEPTH}, got {self.depth!r}")
        for name in ("offset", "denominator"):
            value = getattr(self, name)
            if not isinstance(value, float) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite float, got {value!r}")
        if self.denominator < 0:
            raise ValueError(f"denominator must be >= 0, got {self.denominator!r}")
        counts = self.tree_nodes
        if type(counts) is not np.ndarray or counts.dtype != np.int64 or counts.ndim != 1 or counts.shape[0] < 1:
            raise ValueError("tree_nodes must be a non-empty 1-d int64 array")
        n_nodes = int(counts.sum())
        for name, dtype in (("feature", np.int16), ("right", np.int32), ("value", np.float64)):
            array = getattr(self, name)
            if type(array) is not np.ndarray or array.dtype != dtype or array.shape != (n_nodes,):
                raise ValueError(f"{name} must be a {np.dtype(dtype)} array of shape ({n_nodes},)")
        for name in ("mean", "scale"):
            array = getattr(self, name)
            if array is not None and (
                type(array) is not np.ndarray or array.dtype != np.float64 or array.shape != (self.n_features,)
            ):
                raise ValueError(f"{name} must be None or a float64 array of shape ({self.n_features},)")

    @property
    def n_trees(self) -> int:
        return int(self.tree_nodes.shape[0])


def check_forests(
    tree_nodes: np.ndarray, feature: np.ndarray, right: np.ndarray, value: np.ndarray, tree_features: np.ndarray
) -> np.ndarray:
    """Each tree's depth; ValueError unless the concatenated trees are well-formed binary trees.

    One vectorised pass for any number of trees (a whole pack at once). ``tree_features`` is each
    tree's input width. Checked: node counts (1 to MAX_TREE_NODES, summing to the node arrays' length),
    finite values, leaf path lengths >= 0, features -1 (leaf) or a valid column, leaves with right
    offset 0, every internal node's right child at least two nodes after it (its left child, the next
    node, comes first) and inside its tree, every node but the root with exactly one parent, and
    depth at most MAX_DEPTH. Children pointing forward make cycles impossible, and one parent per node
    makes every node reachable from its root, so traversal ends at a leaf within ``depth`` steps.
    """
    n_trees, n_nodes = tree_nodes.shape[0], feature.shape[0]
    if ((tree_nodes < 1) | (tree_nodes > MAX_TREE_NODES)).any():
        raise ValueError(f"tree node counts must be 1 to {MAX_TREE_NODES}")
    if int(tree_nodes.sum()) != n_nodes or right.shape[0] != n_nodes or value.shape[0] != n_nodes:
        raise ValueError(f"node arrays must hold {int(tree_nodes.sum())} nodes, as the trees' counts say")
    if not n_trees:
        return np.empty(0, np.int64)
    if not np.isfinite(value).all():
        raise ValueError("thresholds and leaf path lengths must be finite")
    start = np.cumsum(tree_nodes) - tree_nodes
    tree_of = np.repeat(np.arange(n_trees), tree_nodes)
    local = np.arange(n_nodes) - start[tree_of]
    leaf = feature == -1
    if ((feature < -1) | (feature >= tree_features[tree_of])).any():
        raise ValueError("node features must be -1 (a leaf) or an input column")
    if (right[leaf] != 0).any() or (value[leaf] < 0).any():
        raise ValueError("leaves must have right offset 0 and a path length >= 0")
    internal = np.flatnonzero(~leaf)
    jump = right[internal].astype(np.int64)
    if ((jump < 2) | (local[internal] + jump >= tree_nodes[tree_of[internal]])).any():
        raise ValueError("right children must point forward, past the left child, within their tree")
    child = internal + jump
    parents = np.bincount(np.concatenate([internal + 1, child]), minlength=n_nodes)
    if (parents != (local != 0)).any():
        raise ValueError("every node but a tree's root must have exactly one parent")
    right_of = np.full(n_nodes, -1, np.int64)
    right_of[internal] = child
    depth = np.zeros(n_nodes, np.int64)
    frontier, level = start, 0
    while frontier.size:
        if level > MAX_DEPTH:
            raise ValueError(f"trees deeper than {MAX_DEPTH}")
        depth[frontier] = level
        inner = frontier[~leaf[frontier]]
        frontier, level = np.concatenate([inner + 1, right_of[inner]]), level + 1
    return np.maximum.reduceat(depth, start)


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def compile_forest(forest: Any, mean: np.ndarray | None, scale: np.ndarray | None) -> ForestModel | None:
    """The compiled form of a fitted ``IsolationForest`` (its exact type checked by the caller).

    ``mean`` / ``scale``: the preceding StandardScaler's, or None. None where the forest does not
    have the layout this kernel relies on (see the module docstring) or holds non-finite numbers.
    """
    try:
        from sklearn.ensemble._iforest import _average_path_length  # the denominator, computed as sklearn does
    except ImportError:
        return None
    try:
        trees = list(forest.estimators_)
        n_features = int(forest.n_features_in_)
        if not trees or n_features > MAX_FOREST_FEATURES:
            return None
        # _iforest.py _compute_chunked_score_samples: columns are subset only when _max_features differs.
        subsample = int(forest._max_features) != n_features
        parts = [
            _compile_tree(tree.tree_, features if subsample else None, path_lengths, average_lengths)
            for tree, features, path_lengths, average_lengths in zip(
                trees,
                forest.estimators_features_,
                forest._decision_path_lengths,
                forest._average_path_length_per_tree,
                strict=True,
            )
        ]
        if any(part is None for part in parts):
            return None
        tree_parts = [part for part in parts if part is not None]
        # _iforest.py _compute_score_samples: len(estimators_) * _average_path_length([_max_samples]).
        denominator = float(np.asarray(len(trees) * _average_path_length([forest._max_samples])).reshape(-1)[0])
        tree_nodes = np.array([len(part[0]) for part in tree_parts], dtype=np.int64)
        feature, right, value = (np.concatenate([part[k] for part in tree_parts]) for k in range(3))
        depths = check_forests(tree_nodes, feature, right, value, np.full(len(trees), n_features))
        return ForestModel(
            n_features=n_features,
            mean=mean,
            scale=scale,
            offset=float(forest.offset_),
            denominator=denominator,
            tree_nodes=_readonly(tree_nodes),
            feature=_readonly(feature),
            right=_readonly(right),
            value=_readonly(value),
            depth=int(depths.max()),
        )
    except (AttributeError, TypeError, ValueError, IndexError):
        return None  # not fitted, an unexpected layout, or non-finite numbers: leave it to the estimator


def _compile_tree(
    tree: Any, features: np.ndarray | None, path_lengths: np.ndarray, average_lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """One tree's (feature, right offset, value) arrays, or None if its left children are not ``node + 1``."""
    left = np.asarray(tree.children_left, dtype=np.int64)
    right = np.asarray(tree.children_right, dtype=np.int64)
    leaf = left == -1  # _tree.pyx _apply_dense: descend while left_child != _TREE_LEAF (-1)
    nodes = np.arange(left.shape[0])
    if (right[leaf] != -1).any() or (left[~leaf] != nodes[~leaf] + 1).any():
        return None
    split = np.asarray(tree.feature, dtype=np.int64)
    if features is not None:
        split = np.where(leaf, -1, np.asarray(features, dtype=np.int64)[np.where(leaf, 0, split)])
    # _iforest.py _parallel_compute_tree_depths adds path_lengths[leaf] + average_lengths[leaf] - 1.0:
    # an int64 + float64 sum, then - 1.0; the same two roundings here, once per leaf.
    leaf_value = (np.asarray(path_lengths) + np.asarray(average_lengths, dtype=np.float64)) - 1.0
    value = np.where(leaf, leaf_value, np.asarray(tree.threshold, dtype=np.float64))
    return (
        np.where(leaf, -1, split).astype(np.int16),
        np.where(leaf, 0, right - nodes).astype(np.int32),
        value.astype(np.float64),
    )


def score_forests(models: Sequence[ForestModel], matrices: Sequence[np.ndarray]) -> list[Scored]:
    """Score many (forest, rows) pairs at once; matrices are float64 (rows, model.n_features) arrays.

    Pairs are grouped by feature count, sorted by tree count (so padding stays small) and cut into
    batches of at most ``BATCH_ITEMS`` (tree x row) items and ``BATCH_NODES`` nodes; a padding tree is
    one leaf worth 0.0, and adding 0.0 changes no sum. Non-finite rows come back borderline.
    """
    results: list[Scored | None] = [None] * len(models)
    groups: dict[int, list[int]] = {}
    for index, model in enumerate(models):
        groups.setdefault(model.n_features, []).append(index)
    n_rows = [matrix.shape[0] for matrix in matrices]
    for members in groups.values():
        members.sort(key=lambda i: (models[i].n_trees, n_rows[i]))
        start = 0
        while start < len(members):
            stop, rows, nodes = start, 0, 0
            while stop < len(members):
                model = models[members[stop]]
                grown, more = rows + n_rows[members[stop]], nodes + model.feature.shape[0]
                if stop > start and (grown * model.n_trees > BATCH_ITEMS or more > BATCH_NODES):
                    break
                rows, nodes, stop = grown, more, stop + 1
            batch = members[start:stop]
            scored = _score_batch([models[i] for i in batch], [matrices[i] for i in batch])
            for index, result in zip(batch, scored, strict=True):
                results[index] = result
            start = stop
    done = [result for result in results if result is not None]
    if len(done) != len(models):  # cannot happen: every pair is in exactly one batch
        raise RuntimeError(f"{len(models) - len(done)} pair(s) not scored")
    return done


def _exclusive_cumsum(counts: np.ndarray) -> np.ndarray:
    return np.asarray(np.cumsum(counts) - counts)


def _score_batch(models: Sequence[ForestModel], matrices: Sequence[np.ndarray]) -> list[Scored]:
    """Score pairs of one feature count: every (tree, row) item walks its tree, one level per step.

    The batch's trees are concatenated behind one padding leaf worth 0.0 (node 0: the root of the
    missing trees of pairs with fewer trees). An item at a leaf stays there: its feature is -1, so it
    moves by ``feature >= 0`` (0) when its value compares ``<=`` and by its right offset (0) otherwise.
    """
    n_features = models[0].n_features
    n_rows = np.array([x.shape[0] for x in matrices], dtype=np.intp)
    row_pair = np.repeat(np.arange(len(models)), n_rows)
    rows = np.concatenate(matrices)
    x32, finite = _rows32(models, rows, row_pair)
    feature = np.concatenate([np.array([-1], np.int16), *(m.feature for m in models)])
    right = np.concatenate([np.array([0], np.int32), *(m.right for m in models)])
    value = np.concatenate([np.array([0.0]), *(m.value for m in models)])
    # Items laid out (tree, row): the sum below runs over trees, in order, on contiguous rows.
    cur = np.ascontiguousarray(_roots(models)[row_pair].T)
    base = (np.arange(rows.shape[0]) * n_features)[None, :]
    x_flat = x32.reshape(-1)  # a leaf's feature -1 reads a neighbour (or the last value): never used
    for _ in range(max(m.depth for m in models)):
        split = feature[cur]
        go_left = x_flat[base + split] <= value[cur]  # float32 against float64: exact, as in C
        cur += np.where(go_left, split >= 0, right[cur])
    if (feature[cur] >= 0).any():
        raise ValueError("a tree is deeper than its model's depth")
    values = value[cur]
    depths = np.zeros(rows.shape[0])
    for tree in values:  # tree order, one addition each: _iforest.py `depths += ...` per tree
        depths += tree
    return _finish(models, depths, row_pair, finite, n_rows)


def _roots(models: Sequence[ForestModel]) -> np.ndarray:
    """(pair, tree) -> the tree's root in the batch's node table; 0 (the padding leaf) past a pair's trees."""
    tree_nodes = np.concatenate([m.tree_nodes for m in models])
    n_trees = np.array([m.n_trees for m in models], dtype=np.intp)
    roots = np.zeros((len(models), int(n_trees.max())), dtype=np.intp)
    tree_pair = np.repeat(np.arange(len(models)), n_trees)
    position = np.arange(tree_pair.shape[0]) - np.repeat(_exclusive_cumsum(n_trees), n_trees)
    roots[tree_pair, position] = 1 + _exclusive_cumsum(tree_nodes)
    return roots


def _rows32(models: Sequence[ForestModel], rows: np.ndarray, row_pair: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows scaled as StandardScaler.transform does (``X -= mean_``, ``X /= scale_``), then as float32.

    A model without a scaler gets 0.0 / 1.0, which leave every value unchanged. Non-finite rows are
    zeroed (they are borderline whatever they score) so that no comparison sees NaN.
    """
    ones, zeros = np.ones(rows.shape[1]), np.zeros(rows.shape[1])
    means = np.stack([zeros if m.mean is None else m.mean for m in models])
    scales = np.stack([ones if m.scale is None else m.scale for m in models])
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        scaled = (rows - means[row_pair]) / scales[row_pair]
        finite = np.isfinite(scaled).all(axis=1)
        x32 = scaled.astype(np.float32)  # score_samples: validate_data(..., dtype=np.float32)
    x32[~finite] = 0.0
    return x32, finite


def _finish(
    models: Sequence[ForestModel], depths: np.ndarray, row_pair: np.ndarray, finite: np.ndarray, n_rows: np.ndarray
) -> list[Scored]:
    """From summed path lengths to decisions, flags and bounds, as ``_compute_score_samples`` does."""
    denominator = np.array([m.denominator for m in models])[row_pair]
    offset = np.array([m.offset for m in models])[row_pair]
    n_trees = np.array([m.n_trees for m in models], dtype=np.float64)[row_pair]
    ratio = np.divide(depths, denominator, out=np.ones_like(depths), where=denominator != 0)
    samples = -(2 ** (-ratio))
    decision = samples - offset
    # 2**x within 2 ulp on either side; the tree sum in another order (gamma_n of the sum, which is
    # the sum of |terms|: path lengths are >= 0) moves 2**-ratio by ln 2 times that relative change;
    # the quotient and the subtraction of offset_ round once more on either side.
    magnitude = np.abs(samples)
    bound = magnitude * (4 * _EPS + _LN2 * ratio * 2 * (n_trees + 1) * _EPS) + 2 * _EPS * np.abs(decision)
    bound *= _SAFETY
    with np.errstate(invalid="ignore"):
        borderline = ~(np.abs(decision) > np.maximum(bound, FLAG_MARGIN)) | ~finite
        flags = decision < 0  # _iforest.py predict: is_inlier[decision_func < 0] = -1
    ends = np.cumsum(n_rows)
    return [
        Scored(decision[a:b], flags[a:b], borderline[a:b], bound[a:b])
        for a, b in zip((ends - n_rows).tolist(), ends.tolist(), strict=True)
    ]
