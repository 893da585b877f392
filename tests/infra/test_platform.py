"""The whole topology: what is declared, what is exported, what a config change changes."""

from __future__ import annotations

import ast
import json
import socket
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import Deploy, Mocks

ROOT = Path(__file__).resolve().parents[2]

EXPECTED_RESOURCES = {
    "azure-native:resources:ResourceGroup": 1,
    "azure-native:managedidentity:UserAssignedIdentity": 3,
    "azure-native:storage:StorageAccount": 1,
    "azure-native:storage:BlobServiceProperties": 1,
    "azure-native:storage:BlobContainer": 4,
    "azure-native:storage:ManagementPolicy": 1,
    "azure-native:eventhub:Namespace": 1,
    "azure-native:eventhub:EventHub": 1,
    "azure-native:eventhub:ConsumerGroup": 1,
    "azure-native:streamanalytics:StreamingJob": 1,
    "pulumi-python:dynamic/batchscoring:StreamJobDeployment": 1,  # the job's inputs, outputs, query and settings
    "pulumi-python:dynamic/batchscoring:StreamJobFirstStart": 1,  # when its first start was asked for
    # Pauses where Azure is eventually consistent (infra/wait.py): the scorer's and the submitter's grants taking
    # effect, the custom role replicating.
    "pulumi-python:dynamic/batchscoring:Wait": 3,
    "azure-native:containerregistry:Registry": 1,
    "docker:index/image:Image": 2,
    "azure-native:batch:BatchAccount": 1,
    "azure-native:batch:Pool": 1,
    "azure-native:containerinstance:ContainerGroup": 1,
    "azure-native:logic:Workflow": 1,
    "azure-native:authorization:RoleDefinition": 1,
    "azure-native:authorization:RoleAssignment": 12,
    "azure-native:operationalinsights:Workspace": 1,
    "azure-native:monitor:DiagnosticSetting": 5,  # Batch, stream job, Logic App, blob service, Event Hubs
    "azure-native:monitor:ActionGroup": 1,
    "azure-native:monitor:MetricAlert": 9,  # 4 + the stream job's output errors and dropped readings (issue 18)
    "azure-native:monitor:ActivityLogAlert": 1,  # the stream job failed
    "azure-native:monitor:ScheduledQueryRule": 3,
}


def cloud_resources(mocks: Mocks) -> dict[str, dict[str, Any]]:
    return {r.name: r.inputs for r in mocks.resources if not r.typ.startswith("batchscoring:")}


def test_every_resource_of_the_topology_is_declared(deploy: Deploy) -> None:
    mocks = deploy().mocks
    counts = Counter(r.typ for r in mocks.resources if not r.typ.startswith("batchscoring:"))
    assert dict(counts) == EXPECTED_RESOURCES
    components = sorted(r.typ for r in mocks.resources if r.typ.startswith("batchscoring:"))
    assert components == sorted(
        f"batchscoring:infra:{c}"
        for c in (
            "Platform",
            "Identities",
            "Storage",
            "Ingestion",
            "Registry",
            "BatchCompute",
            "Scheduler",
            "AccessPolicy",  # one per identity: scorer, submitter, stream job, scheduler
            "AccessPolicy",
            "AccessPolicy",
            "AccessPolicy",
            "StreamJobIO",
            "Monitoring",
        )
    )


def test_stack_outputs_give_a_user_what_they_need(deploy: Deploy) -> None:
    outputs = deploy().outputs
    assert outputs["containers"] == ["models", "aggregates", "predictions", "logs"]
    assert outputs["blob_endpoint"] == f"https://{outputs['storage_account']}.blob.core.windows.net/"
    assert outputs["event_hub"] == "readings"
    assert outputs["acr_login_server"].endswith(".azurecr.io")
    assert outputs["batch_account_endpoint"].startswith("https://")
    assert outputs["batch_pool_id"].startswith("scorers-d2s-v5-")
    assert outputs["logic_app_id"].endswith("batchscoring-scheduler-workflow")
    assert "token" not in json.dumps(outputs).lower() and "password" not in json.dumps(outputs).lower()


def test_names_include_the_stack_so_stacks_do_not_collide(deploy: Deploy) -> None:
    dev, prod = deploy(stack="dev").outputs, deploy(stack="prod").outputs
    for key in (
        "resource_group",
        "storage_account",
        "acr_login_server",
        "batch_account_endpoint",
        "event_hub_namespace",
        "submitter_container_group",
    ):
        assert dev[key] != prod[key], key


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # A new pool (its id carries the size: infra/batch.py), and the submitter switched to it.
        (
            {"vmSize": "Standard_D8s_v5"},
            {"batchscoring-batch-pool": {"poolName", "vmSize"}, "batchscoring-scheduler-submitter": {"containers"}},
        ),
        ({"maxNodes": 9}, {"batchscoring-batch-pool": {"scaleSettings"}}),
        # Every 2 hours an hour can wait 80 min for its run: the deadline follows (a config rule).
        (
            {"scheduleInterval": 2, "hourDeadlineMinutes": 90},
            {
                "batchscoring-scheduler-workflow": {"definition"},
                "batchscoring-monitoring-alert-hour-not-scored": {"criteria", "description"},
            },
        ),
        # The job's own input changes too, but it is create-only (ignore_changes): the deployment applies it.
        (
            {"windowMinutes": 15},
            {"batchscoring-ingestion-job": {"transformation"}, "batchscoring-stream-run": {"definition"}},
        ),
        (
            {"lateToleranceSeconds": 60},
            {
                "batchscoring-ingestion-job": {
                    "eventsLateArrivalMaxDelayInSeconds",
                    "eventsOutOfOrderMaxDelayInSeconds",
                },
                "batchscoring-stream-run": {"definition"},
            },
        ),
        (
            {"streamingUnits": 3},
            {"batchscoring-ingestion-job": {"transformation"}, "batchscoring-stream-run": {"definition"}},
        ),
        # The shard count is in the query text (the partition function's argument): the transformation changes too.
        (
            {"shardCount": 8},
            {
                "batchscoring-ingestion-job": {"transformation"},
                "batchscoring-stream-run": {"definition"},
                "batchscoring-scheduler-submitter": {"containers"},
            },
        ),
        ({"taskInputMib": 10}, {"batchscoring-scheduler-submitter": {"containers"}}),
        ({"reconcileHours": 6}, {"batchscoring-scheduler-submitter": {"containers"}}),
        ({"trustedTypes": ["sklearn.tree._tree.Tree"]}, {"batchscoring-scheduler-submitter": {"containers"}}),
        ({"scheduleMinute": 30}, {"batchscoring-scheduler-workflow": {"definition"}}),
    ],
)
def test_a_config_change_changes_exactly_the_inputs_it_should(
    deploy: Deploy, change: dict[str, Any], expected: dict[str, set[str]]
) -> None:
    before, after = cloud_resources(deploy().mocks), cloud_resources(deploy(**change).mocks)
    assert before.keys() == after.keys()
    changed = {
        name: {key for key in before[name].keys() | after[name].keys() if before[name].get(key) != after[name].get(key)}
        for name in before
    }
    assert {name: keys for name, keys in changed.items() if keys} == expected


def test_the_program_makes_no_network_calls(deploy: Deploy, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("network call during a mocked deployment")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert len(deploy().mocks.resources) > 30


def test_every_component_registers_its_outputs() -> None:
    """Like data-safe-haven: a ComponentResource that forgets register_outputs never finishes in the UI."""
    for path in sorted((ROOT / "infra").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any("ComponentResource" in ast.unparse(b) for b in node.bases):
                init = next(n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
                calls = [ast.unparse(c.func) for c in ast.walk(init) if isinstance(c, ast.Call)]
                assert "self.register_outputs" in calls, f"{path.name}:{node.name} does not register outputs"
