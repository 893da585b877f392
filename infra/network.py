"""The opt-in private network (`privateNetwork: true`): one VNet, its subnets, outbound NAT, private DNS zones.

| subnet | what runs there |
|---|---|
| pool | Batch nodes, no public IPs: the scorer never listens on the internet |
| submitter | the submitter container group (delegated to ACI): reaches Batch and storage privately |
| endpoints | private endpoints of storage (blob), Batch (account, node management), ACR (Premium only) |

Both workload subnets leave through one NAT gateway: nodes without public IPs still need outbound access
(Marketplace image, OS updates, a Standard registry) and Azure retires default outbound access for new subnets
("Default outbound access in Azure", learn.microsoft.com/azure/virtual-network/ip-services/default-outbound-access).
Name resolution of each service's public name to its private endpoint comes from a `privatelink.*` private DNS
zone linked to the VNet ("Azure Private Endpoint private DNS zone values",
learn.microsoft.com/azure/private-link/private-endpoint-dns).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import pulumi
from pulumi_azure_native import network, privatedns

from infra.wait import Wait

# Private DNS zone per private-link group (learn.microsoft.com/azure/private-link/private-endpoint-dns).
DNS_ZONES = {
    "blob": "privatelink.blob.core.windows.net",
    "batchAccount": "privatelink.batch.azure.com",
    "nodeManagement": "privatelink.batch.azure.com",
    "registry": "privatelink.azurecr.io",
}
SUBNETS = ("pool", "submitter", "endpoints")
# Destroy. A subnet delegated to ACI carries a service association link (SAL) that ACI creates with the first group in
# it and removes on its own some time after the last group is deleted; until then the subnet's delete fails with
# InUseSubnetCannotBeDeleted (Azure/azure-quickstart-templates#5450), and removing the delegation fails with "requires
# any of the following delegation(s) [Microsoft.ContainerInstance/containerGroups] to reference service association
# link .../serviceAssociationLinks/acisal" (MicrosoftDocs/azure-docs#47802). No network profile is involved: the group
# names its subnet (subnetIds), and network profiles "have been deprecated as of the 2021-07-01 API version"
# (learn.microsoft.com/azure/container-instances/container-instances-vnet, network profile callout). So the order on
# `pulumi destroy` is: container group (it depends on the release below) -> the release waits this long -> the
# submitter subnet (the release depends on it) -> the VNet, NAT gateway and NSG. Should the link still be there, the
# subnet's delete fails and a second `pulumi destroy` finishes; the link can also be deleted by hand (REST "Subnet
# Service Association Link - Delete", README "Destroy").
ACI_LINK_RELEASE_SECONDS = 300


def subnet_prefixes(address_space: str) -> dict[str, str]:
    """The address space cut into four equal blocks: pool, submitter, endpoints and one spare for growth."""
    space = ipaddress.ip_network(address_space, strict=True)
    blocks = list(space.subnets(prefixlen_diff=2))
    return {name: str(block) for name, block in zip(SUBNETS, blocks, strict=False)}


@dataclass
class PrivateNetworkArgs:
    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    vnet_name: str
    address_space: str
    tags: dict[str, str] = field(default_factory=dict)


class PrivateNetwork(pulumi.ComponentResource):
    def __init__(self, name: str, args: PrivateNetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchscoring:infra:PrivateNetwork", name, None, opts)
        tags = {**args.tags, "component": "network"}
        self._args, self._name = args, name
        # Every private endpoint with its DNS record: what must exist before a workload in the VNet starts, or it
        # resolves a service's public name to its public address, which the firewall denies. And the submitter
        # subnet's release (ACI_LINK_RELEASE_SECONDS), which the container group must be deleted before.
        self.ready: list[pulumi.Resource] = []
        child = pulumi.ResourceOptions(parent=self)
        nat_ip = network.PublicIPAddress(
            f"{name}-nat-ip",
            resource_group_name=args.resource_group_name,
            location=args.location,
            sku=network.PublicIPAddressSkuArgs(name=network.PublicIPAddressSkuName.STANDARD),
            public_ip_allocation_method=network.IPAllocationMethod.STATIC,
            tags=tags,
            opts=child,
        )
        self.nat = network.NatGateway(
            f"{name}-nat",
            resource_group_name=args.resource_group_name,
            location=args.location,
            sku=network.NatGatewaySkuArgs(name=network.NatGatewaySkuName.STANDARD),
            public_ip_addresses=[network.SubResourceArgs(id=nat_ip.id)],
            tags=tags,
            opts=child,
        )
        # No inbound rule beyond Azure's defaults (deny from the internet): nothing here serves requests.
        self.nsg = network.NetworkSecurityGroup(
            f"{name}-nsg", resource_group_name=args.resource_group_name, location=args.location, tags=tags, opts=child
        )
        self.vnet = network.VirtualNetwork(
            f"{name}-vnet",
            virtual_network_name=args.vnet_name,
            resource_group_name=args.resource_group_name,
            location=args.location,
            address_space=network.AddressSpaceArgs(address_prefixes=[args.address_space]),
            tags=tags,
            # Subnets are their own resources below; the VNet must not reset them on every update.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["subnets"]),
        )
        prefixes = subnet_prefixes(args.address_space)
        self.subnets: dict[str, network.Subnet] = {}
        previous: list[pulumi.Resource] = []
        for subnet in SUBNETS:
            workload = subnet != "endpoints"
            self.subnets[subnet] = network.Subnet(
                f"{name}-{subnet}",
                subnet_name=subnet,
                virtual_network_name=self.vnet.name,
                resource_group_name=args.resource_group_name,
                address_prefix=prefixes[subnet],
                network_security_group=network.NetworkSecurityGroupArgs(id=self.nsg.id),
                nat_gateway=network.SubResourceArgs(id=self.nat.id) if workload else None,
                default_outbound_access=False,
                private_endpoint_network_policies=None if workload else "Enabled",
                delegations=[
                    network.DelegationArgs(name="aci", service_name="Microsoft.ContainerInstance/containerGroups")
                ]
                if subnet == "submitter"
                else None,
                # Azure updates one subnet of a VNet at a time; parallel writes fail with "AnotherOperationInProgress".
                opts=pulumi.ResourceOptions(parent=self.vnet, depends_on=list(previous)),
            )
            previous = [self.subnets[subnet]]
        submitter = self.subnets["submitter"]
        self.aci_link_release = Wait(
            f"{name}-submitter-release",
            "ACI releasing the submitter subnet (service association link)",
            [submitter.id],
            delete_seconds=ACI_LINK_RELEASE_SECONDS,
            opts=pulumi.ResourceOptions(parent=submitter),
        )
        self.zones: dict[str, privatedns.PrivateZone] = {}
        for zone_name in sorted(set(DNS_ZONES.values())):
            zone = privatedns.PrivateZone(
                f"{name}-{zone_name.split('.')[1]}-zone",
                private_zone_name=zone_name,
                resource_group_name=args.resource_group_name,
                location="Global",
                tags=tags,
                opts=child,
            )
            privatedns.VirtualNetworkLink(
                f"{name}-{zone_name.split('.')[1]}-link",
                private_zone_name=zone.name,
                resource_group_name=args.resource_group_name,
                location="Global",
                registration_enabled=False,
                virtual_network=privatedns.SubResourceArgs(id=self.vnet.id),
                tags=tags,
                opts=pulumi.ResourceOptions(parent=zone),
            )
            self.zones[zone_name] = zone
        self.ready.append(self.aci_link_release)
        self.register_outputs({"vnet_id": self.vnet.id, "subnets": {k: v.id for k, v in self.subnets.items()}})

    def subnet_id(self, subnet: str) -> pulumi.Output[str]:
        return self.subnets[subnet].id

    def private_endpoint(
        self, name: str, target_id: pulumi.Input[str], group: str, parent: pulumi.Resource
    ) -> network.PrivateEndpoint:
        """A private endpoint in the endpoints subnet for one group of a service, registered in its DNS zone."""
        endpoint = network.PrivateEndpoint(
            f"{self._name}-{name}-pe",
            resource_group_name=self._args.resource_group_name,
            location=self._args.location,
            subnet=network.SubnetArgs(id=self.subnet_id("endpoints")),
            private_link_service_connections=[
                network.PrivateLinkServiceConnectionArgs(
                    name=f"{name}-{group}", private_link_service_id=target_id, group_ids=[group]
                )
            ],
            tags={**self._args.tags, "component": "network"},
            opts=pulumi.ResourceOptions(parent=parent),
        )
        dns = network.PrivateDnsZoneGroup(
            f"{self._name}-{name}-dns",
            private_dns_zone_group_name="default",
            private_endpoint_name=endpoint.name,
            resource_group_name=self._args.resource_group_name,
            private_dns_zone_configs=[
                network.PrivateDnsZoneConfigArgs(name=group, private_dns_zone_id=self.zones[DNS_ZONES[group]].id)
            ],
            opts=pulumi.ResourceOptions(parent=endpoint),
        )
        self.ready += [endpoint, dns]
        return endpoint
