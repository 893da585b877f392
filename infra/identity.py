"""Managed identities and least-privilege role assignments, each scoped to the narrowest resource.

| principal | role | scope |
|---|---|---|
| scorer (pool nodes) | Storage Blob Data Reader | models container |
| scorer | Storage Blob Data Contributor | aggregates (to refile misfiled rows), predictions, logs containers |
| scorer, submitter | AcrPull | registry |
| submitter (container group) | Storage Blob Data Reader | aggregates container (listing only) |
| submitter | Storage Blob Data Contributor | logs container (manifests, job records) |
| submitter | Azure Batch Job Submitter (built in) | Batch account |
| Stream Analytics | Event Hubs Data Receiver | the event hub |
| Stream Analytics | Storage Blob Data Contributor | aggregates container |
| scheduler (Logic App) | start container group (custom) | the submitter container group |
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
from pulumi_azure_native import authorization, managedidentity

from infra import roles


@dataclass
class IdentitiesArgs:
    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    names: dict[str, str]  # purpose -> Azure name, e.g. {"scorer": "bscore-dev-scorer"}
    tags: dict[str, str] = field(default_factory=dict)


class Identities(pulumi.ComponentResource):
    """User-assigned identities: created before the resources that carry them, kept across rebuilds."""

    def __init__(self, name: str, args: IdentitiesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchscoring:infra:Identities", name, None, opts)
        self.identities = {
            purpose: managedidentity.UserAssignedIdentity(
                f"{name}-{purpose}",
                resource_name_=azure_name,
                resource_group_name=args.resource_group_name,
                location=args.location,
                tags={**args.tags, "component": "identity"},
                opts=pulumi.ResourceOptions(parent=self),
            )
            for purpose, azure_name in args.names.items()
        }
        self.register_outputs({purpose: identity.id for purpose, identity in self.identities.items()})

    def __getitem__(self, purpose: str) -> managedidentity.UserAssignedIdentity:
        return self.identities[purpose]


@dataclass(frozen=True)
class Grant:
    """One role for one principal on one scope; ``name`` is the logical name of the assignment."""

    name: str
    principal_id: pulumi.Input[str]
    role_definition_id: pulumi.Input[str]
    scope: pulumi.Input[str]


def built_in(role_guid: str) -> pulumi.Output[str]:
    subscription = authorization.get_client_config_output().subscription_id
    return subscription.apply(lambda sub: roles.role_definition_id(sub, role_guid))


class AccessPolicy(pulumi.ComponentResource):
    def __init__(self, name: str, grants: list[Grant], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchscoring:infra:AccessPolicy", name, None, opts)
        self.assignments = {
            grant.name: authorization.RoleAssignment(
                f"{name}-{grant.name}",
                principal_id=grant.principal_id,
                principal_type=authorization.PrincipalType.SERVICE_PRINCIPAL,
                role_definition_id=grant.role_definition_id,
                scope=grant.scope,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for grant in grants
        }
        self.register_outputs({"assignments": len(self.assignments)})


def custom_role(
    name: str,
    role_name: pulumi.Input[str],
    scope: pulumi.Input[str],
    actions: list[str],
    data_actions: list[str] | None = None,
    opts: pulumi.ResourceOptions | None = None,
) -> authorization.RoleDefinition:
    """A role with exactly the listed permissions, assignable only within ``scope``."""
    return authorization.RoleDefinition(
        name,
        role_name=role_name,
        scope=scope,
        assignable_scopes=[scope],
        permissions=[authorization.PermissionArgs(actions=actions, data_actions=data_actions or [])],
        description="Least-privilege role of the batch scoring platform.",
        opts=opts,
    )
