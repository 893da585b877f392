"""Azure management locks: what `protectData` adds to Pulumi's `protect`.

`protect` only makes `pulumi destroy` refuse; a CanNotDelete lock makes Azure refuse a delete from anyone (portal,
CLI, another Pulumi stack), while reads and updates go on ("Lock your resources to protect your infrastructure",
learn.microsoft.com/azure/azure-resource-manager/management/lock-resources). Setting `protectData: false`
and running `pulumi up` removes the lock and the protect flag: a deliberate, reviewed config change.
"""

from __future__ import annotations

import pulumi
from pulumi_azure_native import authorization


def lock(name: str, resource: pulumi.CustomResource, what: str) -> authorization.ManagementLockByScope:
    """A CanNotDelete lock on one resource, parented to it so it is shown (and removed) with it."""
    return authorization.ManagementLockByScope(
        name,
        lock_name="protect-data",
        scope=resource.id,
        level=authorization.LockLevel.CAN_NOT_DELETE,
        notes=f"protectData: {what}. Remove this lock (and set protectData: false) before deleting on purpose.",
        opts=pulumi.ResourceOptions(parent=resource),
    )
