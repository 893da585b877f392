"""The platform's alert rules as data: what each watches, its threshold and why, before any resource exists.

Kept apart from the resources (``infra/monitoring.py``) so that the rules, and the query text of the log
rules above all, can be read and tested as plain values. Metric names are the REST names ("Name in REST API") of
Azure Monitor's supported metrics: Microsoft.StreamAnalytics/streamingjobs (``STREAM_JOB_METRICS`` below,
https://learn.microsoft.com/en-us/azure/azure-monitor/reference/supported-metrics/microsoft-streamanalytics-streamingjobs-metrics:
all of them Count, aggregation Total, time grain PT1M, exportable by diagnostic settings, except
``OutputWatermarkDelaySeconds``, Seconds, Average/Maximum/Minimum); Microsoft.Logic/workflows ``RunsFailed``;
Microsoft.Batch/batchAccounts ``TaskFailEvent``, ``PoolResizeStartEvent`` and ``PoolResizeCompleteEvent``
(learn.microsoft.com/azure/azure-monitor/reference/supported-metrics/). The log rules read the workspace's
``AzureMetrics`` table (what the diagnostic settings export) and ``StorageBlobLogs`` (the blob service's
resource logs). Neither table exists in a new workspace until its first rows arrive, so the log rules are
created without Azure's query validation (``infra/monitoring.py``): their KQL is checked here, by the tests.
Each query starts with its table, not ``union isfuzzy=true``, which would tolerate the missing table but is
refused in alert rules ("We don't support creating or modifying log search alert rules that use search or
union operators, except for cross-resource queries", learn.microsoft.com/azure/azure-monitor/alerts/
alerts-log-query, *Log query constraints*).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pulumi

from workloads.common.layout import Container

Severity = Literal[0, 1, 2, 3, 4]  # Azure Monitor: 0 critical ... 4 verbose

STREAM_JOB_NAMESPACE = "Microsoft.StreamAnalytics/streamingjobs"
LOGIC_NAMESPACE = "Microsoft.Logic/workflows"
BATCH_NAMESPACE = "Microsoft.Batch/batchAccounts"

# The stream job's metrics that count readings it did not aggregate, or could not write, with what each counts
# (*Azure Stream Analytics job metrics*, https://learn.microsoft.com/en-us/azure/stream-analytics/stream-analytics-job-metrics,
# and *Understand time handling*, https://learn.microsoft.com/en-us/azure/stream-analytics/stream-analytics-time-handling).
# The submitter's report cannot read Azure Monitor; README "Monitoring and alerts" says how to list them per hour.
STREAM_JOB_METRICS: dict[str, str] = {
    "LateInputEvents": "Late Input Events: arrived later than the late-arrival tolerance; dropped (our "
    "eventsOutOfOrderPolicy is Drop) or, under Adjust, re-timed",
    "EarlyInputEvents": "Early Input Events: event time more than 5 minutes after arrival (a device clock ahead); "
    '"All early arriving events are dropped"',
    "DroppedOrAdjustedEvents": "Out of order Events: beyond the out-of-order tolerance; dropped or re-timed per the "
    "policy",
    "DeserializationError": "Input Deserialization Errors: messages that could not be read; never aggregated",
    "ConversionErrors": "Data Conversion Errors: output rows that could not be written (outputErrorPolicy decides)",
    "Errors": "Runtime Errors: query processing errors (it excludes errors found while ingesting events or outputting "
    "results)",
}


@dataclass(frozen=True)
class MetricRule:
    """A metric alert on one resource: ``aggregation(metric) operator threshold`` over ``window``."""

    key: str
    description: str
    scope: pulumi.Input[str]
    metric: str
    aggregation: Literal["Average", "Minimum", "Maximum", "Total", "Count"]
    operator: Literal["GreaterThan", "GreaterThanOrEqual", "LessThan", "LessThanOrEqual"]
    threshold: float
    severity: Severity = 2
    window: str = "PT15M"
    frequency: str = "PT5M"
    namespace: str | None = None  # the metric namespace: the scope's resource type


@dataclass(frozen=True)
class ActivityRule:
    """An activity log alert on one resource: fires on each Activity log event whose fields equal ``conditions``
    (activity log alerts have no severity or window: they fire per event, within minutes)."""

    key: str
    description: str
    scope: pulumi.Input[str]
    conditions: tuple[tuple[str, str], ...]  # (field, equals); one of them must be ``category``


@dataclass(frozen=True)
class LogRule:
    """A log alert over the workspace: fires when ``measure`` (a column of the query's single row) crosses
    the threshold."""

    key: str
    description: str
    query: pulumi.Input[str]
    measure: str
    operator: Literal["GreaterThan", "LessThan"]
    threshold: float
    severity: Severity = 2
    window: str = "PT1H"
    frequency: str = "PT15M"


def hour_not_scored_query(deadline_minutes: int, scoring_since: str, lookback_hours: int = 6) -> str:
    """Hours whose deadline passed within the lookback without a ``logs/<hour>/scored.json`` written.

    Hour H ends at H+1h and is due at H+1h+deadline. The submitter writes the marker when a revision of the
    hour completes (``workloads/submitter/finalise.py``), so a Put Blob of it in ``StorageBlobLogs`` is the
    proof the hour was scored; an hour missing from that set, once due, has been missed.

    Only hours from the one in which scoring began (``scoring_since``: the scheduler's creation time, as Azure
    reports it) count: the hours before it ended before any run could score them, and the first run after a
    deployment may be up to an hour away. The hour of ``scoring_since`` itself is due after the first run at
    ``scheduleMinute`` past its end (``hourDeadlineMinutes`` > ``scheduleMinute`` is a config rule).
    """
    return f"""let deadline = {deadline_minutes}m;
let lookback = {lookback_hours}h;
let since = bin(todatetime("{scoring_since}"), 1h);
let due = range hour from max_of(bin(now() - 1h - deadline - lookback, 1h), since) to now() - 1h - deadline step 1h;
let scored = StorageBlobLogs
    | where TimeGenerated > ago(lookback + deadline + 1h)
    | where OperationName == "PutBlob" and Uri has "/{Container.LOGS.value}/" and Uri has "/scored.json"
    | parse Uri with * "/{Container.LOGS.value}/" y:int "/" m:int "/" d:int "/" h:int "/scored.json" *
    | extend hour = make_datetime(y, m, d, h, 0, 0)
    | distinct hour;
due
| join kind=leftanti scored on hour
| summarize missed = count(), hours = make_list(hour)"""


STREAM_JOB_SILENT_MINUTES = 15


def stream_job_stopped_query(job_id: str, minutes: int = STREAM_JOB_SILENT_MINUTES) -> str:
    """No watermark sample for ``minutes``: a running job emits one every minute (time grain PT1M), a stopped or
    failed one none. 15 minutes: a deployment's own stop, write and start takes a few; the diagnostic export adds a
    few more; run every 5 minutes, the rule fires 15-20 minutes after a job stopped by hand (a failed one is told at
    once by the activity log rule, :func:`platform_activity_rules`)."""
    return f"""AzureMetrics
| where TimeGenerated > ago({minutes}m)
| where ResourceId =~ "{job_id}" and MetricName == "OutputWatermarkDelaySeconds"
| summarize samples = count()"""


def pool_resize_stuck_query(batch_account_id: str, minutes: int = 30) -> str:
    """Pool resizes started more than ``minutes`` ago that have not completed (Batch's own resize timeout is
    15 minutes, after which a resize completes with an error, so an open one past 30 minutes is stuck)."""
    return f"""AzureMetrics
| where TimeGenerated > ago({2 * minutes}m)
| where ResourceId =~ "{batch_account_id}"
| summarize
    started = sumif(Total, MetricName == "PoolResizeStartEvent" and TimeGenerated < ago({minutes}m)),
    completed = sumif(Total, MetricName == "PoolResizeCompleteEvent")
| extend stuck = started - completed"""


@dataclass(frozen=True)
class AlertTargets:
    stream_job_id: pulumi.Output[str]
    workflow_id: pulumi.Output[str]
    batch_account_id: pulumi.Output[str]
    scoring_since: pulumi.Output[str]  # the scheduler's createdTime: no hour before it is due


def stream_job_drop_rules(job_id: pulumi.Input[str]) -> list[MetricRule]:
    """Readings the job did not aggregate, or rows it could not write, told within minutes (issue 18).

    Thresholds: any at all (``Total > 0``): a dropped reading is a silent loss otherwise, and the job's counts say
    nothing about which device - the job's Execution resource logs (workspace table ``AzureDiagnostics``, category
    ``Execution``) carry example events. Output errors page (severity 1, a 5-minute window evaluated every minute: told
    within about 5 minutes): with ``outputErrorPolicy`` Stop the job retries the row "indefinitely ... all subsequent
    events are blocked" (infra/ingestion.py says why Stop). Unreadable messages are the recommended "Input
    deserialization errors > 0, Total" (*Set up alerts*, https://learn.microsoft.com/en-us/azure/stream-analytics/
    stream-analytics-set-up-alerts, Scenarios to monitor), over 15 minutes every 5. Late, early and out-of-order
    readings are warnings over an hour, evaluated every 15 minutes: one notification while it lasts, resolved when
    an hour passes without (``autoMitigate``); a fleet with devices offline for longer than the late-arrival tolerance
    keeps it raised, which is the point: their readings are being dropped. Its threshold is not a config key yet.
    """

    def rule(key: str, what: str, metric: str, severity: Severity, window: str, frequency: str) -> MetricRule:
        return MetricRule(
            key,
            what,
            job_id,
            metric,
            "Total",
            "GreaterThan",
            0,
            severity=severity,
            window=window,
            frequency=frequency,
            namespace=STREAM_JOB_NAMESPACE,
        )

    return [
        rule(
            "stream-job-output-errors",
            "The stream job could not write output rows (ConversionErrors): with outputErrorPolicy Stop its output "
            "is blocked until recovered (README runbook); readings wait in Event Hubs only for its retention",
            "ConversionErrors",
            1,
            "PT5M",
            "PT1M",
        ),
        rule(
            "stream-job-deserialization-errors",
            "The stream job could not read some messages (DeserializationError): their readings are not aggregated",
            "DeserializationError",
            2,
            "PT15M",
            "PT5M",
        ),
        rule(
            "stream-job-late-events",
            "Readings arrived later than the late-arrival tolerance (LateInputEvents) and were dropped",
            "LateInputEvents",
            2,
            "PT1H",
            "PT15M",
        ),
        rule(
            "stream-job-early-events",
            "Readings stamped more than 5 min after they arrived (EarlyInputEvents: a device clock ahead) were dropped",
            "EarlyInputEvents",
            2,
            "PT1H",
            "PT15M",
        ),
        rule(
            "stream-job-out-of-order-events",
            "Readings beyond the out-of-order tolerance (DroppedOrAdjustedEvents) were dropped",
            "DroppedOrAdjustedEvents",
            2,
            "PT1H",
            "PT15M",
        ),
    ]


def platform_activity_rules(targets: AlertTargets) -> list[ActivityRule]:
    """The stream job failed: *Set up alerts for Azure Stream Analytics jobs* recommends exactly this rule "for when
    your job enters a failed state ... for all jobs": signal *All Administrative operations*, Event Level All, Status
    Failed (https://learn.microsoft.com/en-us/azure/stream-analytics/stream-analytics-set-up-alerts). Condition fields
    are the Activity log event's ("'resourceId', 'category', 'caller', 'level', 'operationName', 'resourceGroup',
    'resourceProvider', 'status', 'subStatus', 'resourceType'", AlertRuleLeafCondition.field,
    https://learn.microsoft.com/en-us/rest/api/monitor/activity-log-alerts/create-or-update); one must be the
    category. A deployment's own failed start attempt fires it too (it is one)."""
    return [
        ActivityRule(
            "stream-job-failed",
            "The stream job failed (an administrative operation on it failed, or the job entered the Failed state): "
            "no readings are aggregated until it is started again (README runbook)",
            targets.stream_job_id,
            (("category", "Administrative"), ("status", "Failed")),
        )
    ]


def platform_rules(
    targets: AlertTargets, hour_deadline_minutes: int, watermark_alert_minutes: int
) -> tuple[list[MetricRule], list[LogRule]]:
    """Every metric and log alert of the platform: the stream job stopped, failing, behind or dropping readings; a
    scheduled run failed; an hour not scored in time; Batch tasks failed; the pool stuck resizing. (The job failed:
    :func:`platform_activity_rules`.)"""
    metric_rules = [
        MetricRule(
            "stream-job-errors",
            "The stream job reports runtime errors: readings may not be aggregated",
            targets.stream_job_id,
            "Errors",
            "Total",
            "GreaterThan",
            0,
            severity=1,
            namespace=STREAM_JOB_NAMESPACE,
        ),
        MetricRule(
            "stream-job-behind",
            f"The stream job's output watermark lags more than {watermark_alert_minutes} min: hours settle late",
            targets.stream_job_id,
            "OutputWatermarkDelaySeconds",
            "Maximum",
            "GreaterThan",
            watermark_alert_minutes * 60,
            namespace=STREAM_JOB_NAMESPACE,
        ),
        *stream_job_drop_rules(targets.stream_job_id),
        MetricRule(
            "scheduler-run-failed",
            "A scheduled submitter run failed (or found the previous one still running)",
            targets.workflow_id,
            "RunsFailed",
            "Total",
            "GreaterThan",
            0,
            window="PT1H",
            frequency="PT15M",
            namespace=LOGIC_NAMESPACE,
        ),
        MetricRule(
            "batch-tasks-failed",
            "Batch scorer tasks failed: their hour's revision fails and is retried by the next run",
            targets.batch_account_id,
            "TaskFailEvent",
            "Total",
            "GreaterThan",
            0,
            window="PT1H",
            frequency="PT15M",
            namespace=BATCH_NAMESPACE,
        ),
    ]
    log_rules = [
        LogRule(
            "hour-not-scored",
            f"An hour was not scored {hour_deadline_minutes} min after it ended",
            targets.scoring_since.apply(lambda since: hour_not_scored_query(hour_deadline_minutes, since)),
            "missed",
            "GreaterThan",
            0,
            severity=1,
        ),
        LogRule(
            "stream-job-stopped",
            f"The stream job emitted no watermark for {STREAM_JOB_SILENT_MINUTES} min: it is stopped or failed",
            targets.stream_job_id.apply(stream_job_stopped_query),
            "samples",
            "LessThan",
            1,
            severity=1,
            window="PT15M",
            frequency="PT5M",
        ),
        LogRule(
            "pool-resize-stuck",
            "A Batch pool resize has not completed after 30 min",
            targets.batch_account_id.apply(pool_resize_stuck_query),
            "stuck",
            "GreaterThan",
            0,
        ),
    ]
    return metric_rules, log_rules
