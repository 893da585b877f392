"""Monitoring declared with the stack: where diagnostics go, who is told, each alert's signal, threshold and scope."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.alerts import STREAM_JOB_METRICS, hour_not_scored_query, pool_resize_stuck_query, stream_job_stopped_query
from infra.config import ConfigError, parse_config
from infra.monitoring import placeholder_receivers
from tests.infra.conftest import WORKFLOW_CREATED, Deploy, Deployment
from workloads.submitter.report import STREAM_JOB_DROP_METRICS, monitor_hint

ROOT = Path(__file__).resolve().parents[2]

WORKSPACE = "azure-native:operationalinsights:Workspace"
DIAGNOSTICS = "azure-native:monitor:DiagnosticSetting"
ACTION_GROUP = "azure-native:monitor:ActionGroup"
METRIC_ALERT = "azure-native:monitor:MetricAlert"
LOG_ALERT = "azure-native:monitor:ScheduledQueryRule"
ACTIVITY_ALERT = "azure-native:monitor:ActivityLogAlert"
ASA = "Microsoft.StreamAnalytics/streamingjobs"


def mock_id(typ: str, name: str) -> str:
    return f"/mock/{typ}/{name}"


def ids(deployment: Deployment) -> dict[str, str]:
    mocks = deployment.mocks
    return {
        "workspace": mock_id(WORKSPACE, mocks.one(WORKSPACE).name),
        "batch": mock_id("azure-native:batch:BatchAccount", mocks.one("azure-native:batch:BatchAccount").name),
        "job": mock_id(
            "azure-native:streamanalytics:StreamingJob", mocks.one("azure-native:streamanalytics:StreamingJob").name
        ),
        "workflow": mock_id("azure-native:logic:Workflow", mocks.one("azure-native:logic:Workflow").name),
        "storage": mock_id(
            "azure-native:storage:StorageAccount", mocks.one("azure-native:storage:StorageAccount").name
        ),
        "events": mock_id("azure-native:eventhub:Namespace", mocks.one("azure-native:eventhub:Namespace").name),
        "action_group": mock_id(ACTION_GROUP, mocks.one(ACTION_GROUP).name),
    }


def test_every_component_sends_its_logs_and_metrics_to_one_workspace(deploy: Deploy) -> None:
    deployment = deploy(logRetentionDays=90)
    known = ids(deployment)
    workspace = deployment.mocks.inputs(WORKSPACE)
    assert (workspace["retentionInDays"], workspace["sku"]) == (90, {"name": "PerGB2018"})
    settings = {d.inputs["resourceUri"]: d.inputs for d in deployment.mocks.of_type(DIAGNOSTICS)}

    def categories(setting: dict[str, Any]) -> tuple[set[str], set[str], set[str]]:
        logs = setting.get("logs", [])
        return (
            {entry["category"] for entry in logs if "category" in entry},
            {entry["categoryGroup"] for entry in logs if "categoryGroup" in entry},
            {entry["category"] for entry in setting["metrics"]},
        )

    assert {uri: categories(s) for uri, s in settings.items()} == {
        known["batch"]: ({"ServiceLog", "AuditLog"}, set(), {"AllMetrics"}),
        known["job"]: ({"Execution", "Authoring"}, set(), {"AllMetrics"}),
        known["workflow"]: ({"WorkflowRuntime"}, set(), {"AllMetrics"}),
        f"{known['storage']}/blobServices/default": (
            {"StorageRead", "StorageWrite", "StorageDelete"},
            set(),
            {"Transaction"},
        ),
        known["events"]: (set(), {"allLogs"}, {"AllMetrics"}),
    }
    assert all(s["workspaceId"] == known["workspace"] for s in settings.values())
    assert all(entry["enabled"] for s in settings.values() for entry in [*s.get("logs", []), *s["metrics"]])
    assert deployment.outputs["log_analytics_workspace_id"] == known["workspace"]


def test_alert_receivers_come_from_config(deploy: Deploy) -> None:
    group = deploy(alertEmails=["ops@example.com", "oncall@example.com"], alertWebhooks=["https://hooks.example/x"])
    inputs = group.mocks.inputs(ACTION_GROUP)
    assert [r["emailAddress"] for r in inputs["emailReceivers"]] == ["ops@example.com", "oncall@example.com"]
    assert [r["serviceUri"] for r in inputs["webhookReceivers"]] == ["https://hooks.example/x"]
    assert all(r["useCommonAlertSchema"] for r in [*inputs["emailReceivers"], *inputs["webhookReceivers"]])
    assert inputs["enabled"] and len(inputs["groupShortName"]) <= 12 and inputs["location"] == "Global"
    assert deploy().mocks.inputs(ACTION_GROUP).get("emailReceivers", []) == []  # none configured: none declared


def test_each_metric_alert_watches_its_signal_with_its_threshold(deploy: Deploy) -> None:
    deployment = deploy(watermarkAlertMinutes=20)
    known = ids(deployment)
    alerts = {a.name.rsplit("alert-", 1)[1]: a.inputs for a in deployment.mocks.of_type(METRIC_ALERT)}
    summary = {}
    for key, alert in alerts.items():
        (criterion,) = alert["criteria"]["allOf"]
        assert alert["criteria"]["odataType"] == "Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria"
        assert alert["actions"] == [{"actionGroupId": known["action_group"]}] and alert["enabled"]
        assert alert["autoMitigate"] is True and alert["location"] == "global"
        assert criterion["criterionType"] == "StaticThresholdCriterion"
        summary[key] = (
            alert["scopes"],
            criterion["metricNamespace"],
            criterion["metricName"],
            criterion["timeAggregation"],
            criterion["operator"],
            criterion["threshold"],
            alert["severity"],
            alert["windowSize"],
            alert["evaluationFrequency"],
        )
    job = [known["job"]]
    assert summary == {
        "stream-job-errors": (job, ASA, "Errors", "Total", "GreaterThan", 0, 1, "PT15M", "PT5M"),
        "stream-job-behind": (
            job,
            ASA,
            "OutputWatermarkDelaySeconds",
            "Maximum",
            "GreaterThan",
            1200,
            2,
            "PT15M",
            "PT5M",
        ),
        # Issue 18: nothing dropped without saying so. Output errors page within ~5 min (Stop blocks the output).
        "stream-job-output-errors": (job, ASA, "ConversionErrors", "Total", "GreaterThan", 0, 1, "PT5M", "PT1M"),
        "stream-job-deserialization-errors": (
            job,
            ASA,
            "DeserializationError",
            "Total",
            "GreaterThan",
            0,
            2,
            "PT15M",
            "PT5M",
        ),
        "stream-job-late-events": (job, ASA, "LateInputEvents", "Total", "GreaterThan", 0, 2, "PT1H", "PT15M"),
        "stream-job-early-events": (job, ASA, "EarlyInputEvents", "Total", "GreaterThan", 0, 2, "PT1H", "PT15M"),
        "stream-job-out-of-order-events": (
            job,
            ASA,
            "DroppedOrAdjustedEvents",
            "Total",
            "GreaterThan",
            0,
            2,
            "PT1H",
            "PT15M",
        ),
        "scheduler-run-failed": (
            [known["workflow"]],
            "Microsoft.Logic/workflows",
            "RunsFailed",
            "Total",
            "GreaterThan",
            0,
            2,
            "PT1H",
            "PT15M",
        ),
        "batch-tasks-failed": (
            [known["batch"]],
            "Microsoft.Batch/batchAccounts",
            "TaskFailEvent",
            "Total",
            "GreaterThan",
            0,
            2,
            "PT1H",
            "PT15M",
        ),
    }


def test_every_stream_job_metric_alerted_on_is_a_documented_one(deploy: Deploy) -> None:
    """Names from Azure Monitor's supported metrics for Microsoft.StreamAnalytics/streamingjobs ("Name in REST
    API"): a misspelt one would be refused at creation, or worse, never fire."""
    documented = {
        "AMLCalloutFailedRequests",
        "AMLCalloutInputEvents",
        "AMLCalloutRequests",
        "ConversionErrors",
        "DeserializationError",
        "DroppedOrAdjustedEvents",
        "EarlyInputEvents",
        "Errors",
        "InputEventBytes",
        "InputEvents",
        "InputEventsSourcesBacklogged",
        "InputEventsSourcesPerSecond",
        "LateInputEvents",
        "OutputEvents",
        "OutputWatermarkDelaySeconds",
        "ProcessCPUUsagePercentage",
        "ResourceUtilization",
    }
    assert set(STREAM_JOB_METRICS) <= documented
    used = {
        a.inputs["criteria"]["allOf"][0]["metricName"]
        for a in deploy().mocks.of_type(METRIC_ALERT)
        if a.inputs["criteria"]["allOf"][0]["metricNamespace"] == ASA
    }
    assert used <= documented
    assert set(STREAM_JOB_METRICS) <= used | {"Errors"}  # every counter the README lists is alerted on


def test_a_failed_stream_job_is_told_by_an_activity_log_alert(deploy: Deploy) -> None:
    """Set up alerts for Azure Stream Analytics jobs: "All Administrative operations", Status Failed, on the job."""
    deployment = deploy()
    known = ids(deployment)
    (alert,) = deployment.mocks.of_type(ACTIVITY_ALERT)
    inputs = alert.inputs
    assert alert.name.endswith("alert-stream-job-failed")
    assert inputs["scopes"] == [known["job"]] and inputs["enabled"] and inputs["location"] == "Global"
    assert inputs["condition"] == {
        "allOf": [{"field": "category", "equals": "Administrative"}, {"field": "status", "equals": "Failed"}]
    }
    assert inputs["actions"] == {"actionGroups": [{"actionGroupId": known["action_group"]}]}


def test_each_log_alert_queries_the_workspace_after_its_data_is_wired(deploy: Deploy) -> None:
    deployment = deploy(hourDeadlineMinutes=50)
    known = ids(deployment)
    diagnostics = {d.urn for d in deployment.mocks.of_type(DIAGNOSTICS)}
    alerts = {a.name.rsplit("alert-", 1)[1]: a for a in deployment.mocks.of_type(LOG_ALERT)}
    summary = {}
    for key, alert in alerts.items():
        inputs = alert.inputs
        (condition,) = inputs["criteria"]["allOf"]
        assert inputs["scopes"] == [known["workspace"]] and inputs["kind"] == "LogAlert"
        assert inputs["actions"] == {"actionGroups": [known["action_group"]]}
        assert diagnostics <= alert.dependencies  # the tables it reads are fed before it exists
        summary[key] = (
            condition["query"],
            condition["metricMeasureColumn"],
            condition["operator"],
            condition["threshold"],
        )
    assert summary == {
        "hour-not-scored": (hour_not_scored_query(50, WORKFLOW_CREATED), "missed", "GreaterThan", 0),
        "stream-job-stopped": (stream_job_stopped_query(known["job"]), "samples", "LessThan", 1),
        "pool-resize-stuck": (pool_resize_stuck_query(known["batch"]), "stuck", "GreaterThan", 0),
    }
    # A job stopped by hand is told within 15-20 min: 15 silent minutes, evaluated every 5.
    stopped = alerts["stream-job-stopped"].inputs
    assert (stopped["windowSize"], stopped["evaluationFrequency"], stopped["severity"]) == ("PT15M", "PT5M", 1)
    assert "ago(15m)" in stopped["criteria"]["allOf"][0]["query"]


def test_log_alerts_can_be_created_before_their_tables_have_rows(deploy: Deploy) -> None:
    """A new workspace has no StorageBlobLogs or AzureMetrics table yet: Azure's query validation at creation
    would fail with SEM0100, so every log rule skips it, and each query starts with its table (a union, which
    would tolerate the missing table, is refused in alert rules)."""
    alerts = deploy().mocks.of_type(LOG_ALERT)
    assert len(alerts) == 3 and all(a.inputs["skipQueryValidation"] is True for a in alerts)
    tables = {a.name.rsplit("alert-", 1)[1]: _first_table(a.inputs["criteria"]["allOf"][0]["query"]) for a in alerts}
    assert tables == {
        "hour-not-scored": "StorageBlobLogs",
        "stream-job-stopped": "AzureMetrics",
        "pool-resize-stuck": "AzureMetrics",
    }
    assert not any(word in a.inputs["criteria"]["allOf"][0]["query"] for a in alerts for word in ("union", "search"))


def _first_table(query: str) -> str:
    """The table the query's data comes from: the first statement that is not a `let` of a scalar or range."""
    for line in query.splitlines():
        text = line.split("=", 1)[1].strip() if line.startswith("let ") else line.strip()
        first = text.split()[0] if text.split() else ""
        if first and first[0].isupper():
            return first
    raise AssertionError(f"no table in {query!r}")


def test_the_hour_alert_looks_for_the_marker_the_submitter_writes() -> None:
    query = hour_not_scored_query(45, WORKFLOW_CREATED)
    assert "let deadline = 45m;" in query
    # Due hours end an hour plus the deadline ago; scored ones are those with a logs/<hour>/scored.json Put Blob.
    assert "to now() - 1h - deadline step 1h" in query
    assert 'parse Uri with * "/logs/" y:int "/" m:int "/" d:int "/" h:int "/scored.json" *' in query
    assert "join kind=leftanti scored on hour" in query and "missed = count()" in query


def test_the_hour_alert_counts_no_hour_before_scoring_began() -> None:
    """Right after the first deployment, the hours of the lookback ended before any run could score them: only
    hours from the one in which the scheduler was created are due (its createdTime, an Azure output that later
    deployments do not change), so the rule stays quiet until the first run has had its chance."""
    query = hour_not_scored_query(45, WORKFLOW_CREATED)
    assert f'let since = bin(todatetime("{WORKFLOW_CREATED}"), 1h);' in query
    assert "range hour from max_of(bin(now() - 1h - deadline - lookback, 1h), since) to now()" in query
    # The due hours end at the same place as before; only their start moves (never before the lookback's).
    assert "to now() - 1h - deadline step 1h;" in query


def test_the_hour_alert_starts_when_the_stacks_scheduler_was_created(deploy: Deploy) -> None:
    deployment = deploy()
    workflow = deployment.mocks.one("azure-native:logic:Workflow")
    alert = next(a for a in deployment.mocks.of_type(LOG_ALERT) if a.name.endswith("hour-not-scored"))
    assert f'todatetime("{WORKFLOW_CREATED}")' in alert.inputs["criteria"]["allOf"][0]["query"]
    assert workflow.urn in alert.dependencies


def receivers(**config: Any) -> str:
    """The config error about alert receivers, or '' when the config is valid."""
    try:
        parse_config(config)
    except ConfigError as error:
        return "\n".join(line for line in str(error).splitlines() if "alert receiver" in line)
    return ""


def test_a_protected_stack_refuses_to_deploy_without_an_alert_receiver() -> None:
    missing = receivers(protectData=True)
    assert missing.strip().startswith("batchscoring:alertEmails: no alert receiver, and protectData is true")
    assert "requireAlertReceivers: false" in missing
    assert receivers(protectData=True, alertEmails=["ops@contoso.com"]) == ""
    assert receivers(protectData=True, alertWebhooks=["https://hooks.contoso.com/alerts"]) == ""
    assert receivers(protectData=True, requireAlertReceivers=False) == ""  # said on purpose
    assert receivers() == ""  # unprotected: dev may deploy unwatched
    assert "requireAlertReceivers is true" in receivers(requireAlertReceivers=True)


def test_the_receiver_rule_is_reported_with_the_other_errors() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config({"protectData": True, "maxNodes": 0})
    assert "batchscoring:maxNodes" in str(raised.value) and "batchscoring:alertEmails" in str(raised.value)


def test_placeholder_receivers_are_named_so_that_a_deployment_warns() -> None:
    assert placeholder_receivers(
        ["ops@example.com", "ops@contoso.com", "a@mail.example.org", "b@host.test"],
        ["https://hooks.example.net/x", "https://hooks.contoso.com/x"],
    ) == ["ops@example.com", "a@mail.example.org", "b@host.test", "https://hooks.example.net/x"]
    prod = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]
    # prod validates with the stack file's placeholder, and `pulumi up` warns until it is replaced.
    assert placeholder_receivers(prod["batchscoring:alertEmails"], []) == prod["batchscoring:alertEmails"]


def test_telemetry_declares_application_insights_on_the_workspace_and_tells_the_submitter(deploy: Deploy) -> None:
    on = deploy(telemetry=True)
    component = on.mocks.inputs("azure-native:applicationinsights:Component")
    assert component["workspaceResourceId"] == ids(on)["workspace"] and component["ingestionMode"] == "LogAnalytics"
    (container,) = on.mocks.inputs("azure-native:containerinstance:ContainerGroup")["containers"]
    env = {e["name"]: e.get("value") for e in container["environmentVariables"]}
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING" in env
    off = deploy()
    assert off.mocks.of_type("azure-native:applicationinsights:Component") == []
    (container,) = off.mocks.inputs("azure-native:containerinstance:ContainerGroup")["containers"]
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING" not in {e["name"] for e in container["environmentVariables"]}


def test_the_report_points_at_the_counts_the_alerts_watch() -> None:
    """`submitter report` reads storage only; it names the same metrics, for the hours it showed."""
    assert set(STREAM_JOB_DROP_METRICS) == set(STREAM_JOB_METRICS) - {"Errors"}
    hint = monitor_hint(datetime(2026, 11, 25, 10, tzinfo=UTC), datetime(2026, 11, 25, 11, tzinfo=UTC))
    assert (
        "--metrics LateInputEvents EarlyInputEvents DroppedOrAdjustedEvents DeserializationError ConversionErrors"
        in hint
    )
    assert "--aggregation Total --interval PT1H" in hint
    assert "--start-time 2026-11-25T10:00:00Z --end-time 2026-11-25T12:00:00Z" in hint
