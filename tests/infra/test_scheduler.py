"""The Logic App definition as a pure function: what a run does for each answer of ACI's `start`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from infra.scheduler import (
    SKIPPED_START_CODE,
    SKIPPED_START_MESSAGE,
    START_ACTION,
    Recurrence,
    workflow_definition,
)

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
    assert first["triggers"]["schedule"]["recurrence"]["schedule"] == {"minutes": [20]}
