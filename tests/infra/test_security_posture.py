"""Data protection and the two network modes, as declared to Azure."""

from __future__ import annotations

from typing import Any

import pytest

from infra.network import subnet_prefixes
from tests.infra.conftest import Deploy, Mocks

STORAGE, BLOB_SERVICE = "azure-native:storage:StorageAccount", "azure-native:storage:BlobServiceProperties"
LOCK, POOL = "azure-native:authorization:ManagementLockByScope", "azure-native:batch:Pool"
ENDPOINT, SUBNET = "azure-native:network:PrivateEndpoint", "azure-native:network:Subnet"
PRIVATE = {"privateNetwork": True, "registrySku": "Premium", "adminIpRanges": ["203.0.113.0/24", "198.51.100.7/32"]}


def mock_id(mocks: Mocks, typ: str, suffix: str = "") -> str:
    return f"/mock/{typ}/{mocks.one(typ, suffix).name}"


def test_dev_defaults_keep_a_week_of_deleted_blobs_and_no_lock(deploy: Deploy) -> None:
    mocks = deploy().mocks
    assert mocks.inputs(STORAGE)["sku"] == {"name": "Standard_LRS"}
    service = mocks.inputs(BLOB_SERVICE)
    assert service["deleteRetentionPolicy"] == {"enabled": True, "days": 7}
    assert service["containerDeleteRetentionPolicy"] == {"enabled": True, "days": 7}
    assert service["isVersioningEnabled"] is False
    assert not mocks.of_type(LOCK)


def test_prod_protection_is_zone_redundant_versioned_soft_deleted_and_locked(deploy: Deploy) -> None:
    mocks = deploy(
        stack="prod",
        storageRedundancy="GZRS",
        softDeleteDays=30,
        blobVersioning=True,
        protectData=True,
        alertEmails=["ops@contoso.com"],
        eventHubPartitions=16,
    ).mocks
    assert mocks.inputs(STORAGE)["sku"] == {"name": "Standard_GZRS"}
    service = mocks.inputs(BLOB_SERVICE)
    assert (
        service["deleteRetentionPolicy"] == service["containerDeleteRetentionPolicy"] == {"enabled": True, "days": 30}
    )
    assert service["isVersioningEnabled"] is True
    # Containers are created after the blob service settings, so none exists a moment without soft delete.
    service_urn = mocks.one(BLOB_SERVICE).urn
    assert all(service_urn in c.dependencies for c in mocks.of_type("azure-native:storage:BlobContainer"))
    rules = mocks.inputs("azure-native:storage:ManagementPolicy")["policy"]["rules"]
    versions = {r["definition"]["filters"]["prefixMatch"][0]: r["definition"]["actions"].get("version") for r in rules}
    # Rewritten-by-design data loses old versions after the soft-delete window; models keep every version.
    assert versions == {
        p: {"delete": {"daysAfterCreationGreaterThan": 30}} for p in ("aggregates/", "logs/", "predictions/")
    }
    locks = {lock.inputs["scope"]: lock.inputs for lock in mocks.of_type(LOCK)}
    assert sorted(locks) == sorted([mock_id(mocks, STORAGE), mock_id(mocks, "azure-native:eventhub:Namespace")])
    assert {lock["level"] for lock in locks.values()} == {"CanNotDelete"}
    storage = mocks.one(STORAGE)
    assert storage.protect and mocks.one("azure-native:eventhub:Namespace").protect


def test_soft_delete_can_be_turned_off(deploy: Deploy) -> None:
    service = deploy(softDeleteDays=0).mocks.inputs(BLOB_SERVICE)
    assert service["deleteRetentionPolicy"] == {"enabled": False}


def test_public_mode_has_no_network_resources_and_open_firewalls(deploy: Deploy) -> None:
    mocks = deploy().mocks
    assert not [r for r in mocks.resources if r.typ.startswith(("azure-native:network:", "azure-native:privatedns:"))]
    assert mocks.inputs(STORAGE)["networkRuleSet"] == {"defaultAction": "Allow", "bypass": "AzureServices"}
    assert "networkConfiguration" not in mocks.inputs(POOL)
    assert "subnetIds" not in mocks.inputs("azure-native:containerinstance:ContainerGroup")
    assert mocks.inputs("azure-native:batch:BatchAccount")["publicNetworkAccess"] == "Enabled"


def test_private_mode_denies_public_traffic_and_adds_private_endpoints(deploy: Deploy) -> None:
    mocks = deploy(stack="prod", ingestIpRanges=["192.0.2.0/24"], **PRIVATE).mocks
    rules = mocks.inputs(STORAGE)["networkRuleSet"]
    assert rules["defaultAction"] == "Deny" and rules["bypass"] == "AzureServices"  # the stream job writes as trusted
    assert [r["iPAddressOrRange"] for r in rules["ipRules"]] == ["203.0.113.0/24", "198.51.100.7"]  # /32: bare IP
    hubs = mocks.inputs("azure-native:eventhub:NamespaceNetworkRuleSet")
    assert hubs["defaultAction"] == "Deny" and hubs["trustedServiceAccessEnabled"] is True
    assert [r["ipMask"] for r in hubs["ipRules"]] == ["192.0.2.0/24", "203.0.113.0/24", "198.51.100.7/32"]
    registry = mocks.inputs("azure-native:containerregistry:Registry")
    assert registry["sku"] == {"name": "Premium"} and registry["networkRuleSet"]["defaultAction"] == "Deny"
    assert mocks.inputs("azure-native:batch:BatchAccount")["publicNetworkAccess"] == "Disabled"

    endpoints = {e.inputs["privateLinkServiceConnections"][0]["groupIds"][0]: e.inputs for e in mocks.of_type(ENDPOINT)}
    assert sorted(endpoints) == ["batchAccount", "blob", "nodeManagement", "registry"]
    endpoints_subnet = mock_id(mocks, SUBNET, "-endpoints")
    assert {e["subnet"]["id"] for e in endpoints.values()} == {endpoints_subnet}
    zones = {z.inputs["privateZoneName"] for z in mocks.of_type("azure-native:privatedns:PrivateZone")}
    assert zones == {"privatelink.blob.core.windows.net", "privatelink.batch.azure.com", "privatelink.azurecr.io"}
    assert len(mocks.of_type("azure-native:privatedns:VirtualNetworkLink")) == 3

    network = mocks.inputs(POOL)["networkConfiguration"]
    assert network["subnetId"] == mock_id(mocks, SUBNET, "-pool")
    assert network["publicIPAddressConfiguration"] == {"provision": "NoPublicIPAddresses"}
    group = mocks.inputs("azure-native:containerinstance:ContainerGroup")
    assert group["subnetIds"] == [{"id": mock_id(mocks, SUBNET, "-submitter")}]
    subnets = {s.inputs["subnetName"]: s.inputs for s in mocks.of_type(SUBNET)}
    assert subnets["submitter"]["delegations"] == [
        {"name": "aci", "serviceName": "Microsoft.ContainerInstance/containerGroups"}
    ]
    nat = mock_id(mocks, "azure-native:network:NatGateway")
    assert {n: s.get("natGateway") for n, s in subnets.items()} == {
        "pool": {"id": nat},
        "submitter": {"id": nat},
        "endpoints": None,
    }
    assert all(s["defaultOutboundAccess"] is False for s in subnets.values())


def test_private_mode_with_a_standard_registry_leaves_the_registry_public(deploy: Deploy) -> None:
    mocks = deploy(privateNetwork=True).mocks
    registry = mocks.inputs("azure-native:containerregistry:Registry")
    assert registry["sku"] == {"name": "Standard"} and "networkRuleSet" not in registry
    groups = {e.inputs["privateLinkServiceConnections"][0]["groupIds"][0] for e in mocks.of_type(ENDPOINT)}
    assert "registry" not in groups


def test_subnets_are_carved_from_the_address_space() -> None:
    assert subnet_prefixes("10.40.0.0/16") == {
        "pool": "10.40.0.0/18",
        "submitter": "10.40.64.0/18",
        "endpoints": "10.40.128.0/18",
    }
    with pytest.raises(ValueError):
        subnet_prefixes("10.40.0.1/16")


def test_pool_image_and_node_agent_come_from_config(deploy: Deploy) -> None:
    vm: dict[str, Any] = deploy().mocks.inputs(POOL)["deploymentConfiguration"]["virtualMachineConfiguration"]
    # Ubuntu 22.04's node agent ends on 2027-06-30; Batch names microsoft-dsvm:ubuntu-hpc:2404 as the container-ready
    # successor (github.com/Azure/Batch/issues/200).
    assert vm["imageReference"] == {
        "publisher": "microsoft-dsvm",
        "offer": "ubuntu-hpc",
        "sku": "2404",
        "version": "latest",
    }
    assert vm["nodeAgentSkuId"] == "batch.node.ubuntu 24.04"
    assert "osDisk" not in vm
    vm = deploy(poolImage="canonical:ubuntu-24_04-lts:server:latest", ephemeralOsDisk=True, vmSize="Standard_D8ds_v5")
    vm = vm.mocks.inputs(POOL)["deploymentConfiguration"]["virtualMachineConfiguration"]
    assert vm["imageReference"]["offer"] == "ubuntu-24_04-lts"
    assert vm["osDisk"] == {"ephemeralOSDiskSettings": {"placement": "CacheDisk"}}
