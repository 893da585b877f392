"""Closing a revision: from its run logs to ``completed`` or ``failed``, and switching the hour over.

A revision is ``completed`` only when every planned task left a run log without an error, every pair a
task found has a line in it (ok, or failed with a reason), and the tasks' row accounts balance: every
row decoded is quarantined, refiled to its own folder, dropped as a duplicate or conflict, or belongs to
a pair line (scored or non-finite). Anything else is ``failed`` and the hour stays due. Only a completed
revision becomes the hour's current one; predictions of every other revision of the hour are then
deleted, so a pair that no longer scores loses its old prediction and readers only ever see one revision.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from azure.storage.blob import BlobServiceClient

from workloads.common.hour_state import AttemptStatus, StoredState, write_state
from workloads.common.layout import Container, hour_prefix, prediction_prefix, run_log_blob, scored_marker_blob
from workloads.common.runlog import PairLog, PairStatus, TaskLog, parse_jsonl
from workloads.submitter.backend import JobOutcome
from workloads.submitter.record import JobRecord, write_record


def read_run_logs(
    service: BlobServiceClient, record: JobRecord
) -> tuple[dict[str, TaskLog], list[PairLog], dict[str, str]]:
    """Task logs by task id, all pair lines, and task id -> why its log is missing or unreadable."""
    logs = service.get_container_client(str(Container.LOGS))
    task_ids = [name.rsplit("/", 1)[-1].removesuffix(".json") for name in record.manifests]
    tasks: dict[str, TaskLog] = {}
    pairs: list[PairLog] = []
    problems: dict[str, str] = {}

    def load(task_id: str) -> tuple[str, bytes | Exception]:
        try:
            return task_id, logs.download_blob(run_log_blob(record.hour, record.job_id, task_id)).readall()
        except Exception as exc:
            return task_id, exc

    with ThreadPoolExecutor(max_workers=16) as pool:
        for task_id, data in pool.map(load, task_ids):
            if isinstance(data, Exception):
                problems[task_id] = f"no run log: {type(data).__name__}"
                continue
            try:
                task, lines = parse_jsonl(data)
            except ValueError as exc:
                problems[task_id] = f"unreadable run log: {' '.join(str(exc).split())[:200]}"
                continue
            if task is None:
                problems[task_id] = "run log has no task line: the task did not finish"
                continue
            tasks[task_id] = task
            pairs.extend(lines)
    return tasks, pairs, problems


def row_account(tasks: Iterable[TaskLog], pairs: Iterable[PairLog]) -> dict[str, int]:
    """Where every row read went, summed over the tasks; ``unaccounted`` is what the two balances miss:
    a folder's rows = quarantined + refiled + its slices' own rows, and own rows = duplicates +
    conflicts + the pair lines' rows (scored + non-finite)."""
    tasks = list(tasks)
    account = {
        "read": sum(t.rows_read for t in tasks),
        "quarantined": sum(t.quarantined_rows for t in tasks),
        "refiled": sum(t.refiled_rows for t in tasks),
        "own": sum(t.rows for t in tasks),
        "duplicates": sum(t.duplicate_rows for t in tasks),
        "conflicts": sum(t.conflicting_rows for t in tasks),
        "scored": 0,
        "non_finite": 0,
        "failed_pairs": 0,
    }
    for pair in pairs:
        if pair.status is PairStatus.OK:
            account["scored"] += pair.rows
            account["non_finite"] += pair.dropped_rows
        else:
            account["failed_pairs"] += pair.rows + pair.dropped_rows
    placed = account["duplicates"] + account["conflicts"] + account["scored"]
    placed += account["non_finite"] + account["failed_pairs"]
    folders = account["read"] - account["quarantined"] - account["refiled"] - account["own"]
    account["unaccounted"] = abs(folders) + abs(account["own"] - placed)
    return account


def input_issues(tasks: Iterable[TaskLog]) -> dict[str, Any]:
    """The blobs' problems as the first slice of each folder reported them, and the rows dropped."""
    issues: dict[str, Any] = {
        "corrupt_blobs": {},
        "quarantined_rows": {},
        "refiled_rows": {},
        "duplicate_rows": 0,
        "conflicting_rows": 0,
    }
    for task in tasks:
        issues["corrupt_blobs"].update(task.corrupt_blobs)
        issues["quarantined_rows"].update(task.quarantined)
        for partition, rows in task.refiled.items():
            issues["refiled_rows"][partition] = issues["refiled_rows"].get(partition, 0) + rows
        issues["duplicate_rows"] += task.duplicate_rows
        issues["conflicting_rows"] += task.conflicting_rows
    return issues


def close_record(service: BlobServiceClient, record: JobRecord, outcome: JobOutcome) -> JobRecord:
    """Fill the record's outcome from the run logs and the backend's task errors, and store it."""
    tasks, pairs, problems = read_run_logs(service, record)
    errors = {**problems, **outcome.task_errors}
    errors.update({task_id: f"task failed: {t.error}" for task_id, t in tasks.items() if t.error})
    record.task_errors = dict(sorted(errors.items()))
    record.pairs = sum(t.pairs for t in tasks.values())
    record.ok = sum(p.status is PairStatus.OK for p in pairs)
    record.failed = sum(p.status is PairStatus.FAILED for p in pairs)
    record.no_data = sum(t.no_data for t in tasks.values())
    record.anomalies = sum(p.anomalies for p in pairs if p.status is PairStatus.OK)
    lines = Counter(p.task_id for p in pairs)
    record.unaccounted = sum(max(0, t.pairs - lines[task_id]) for task_id, t in tasks.items())
    record.input_issues = input_issues(tasks.values())
    record.rows = row_account(tasks.values(), pairs)
    record.unaccounted_rows = record.rows["unaccounted"] if not record.task_errors else 0
    complete = not record.task_errors and not record.unaccounted and not record.unaccounted_rows
    record.status = AttemptStatus.COMPLETED if complete else AttemptStatus.FAILED
    record.finished_at = datetime.now(UTC)
    write_record(service, record)
    return record


def delete_other_revisions(service: BlobServiceClient, hour: datetime, keep_job_id: str | None) -> int:
    """Delete the hour's predictions that do not belong to ``keep_job_id``; returns how many."""
    predictions = service.get_container_client(str(Container.PREDICTIONS))
    keep = prediction_prefix(hour, keep_job_id) if keep_job_id else None
    doomed = [
        b.name
        for b in predictions.list_blobs(name_starts_with=hour_prefix(hour))
        if keep is None or not b.name.startswith(keep)
    ]
    for start in range(0, len(doomed), 256):
        predictions.delete_blobs(*doomed[start : start + 256])
    return len(doomed)


def finalise(service: BlobServiceClient, stored: StoredState, record: JobRecord, outcome: JobOutcome) -> StoredState:
    """Close the revision in the record and in the hour's state (conditional on the state's etag);
    returns the state as written, with its new etag."""
    assert stored.state is not None
    record = close_record(service, record, outcome)
    state = stored.state.model_copy(deep=True)
    for attempt in state.attempts:
        if attempt.job_id == record.job_id:
            attempt.status = record.status
            attempt.finished_at = record.finished_at
            attempt.pairs = record.pairs
            attempt.corrupt_blobs = len(record.input_issues.get("corrupt_blobs", {}))
            attempt.error = _first_error(record)
    if record.status is AttemptStatus.COMPLETED:
        state.current_job_id = record.job_id
    etag = write_state(service, state, stored.etag)
    if record.status is AttemptStatus.COMPLETED:
        delete_other_revisions(service, record.hour, record.job_id)
        marker = {"job_id": record.job_id, "finished_at": record.finished_at, "pairs": record.pairs}
        service.get_container_client(str(Container.LOGS)).upload_blob(
            scored_marker_blob(record.hour), json.dumps(marker, default=str), overwrite=True
        )
    return StoredState(state, etag)


def _first_error(record: JobRecord) -> str | None:
    if record.task_errors:
        task_id, error = next(iter(record.task_errors.items()))
        return f"{len(record.task_errors)} task(s) failed, e.g. {task_id}: {error}"[:300]
    if record.unaccounted:
        return f"{record.unaccounted} pair(s) found by tasks have no run-log line"
    if record.unaccounted_rows:
        return f"{record.unaccounted_rows} row(s) are not accounted for by the tasks' run logs"
    return None
