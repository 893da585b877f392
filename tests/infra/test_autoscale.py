from __future__ import annotations

import pytest

from infra.autoscale import AutoscaleSpec, autoscale_formula
from tests.infra.batch_formula import evaluate

DEDICATED, SPOT = "$TargetDedicatedNodes", "$TargetLowPriorityNodes"


def nodes(spec: AutoscaleSpec, pending: list[float], percent: float = 100.0, target: str = DEDICATED) -> float:
    result = evaluate(autoscale_formula(spec), pending, percent)
    assert result["$NodeDeallocationOption"] == 1.0  # taskcompletion
    value = result[target]
    assert isinstance(value, float)
    return value


def test_idle_pool_returns_to_zero() -> None:
    assert nodes(AutoscaleSpec(max_nodes=10), [0.0] * 10) == 0


def test_idle_pool_returns_to_a_configured_minimum() -> None:
    assert nodes(AutoscaleSpec(min_nodes=2, max_nodes=10), [0.0] * 10) == 2


@pytest.mark.parametrize(
    ("pending", "slots", "expected"),
    [(1, 1, 1), (3, 1, 3), (1, 4, 1), (4, 4, 1), (5, 4, 2), (8, 4, 2), (9, 4, 3), (100, 4, 10), (1000, 1, 10)],
)
def test_grows_with_pending_tasks_divided_by_slots_rounded_up(pending: float, slots: int, expected: int) -> None:
    assert nodes(AutoscaleSpec(max_nodes=10, task_slots_per_node=slots), [pending] * 10) == expected


def test_fractional_average_rounds_up() -> None:
    # latest 0, average 4.5 over the look-back: 4.5 tasks at 2 slots need 3 nodes.
    assert nodes(AutoscaleSpec(max_nodes=10, task_slots_per_node=2), [0.0] + [5.0] * 9) == 3


def test_thin_sample_history_falls_back_to_the_latest_sample() -> None:
    spec = AutoscaleSpec(max_nodes=10)
    # With 30% of samples, the (stale) history is ignored: only the latest sample counts.
    assert nodes(spec, [2.0, 9.0, 9.0, 9.0], percent=30) == 2
    # With enough samples, the larger of latest and average keeps nodes for work just enqueued.
    assert nodes(spec, [2.0, 9.0, 9.0, 9.0], percent=100) == 8


def test_running_tasks_keep_their_nodes() -> None:
    # $PendingTasks counts active + running: 6 running tasks on 3 two-slot nodes keep 3 nodes.
    assert nodes(AutoscaleSpec(max_nodes=10, task_slots_per_node=2), [6.0] * 10) == 3


def test_spot_pools_target_low_priority_nodes_only() -> None:
    spec = AutoscaleSpec(max_nodes=5, spot=True)
    result = evaluate(autoscale_formula(spec), [3.0] * 10)
    assert (result[SPOT], result[DEDICATED]) == (3.0, 0.0)


def test_formula_text_for_several_configs() -> None:
    text = autoscale_formula(AutoscaleSpec(min_nodes=1, max_nodes=3, task_slots_per_node=4, lookback_minutes=15))
    assert "$PendingTasks.GetSamplePercent(TimeInterval_Minute * 15)" in text
    assert "$nodes = ($tasks > 0) + ($tasks > 4) + ($tasks > 8);" in text
    assert "$TargetDedicatedNodes = max(1, min(3, $nodes));" in text
    assert "$NodeDeallocationOption = taskcompletion;" in text
    assert "$ActiveTasks" not in text


def test_invalid_specs_and_oversized_formulas_are_rejected() -> None:
    with pytest.raises(ValueError, match="min_nodes"):
        AutoscaleSpec(min_nodes=3, max_nodes=2)
    with pytest.raises(ValueError, match="8 KiB"):
        autoscale_formula(AutoscaleSpec(max_nodes=2000, task_slots_per_node=100))
    assert len(autoscale_formula(AutoscaleSpec(max_nodes=300, task_slots_per_node=256)).encode()) <= 8192
