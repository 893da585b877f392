"""The vetted skops types: enough for every family, and never a way to load a structure that reads out of bounds."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import skops.io as sio
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor
from sklearn.tree._tree import Tree

from workloads.common.modelstore import ModelError, load_skops
from workloads.common.vetted_types import VETTED_TYPES, check_structures
from workloads.training.families import FAMILIES, ModelSpec

X = np.random.default_rng(0).normal(size=(120, 4))


def lofs() -> list[LocalOutlierFactor]:
    metrics = [("minkowski", {}), ("manhattan", {}), ("chebyshev", {}), ("minkowski", {"p": 3})]
    return [
        LocalOutlierFactor(novelty=True, algorithm=algorithm, metric=metric, metric_params=None, **extra).fit(X)
        for algorithm in ("kd_tree", "ball_tree", "brute")
        for metric, extra in metrics
    ]


def test_every_family_needs_only_vetted_types_and_passes_the_checks() -> None:
    models = [ModelSpec(family=name).factory()().fit(X) for name in FAMILIES] + lofs()
    for model in models:
        data = sio.dumps(model)
        assert set(sio.get_untrusted_types(data=data)) <= set(VETTED_TYPES), type(model)
        check_structures(model)
        loaded = load_skops(data)  # no type named by anyone
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert all(reason.strip() for reason in VETTED_TYPES.values())


def forged_forest(node: str, value: int) -> IsolationForest:
    """A fitted forest whose first tree's root has ``node`` (a field of sklearn's node struct) set to ``value``."""
    forest = IsolationForest(n_estimators=3, random_state=0).fit(X)
    tree = forest.estimators_[0].tree_
    state = copy.deepcopy(tree.__getstate__())
    state["nodes"][node][0] = value
    forged = Tree(tree.n_features, np.array([1], dtype=np.intp), tree.n_outputs)
    forged.__setstate__(state)
    forest.estimators_[0].tree_ = forged
    return forest


@pytest.mark.parametrize(
    ("node", "value", "message"),
    [
        ("right_child", 5000, "child is not after it inside the tree"),
        ("left_child", 0, "child is not after it"),  # a cycle
        ("left_child", -1, "one child"),
        ("feature", 9, "feature outside its 4 input"),
    ],
)
def test_a_forged_tree_is_refused_before_it_can_score(node: str, value: int, message: str) -> None:
    data = sio.dumps(forged_forest(node, value))
    with pytest.raises(ModelError, match=message) as refused:
        load_skops(data)  # scoring this forest would read out of bounds (a segfault, seen with right_child 5000)
    assert refused.value.reason == "corrupt_model"


@pytest.mark.parametrize(
    ("part", "message"),
    [
        ("index", "not a permutation"),
        ("range", "points outside its data"),
        ("inner", "no children inside the tree"),
    ],
)
def test_a_forged_neighbours_tree_is_refused(part: str, message: str) -> None:
    model = LocalOutlierFactor(novelty=True, algorithm="kd_tree").fit(X)
    state = list(copy.deepcopy(model._tree.__getstate__()))
    data, idx_array, node_data = state[0], state[1], state[2]
    if part == "index":
        idx_array[0] = 10**6
    elif part == "range":
        node_data["idx_end"][0] = len(data) + 5
    else:
        node_data["is_leaf"][len(node_data) - 1] = 0
    forged = type(model._tree).__new__(type(model._tree))
    forged.__setstate__(tuple(state))
    model._tree = forged
    with pytest.raises(ModelError, match=message) as refused:
        load_skops(sio.dumps(model))
    assert refused.value.reason == "corrupt_model"
