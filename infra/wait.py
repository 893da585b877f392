"""A pause in the deployment where Azure is eventually consistent and offers nothing to poll for the outcome.

`Wait` sleeps on create (and on update, when its `triggers` change) for `create_seconds`, and on delete for
`delete_seconds`. It is ordered like any resource: what must happen after the pause depends on it, and it depends
on what the pause follows. The places it is used, each with the rule it works around:

* infra/identity.py: a role assignment is not in effect the moment its PUT returns ("it can take up to 10 minutes
  for changes to take effect", learn.microsoft.com/azure/role-based-access-control/troubleshooting), and a new custom
  role definition is not yet visible to every ARM replica (pulumi/pulumi-azure#840: RoleDefinitionDoesNotExist just
  after the create succeeded);
* infra/network.py: ACI's service association link outlives a deleted container group for a while, and the delegated
  subnet cannot be deleted until it is gone (InUseSubnetCannotBeDeleted, Azure/azure-quickstart-templates#5450).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import pulumi
import pulumi.dynamic

Sleep = Callable[[float], None]


class WaitProvider(pulumi.dynamic.ResourceProvider):
    """Stateless apart from the sleep function (tests pass a recorder; Pulumi pickles ``time.sleep`` by reference)."""

    def __init__(self, sleep: Sleep = time.sleep) -> None:
        self._sleep = sleep

    def _pause(self, seconds: Any, why: Any) -> None:
        if seconds and float(seconds) > 0:
            pulumi.log.info(f"waiting {float(seconds):.0f} s: {why}")
            self._sleep(float(seconds))

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        self._pause(props.get("create_seconds"), props.get("reason"))
        return pulumi.dynamic.CreateResult("wait", props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        changed = any(olds.get(k) != news.get(k) for k in ("triggers", "create_seconds", "delete_seconds", "reason"))
        return pulumi.dynamic.DiffResult(changes=changed, replaces=[], delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        if olds.get("triggers") != news.get("triggers"):  # what the pause follows was created anew
            self._pause(news.get("create_seconds"), news.get("reason"))
        return pulumi.dynamic.UpdateResult(news)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        self._pause(props.get("delete_seconds"), props.get("reason"))


class Wait(pulumi.dynamic.Resource, module="batchscoring", name="Wait"):
    """Pass what the pause follows as ``triggers`` (ids: data flow orders it after them and a new one re-runs it)."""

    create_seconds: pulumi.Output[int]
    delete_seconds: pulumi.Output[int]

    def __init__(
        self,
        name: str,
        reason: str,
        triggers: Sequence[pulumi.Input[str]],
        create_seconds: int = 0,
        delete_seconds: int = 0,
        opts: pulumi.ResourceOptions | None = None,
        provider: WaitProvider | None = None,
    ) -> None:
        props = {
            "reason": reason,
            "triggers": list(triggers),
            "create_seconds": create_seconds,
            "delete_seconds": delete_seconds,
        }
        super().__init__(provider or WaitProvider(), name, props, opts)
