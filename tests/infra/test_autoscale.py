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


# --- Spot with a dedicated fallback (dedicatedFallbackNodes) ----------------------------------------------------

FALLBACK = AutoscaleSpec(max_nodes=10, task_slots_per_node=2, spot=True, dedicated_fallback_nodes=3)


def targets(spec: AutoscaleSpec, pending: list[float], **pool: float) -> tuple[float, float]:
    """(Spot target, dedicated target) for ``pending`` tasks over the look-back and the pool's Spot nodes."""
    result = evaluate(autoscale_formula(spec), pending, **pool)
    spot, dedicated = result[SPOT], result[DEDICATED]
    assert isinstance(spot, float) and isinstance(dedicated, float)
    return spot, dedicated


def test_spot_without_a_fallback_never_asks_for_dedicated_nodes() -> None:
    # The old behaviour, kept when dedicatedFallbackNodes is 0: Spot quota 0 means no node at all.
    spec = AutoscaleSpec(max_nodes=10, task_slots_per_node=2, spot=True)
    assert targets(spec, [8.0] * 10, spot_nodes=0) == (4, 0)


def test_healthy_spot_pool_takes_no_dedicated_nodes() -> None:
    assert targets(FALLBACK, [8.0] * 10, spot_nodes=4) == (4, 0)


def test_work_just_submitted_waits_for_spot_first() -> None:
    # Tasks arrived within the look-back (older samples 0): Spot allocation gets its chance, no dedicated yet.
    assert targets(FALLBACK, [8.0, 8.0, 8.0] + [0.0] * 7, spot_nodes=0) == (4, 0)


def test_spot_never_allocated_falls_back_to_dedicated_within_the_cap() -> None:
    # Spot quota 0 (or no capacity): tasks waited the whole look-back with no Spot node; 4 needed, 3 allowed.
    assert targets(FALLBACK, [8.0] * 10, spot_nodes=0) == (4, 3)
    # Fewer missing than the cap: only those.
    assert targets(FALLBACK, [8.0] * 10, spot_nodes=3) == (4, 1)


def test_preempted_spot_nodes_are_replaced_by_dedicated_ones() -> None:
    # 4 Spot nodes in the pool, 2 of them preempted: 2 dedicated nodes stand in.
    assert targets(FALLBACK, [8.0] * 10, spot_nodes=4, preempted=2) == (4, 2)


def test_dedicated_fallback_is_released_once_nothing_is_pending() -> None:
    # The latest sample is 0: the dedicated target drops at once (taskcompletion lets running tasks finish), while
    # the Spot target follows the look-back average like any pool.
    assert targets(FALLBACK, [0.0] + [8.0] * 9, spot_nodes=0) == (4, 0)
    assert targets(FALLBACK, [0.0] * 10, spot_nodes=0) == (0, 0)


def test_thin_history_never_triggers_the_fallback() -> None:
    result = evaluate(autoscale_formula(FALLBACK), [8.0] * 3, percent=30)
    assert result[DEDICATED] == 0.0


def test_fallback_is_for_spot_pools_only_and_bounded_by_max_nodes() -> None:
    with pytest.raises(ValueError, match="Spot pool"):
        AutoscaleSpec(max_nodes=4, dedicated_fallback_nodes=1)
    with pytest.raises(ValueError, match="dedicated_fallback_nodes"):
        AutoscaleSpec(max_nodes=4, spot=True, dedicated_fallback_nodes=5)
    big = AutoscaleSpec(max_nodes=300, task_slots_per_node=256, spot=True, dedicated_fallback_nodes=300)
    assert len(autoscale_formula(big).encode()) <= 8192
