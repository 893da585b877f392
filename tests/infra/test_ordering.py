"""Order of creation: nothing runs as an identity before all of that identity's role assignments exist.

Mocks record what the program asks of the engine for each resource (tests/infra/conftest.py RecordingMonitor),
so these tests see the dependency edges Pulumi will schedule by, not just the inputs. The consumers are found
generically (whatever refers to an identity), so a new grant or a new consumer cannot slip through.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from infra.stream_job import START_HOOK_NAME, STOP_HOOK_NAME
from tests.infra.conftest import Deploy, Mocks, Recorded

ASSIGNMENT = "azure-native:authorization:RoleAssignment"
UAMI = "azure-native:managedidentity:UserAssignedIdentity"
# Resources whose system-assigned identity has grants, and the input by which a child names them.
SYSTEM_ASSIGNED_PARENT_KEY = {"azure-native:streamanalytics:StreamingJob": "jobName"}


@dataclass(frozen=True)
class Holder:
    """An identity: a user-assigned one, or the system-assigned identity of a resource."""

    resource: Recorded
    principal_id: str

    def is_used_by(self, other: Recorded) -> bool:
        if other is self.resource or other.typ == ASSIGNMENT or other.typ.startswith("batchscoring:"):
            return False
        own_id = f"/mock/{self.resource.typ}/{self.resource.name}"
        if own_id in json.dumps(other.inputs, default=str):
            return True
        key = SYSTEM_ASSIGNED_PARENT_KEY.get(self.resource.typ)
        return key is not None and other.inputs.get(key) == self.resource.outputs["name"]


def holders(mocks: Mocks) -> Iterator[Holder]:
    for r in mocks.resources:
        if r.typ == UAMI:
            yield Holder(r, r.outputs["principalId"])
        elif r.typ in SYSTEM_ASSIGNED_PARENT_KEY:
            yield Holder(r, r.outputs["identity"]["principalId"])


def edges(mocks: Mocks) -> dict[str, dict[str, list[str]]]:
    """{identity: {consumer: [its grants it depends on]}}; also asserts each consumer depends on all of them."""
    found: dict[str, dict[str, list[str]]] = {}
    for holder in holders(mocks):
        grants = [g for g in mocks.of_type(ASSIGNMENT) if g.inputs["principalId"] == holder.principal_id]
        assert grants, f"{holder.resource.name} has no role assignments"
        consumers = [r for r in mocks.resources if holder.is_used_by(r)]
        found[holder.resource.name] = {}
        for consumer in consumers:
            missing = [g.name for g in grants if g.urn not in consumer.dependencies]
            assert not missing, f"{consumer.typ} {consumer.name} uses {holder.resource.name} before {missing}"
            found[holder.resource.name][consumer.name] = sorted(g.name for g in grants)
    return found


@pytest.mark.parametrize("stack,overrides", [("dev", {}), ("prod", {"privateNetwork": True, "registrySku": "Premium"})])
def test_every_consumer_of_an_identity_waits_for_all_its_grants(
    deploy: Deploy, stack: str, overrides: dict[str, object]
) -> None:
    found = edges(deploy(stack=stack, **overrides).mocks)
    for identity, consumers in sorted(found.items()):  # the closing note prints these (pytest -s)
        for consumer, grants in sorted(consumers.items()):
            print(f"{identity} -> {consumer}: after {', '.join(grants)}")
    consumers = {identity: sorted(c) for identity, c in found.items()}
    assert consumers == {
        "batchscoring-identities-scorer": [
            "batchscoring-batch-pool",
            "batchscoring-scheduler-submitter",  # its tasks run as the scorer
        ],
        "batchscoring-identities-submitter": ["batchscoring-scheduler-submitter"],
        "batchscoring-identities-scheduler": ["batchscoring-scheduler-workflow"],
        "batchscoring-ingestion-job": [
            "batchscoring-stream-input",
            "batchscoring-stream-output",
            "batchscoring-stream-run",
        ],
    }


def test_a_consumer_missing_one_grant_is_caught(deploy: Deploy) -> None:
    """The check itself can fail: drop one edge from the recorded pool and it must name the missing grant."""
    mocks = deploy().mocks
    pool = mocks.one("azure-native:batch:Pool")
    pull = mocks.one(ASSIGNMENT, "scorer-access-pull")
    pool.dependencies = pool.dependencies - {pull.urn}
    with pytest.raises(AssertionError, match="scorer-access-pull"):
        edges(mocks)


def test_the_stream_job_starts_only_after_its_input_and_output(deploy: Deploy) -> None:
    mocks = deploy().mocks
    run = mocks.one("pulumi-python:dynamic/batchscoring:StreamJobRun", "stream-run")
    for part in ("batchscoring-stream-input", "batchscoring-stream-output"):
        assert next(r.urn for r in mocks.resources if r.name == part) in run.dependencies


def test_the_job_its_input_and_output_carry_the_stop_and_start_hooks(deploy: Deploy) -> None:
    """Engine-side: an update of any of them is wrapped in stop (before) and start (after) by infra/stream_job.py."""
    mocks = deploy().mocks
    expected = {"before_update": [STOP_HOOK_NAME], "after_update": [START_HOOK_NAME]}
    for typ in ("StreamingJob", "Input", "Output"):
        assert mocks.one(f"azure-native:streamanalytics:{typ}").hooks == expected
    # Nothing else is stopped or started by a hook.
    hooked = [r.name for r in mocks.resources if r.hooks]
    assert sorted(hooked) == ["batchscoring-ingestion-job", "batchscoring-stream-input", "batchscoring-stream-output"]
