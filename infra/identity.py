"""Managed identities and least-privilege role assignments, each scoped to the narrowest resource.

| principal | role | scope |
|---|---|---|
| scorer (pool nodes) | Storage Blob Data Reader (Contributor with `trainOnPool`) | models container |
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

import hashlib
import uuid
from dataclasses import dataclass, field

import pulumi
from pulumi_azure_native import authorization, managedidentity

from infra import roles
from infra.wait import Wait

# A role assignment is not in effect the moment its PUT returns: "it can take up to 10 minutes for changes to take
# effect" (learn.microsoft.com/azure/role-based-access-control/troubleshooting), and a pull as a just-granted managed
# identity fails until it has, then "will recover in 1-2 minutes" (kubernetes/kubernetes#92326, AcrPull). Consumers
# that act as the identity at creation (ACI runs the submitter group when it is created, pool nodes pull the scorer
# image when they start) wait this long after the grants are first made; a later `pulumi up` waits only for grants
# that are new (the Wait's triggers are the assignments' ids). If a first deployment still fails on a pull
# (InaccessibleImage), running `pulumi up` again creates what failed: nothing else needs undoing.
GRANT_SETTLE_SECONDS = 120
# A new custom role definition is not yet visible to every ARM replica when its PUT returns: an assignment of it can
# fail with RoleDefinitionDoesNotExist (pulumi/pulumi-azure#840; "a brand-new custom role can take a minute to become
# assignable"). Its assignments wait this long after it is created or changed.
ROLE_DEFINITION_SETTLE_SECONDS = 60


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
    """Role assignments; with ``settle_seconds``, also a pause after them (a child, so whatever ``depends_on`` the
    policy waits for the pause too: Pulumi expands a component dependency to all its children)."""

    def __init__(
        self,
        name: str,
        grants: list[Grant],
        opts: pulumi.ResourceOptions | None = None,
        settle_seconds: int = 0,
    ) -> None:
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
        self.settled = (
            Wait(
                f"{name}-settle",
                f"{name}: role assignments taking effect",
                [assignment.id for assignment in self.assignments.values()],
                create_seconds=settle_seconds,
                opts=pulumi.ResourceOptions(parent=self),
            )
            if settle_seconds
            else None
        )
        self.register_outputs({"assignments": len(self.assignments)})


def role_identity(scope_id: str, label: str) -> tuple[str, str]:
    """The definition's GUID and the suffix of its name, both derived from the scope's full ARM id.

    A role name is unique in the tenant (a second definition with it fails with RoleDefinitionWithSameNameExists, as
    in pulumi/pulumi-azure#840 and Azure/ARO-RP#1346): the scope's id (subscription and resource group) makes it
    unique per stack and per subscription. A fixed GUID makes a retried create (after a failed or interrupted
    `pulumi up`) PUT the same definition again, an update, instead of a second definition with the same name."""
    key = f"{scope_id.lower()}/{label}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, key)), hashlib.sha256(key.encode()).hexdigest()[:8]


@dataclass
class CustomRole:
    definition: authorization.RoleDefinition
    settled: Wait

    @property
    def id(self) -> pulumi.Output[str]:
        """The definition's id, known only once it has settled: an assignment given this waits for both."""
        return pulumi.Output.all(self.definition.id, self.settled.id).apply(lambda ids: str(ids[0]))


def custom_role(
    name: str,
    role_name: str,
    scope: pulumi.Output[str],
    actions: list[str],
    data_actions: list[str] | None = None,
    opts: pulumi.ResourceOptions | None = None,
) -> CustomRole:
    """A role with exactly the listed permissions, assignable only within ``scope``; named ``<role_name> <hash of the
    scope id>``, unique per tenant (see :func:`role_identity`)."""
    identity = scope.apply(lambda scope_id: role_identity(scope_id, role_name))
    definition = authorization.RoleDefinition(
        name,
        role_definition_id=identity.apply(lambda i: i[0]),
        role_name=identity.apply(lambda i: f"{role_name} {i[1]}"),
        scope=scope,
        assignable_scopes=[scope],
        permissions=[authorization.PermissionArgs(actions=actions, data_actions=data_actions or [])],
        description="Least-privilege role of the batch scoring platform.",
        opts=opts,
    )
    settled = Wait(
        f"{name}-settle",
        f"{name}: role definition replicating",
        [definition.id],
        create_seconds=ROLE_DEFINITION_SETTLE_SECONDS,
        opts=pulumi.ResourceOptions(parent=definition),
    )
    return CustomRole(definition, settled)
