"""Azure Batch account and the autoscaling pool that runs the scorer image."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
from pulumi_azure_native import batch

from infra.autoscale import AutoscaleSpec, autoscale_formula

POOL_ID = "scorers"
# Batch's container-ready Ubuntu image and its matching node agent.
IMAGE = batch.ImageReferenceArgs(publisher="microsoft-dsvm", offer="ubuntu-hpc", sku="2204", version="latest")
NODE_AGENT = "batch.node.ubuntu 22.04"


@dataclass
class BatchComputeArgs:
    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    account_name: str
    vm_size: str
    autoscale: AutoscaleSpec
    evaluation_minutes: int
    scorer_image: pulumi.Input[str]
    registry_server: pulumi.Input[str]
    node_identity_id: pulumi.Input[str]  # pulls images and reads/writes blobs on the nodes
    subnet_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


class BatchCompute(pulumi.ComponentResource):
    def __init__(self, name: str, args: BatchComputeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchscoring:infra:BatchCompute", name, None, opts)
        self.account = batch.BatchAccount(
            f"{name}-account",
            account_name=args.account_name,
            resource_group_name=args.resource_group_name,
            location=args.location,
            pool_allocation_mode=batch.PoolAllocationMode.BATCH_SERVICE,
            allowed_authentication_modes=[batch.AuthenticationMode.AAD],  # no shared keys
            identity=batch.BatchAccountIdentityArgs(
                type=batch.ResourceIdentityType.USER_ASSIGNED, user_assigned_identities=[args.node_identity_id]
            ),
            tags={**args.tags, "component": "batch"},
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.formula = autoscale_formula(args.autoscale)
        node_identity = batch.ComputeNodeIdentityReferenceArgs(resource_id=args.node_identity_id)
        network = (
            batch.NetworkConfigurationArgs(
                subnet_id=args.subnet_id,
                public_ip_address_configuration=batch.PublicIPAddressConfigurationArgs(
                    provision=batch.IPAddressProvisioningType.NO_PUBLIC_IP_ADDRESSES
                ),
            )
            if args.subnet_id
            else None
        )
        self.pool = batch.Pool(
            f"{name}-pool",
            pool_name=POOL_ID,
            account_name=self.account.name,
            resource_group_name=args.resource_group_name,
            vm_size=args.vm_size,
            task_slots_per_node=args.autoscale.task_slots_per_node,
            task_scheduling_policy=batch.TaskSchedulingPolicyArgs(node_fill_type=batch.ComputeNodeFillType.PACK),
            identity=batch.BatchPoolIdentityArgs(
                type=batch.PoolIdentityType.USER_ASSIGNED, user_assigned_identities=[args.node_identity_id]
            ),
            deployment_configuration=batch.DeploymentConfigurationArgs(
                virtual_machine_configuration=batch.VirtualMachineConfigurationArgs(
                    image_reference=IMAGE,
                    node_agent_sku_id=NODE_AGENT,
                    container_configuration=batch.ContainerConfigurationArgs(
                        type=batch.ContainerType.DOCKER_COMPATIBLE,
                        container_image_names=[args.scorer_image],  # pre-fetched when a node starts
                        container_registries=[
                            batch.ContainerRegistryArgs(
                                registry_server=args.registry_server, identity_reference=node_identity
                            )
                        ],
                    ),
                )
            ),
            scale_settings=batch.ScaleSettingsArgs(
                auto_scale=batch.AutoScaleSettingsArgs(
                    formula=self.formula, evaluation_interval=f"PT{args.evaluation_minutes}M"
                )
            ),
            network_configuration=network,
            target_node_communication_mode=batch.NodeCommunicationMode.SIMPLIFIED,
            opts=pulumi.ResourceOptions(
                parent=self.account, custom_timeouts=pulumi.CustomTimeouts(create="30m", update="30m", delete="30m")
            ),
        )
        self.account_endpoint = self.account.account_endpoint.apply(lambda host: f"https://{host}")
        self.pool_id = self.pool.name
        self.register_outputs({"account_endpoint": self.account_endpoint, "pool_id": self.pool_id})
