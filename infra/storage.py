"""Storage account and the four containers: models, aggregates, predictions, logs."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
from pulumi_azure_native import storage

from workloads.common.layout import Container


@dataclass
class StorageArgs:
    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    account_name: str
    retention_days: dict[Container, int]  # blobs older than this are deleted (models are kept)
    protect: bool = False
    tags: dict[str, str] = field(default_factory=dict)


class PlatformStorage(pulumi.ComponentResource):
    """HTTPS only, TLS 1.2+, no public blob access, no shared keys: every client uses Entra ID."""

    def __init__(self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchscoring:infra:Storage", name, None, opts)
        tags = {**args.tags, "component": "storage"}
        data = pulumi.ResourceOptions(parent=self, protect=args.protect)
        self.account = storage.StorageAccount(
            f"{name}-account",
            account_name=args.account_name,
            resource_group_name=args.resource_group_name,
            location=args.location,
            kind=storage.Kind.STORAGE_V2,
            sku=storage.SkuArgs(name=storage.SkuName.STANDARD_LRS),
            enable_https_traffic_only=True,
            minimum_tls_version=storage.MinimumTlsVersion.TLS1_2,
            allow_blob_public_access=False,
            allow_shared_key_access=False,
            default_to_o_auth_authentication=True,
            allow_cross_tenant_replication=False,
            tags=tags,
            opts=data,
        )
        self.containers: dict[Container, storage.BlobContainer] = {
            container: storage.BlobContainer(
                f"{name}-{container.value}",
                container_name=container.value,
                account_name=self.account.name,
                resource_group_name=args.resource_group_name,
                public_access=storage.PublicAccess.NONE,
                opts=pulumi.ResourceOptions(parent=self.account, protect=args.protect),
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
                                )
                            ),
                        ),
                    )
                    for container, days in sorted(args.retention_days.items())
                ]
            ),
            opts=pulumi.ResourceOptions(parent=self.account),
        )
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
