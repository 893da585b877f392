"""Monitoring declared with the stack: one Log Analytics workspace, every component's diagnostics in it, and
the platform's alerts (``infra/alerts.py``) sent to one action group whose receivers come from config.

Diagnostic categories per resource type are Azure Monitor's documented ones
(learn.microsoft.com/azure/azure-monitor/reference/supported-logs/): Batch ``ServiceLog`` and ``AuditLog``
(``ServiceLogs`` is deprecated), Stream Analytics ``Execution`` and ``Authoring``, Logic Apps
``WorkflowRuntime``, the blob service ``StorageRead``/``StorageWrite``/``StorageDelete`` with its
``Transaction`` metrics, and Event Hubs through the ``allLogs`` category group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pulumi
from pulumi_azure_native import applicationinsights, monitor, operationalinsights

from infra.alerts import ActivityRule, LogRule, MetricRule

METRIC_CRITERIA = "Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria"
# Names reserved for documentation (RFC 2606): a receiver there is a placeholder nobody reads.
RESERVED_DOMAINS = ("example.com", "example.net", "example.org")
RESERVED_TLDS = ("example", "test", "invalid", "localhost")


def placeholder_receivers(emails: Sequence[str], webhooks: Sequence[str]) -> list[str]:
    """The receivers on a domain reserved for documentation, e.g. a stack file's placeholder left unreplaced."""

    def reserved(host: str) -> bool:
        host = host.lower().rstrip(".")
        return host.rsplit(".", 1)[-1] in RESERVED_TLDS or any(
            host == domain or host.endswith(f".{domain}") for domain in RESERVED_DOMAINS
        )

    hosts = [(email, email.rsplit("@", 1)[-1]) for email in emails]
    hosts += [(url, urlsplit(url).hostname or "") for url in webhooks]
    return [receiver for receiver, host in hosts if reserved(host)]


@dataclass(frozen=True)
class Diagnostics:
    """Which of one resource's log categories (or category groups) and metric categories go to the workspace."""

    key: str
    resource_id: pulumi.Input[str]
    categories: tuple[str, ...] = ()
    category_groups: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ("AllMetrics",)


@dataclass
class MonitoringArgs:
    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    workspace_name: str
    retention_days: int
    telemetry: bool = False  # also an Application Insights component on the workspace
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Watch:
    """What to watch, once the watched resources exist: diagnostics, receivers and rules."""

    action_group_name: str
    action_group_short_name: str  # Azure's limit: 12 characters, shown in e-mails and texts
    emails: Sequence[str]
    webhooks: Sequence[str]
    diagnostics: Sequence[Diagnostics]
    metric_rules: Sequence[MetricRule]
    log_rules: Sequence[LogRule]
    activity_rules: Sequence[ActivityRule] = ()


class Monitoring(pulumi.ComponentResource):
    """Created early (the workspace, and Application Insights whose connection string the workloads need),
    then told what to watch (:meth:`watch`) once the watched resources exist."""

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchscoring:infra:Monitoring", name, None, opts)
        self._name, self._args = name, args
        child = pulumi.ResourceOptions(parent=self)
        self.workspace = operationalinsights.Workspace(
            f"{name}-workspace",
            workspace_name=args.workspace_name,
            resource_group_name=args.resource_group_name,
            location=args.location,
            sku=operationalinsights.WorkspaceSkuArgs(name="PerGB2018"),
            retention_in_days=args.retention_days,
            tags=args.tags,
            opts=child,
        )
        # Workspace-based Application Insights: traces and metrics land in the same workspace as the logs.
        self.app_insights = (
            applicationinsights.Component(
                f"{name}-app-insights",
                resource_name_=f"{args.workspace_name}-app",
                resource_group_name=args.resource_group_name,
                location=args.location,
                kind="other",
                application_type="other",
                workspace_resource_id=self.workspace.id,
                ingestion_mode="LogAnalytics",
                tags=args.tags,
                opts=child,
            )
            if args.telemetry
            else None
        )
        self.diagnostics: list[monitor.DiagnosticSetting] = []
        self.metric_alerts: dict[str, monitor.MetricAlert] = {}
        self.log_alerts: dict[str, monitor.ScheduledQueryRule] = {}
        self.activity_alerts: dict[str, monitor.ActivityLogAlert] = {}
        self.register_outputs({"workspace_id": self.workspace.id})

    @property
    def connection_string(self) -> pulumi.Output[str] | None:
        return self.app_insights.connection_string if self.app_insights else None

    def watch(self, watch: Watch) -> None:
        name, rg, child = self._name, self._args.resource_group_name, pulumi.ResourceOptions(parent=self)
        self.diagnostics = [
            monitor.DiagnosticSetting(
                f"{name}-diag-{d.key}",
                name=f"to-{self._args.workspace_name}",
                resource_uri=d.resource_id,
                workspace_id=self.workspace.id,
                logs=[monitor.DiagnosticsLogSettingsArgs(category=c, enabled=True) for c in d.categories]
                + [monitor.DiagnosticsLogSettingsArgs(category_group=g, enabled=True) for g in d.category_groups],
                metrics=[monitor.DiagnosticsMetricSettingsArgs(category=m, enabled=True) for m in d.metrics],
                opts=child,
            )
            for d in watch.diagnostics
        ]
        for receiver in placeholder_receivers(watch.emails, watch.webhooks):
            pulumi.log.warn(
                f"alert receiver {receiver} is on a domain reserved for documentation (RFC 2606): nobody receives "
                "these alerts; replace it in alertEmails / alertWebhooks",
                self,
            )
        self.action_group = monitor.ActionGroup(
            f"{name}-action-group",
            action_group_name=watch.action_group_name,
            resource_group_name=rg,
            location="Global",
            group_short_name=watch.action_group_short_name[:12],
            enabled=True,
            email_receivers=[
                monitor.MicrosoftCommonEmailReceiverArgs(
                    name=f"email-{i}", email_address=email, use_common_alert_schema=True
                )
                for i, email in enumerate(watch.emails)
            ],
            webhook_receivers=[
                monitor.WebhookReceiverArgs(name=f"webhook-{i}", service_uri=url, use_common_alert_schema=True)
                for i, url in enumerate(watch.webhooks)
            ],
            tags=self._args.tags,
            opts=child,
        )
        self.metric_alerts = {rule.key: self._metric_alert(name, rg, rule, child) for rule in watch.metric_rules}
        self.activity_alerts = {rule.key: self._activity_alert(name, rg, rule, child) for rule in watch.activity_rules}
        # Log rules query what the diagnostic settings deliver: created after them.
        after = pulumi.ResourceOptions(parent=self, depends_on=self.diagnostics)
        location = self._args.location
        self.log_alerts = {rule.key: self._log_alert(name, rg, location, rule, after) for rule in watch.log_rules}

    def _metric_alert(
        self, name: str, rg: pulumi.Input[str], rule: MetricRule, opts: pulumi.ResourceOptions
    ) -> monitor.MetricAlert:
        return monitor.MetricAlert(
            f"{name}-alert-{rule.key}",
            rule_name=f"{name}-{rule.key}",
            resource_group_name=rg,
            location="global",
            description=rule.description,
            severity=rule.severity,
            enabled=True,
            scopes=[rule.scope],
            evaluation_frequency=rule.frequency,
            window_size=rule.window,
            auto_mitigate=True,
            criteria=monitor.MetricAlertSingleResourceMultipleMetricCriteriaArgs(
                odata_type=METRIC_CRITERIA,
                all_of=[
                    monitor.MetricCriteriaArgs(
                        criterion_type="StaticThresholdCriterion",
                        name=rule.key,
                        metric_name=rule.metric,
                        metric_namespace=rule.namespace,
                        time_aggregation=rule.aggregation,
                        operator=rule.operator,
                        threshold=rule.threshold,
                    )
                ],
            ),
            actions=[monitor.MetricAlertActionArgs(action_group_id=self.action_group.id)],
            opts=opts,
        )

    def _activity_alert(
        self, name: str, rg: pulumi.Input[str], rule: ActivityRule, opts: pulumi.ResourceOptions
    ) -> monitor.ActivityLogAlert:
        """An activity log alert: "Azure Activity Log Alert rules are supported on Global, West Europe and North
        Europe regions" (ActivityLogAlert location, Activity Log Alerts - Create Or Update, api 2020-10-01); scoped to
        the resource, whose id is a prefix of its events' resource ids."""
        return monitor.ActivityLogAlert(
            f"{name}-alert-{rule.key}",
            activity_log_alert_name=f"{name}-{rule.key}",
            resource_group_name=rg,
            location="Global",
            description=rule.description,
            enabled=True,
            scopes=[rule.scope],
            condition=monitor.AlertRuleAllOfConditionArgs(
                all_of=[
                    monitor.AlertRuleAnyOfOrLeafConditionArgs(field=field, equals=equals)
                    for field, equals in rule.conditions
                ]
            ),
            actions=monitor.ActionListArgs(
                action_groups=[monitor.ActionGroupArgs(action_group_id=self.action_group.id)]
            ),
            opts=opts,
        )

    def _log_alert(
        self,
        name: str,
        rg: pulumi.Input[str],
        location: pulumi.Input[str],
        rule: LogRule,
        opts: pulumi.ResourceOptions,
    ) -> monitor.ScheduledQueryRule:
        return monitor.ScheduledQueryRule(
            f"{name}-alert-{rule.key}",
            rule_name=f"{name}-{rule.key}",
            resource_group_name=rg,
            location=location,
            kind="LogAlert",
            # The tables the rules read (StorageBlobLogs, AzureMetrics) appear in a new workspace only with their
            # first rows, minutes after the diagnostic settings exist, and Azure validates the query at creation:
            # 400 SemanticError SEM0100 "Failed to resolve table or column expression named 'AzureDiagnostics'"
            # (github.com/CDCgov/prime-reportstream/issues/11773, the same for any table not there yet). Creation
            # skips that check: "skipQueryValidation: The flag which indicates whether the provided query should be
            # validated or not. The default is false. Relevant only for rules of the kind LogAlert."
            # (azure-rest-api-specs, Microsoft.Insights scheduledQueryRule_API.json, 2025-01-01-preview, the API
            # version of this azure-native monitor.ScheduledQueryRule). The KQL is asserted in tests instead.
            skip_query_validation=True,
            description=rule.description,
            severity=rule.severity,
            enabled=True,
            scopes=[self.workspace.id],
            evaluation_frequency=rule.frequency,
            window_size=rule.window,
            criteria=monitor.ScheduledQueryRuleCriteriaArgs(
                all_of=[
                    monitor.ConditionArgs(
                        query=rule.query,
                        time_aggregation="Maximum",
                        metric_measure_column=rule.measure,
                        operator=rule.operator,
                        threshold=rule.threshold,
                        failing_periods=monitor.ConditionFailingPeriodsArgs(
                            number_of_evaluation_periods=1, min_failing_periods_to_alert=1
                        ),
                    )
                ]
            ),
            actions=monitor.ActionsArgs(action_groups=[self.action_group.id]),
            opts=opts,
        )
