"""The hourly trigger: a Logic App whose Recurrence starts the submitter container group.

Pulumi declares the container group itself (image, identity, environment, command), so the Logic App
only calls its ``start`` action with its own user-assigned identity: no passwords, no API-connection secrets.
That identity is created, and granted the right to start this one group, before the Logic App exists, so its
first trigger never runs without it (a system-assigned identity only exists once the Logic App does).

A start that starts nothing fails the run. Container Groups - Start (api-version 2023-05-01, REST reference
"Container Groups - Start", learn.microsoft.com/rest/api/container-instances/container-groups/start)
answers 202 Accepted "the container group is starting" and 204 No Content "the container group is already
running or starting": the latter is a 2xx, so the HTTP action succeeds, and its retry policy never
resends it (Logic Apps retry policies resend only on 408, 429 or 5xx: "Handle errors and exceptions in
Azure Logic Apps", learn.microsoft.com/azure/logic-apps/logic-apps-exception-handling). Left alone, a
trigger that fires while the previous submitter still runs would show as a green run that did nothing.
So a Condition after the HTTP action terminates the run as Failed on 204 (Terminate action, runStatus
Failed with a runError code and message: "Schema reference for trigger and action types in Azure Logic
Apps"), where the run history and any alert on failed runs see it. Nothing is lost by it: the next
trigger's `submitter reconcile` scores every hour the skipped trigger would have.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi
from pulumi_azure_native import containerinstance, logic

from infra.identity import AccessPolicy, Grant

ACI_API_VERSION = "2023-05-01"
Frequency = Literal["Minute", "Hour", "Day"]
# What the scheduled container runs, set on the container group itself rather than left to the image's CMD.
# ACI's `command` replaces the image's ENTRYPOINT, like `docker run --entrypoint` ("Set the command line in a
# container instance", learn.microsoft.com/azure/container-instances/container-instances-start-command), so it
# names the executable too.
SUBMITTER_COMMAND = ("submitter", "reconcile")
START_ACTION = "start_submitter"
STILL_RUNNING = 204  # Container Groups - Start: "already running or starting"
SKIPPED_START_CODE = "SubmitterStillRunning"
SKIPPED_START_MESSAGE = (
    "submitter still running from a previous trigger; this trigger started nothing; "
    "the next run reconciles the missed hour"
)


# Where the runs fall. Logic Apps' Recurrence trigger ("Schema reference for trigger and action types in Azure Logic
# Apps", learn.microsoft.com/azure/logic-apps/logic-apps-workflow-actions-triggers, Recurrence trigger): the schedule's
# "hours" and "minutes" each "Applies only when frequency is Day or Week", and timeZone "Applies only when you specify a
# start time because this trigger doesn't accept UTC offset"; startTime is "YYYY-MM-DDThh:mm:ss if you specify a time
# zone -or- YYYY-MM-DDThh:mm:ssZ if you don't". So an Hour trigger with schedule.minutes (what this module declared
# before) ignores them and runs at the minute the workflow was saved. With a start time it does not: "Run every 15
# minutes past the hour, every hour (with start date and time) | 1 | Hour | startDateT00:15:00Z | ... Future
# recurrences run at the "15" minute mark, which is calculated from the start time" ("Schedule and run recurring
# workflows", learn.microsoft.com/azure/logic-apps/concepts-schedule-automated-recurring-tasks-workflows, Example
# recurrences). A start time in the past is fine: the Recurrence trigger "Calculates run times based on the specified
# start time and discards past run times. Runs the first workload at the next future run time" (same page, Patterns
# for start date and time), and with a schedule it "Runs the first workload no sooner than the start time", so a
# deployment never fires an extra run at once while the container group is still on its creation run.
# A fixed past start keeps the definition the same on every `pulumi up`.
START_DATE = "2024-01-01"


# Never below what every stack deployed before the sizing had (1.5 GB): ACI cannot update a container group that has
# terminated ("Terminated or deleted container groups can't be updated ... the group must be deployed as new",
# learn.microsoft.com/azure/container-instances/container-instances-update), and the submitter's group terminates
# after each run, so a changed memory request must not be what an upgrade of this code changes by itself.
SUBMITTER_MEMORY_FLOOR_GB = 1.5


@dataclass(frozen=True)
class Recurrence:
    frequency: Frequency = "Hour"
    interval: int = 1
    time_zone: str = "UTC"  # a Windows time zone id; used by Day schedules only
    minute: int = 20  # minutes past the hour, after the settle time (config: latenessMinutes)

    def trigger(self) -> dict[str, Any]:
        """Minute and Hour: a start time at ``minute`` past a UTC hour (the hours scoring counts in are UTC hours, so
        no time zone: one with a half-hour offset would move the runs off ``minute``). Day: 00:``minute`` in
        ``time_zone``, as a start time and an explicit schedule (Day honours schedule.hours/minutes)."""
        start = f"{START_DATE}T00:{self.minute:02d}:00"
        recurrence: dict[str, Any] = {"frequency": self.frequency, "interval": self.interval}
        if self.frequency == "Day":
            recurrence |= {
                "startTime": start,
                "timeZone": self.time_zone,
                "schedule": {"hours": [0], "minutes": [self.minute]},
            }
        else:
            recurrence["startTime"] = f"{start}Z"
        return {"type": "Recurrence", "recurrence": recurrence, "runtimeConfiguration": {"concurrency": {"runs": 1}}}


def workflow_definition(recurrence: Recurrence, container_group_id: str, identity_id: str) -> dict[str, Any]:
    """The Logic App definition: on each recurrence, POST .../containerGroups/<group>/start as itself, and fail
    the run when that started nothing (204: the previous run is still going; see the module docstring)."""
    return {
        "$schema": "https://schema.management.azure.com/providers/Microsoft.Logic/schemas/2016-06-01/workflowdefinition.json#",
        "contentVersion": "1.0.0.0",
        "triggers": {"schedule": recurrence.trigger()},
        "actions": {
            START_ACTION: {
                "type": "Http",
                "runAfter": {},
                "inputs": {
                    "method": "POST",
                    "uri": f"https://management.azure.com{container_group_id}/start?api-version={ACI_API_VERSION}",
                    # A user-assigned identity is named by its resource id ("Authenticate access with managed
                    # identities in Azure Logic Apps",
                    # learn.microsoft.com/azure/logic-apps/authenticate-with-managed-identity).
                    "authentication": {
                        "type": "ManagedServiceIdentity",
                        "identity": identity_id,
                        "audience": "https://management.azure.com/",
                    },
                    "retryPolicy": {"type": "exponential", "count": 4, "interval": "PT30S"},
                },
            },
            "fail_if_nothing_started": {
                "type": "If",
                "runAfter": {START_ACTION: ["Succeeded"]},
                "expression": {"and": [{"equals": [f"@outputs('{START_ACTION}')['statusCode']", STILL_RUNNING]}]},
                "actions": {
                    "still_running": {
                        "type": "Terminate",
                        "runAfter": {},
                        "inputs": {
                            "runStatus": "Failed",
                            "runError": {"code": SKIPPED_START_CODE, "message": SKIPPED_START_MESSAGE},
                        },
                    }
                },
                "else": {"actions": {}},
            },
        },
        "outputs": {},
    }


@dataclass
class SchedulerArgs:
    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    container_group_name: str
    submitter_image: pulumi.Input[str]
    registry_server: pulumi.Input[str]
    identity_id: pulumi.Input[str]
    identity_grants: Sequence[pulumi.Resource]  # the submitter identity's role assignments
    trigger_identity_id: pulumi.Input[str]  # the Logic App's user-assigned identity
    trigger_principal_id: pulumi.Input[str]
    starter_role_id: pulumi.Input[str]  # may read and start the container group, nothing else
    environment: dict[str, pulumi.Input[str]]
    recurrence: Recurrence
    subnet_id: pulumi.Input[str] | None = None  # private network: the group runs in this delegated subnet
    network_ready: Sequence[pulumi.Resource] = ()  # private network: endpoints and DNS records it resolves through
    # The submitter's memory request, from the fleet's sizing (workloads/capacity/sizing.py: measured peak plus planning
    # growth, times the margin, in ACI's 0.1 GB steps from its 1 GB minimum) or the stack's submitterMemoryGb.
    memory_gb: float = SUBMITTER_MEMORY_FLOOR_GB
    tags: dict[str, str] = field(default_factory=dict)


class Scheduler(pulumi.ComponentResource):
    def __init__(self, name: str, args: SchedulerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchscoring:infra:Scheduler", name, None, opts)
        tags = {**args.tags, "component": "scheduler"}
        self.container_group = containerinstance.ContainerGroup(
            f"{name}-submitter",
            container_group_name=args.container_group_name,
            resource_group_name=args.resource_group_name,
            location=args.location,
            os_type=containerinstance.OperatingSystemTypes.LINUX,
            restart_policy=containerinstance.ContainerGroupRestartPolicy.NEVER,  # one run per start
            identity=containerinstance.ContainerGroupIdentityArgs(
                type=containerinstance.ResourceIdentityType.USER_ASSIGNED, user_assigned_identities=[args.identity_id]
            ),
            # ACI pulls with a user-assigned identity only, and from a registry behind a private endpoint only when the
            # endpoint is outside the ACI-delegated subnet ("Deploy to Azure Container Instances from Azure Container
            # Registry using a managed identity", Limitations; the endpoint is in `endpoints`, infra/network.py). The
            # identity's AcrPull has settled before this group exists (its grants' Wait, infra/identity.py).
            image_registry_credentials=[
                containerinstance.ImageRegistryCredentialArgs(server=args.registry_server, identity=args.identity_id)
            ],
            containers=[
                containerinstance.ContainerArgs(
                    name="submitter",
                    image=args.submitter_image,
                    command=list(SUBMITTER_COMMAND),
                    resources=containerinstance.ResourceRequirementsArgs(
                        requests=containerinstance.ResourceRequestsArgs(cpu=1.0, memory_in_gb=args.memory_gb)
                    ),
                    environment_variables=[
                        containerinstance.EnvironmentVariableArgs(name=key, value=value)
                        for key, value in sorted(args.environment.items())
                    ],
                )
            ],
            subnet_ids=[containerinstance.ContainerGroupSubnetIdArgs(id=args.subnet_id)] if args.subnet_id else None,
            tags=tags,
            # ACI runs the group once when it is created: its image pull and blob access need the grants first.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*args.identity_grants, *args.network_ready]),
        )
        self.access = AccessPolicy(
            f"{name}-access",
            [Grant("start-submitter", args.trigger_principal_id, args.starter_role_id, self.container_group.id)],
            pulumi.ResourceOptions(parent=self),
        )
        definition = pulumi.Output.all(self.container_group.id, args.trigger_identity_id).apply(
            lambda ids: workflow_definition(args.recurrence, ids[0], ids[1])
        )
        self.workflow = logic.Workflow(
            f"{name}-workflow",
            resource_group_name=args.resource_group_name,
            location=args.location,
            identity=logic.ManagedServiceIdentityArgs(
                type=logic.ManagedServiceIdentityType.USER_ASSIGNED, user_assigned_identities=[args.trigger_identity_id]
            ),
            state=logic.WorkflowState.ENABLED,
            definition=definition,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.access]),
        )
        self.register_outputs(
            {
                "container_group_id": self.container_group.id,
                "workflow_id": self.workflow.id,
                "definition": definition.apply(json.dumps),
            }
        )
