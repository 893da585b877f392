"""Storage account and the four containers: models, aggregates, predictions, logs."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
from pulumi_azure_native import storage

from infra.locks import lock
from infra.network import PrivateNetwork
from workloads.common.layout import Container


@dataclass(frozen=True)
class DataProtection:
    """What keeps data when someone deletes it: by mistake, by a bug, or with a stolen identity.

    - `redundancy`: copies in other zones (ZRS) or another region as well (GZRS).
    - `soft_delete_days`: deleted or overwritten blobs, and deleted containers, stay restorable ("Soft delete for
      blobs", "Soft delete for containers", learn.microsoft.com/azure/storage/blobs/soft-delete-blob-overview).
    - `versioning`: every overwrite of a blob keeps the previous version ("Blob versioning",
      learn.microsoft.com/azure/storage/blobs/versioning-overview). The account-wide switch is scoped by the
      lifecycle policy: model versions are kept, other containers' previous versions expire after the soft
      delete window (their blobs are rewritten by design: re-scored hours, stream output).
    - `protect` (protectData): Pulumi's protect, which only stops `pulumi destroy`, and a CanNotDelete lock on the
      account, which stops everyone (infra/locks.py). Locks apply to the management plane only: deleting the
      account or a container is refused, deleting blobs through the data plane is not, which is what soft delete
      and versioning are for.
    """

    redundancy: str = "LRS"
    soft_delete_days: int = 7
    versioning: bool = False
    protect: bool = False  # protectData: Pulumi protect and a CanNotDelete lock


@dataclass(frozen=True)
class Firewall:
    """Default deny, with the exceptions the platform needs: trusted Azure services (the stream job writes
    aggregates with its managed identity as one: "Trusted access ... Azure Stream Analytics",
    learn.microsoft.com/azure/storage/common/storage-network-security), a private endpoint for the VNet, and the
    operators' addresses."""

    network: PrivateNetwork
    allowed_ip_ranges: tuple[str, ...] = ()


@dataclass
class StorageArgs:
    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    account_name: str
    retention_days: dict[Container, int]  # blobs older than this are deleted (models are kept)
    protection: DataProtection = field(default_factory=DataProtection)
    firewall: Firewall | None = None  # privateNetwork: deny the public internet except these addresses
    tags: dict[str, str] = field(default_factory=dict)


class PlatformStorage(pulumi.ComponentResource):
    """HTTPS only, TLS 1.2+, no public blob access, no shared keys: every client uses Entra ID."""

    def __init__(self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchscoring:infra:Storage", name, None, opts)
        tags = {**args.tags, "component": "storage"}
        protection = args.protection
        data = pulumi.ResourceOptions(parent=self, protect=protection.protect)
        self.account = storage.StorageAccount(
            f"{name}-account",
            account_name=args.account_name,
            resource_group_name=args.resource_group_name,
            location=args.location,
            kind=storage.Kind.STORAGE_V2,
            sku=storage.SkuArgs(name=f"Standard_{protection.redundancy}"),
            enable_https_traffic_only=True,
            minimum_tls_version=storage.MinimumTlsVersion.TLS1_2,
            allow_blob_public_access=False,
            allow_shared_key_access=False,
            default_to_o_auth_authentication=True,
            allow_cross_tenant_replication=False,
            public_network_access=storage.PublicNetworkAccess.ENABLED,  # filtered by the rule set when private
            network_rule_set=_network_rules(args.firewall),
            tags=tags,
            opts=data,
        )
        retention = (
            storage.DeleteRetentionPolicyArgs(enabled=True, days=protection.soft_delete_days)
            if protection.soft_delete_days
            else storage.DeleteRetentionPolicyArgs(enabled=False)
        )
        self.blob_service = storage.BlobServiceProperties(
            f"{name}-blob-service",
            blob_services_name="default",
            account_name=self.account.name,
            resource_group_name=args.resource_group_name,
            delete_retention_policy=retention,
            container_delete_retention_policy=retention,
            is_versioning_enabled=protection.versioning,
            opts=pulumi.ResourceOptions(parent=self.account),
        )
        self.containers: dict[Container, storage.BlobContainer] = {
            container: storage.BlobContainer(
                f"{name}-{container.value}",
                container_name=container.value,
                account_name=self.account.name,
                resource_group_name=args.resource_group_name,
                public_access=storage.PublicAccess.NONE,
                opts=pulumi.ResourceOptions(
                    parent=self.account, protect=protection.protect, depends_on=[self.blob_service]
                ),
            )
            for container in Container
        }
        self.lifecycle = storage.ManagementPolicy(
            f"{name}-lifecycle",
            management_policy_name="default",
            account_name=self.account.name,
            resource_group_name=args.resource_group_name,
            policy=storage.ManagementPolicySchemaArgs(
                rules=[
                    storage.ManagementPolicyRuleArgs(
                        name=f"expire-{container.value}",
                        type=storage.RuleType.LIFECYCLE,
                        enabled=True,
                        definition=storage.ManagementPolicyDefinitionArgs(
                            filters=storage.ManagementPolicyFilterArgs(
                                blob_types=["blockBlob"], prefix_match=[f"{container.value}/"]
                            ),
                            actions=storage.ManagementPolicyActionArgs(
                                base_blob=storage.ManagementPolicyBaseBlobArgs(
                                    delete=storage.DateAfterModificationArgs(days_after_modification_greater_than=days)
                                ),
                                version=storage.ManagementPolicyVersionArgs(
                                    delete=storage.DateAfterCreationArgs(
                                        days_after_creation_greater_than=max(protection.soft_delete_days, 1)
                                    )
                                )
                                if protection.versioning
                                else None,
                            ),
                        ),
                    )
                    for container, days in sorted(args.retention_days.items())
                ]
            ),
            opts=pulumi.ResourceOptions(parent=self.account),
        )
        if protection.protect:
            lock(f"{name}-lock", self.account, "storage: models, aggregates, predictions and run logs")
        if args.firewall:
            args.firewall.network.private_endpoint("blob", self.account.id, "blob", parent=self.account)
        self.account_name = self.account.name
        self.blob_endpoint = self.account.primary_endpoints.apply(lambda e: e.blob)
        self.register_outputs(
            {
                "account_name": self.account_name,
                "blob_endpoint": self.blob_endpoint,
                "containers": {c.value: b.name for c, b in self.containers.items()},
            }
        )

    def container_id(self, container: Container) -> pulumi.Output[str]:
        """The ARM id of a container: the narrowest scope a data role can be granted on."""
        return self.containers[container].id


def _network_rules(firewall: Firewall | None) -> storage.NetworkRuleSetArgs:
    if firewall is None:
        return storage.NetworkRuleSetArgs(
            default_action=storage.DefaultAction.ALLOW, bypass=storage.Bypass.AZURE_SERVICES
        )
    return storage.NetworkRuleSetArgs(
        default_action=storage.DefaultAction.DENY,
        bypass=storage.Bypass.AZURE_SERVICES,
        ip_rules=[
            storage.IPRuleArgs(i_p_address_or_range=cidr.removesuffix("/32"), action=storage.Action.ALLOW)
            for cidr in firewall.allowed_ip_ranges
        ],
    )
