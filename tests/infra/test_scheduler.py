"""The Logic App definition as a pure function: what a run does for each answer of ACI's `start`."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from infra.config import parse_config
from infra.scheduler import (
    SKIPPED_START_CODE,
    SKIPPED_START_MESSAGE,
    START_ACTION,
    Recurrence,
    workflow_definition,
)
from infra.windows_zones import WINDOWS_ZONES
from workloads.common.windows import last_complete_hour

GROUP_ID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups/submitter"
TRIGGER_IDENTITY = (
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/scheduler"
)
RETRIED = {408, 429} | set(range(500, 600))  # what a Logic Apps retry policy resends


@dataclass
class Run:
    status: str  # Succeeded | Failed
    actions: dict[str, str]  # action name -> Succeeded | Failed | Skipped
    error: dict[str, str] | None = None


def _expression_holds(expression: dict[str, Any], outputs: dict[str, dict[str, Any]]) -> bool:
    """The one Condition form this definition uses: {"and": [{"equals": ["@outputs('<a>')['statusCode']", v]}]}."""
    (clause,) = expression["and"]
    left, right = clause["equals"]
    prefix, suffix = "@outputs('", "')['statusCode']"
    assert left.startswith(prefix) and left.endswith(suffix), left
    return bool(outputs[left.removeprefix(prefix).removesuffix(suffix)]["statusCode"] == right)


def simulate(definition: dict[str, Any], status_code: int) -> Run:
    """Run the top-level actions in runAfter order, the HTTP action answering `status_code` (after retries).

    Logic Apps semantics used: an HTTP action fails on a 4xx/5xx answer and succeeds on 2xx; an action runs
    only when each action in its runAfter ended in one of the listed states, else it is Skipped; a Terminate
    ends the run with its runStatus; otherwise a run fails when any action failed.
    """
    results: dict[str, str] = {}
    outputs: dict[str, dict[str, Any]] = {}
    pending = dict(definition["actions"])
    while pending:
        name, action = next((n, a) for n, a in pending.items() if all(dep in results for dep in a.get("runAfter", {})))
        del pending[name]
        if any(results[dep] not in states for dep, states in action["runAfter"].items()):
            results[name] = "Skipped"
            continue
        if action["type"] == "Http":
            outputs[name] = {"statusCode": status_code}
            results[name] = "Succeeded" if status_code < 400 else "Failed"
        elif action["type"] == "If":
            branch = (
                action["actions"] if _expression_holds(action["expression"], outputs) else action["else"]["actions"]
            )
            results[name] = "Succeeded"
            terminate = next(iter(branch.values()), None)
            if terminate is not None:
                assert terminate["type"] == "Terminate" and terminate["runAfter"] == {}
                return Run(terminate["inputs"]["runStatus"], results, terminate["inputs"].get("runError"))
        else:  # pragma: no cover - the definition uses no other action types
            raise AssertionError(f"unexpected action type {action['type']}")
    return Run("Failed" if "Failed" in results.values() else "Succeeded", results)


@pytest.fixture
def definition() -> dict[str, Any]:
    return workflow_definition(Recurrence(), GROUP_ID, TRIGGER_IDENTITY)


def test_a_started_group_is_a_successful_run(definition: dict[str, Any]) -> None:
    run = simulate(definition, 202)
    assert run.status == "Succeeded" and run.error is None


def test_a_group_still_running_fails_the_run_with_the_reason(definition: dict[str, Any]) -> None:
    run = simulate(definition, 204)
    assert run.status == "Failed"
    assert run.error == {"code": SKIPPED_START_CODE, "message": SKIPPED_START_MESSAGE}
    assert "still running" in SKIPPED_START_MESSAGE and "reconciles the missed hour" in SKIPPED_START_MESSAGE


@pytest.mark.parametrize("status_code", [400, 403, 404, 409, 500, 503])
def test_a_refused_start_fails_the_http_action_itself(definition: dict[str, Any], status_code: int) -> None:
    run = simulate(definition, status_code)
    assert run.status == "Failed" and run.actions[START_ACTION] == "Failed"
    assert set(run.actions.values()) == {"Failed", "Skipped"}  # the Condition does not run


def test_the_retry_policy_leaves_2xx_answers_to_the_condition(definition: dict[str, Any]) -> None:
    policy = definition["actions"][START_ACTION]["inputs"]["retryPolicy"]
    assert policy["type"] == "exponential" and policy["count"] >= 1
    assert 204 not in RETRIED and 202 not in RETRIED


def test_the_condition_reads_the_start_action_and_runs_only_after_it_succeeded(definition: dict[str, Any]) -> None:
    condition = definition["actions"]["fail_if_nothing_started"]
    assert condition["type"] == "If" and condition["runAfter"] == {START_ACTION: ["Succeeded"]}
    assert condition["expression"] == {"and": [{"equals": [f"@outputs('{START_ACTION}')['statusCode']", 204]}]}
    (terminate,) = condition["actions"].values()
    assert terminate["type"] == "Terminate" and terminate["inputs"]["runStatus"] == "Failed"
    assert condition["else"] == {"actions": {}}


def test_the_definition_is_pure_and_serialisable() -> None:
    first, second = (
        workflow_definition(Recurrence(), GROUP_ID, TRIGGER_IDENTITY),
        workflow_definition(Recurrence(), GROUP_ID, TRIGGER_IDENTITY),
    )
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


# --- the Recurrence trigger against its documented schema ----------------------------------------------------------
# "Schema reference for trigger and action types in Azure Logic Apps", Recurrence trigger
# (learn.microsoft.com/azure/logic-apps/logic-apps-workflow-actions-triggers): schedule.hours and schedule.minutes
# "Applies only when frequency is Day or Week"; timeZone "Applies only when you specify a start time"; startTime is
# "YYYY-MM-DDThh:mm:ss if you specify a time zone -or- YYYY-MM-DDThh:mm:ssZ if you don't"; intervals "Day: 1-500
# days, Hour: 1-12,000 hours, Minute: 1-72,000 minutes"; hour marks 0 to 23, minute marks 0 to 59.
MAX_INTERVAL = {"Minute": 72_000, "Hour": 12_000, "Day": 500}


def schema_violations(trigger: dict[str, Any]) -> list[str]:
    """What the documented schema says Logic Apps would ignore or refuse in a Recurrence trigger."""
    problems: list[str] = []
    recurrence = trigger["recurrence"]
    if trigger["type"] != "Recurrence" or set(recurrence) - {
        "frequency",
        "interval",
        "startTime",
        "timeZone",
        "schedule",
    }:
        problems.append(f"unknown properties {sorted(recurrence)}")
    frequency, interval = recurrence["frequency"], recurrence["interval"]
    if not 1 <= interval <= MAX_INTERVAL[frequency]:
        problems.append(f"interval {interval} outside 1..{MAX_INTERVAL[frequency]} for {frequency}")
    schedule = recurrence.get("schedule", {})
    if {"hours", "minutes"} & set(schedule) and frequency not in ("Day", "Week"):
        problems.append(f"schedule {schedule} applies only to Day or Week, not {frequency}")
    if not all(0 <= h <= 23 for h in schedule.get("hours", [])) or not all(
        0 <= m <= 59 for m in schedule.get("minutes", [])
    ):
        problems.append(f"schedule marks out of range: {schedule}")
    start = recurrence.get("startTime")
    if "timeZone" in recurrence:
        if start is None:
            problems.append("timeZone without startTime is ignored")
        elif not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", start):
            problems.append(f"startTime {start} with a time zone must have no Z or offset")
        if recurrence["timeZone"] not in WINDOWS_ZONES:
            problems.append(f"timeZone {recurrence['timeZone']} is not a Windows time zone id")
    elif start is not None and not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", start):
        problems.append(f"startTime {start} without a time zone must end in Z")
    return problems


def run_times(recurrence: dict[str, Any], after: datetime, count: int) -> list[datetime]:
    """The next ``count`` runs after ``after`` (UTC), as the scheduling docs describe them ("Schedule and run recurring
    workflows", Patterns for start date and time): without a schedule, the start time plus whole intervals, past ones
    discarded; with a Day schedule, the listed hours and minutes of every interval-th day from the start time, in the
    trigger's time zone."""
    start = datetime.fromisoformat(recurrence["startTime"].removesuffix("Z"))
    zone = ZoneInfo(WINDOWS_ZONES[recurrence.get("timeZone", "UTC")])
    start = start.replace(tzinfo=zone if "timeZone" in recurrence else UTC)
    runs: list[datetime] = []
    if recurrence["frequency"] == "Day":
        hours, minutes = recurrence["schedule"]["hours"], recurrence["schedule"]["minutes"]
        day = start.date()
        while len(runs) < count:
            for h in hours:
                for m in minutes:
                    when = datetime(day.year, day.month, day.day, h, m, tzinfo=zone).astimezone(UTC)
                    if when > after and when >= start:
                        runs.append(when)
            day += timedelta(days=recurrence["interval"])
        return sorted(runs)[:count]
    step = timedelta(minutes={"Minute": 1, "Hour": 60}[recurrence["frequency"]] * recurrence["interval"])
    when = start + ((after - start) // step + 1) * step
    return [when + i * step for i in range(count)]


@pytest.mark.parametrize(
    ("recurrence", "expected"),
    [
        (Recurrence(), {"frequency": "Hour", "interval": 1, "startTime": "2024-01-01T00:20:00Z"}),
        (Recurrence("Hour", 3, "UTC", 45), {"frequency": "Hour", "interval": 3, "startTime": "2024-01-01T00:45:00Z"}),
        # No time zone for sub-daily runs: one with a half-hour offset would move them off the minute.
        (
            Recurrence("Hour", 1, "India Standard Time", 5),
            {"frequency": "Hour", "interval": 1, "startTime": "2024-01-01T00:05:00Z"},
        ),
        (
            Recurrence("Minute", 15, "UTC", 7),
            {"frequency": "Minute", "interval": 15, "startTime": "2024-01-01T00:07:00Z"},
        ),
        (
            Recurrence("Day", 1, "W. Europe Standard Time", 20),
            {
                "frequency": "Day",
                "interval": 1,
                "startTime": "2024-01-01T00:20:00",
                "timeZone": "W. Europe Standard Time",
                "schedule": {"hours": [0], "minutes": [20]},
            },
        ),
    ],
)
def test_the_trigger_is_exactly_this_json_and_follows_the_documented_schema(
    recurrence: Recurrence, expected: dict[str, Any]
) -> None:
    trigger = recurrence.trigger()
    assert trigger == {
        "type": "Recurrence",
        "recurrence": expected,
        "runtimeConfiguration": {"concurrency": {"runs": 1}},
    }
    assert schema_violations(trigger) == []


def test_the_schema_check_catches_what_logic_apps_would_ignore() -> None:
    """The trigger this module declared before: minutes with Hour, a time zone without a start time."""
    before = {
        "type": "Recurrence",
        "recurrence": {"frequency": "Hour", "interval": 1, "timeZone": "UTC", "schedule": {"minutes": [20]}},
    }
    assert schema_violations(before) == [
        "schedule {'minutes': [20]} applies only to Day or Week, not Hour",
        "timeZone without startTime is ignored",
    ]
    assert schema_violations(
        {
            "type": "Recurrence",
            "recurrence": {
                "frequency": "Day",
                "interval": 1,
                "startTime": "2024-01-01T00:20:00",
                "timeZone": "Europe/Berlin",
            },
        }
    ) == ["timeZone Europe/Berlin is not a Windows time zone id"]


AFTER = datetime(2026, 3, 27, 21, 7, tzinfo=UTC)
# Six days of runs from these cross Europe's daylight-saving changes (29 March and 25 October 2026).
AROUND_DST_CHANGES = [AFTER, datetime(2026, 10, 23, 21, 7, tzinfo=UTC)]


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"scheduleMinute": 15},
        {"scheduleMinute": 59, "latenessMinutes": 20, "hourDeadlineMinutes": 60},
        {"scheduleInterval": 3, "hourDeadlineMinutes": 200},
        {
            "scheduleFrequency": "Day",
            "reconcileHours": 25,
            "hourDeadlineMinutes": 1401,
            "timeZone": "W. Europe Standard Time",
        },
        {"scheduleFrequency": "Day", "reconcileHours": 24, "hourDeadlineMinutes": 1401},
    ],
)
@pytest.mark.parametrize("after", AROUND_DST_CHANGES)
def test_every_run_falls_at_the_minute_and_scores_the_hour_that_just_settled(
    raw: dict[str, Any], after: datetime
) -> None:
    """For a valid config, each run of its trigger (as the docs compute them) starts at scheduleMinute past a UTC
    hour, finds the hour that ended just before it complete, and its reconcile window reaches back to the hours the
    previous run left."""
    config = parse_config(raw)
    recurrence = Recurrence(
        config.schedule_frequency, config.schedule_interval, config.time_zone, config.schedule_minute
    )
    runs = run_times(recurrence.trigger()["recurrence"], after, 6)
    settle = timedelta(minutes=config.lateness_minutes)
    assert all(run.minute == config.schedule_minute and run.second == 0 for run in runs)
    for previous, run in itertools.pairwise(runs):
        newest = last_complete_hour(run, settle)
        assert newest == run.replace(minute=0) - timedelta(hours=1)  # the hour that just ended
        oldest = newest - timedelta(hours=config.reconcile_hours - 1)
        assert oldest <= last_complete_hour(previous, settle) + timedelta(hours=1)  # no hour between two runs is left


def test_an_hourly_trigger_at_the_minute_the_review_found_scores_every_hour_late() -> None:
    """scheduleMinute 5 with the 15-minute settle time: each run finds the last hour not ready (now a config error)."""
    runs = run_times(Recurrence("Hour", 1, "UTC", 5).trigger()["recurrence"], AFTER, 3)
    assert all(
        last_complete_hour(run, timedelta(minutes=15)) == run.replace(minute=0) - timedelta(hours=2) for run in runs
    )


def test_two_daily_runs_in_a_zone_with_daylight_saving_can_be_25_hours_apart() -> None:
    """Why a Day schedule in such a zone needs reconcileHours 25 (infra/config.py, _reconcile_covers_the_period)."""
    trigger = Recurrence("Day", 1, "W. Europe Standard Time", 20).trigger()["recurrence"]
    runs = run_times(trigger, AROUND_DST_CHANGES[1], 5)
    settle = timedelta(minutes=15)
    gaps = {last_complete_hour(b, settle) - last_complete_hour(a, settle) for a, b in itertools.pairwise(runs)}
    assert gaps == {timedelta(hours=24), timedelta(hours=25)}
    with pytest.raises(ValueError, match="reconcileHours: 24 does not cover"):
        parse_config({"scheduleFrequency": "Day", "timeZone": "W. Europe Standard Time", "hourDeadlineMinutes": 1401})
