"""The security scan: the ARM export is faithful, and checkov really reads what it exports.

The exporter tests are plain and fast. The scan tests call the real checkov (``make setup-checkov``) twice in
all: once through the runner on the dev stack as declared, once on a copy of that template with storage
weakened on purpose, which must fail on exactly the checks that guard the weakened settings.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from infra.arm_export import ARM_TYPES, REDACTED, SECRET_SIG, SECRET_SIG_KEY, UnmappedResourceTypeError, to_arm_template
from scripts import security_scan
from scripts.security_scan import CheckovResults, Finding, Skip, judge, load_skips, run_checkov
from tests.infra.conftest import Recorded


def arm(typ: str, inputs: dict[str, Any], name: str = "logical") -> dict[str, Any]:
    resources = to_arm_template([Recorded(typ, name, inputs)])["resources"]
    assert len(resources) == 1
    return dict(resources[0])


# --- exporter -----------------------------------------------------------------------------------------------------


def test_storage_account_inputs_take_their_arm_names() -> None:
    account = arm(
        "azure-native:storage:StorageAccount",
        {
            "accountName": "acct",
            "resourceGroupName": "rg",
            "location": "westeurope",
            "kind": "StorageV2",
            "sku": {"name": "Standard_LRS"},
            "tags": {"stack": "dev"},
            "enableHttpsTrafficOnly": True,
            "minimumTlsVersion": "TLS1_2",
            "networkRuleSet": {"defaultAction": "Deny", "ipRules": [{"iPAddressOrRange": "203.0.113.0/24"}]},
            "encryption": {"keySource": "Microsoft.Keyvault", "keyVaultProperties": {"keyName": "k"}},
        },
    )
    assert account == {
        "type": "Microsoft.Storage/storageAccounts",
        "apiVersion": "2024-01-01",
        "name": "acct",
        "location": "westeurope",
        "sku": {"name": "Standard_LRS"},
        "kind": "StorageV2",
        "tags": {"stack": "dev"},
        "properties": {
            "supportsHttpsTrafficOnly": True,
            "minimumTlsVersion": "TLS1_2",
            "networkAcls": {"defaultAction": "Deny", "ipRules": [{"value": "203.0.113.0/24"}]},
            "encryption": {"keySource": "Microsoft.Keyvault", "keyvaultproperties": {"keyname": "k"}},
        },
    }


@pytest.mark.parametrize(
    ("typ", "inputs", "name"),
    [
        (
            "azure-native:storage:BlobContainer",
            {"accountName": "acct", "containerName": "models", "publicAccess": "None"},
            "acct/default/models",
        ),
        (
            "azure-native:storage:ManagementPolicy",
            {"accountName": "acct", "managementPolicyName": "default"},
            "acct/default",
        ),
        (
            "azure-native:eventhub:ConsumerGroup",
            {"namespaceName": "ns", "eventHubName": "readings", "consumerGroupName": "asa"},
            "ns/readings/asa",
        ),
        ("azure-native:batch:Pool", {"accountName": "batch", "poolName": "scorers"}, "batch/scorers"),
        ("azure-native:streamanalytics:StreamingJob", {}, "logical"),  # auto-named: the logical name stands in
    ],
)
def test_sub_resources_are_named_by_their_parents(typ: str, inputs: dict[str, Any], name: str) -> None:
    exported = arm(typ, {"resourceGroupName": "rg", **inputs})
    assert exported["name"] == name
    assert set(exported["properties"]).isdisjoint({*inputs, "resourceGroupName"} - {"publicAccess"})


def test_an_unmapped_type_fails_the_export_and_names_itself() -> None:
    with pytest.raises(UnmappedResourceTypeError, match=r"azure-native:web:WebApp"):
        to_arm_template(
            [Recorded("azure-native:web:WebApp", "site", {}), Recorded("docker:index/image:Image", "i", {})]
        )


def test_components_images_and_dynamic_resources_are_left_out() -> None:
    template = to_arm_template(
        [
            Recorded("batchscoring:infra:Storage", "storage", {}),
            Recorded("docker:index/image:Image", "scorer", {"imageName": "x"}),
            Recorded("pulumi-python:dynamic/batchscoring:StreamJobDeployment", "run", {}),
        ]
    )
    assert template["resources"] == []
    assert template["$schema"].endswith("deploymentTemplate.json#")


def test_flattened_objects_are_nested_back_under_properties() -> None:
    group = arm(
        "azure-native:containerinstance:ContainerGroup",
        {
            "containerGroupName": "submitter",
            "identity": {"type": "UserAssigned", "userAssignedIdentities": ["/ids/submitter"]},
            "containers": [{"name": "submitter", "image": "acr.io/submitter@sha256:0", "command": ["submitter"]}],
            "osType": "Linux",
        },
    )
    assert group["identity"] == {"type": "UserAssigned", "userAssignedIdentities": {"/ids/submitter": {}}}
    assert group["properties"]["containers"] == [
        {"name": "submitter", "properties": {"image": "acr.io/submitter@sha256:0", "command": ["submitter"]}}
    ]
    job = arm(
        "azure-native:streamanalytics:StreamingJob",
        {
            "jobName": "job",
            "sku": {"name": "Standard"},
            "outputs": [
                {
                    "name": "aggregates",
                    "datasource": {"type": "Microsoft.Storage/Blob", "container": "aggregates"},
                    "serialization": {"type": "Parquet"},
                }
            ],
            "transformation": {"name": "aggregate", "query": "SELECT 1", "streamingUnits": 3.0},
        },
    )
    assert job["properties"] == {
        "sku": {"name": "Standard"},  # a property, not a top-level field, in API version 2020-03-01
        "outputs": [
            {
                "name": "aggregates",
                "properties": {
                    "datasource": {"type": "Microsoft.Storage/Blob", "properties": {"container": "aggregates"}},
                    "serialization": {"type": "Parquet"},
                },
            }
        ],
        "transformation": {"name": "aggregate", "properties": {"query": "SELECT 1", "streamingUnits": 3}},
    }
    nsg = arm(
        "azure-native:network:NetworkSecurityGroup",
        {"networkSecurityGroupName": "nsg", "securityRules": [{"name": "ssh", "access": "Allow", "priority": 100.0}]},
    )
    assert nsg["properties"]["securityRules"] == [{"name": "ssh", "properties": {"access": "Allow", "priority": 100}}]


def test_the_jobs_function_takes_arms_nested_shape() -> None:
    """azure-native flattens ScalarFunctionProperties' and the JavaScript binding's ``properties``; ARM nests them."""
    job = arm(
        "azure-native:streamanalytics:StreamingJob",
        {
            "jobName": "job",
            "functions": [
                {
                    "name": "partitionOf",
                    "properties": {
                        "type": "Scalar",
                        "inputs": [{"dataType": "nvarchar(max)"}],
                        "output": {"dataType": "nvarchar(max)"},
                        "binding": {"type": "Microsoft.StreamAnalytics/JavascriptUdf", "script": "function (x) {}"},
                    },
                }
            ],
        },
    )
    assert job["properties"]["functions"] == [
        {
            "name": "partitionOf",
            "properties": {
                "type": "Scalar",
                "properties": {
                    "inputs": [{"dataType": "nvarchar(max)"}],
                    "output": {"dataType": "nvarchar(max)"},
                    "binding": {
                        "type": "Microsoft.StreamAnalytics/JavascriptUdf",
                        "properties": {"script": "function (x) {}"},
                    },
                },
            },
        }
    ]


def test_extension_resources_carry_their_scope_and_secrets_are_redacted() -> None:
    lock = arm(
        "azure-native:authorization:ManagementLockAtResourceLevel",
        {
            "lockName": "protect-data",
            "resourceProviderNamespace": "Microsoft.Storage",
            "resourceType": "storageAccounts",
            "resourceName": "acct",
            "level": "CanNotDelete",
        },
    )
    assert (lock["name"], lock["scope"], lock["properties"]) == (
        "protect-data",
        "Microsoft.Storage/storageAccounts/acct",
        {"level": "CanNotDelete"},
    )
    role = arm(
        "azure-native:authorization:RoleDefinition",
        {"scope": "/subscriptions/s/resourceGroups/rg", "roleType": "CustomRole", "roleName": "starter"},
    )
    assert (role["scope"], role["properties"]) == (
        "/subscriptions/s/resourceGroups/rg",
        {"type": "CustomRole", "roleName": "starter"},
    )
    secret = {SECRET_SIG_KEY: SECRET_SIG, "value": "hunter2"}
    group = arm(
        "azure-native:containerinstance:ContainerGroup",
        {"containers": [{"name": "c", "environmentVariables": [{"name": "K", "secureValue": secret}]}]},
    )
    assert "hunter2" not in json.dumps(group)
    assert group["properties"]["containers"][0]["properties"]["environmentVariables"][0]["secureValue"] == REDACTED


def test_api_versions_are_those_of_the_installed_azure_native() -> None:
    """A pulumi-azure-native upgrade that moves a resource to another API version must update the table too."""
    for token, mapping in ARM_TYPES.items():
        _, module, name = token.split(":")
        resource = getattr(importlib.import_module(f"pulumi_azure_native.{module}"), name)
        found = re.search(r"Uses Azure REST API version (\S+?)\.(\s|$)", inspect.getsource(resource))
        assert found, token
        assert mapping.api_version == found.group(1), token


# --- judging (no checkov) -----------------------------------------------------------------------------------------

ACCOUNT = "Microsoft.Storage/storageAccounts.acct"


def results(*failed: tuple[str, str]) -> CheckovResults:
    return CheckovResults([], [Finding(c, "", r) for c, r in failed], 1, "test", {})


def test_skips_apply_by_stack_and_pattern_and_stale_ones_are_reported() -> None:
    reason = "a reason long enough"
    skips = {
        "all": [Skip(check="CKV_AZURE_59", resource="Microsoft.Storage/storageAccounts.*", reason=reason)],
        "dev": [Skip(check="CKV_AZURE_35", resource="*", reason=reason)],
        "prod": [Skip(check="CKV_AZURE_206", resource=ACCOUNT, reason=reason)],
    }
    report = judge("dev", results(("CKV_AZURE_59", ACCOUNT), ("CKV_AZURE_206", ACCOUNT)), skips)
    assert [f.check_id for f, _ in report.skipped] == ["CKV_AZURE_59"]
    assert [f.check_id for f in report.unjustified] == ["CKV_AZURE_206"]  # skipped for prod only
    assert [s.check for s in report.stale] == ["CKV_AZURE_35"]  # nothing left for it to excuse in dev
    assert not report.ok


def test_the_skip_file_is_valid_and_names_known_stacks(tmp_path: Path) -> None:
    skips = load_skips(security_scan.SKIPS, security_scan.stacks())
    assert set(skips) <= {"all", *security_scan.stacks()}
    bad = tmp_path / "skips.yaml"
    bad.write_text("staging:\n  - check: CKV_AZURE_35\n    resource: '*'\n    reason: because we said so\n")
    with pytest.raises(security_scan.ScanError, match="staging"):
        load_skips(bad, ["dev", "prod"])
    bad.write_text("dev:\n  - check: not-a-check\n    resource: '*'\n    reason: ''\n")
    with pytest.raises(security_scan.ScanError, match=r"dev\.0\.check(.|\n)*dev\.0\.reason"):
        load_skips(bad, ["dev"])


# --- the real scan (checkov) --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkov() -> Path:
    if not security_scan.CHECKOV.exists():
        pytest.fail(f"checkov not found at {security_scan.CHECKOV}: run `make setup-checkov`", pytrace=False)
    return security_scan.CHECKOV


@pytest.fixture(scope="module")
def dev_scan(checkov: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    """The runner on the dev stack as declared: (exit status, output folder)."""
    out, log = tmp_path_factory.mktemp("security"), io.StringIO()
    status = security_scan.scan(["dev"], out=out, checkov=checkov, console=Console(file=log, width=200))
    (out / "log.txt").write_text(log.getvalue())
    return status, out


def test_the_declared_dev_stack_passes_with_the_skip_file(dev_scan: tuple[int, Path]) -> None:
    status, out = dev_scan
    summary = json.loads((out / "summary.json").read_text())["stacks"]["dev"]
    assert status == 0, (out / "log.txt").read_text()
    assert summary["unjustified"] == summary["stale_skips"] == 0
    assert summary["passed"] > 0 and summary["failed"] == summary["skipped"] > 0
    template = json.loads((out / "dev.json").read_text())
    assert len(template["resources"]) == summary["resources"]


def test_a_weakened_storage_account_fails_the_scan(dev_scan: tuple[int, Path], checkov: Path) -> None:
    """The scan reads the exported properties: turning guarantees off must surface as unjustified failures."""
    _, out = dev_scan
    template = json.loads((out / "dev.json").read_text())
    weakened = copy.deepcopy(template)
    (account,) = [r for r in weakened["resources"] if r["type"] == "Microsoft.Storage/storageAccounts"]
    account["properties"].update(supportsHttpsTrafficOnly=False, allowBlobPublicAccess=True, minimumTlsVersion="TLS1_0")
    path = out / "dev-weakened.json"
    path.write_text(json.dumps(weakened))
    skips = load_skips(security_scan.SKIPS, security_scan.stacks())
    report = judge("dev", run_checkov(path, checkov), skips)
    assert {(f.check_id, f.resource) for f in report.unjustified} == {
        ("CKV_AZURE_3", f"Microsoft.Storage/storageAccounts.{account['name']}"),  # supportsHttpsTrafficOnly
        ("CKV_AZURE_44", f"Microsoft.Storage/storageAccounts.{account['name']}"),  # minimumTlsVersion
        ("CKV2_BSCORE_1", f"Microsoft.Storage/storageAccounts.{account['name']}"),  # allowBlobPublicAccess (ours)
    }
    assert not report.stale and not report.ok
