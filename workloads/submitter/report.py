"""Reading back what happened to an hour: its state, its latest revision's record and run logs."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from azure.storage.blob import BlobServiceClient

from workloads.common.hour_inputs import MAX_NAMES_SHOWN, fingerprint, list_hour_inputs, list_misnamed_under_day
from workloads.common.hour_state import (
    CLAIM_TIMEOUT,
    Action,
    AttemptStatus,
    HourState,
    Reason,
    StoredState,
    claim_expired,
    decide,
    read_state,
)
from workloads.common.layout import day_prefix
from workloads.common.runlog import PairLog, PairStatus, TaskLog
from workloads.common.windows import format_hour
from workloads.submitter.finalise import read_run_logs
from workloads.submitter.record import JobRecord, read_record


class HourStatus(StrEnum):
    NOT_READY = "not_ready"  # not complete yet: its windows may still be written
    PENDING = "pending"  # complete, never scored: the next reconcile scores it
    SCORING = "scoring"  # a revision is in flight
    CLEANING = "cleaning"  # a revision completed; other revisions' outputs are still being deleted
    SCORED = "scored"  # the latest revision completed on the inputs the hour has now
    PARTIAL = "partial"  # scored on its current inputs, but without corrupt blobs' rows (see corrupt_blobs)
    EMPTY = "empty"  # complete, no aggregates at all: scored with 0 pairs; re-scored if data lands
    STALE = "stale"  # scored, but its inputs changed since: the next reconcile re-scores it
    FAILED = "failed"  # the latest revision failed: the next reconcile retries it


@dataclass
class HourReport:
    hour: datetime
    status: HourStatus
    state: HourState | None = None
    record: JobRecord | None = None  # of the latest revision
    tasks: list[TaskLog] = field(default_factory=list)
    pairs: list[PairLog] = field(default_factory=list)
    log_problems: dict[str, str] = field(default_factory=dict)
    # Blobs under the hour that no task reads, as listed now (None: not listed; the record's are shown then),
    # and what sits under the hour's day in no hour folder (``list_misnamed_under_day``).
    ignored_blobs: tuple[str, ...] | None = None
    misnamed_under_day: tuple[str, ...] = ()
    expected_family: str | None = None  # the stack's modelFamily: documentation, compared with what scored

    def families(self) -> dict[str, int]:
        """Model family -> pairs it scored this hour (the tasks' counts)."""
        counts: Counter[str] = Counter()
        for task in self.tasks:
            counts.update(task.families)
        return dict(sorted(counts.items()))

    @property
    def failures(self) -> list[PairLog]:
        return [p for p in self.pairs if p.status is PairStatus.FAILED]

    def summary(self) -> dict[str, Any]:
        record, latest = self.record, self.state.latest if self.state else None
        task_seconds = [t.timings_ms.get("total", 0.0) / 1000 for t in self.tasks]
        pair_ms = sorted(p.timings_ms["total"] for p in self.pairs if "total" in p.timings_ms)
        count = {s: sum(p.status is s for p in self.pairs) for s in PairStatus}
        issues = record.input_issues if record else {}
        if self.ignored_blobs is not None:
            ignored, ignored_total = list(self.ignored_blobs[:MAX_NAMES_SHOWN]), len(self.ignored_blobs)
        else:
            ignored, ignored_total = (record.ignored_blobs, record.ignored_blobs_total) if record else ([], 0)
        return {
            "hour": format_hour(self.hour),
            "status": self.status.value,
            "revision": latest.revision if latest else None,
            "reason": latest.reason.value if latest else None,
            "job_id": latest.job_id if latest else None,
            "current_job_id": self.state.current_job_id if self.state else None,
            "error": latest.error if latest else None,
            "tasks_planned": record.tasks if record else None,
            "tasks_logged": len(self.tasks),
            "shards": record.shards if record else None,
            "pairs": sum(t.pairs for t in self.tasks),
            "pairs_ok": count[PairStatus.OK],
            "pairs_failed": count[PairStatus.FAILED],
            "pairs_no_data": sum(t.no_data for t in self.tasks),
            "pairs_unaccounted": record.unaccounted if record else 0,
            "rows": record.rows if record else {},
            "rows_unaccounted": record.unaccounted_rows if record else 0,
            "anomalies": sum(p.anomalies for p in self.pairs if p.status is PairStatus.OK),
            "corrupt_blobs": issues.get("corrupt_blobs", {}),
            "quarantined_rows": issues.get("quarantined_rows", {}),
            "refiled_rows": issues.get("refiled_rows", {}),
            "duplicate_rows": issues.get("duplicate_rows", 0),
            "conflicting_rows": issues.get("conflicting_rows", 0),
            "ignored_blobs": ignored,
            "ignored_blobs_total": ignored_total,
            "misnamed_under_day": list(self.misnamed_under_day[:MAX_NAMES_SHOWN]),
            "misnamed_under_day_total": len(self.misnamed_under_day),
            "task_errors": record.task_errors if record else {},
            "task_seconds_mean": round(statistics.fmean(task_seconds), 3) if task_seconds else None,
            "task_seconds_max": round(max(task_seconds), 3) if task_seconds else None,
            "pair_ms_p50": round(pair_ms[len(pair_ms) // 2], 2) if pair_ms else None,
            "pair_ms_max": round(pair_ms[-1], 2) if pair_ms else None,
            # Pairs scored from their shard's model pack vs with their own model (slower: a GET and a
            # skops load each); a pack that is not "used" (missing: e.g. the trainer's shard count
            # differs from the stack's) is worth a `trainer pack`.
            "pairs_from_pack": sum(t.pack_pairs for t in self.tasks),
            "pairs_from_models": sum(t.model_pairs for t in self.tasks),
            "pairs_by_family": (families := self.families()),
            "model_family_expected": self.expected_family,
            "pairs_other_family": sum(n for f, n in families.items() if f != self.expected_family)
            if self.expected_family
            else 0,
            "packs_not_used": {t.task_id: t.pack for t in self.tasks if t.pack not in (None, "used")},
            "failures_by_reason": dict(sorted(Counter(p.reason or "error" for p in self.failures).items())),
            "failures": [
                {"pair": f"{p.device_id}/{p.sensor}", "task": p.task_id, "reason": p.reason, "error": p.error}
                for p in self.failures
            ],
            "log_problems": self.log_problems,
            "revisions": len(self.state.attempts) if self.state else 0,
        }


_DUE = {
    Reason.NEVER_SCORED: HourStatus.PENDING,
    Reason.INPUTS_CHANGED: HourStatus.STALE,
    Reason.RETRY_FAILED: HourStatus.FAILED,
    Reason.ABANDONED: HourStatus.FAILED,
}


def hour_status(
    stored: StoredState, hour: datetime, now: datetime, settle: timedelta, inputs: str, record: JobRecord | None
) -> HourStatus:
    """The status shown for an hour: what the next reconcile would do with it (``decide``, and for a revision in
    flight the same look at its claim and job record), so the report and the reconciler cannot disagree."""
    decision = decide(stored, hour, now, settle, inputs, CLAIM_TIMEOUT)
    state = stored.state
    if decision.action is Action.WAIT:
        return HourStatus.NOT_READY
    if decision.action is Action.FINALISE:
        closed = record is not None and record.status is not AttemptStatus.SUBMITTED
        return HourStatus.FAILED if not closed and claim_expired(stored, now, CLAIM_TIMEOUT) else HourStatus.SCORING
    if decision.action is Action.CLEAN:
        return HourStatus.CLEANING
    if decision.action is Action.SCORE:
        assert decision.reason is not None
        return _DUE[decision.reason]
    latest = state.latest if state else None
    assert latest is not None  # a skipped hour has a completed revision
    return HourStatus.PARTIAL if latest.corrupt_blobs else HourStatus.EMPTY if not latest.pairs else HourStatus.SCORED


def collect(
    service: BlobServiceClient,
    hour: datetime,
    now: datetime,
    settle: timedelta,
    days: dict[str, tuple[str, ...]] | None = None,
) -> HourReport:
    """One hour: its state, derived status, and the latest revision's record and run logs (only that
    revision's: earlier revisions' logs stay for the record but are never counted); the blobs under the hour
    that no task reads, and what sits under its day in no hour folder (one listing of the day; ``days``, by
    day prefix, spares it for the other hours of a day within one report run)."""
    stored = read_state(service, hour)
    state = stored.state
    listing = list_hour_inputs(service, hour)
    latest = state.latest if state else None
    record = read_record(service, hour, latest.job_id) if latest is not None else None
    status = hour_status(stored, hour, now, settle, fingerprint(listing), record)
    days = {} if days is None else days
    day = day_prefix(hour)
    if day not in days:
        days[day] = tuple(list_misnamed_under_day(service, hour))
    report = HourReport(
        hour=hour,
        status=status,
        state=state,
        record=record,
        ignored_blobs=listing.ignored,
        misnamed_under_day=days[day],
    )
    if report.record is not None and report.record.manifests:
        tasks, report.pairs, report.log_problems = read_run_logs(service, report.record)
        report.tasks = list(tasks.values())
        if latest is not None and latest.status is AttemptStatus.SUBMITTED:
            report.log_problems = {}  # tasks still running have no logs yet: not a problem
    return report


def _not_read_lines(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """Blobs that no task reads: under the hour but no input by the layout's rule, or under the day in no hour
    folder. Each is named (up to ``MAX_NAMES_SHOWN``), the rest counted: a writer's mistake never goes unseen."""
    out: list[tuple[str, str]] = []
    ignored, misnamed = list(summary["ignored_blobs"]), list(summary["misnamed_under_day"])
    out += [("ignored blobs (not inputs)", f"aggregates/{name}") for name in ignored]
    if summary["ignored_blobs_total"] > len(ignored):
        out.append(("ignored blobs (not inputs)", f"{summary['ignored_blobs_total'] - len(ignored)} more, not named"))
    for name in misnamed:
        kind = "misnamed folder under the day" if name.endswith("/") else "blob under the day, in no hour folder"
        out.append((f"{kind} (never read)", f"aggregates/{name}"))
    if summary["misnamed_under_day_total"] > len(misnamed):
        more = summary["misnamed_under_day_total"] - len(misnamed)
        out.append(("misnamed folder under the day (never read)", f"{more} more, not named"))
    return out


STATUS_LINES = {
    HourStatus.STALE.value: "inputs changed after scoring: the next reconcile re-scores it",
    HourStatus.EMPTY.value: "no aggregates for this hour: scored with 0 pairs; re-scored if data lands",
    HourStatus.CLEANING.value: "the current revision's switch is unfinished (other revisions' predictions or "
    "scored.json): the next reconcile finishes it; read predictions through scored.json meanwhile",
}


def issue_lines(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, detail) for everything an hour's summary says was left out or went wrong: the table view's
    and the HTML page's list."""
    out: list[tuple[str, str]] = []
    for blob, error in dict(summary["corrupt_blobs"]).items():
        out.append(("corrupt blob (rows lost)", f"aggregates/{blob}: {error}"))
    for blob, reasons in dict(summary["quarantined_rows"]).items():
        out.append(("quarantined rows", f"aggregates/{blob}: " + ", ".join(f"{n} {r}" for r, n in reasons.items())))
    for partition, rows in dict(summary["refiled_rows"]).items():
        out.append(("rows refiled to their own folder (re-scored there)", f"aggregates/{partition}/: {rows}"))
    out.extend(_not_read_lines(summary))
    if summary["duplicate_rows"]:
        out.append(("duplicate rows dropped", str(summary["duplicate_rows"])))
    if summary["conflicting_rows"]:
        out.append(("conflicting rows (newest blob kept)", str(summary["conflicting_rows"])))
    if summary["pairs_unaccounted"]:
        out.append(("pairs without a run-log line", str(summary["pairs_unaccounted"])))
    if summary["rows_unaccounted"]:
        out.append(("rows not accounted for by the tasks", f"{summary['rows_unaccounted']}: {summary['rows']}"))
    for task, error in dict(summary["task_errors"]).items():
        out.append(("task failed", f"{task}: {error}"))
    if summary["pairs_other_family"]:
        families = ", ".join(f"{n} {family}" for family, n in dict(summary["pairs_by_family"]).items())
        out.append(
            (
                f"pairs scored by another family than the stack's modelFamily ({summary['model_family_expected']})",
                f"{summary['pairs_other_family']}: {families} (scoring follows each model's metadata)",
            )
        )
    for task, pack in dict(summary["packs_not_used"]).items():
        out.append(
            ("model pack not used (pairs scored one model at a time; `trainer pack` rebuilds)", f"{task}: {pack}")
        )
    if summary["status"] in STATUS_LINES:
        out.append((str(summary["status"]), STATUS_LINES[summary["status"]]))
    if summary["status"] in ("pending", "failed") and summary["error"]:
        out.append((str(summary["status"]), str(summary["error"])))
    return out


# The stream job's counts of readings it did not aggregate or could not write (Azure Monitor's REST names for
# Microsoft.StreamAnalytics/streamingjobs; the same ones infra/alerts.py alerts on). This report reads storage only.
STREAM_JOB_DROP_METRICS = (
    "LateInputEvents",
    "EarlyInputEvents",
    "DroppedOrAdjustedEvents",
    "DeserializationError",
    "ConversionErrors",
)


def monitor_hint(first_hour: datetime, last_hour: datetime) -> str:
    """Where the hours' dropped readings are counted: readings the stream job dropped (late, early, out of order),
    could not read, or could not write never reach storage, so no hour record can show them; Azure Monitor has them
    per hour (README "Monitoring and alerts")."""
    start = f"{first_hour:%Y-%m-%dT%H}:00:00Z"
    end = f"{last_hour + timedelta(hours=1):%Y-%m-%dT%H}:00:00Z"
    return (
        "Readings the stream job dropped or could not write are counted by Azure Monitor, not in this report. "
        "Per hour: az monitor metrics list --resource <stream job id> --aggregation Total --interval PT1H "
        f"--metrics {' '.join(STREAM_JOB_DROP_METRICS)} --start-time {start} --end-time {end} "
        '(README "Monitoring and alerts").'
    )
