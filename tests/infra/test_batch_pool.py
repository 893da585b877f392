"""The Batch pool across deploys: a code deploy leaves it alone, a node-size change makes a new pool and switches the
submitter to it (infra/batch.py); the quotas a stack needs (infra/quota.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from infra.autoscale import autoscale_formula
from infra.batch import MAX_POOL_ID, pool_id
from infra.config import ConfigError, parse_config
from infra.quota import batch_quota_need, main, vcpus, vm_family
from infra.stack_file import read_stack_config
from tests.infra import conftest
from tests.infra.conftest import Deploy, Deployment
from workloads.common import envvars

ROOT = Path(__file__).resolve().parents[2]
POOL, GROUP = "azure-native:batch:Pool", "azure-native:containerinstance:ContainerGroup"


def _env(deployment: Deployment) -> dict[str, str]:
    (container,) = deployment.mocks.inputs(GROUP)["containers"]
    return {e["name"]: e["value"] for e in container["environmentVariables"]}


def _deploy_with_digest(deploy: Deploy, monkeypatch: pytest.MonkeyPatch, digit: str, **config: Any) -> Deployment:
    """The program as after a code change: the registry answers a different digest for the rebuilt images."""
    original = conftest.computed

    def rebuilt(args: Any) -> dict[str, Any]:
        extra = original(args)
        if "repoDigest" in extra:
            extra["repoDigest"] = extra["repoDigest"].rsplit(":", 1)[0] + ":" + digit * 64
        return extra

    monkeypatch.setattr(conftest, "computed", rebuilt)
    return deploy(**config)


def test_a_code_deploy_changes_no_input_of_the_pool(deploy: Deploy, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _deploy_with_digest(deploy, monkeypatch, "1")
    after = _deploy_with_digest(deploy, monkeypatch, "2")
    # The code did change: tasks run the new digest...
    assert before.outputs["scorer_image"] != after.outputs["scorer_image"]
    assert _env(after)[envvars.SCORER_IMAGE] == after.outputs["scorer_image"]
    # ...and the pool is exactly as it was: no update for Batch to refuse while nodes run.
    assert before.mocks.inputs(POOL) == after.mocks.inputs(POOL)
    names = after.mocks.inputs(POOL)["deploymentConfiguration"]["virtualMachineConfiguration"][
        "containerConfiguration"
    ]["containerImageNames"]
    assert names == [f"{after.outputs['acr_login_server']}/scorer:latest"] and "@sha256:" not in names[0]


def test_the_pool_ignores_nothing_and_is_replaced_create_before_delete(
    deploy: Deploy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing ignored: an ignored prefetch list would keep pulling the first image ever deployed.
    requests: dict[str, Any] = {}
    register = conftest.RecordingMonitor.RegisterResource

    def recording(self: conftest.RecordingMonitor, request: Any) -> Any:
        requests[request.name] = request
        return register(self, request)

    monkeypatch.setattr(conftest.RecordingMonitor, "RegisterResource", recording)
    pool = deploy().mocks.one(POOL)
    assert pool.ignore_changes == []
    assert requests[pool.name].deleteBeforeReplace is False  # the new pool exists before the old one goes
    assert list(requests[pool.name].replaceOnChanges) == []  # replaced only through its id (see below)


def test_a_node_size_change_makes_a_new_pool_and_switches_the_submitter(deploy: Deploy) -> None:
    small, large = deploy(vmSize="Standard_D2s_v5"), deploy(vmSize="Standard_D8s_v5")
    old, new = small.mocks.inputs(POOL), large.mocks.inputs(POOL)
    assert old["poolName"].startswith("scorers-d2s-v5-") and new["poolName"].startswith("scorers-d8s-v5-")
    # A changed id is a replacement to the provider (the id is in the resource's path): create the new pool, then
    # update what names it, then delete the old one; the submitter names the pool that exists at each step.
    assert _env(small)[envvars.BATCH_POOL_ID] == old["poolName"]
    assert _env(large)[envvars.BATCH_POOL_ID] == new["poolName"] == large.outputs["batch_pool_id"]


@pytest.mark.parametrize(
    "change",
    [
        {"taskSlotsPerNode": 4},
        {"poolImage": "canonical:ubuntu-24_04-lts:server:latest"},
        {"nodeAgentSku": "batch.node.ubuntu 22.04"},
        {"ephemeralOsDisk": True},
        {"subnetId": "/subscriptions/s/resourceGroups/n/providers/Microsoft.Network/virtualNetworks/v/subnets/b"},
    ],
)
def test_every_property_that_needs_an_empty_pool_names_a_new_one(deploy: Deploy, change: dict[str, Any]) -> None:
    assert deploy().mocks.inputs(POOL)["poolName"] != deploy(**change).mocks.inputs(POOL)["poolName"]


@pytest.mark.parametrize("change", [{"maxNodes": 9}, {"minNodes": 1}, {"autoscaleIntervalMinutes": 15}])
def test_formula_changes_update_the_running_pool_in_place(deploy: Deploy, change: dict[str, Any]) -> None:
    # scaleSettings is one of the properties Batch updates with nodes running: same pool, new formula.
    before, after = deploy().mocks.inputs(POOL), deploy(**change).mocks.inputs(POOL)
    assert before["poolName"] == after["poolName"]
    assert before["scaleSettings"] != after["scaleSettings"]


def test_pool_ids_fit_batch_rules() -> None:
    for size in ("Standard_D2s_v5", "Standard_E8-4ds_v5", "Standard_" + "X" * 80):
        name = pool_id(size, {"slots": 8})
        assert len(name) <= MAX_POOL_ID and re.fullmatch(r"[A-Za-z0-9_-]+", name), name
    assert pool_id("Standard_D2s_v5", {"a": 1}) != pool_id("Standard_D2s_v5", {"a": 2})


# --- Spot with a dedicated fallback ------------------------------------------------------------------------------


def test_the_pool_gets_the_fallback_formula(deploy: Deploy) -> None:
    formula = deploy(spotNodes=True, maxNodes=6, dedicatedFallbackNodes=2).mocks.inputs(POOL)["scaleSettings"][
        "autoScale"
    ]["formula"]
    assert formula == autoscale_formula(
        parse_config({"spotNodes": True, "maxNodes": 6, "dedicatedFallbackNodes": 2}).autoscale
    )
    assert "$TargetDedicatedNodes = $waited > 0 ? min(2, $missing) : 0;" in formula


def test_fallback_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"batchscoring:dedicatedFallbackNodes: 2 applies to Spot pools only"):
        parse_config({"dedicatedFallbackNodes": 2})
    with pytest.raises(ConfigError, match=r"dedicatedFallbackNodes: 9 must not exceed maxNodes \(4\)"):
        parse_config({"dedicatedFallbackNodes": 9, "spotNodes": True, "maxNodes": 4})


# --- quotas ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "family", "cores"),
    [
        ("Standard_D8s_v5", "standardDSv5Family", 8),
        ("Standard_D2s_v5", "standardDSv5Family", 2),
        ("Standard_D8ads_v5", "standardDADSv5Family", 8),
        ("Standard_F8s_v2", "standardFSv2Family", 8),
        ("Standard_E8-4ds_v5", "standardEDSv5Family", 8),
        ("Standard_NC6s_v3", "standardNCSv3Family", 6),
        ("Standard_A2_v2", "standardAv2Family", 2),
    ],
)
def test_vm_family_and_vcpus_from_the_size(size: str, family: str, cores: int) -> None:
    assert (vm_family(size), vcpus(size)) == (family, cores)


def test_quota_need_of_each_kind_of_pool() -> None:
    dedicated = batch_quota_need(parse_config({"vmSize": "Standard_D4s_v5", "maxNodes": 5}))
    assert (dedicated.family, dedicated.dedicated_cores, dedicated.spot_cores) == ("standardDSv5Family", 20, 0)
    spot = batch_quota_need(parse_config({"spotNodes": True, "maxNodes": 10, "vmSize": "Standard_D8s_v5"}))
    assert (spot.dedicated_cores, spot.spot_cores) == (0, 80)
    fallback = batch_quota_need(
        parse_config({"spotNodes": True, "maxNodes": 10, "dedicatedFallbackNodes": 3, "vmSize": "Standard_D8s_v5"})
    )
    assert (fallback.dedicated_cores, fallback.spot_cores) == (24, 80)


def test_the_shipped_stacks_quota_lines(capsys: pytest.CaptureFixture[str]) -> None:
    prod = batch_quota_need(read_stack_config(ROOT / "Pulumi.prod.yaml"))
    assert (prod.family, prod.dedicated_cores, prod.spot_cores) == ("standardDSv5Family", 64, 320)
    dev = batch_quota_need(read_stack_config(ROOT / "Pulumi.dev.yaml"))
    assert (dev.family, dev.dedicated_cores, dev.spot_cores) == ("standardDSv5Family", 4, 0)
    assert main([str(ROOT / "Pulumi.prod.yaml")]) == 0
    out = capsys.readouterr().out
    assert "Dedicated cores, standardDSv5Family: 64 (8 x 8 vCPUs per Standard_D8s_v5 node)" in out
    assert "Spot (low-priority) cores, total for the account: 320 (40 x 8 vCPUs per Standard_D8s_v5 node)" in out
    assert main([]) == 2
