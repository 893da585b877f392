"""The fault campaign in a short configuration (``make soak`` runs it in full): a few simulated hours whose
seed brings a killed trigger, a double trigger, an outage during a run, 503 bursts and late, misfiled and
replayed data, checked window by window against ground truth."""

from __future__ import annotations

import json

from tests.soak.campaign import ok, run


def test_a_short_fault_campaign_scores_every_window_exactly_once() -> None:
    verdict = run(hours=4, seed=48)
    assert ok(verdict), json.dumps(verdict, indent=2)
    assert verdict["windows_expected"] > 0
    assert {"killed_trigger", "double_trigger", "outage_during", "burst_503", "late_data", "misfiled_window"} <= set(
        verdict["faults"]
    ), verdict["faults"]
