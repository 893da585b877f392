"""The platform's alert rules as data: what each watches, its threshold and why, before any resource exists.

Kept apart from the resources (``infra/monitoring.py``) so that the rules, and the query text of the log
rules above all, can be read and tested as plain values. Metric names are the REST names of Azure Monitor's
supported metrics: Microsoft.StreamAnalytics/streamingjobs ``Errors`` (runtime errors) and
``OutputWatermarkDelaySeconds``; Microsoft.Logic/workflows ``RunsFailed``; Microsoft.Batch/batchAccounts
``TaskFailEvent``, ``PoolResizeStartEvent`` and ``PoolResizeCompleteEvent``
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


def stream_job_stopped_query(job_id: str, minutes: int = 30) -> str:
    """No watermark sample for ``minutes``: a running job emits one every minute, a stopped or failed one none."""
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


def platform_rules(
    targets: AlertTargets, hour_deadline_minutes: int, watermark_alert_minutes: int
) -> tuple[list[MetricRule], list[LogRule]]:
    """Every alert of the platform: the stream job stopped, failing or behind; a scheduled run failed; an hour
    not scored in time; Batch tasks failed; the pool stuck resizing."""
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
        ),
        MetricRule(
            "stream-job-behind",
            f"The stream job's output watermark lags more than {watermark_alert_minutes} min: hours settle late",
            targets.stream_job_id,
            "OutputWatermarkDelaySeconds",
            "Maximum",
            "GreaterThan",
            watermark_alert_minutes * 60,
        ),
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
            "The stream job emitted no watermark for 30 min: it is stopped or failed",
            targets.stream_job_id.apply(stream_job_stopped_query),
            "samples",
            "LessThan",
            1,
            severity=1,
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
