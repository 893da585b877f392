"""Closing a revision: from its run logs to ``completed`` or ``failed``, and switching the hour over.

A revision is ``completed`` only when every planned task left a run log without an error, every pair a
task found has a line in it (ok, or failed with a reason), and the tasks' row accounts balance: every
row decoded is quarantined, refiled to its own folder, dropped as a duplicate or conflict, or belongs to
a pair line (scored or non-finite). Anything else is ``failed`` and the hour stays due. Only a completed
revision becomes the hour's current one; ``scored.json`` then names it and the predictions of every older
revision of the hour are deleted (``clean``, a state of the hour until it is done), so a pair that no longer
scores loses its old prediction and the hour's prefix converges to one revision.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from workloads.common.hour_state import (
    Attempt,
    AttemptStatus,
    StateConflictError,
    StoredState,
    read_state,
    write_state,
)
from workloads.common.layout import Container, hour_prefix, run_log_blob, scored_marker_blob
from workloads.common.runlog import PairLog, PairStatus, TaskLog, parse_jsonl
from workloads.submitter.backend import JobOutcome
from workloads.submitter.plan import revision_of
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


MARKER_ATTEMPTS = 3


class ClaimLostError(Exception):
    """The revision's claim was taken over (its owner looked dead, or its claim timed out) while it ran: the
    hour belongs to the newer revision, and this one's outputs are not the hour's."""


def _delete_folders(service: BlobServiceClient, hour: datetime, doomed: Callable[[str], bool]) -> int:
    """Delete the hour's predictions in the job folders ``doomed`` names (one listing, batches of 256)."""
    predictions = service.get_container_client(str(Container.PREDICTIONS))
    prefix = hour_prefix(hour)
    names = [
        b.name
        for b in predictions.list_blobs(name_starts_with=prefix)
        if doomed(b.name[len(prefix) :].split("/", 1)[0])
    ]
    for start in range(0, len(names), 256):
        predictions.delete_blobs(*names[start : start + 256])
    return len(names)


def delete_older_revisions(service: BlobServiceClient, hour: datetime, current: int) -> int:
    """Delete the predictions of the hour's revisions before ``current``. Never a newer one's: a run that decided
    to clean from a state read minutes ago (a slow listing) must not delete a revision claimed since, whose
    tasks may be writing now; nor a folder whose name is no job id of ours."""

    def older(folder: str) -> bool:
        revision = revision_of(folder)
        return revision is not None and revision < current

    return _delete_folders(service, hour, older)


def delete_revision(service: BlobServiceClient, hour: datetime, job_id: str) -> int:
    """Delete one revision's predictions (one that lost its claim); returns how many blobs."""
    return _delete_folders(service, hour, lambda folder: folder == job_id)


def write_marker(service: BlobServiceClient, hour: datetime, current: Attempt) -> None:
    """``scored.json`` names ``current`` unless it already names a newer revision (a run that cleans from an old
    state must not move it back). Conditional on the marker's ETag, so two writers cannot interleave."""
    blob = service.get_blob_client(str(Container.LOGS), scored_marker_blob(hour))
    marker = {"job_id": current.job_id, "revision": current.revision, "finished_at": current.finished_at}
    data = json.dumps({**marker, "pairs": current.pairs}, default=str)
    for _ in range(MARKER_ATTEMPTS):
        try:
            found = blob.download_blob()
        except ResourceNotFoundError:
            found = None
        try:
            if found is None:
                blob.upload_blob(data, overwrite=False)
                return
            if int(json.loads(found.readall()).get("revision", 0)) > current.revision:
                return
            blob.upload_blob(
                data, overwrite=True, etag=str(found.properties.etag), match_condition=MatchConditions.IfNotModified
            )
            return
        except (ResourceExistsError, ResourceModifiedError):
            continue  # another writer got there first: look again
    raise StateConflictError(f"scored.json of {hour:%Y-%m-%dT%H} kept changing while being written")


def clean(service: BlobServiceClient, stored: StoredState) -> StoredState:
    """Finish switching the hour to its current revision: ``scored.json`` names it first (so a reader following
    it never finds a deleted folder), then the older revisions' predictions are deleted, and only then is
    ``cleanup_pending`` cleared. Any step may fail; the flag stays and the next run calls this again (every step
    is idempotent)."""
    state = stored.state
    assert state is not None and state.current is not None
    write_marker(service, state.hour, state.current)
    delete_older_revisions(service, state.hour, state.current.revision)
    done = state.model_copy(deep=True)
    done.cleanup_pending = False
    try:
        return StoredState(done, write_state(service, done, stored.etag))
    except StateConflictError:  # another run cleaned (or moved on) meanwhile: what it wrote stands
        return read_state(service, state.hour)


def apply_record(service: BlobServiceClient, stored: StoredState, record: JobRecord) -> StoredState:
    """Close the revision in the hour's state from its closed record (conditional on the state's etag); a
    completed one becomes current and the switch is finished (``clean``). Also what repairs an hour whose
    run closed the record but failed to write the state: the next run applies the record again.

    Raises ClaimLostError when another run took the hour over from this revision meanwhile."""
    assert stored.state is not None
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
        state.cleanup_pending = True
    try:
        etag = write_state(service, state, stored.etag)
    except StateConflictError:
        fresh = read_state(service, state.hour)
        mine = next((a for a in fresh.state.attempts if a.job_id == record.job_id), None) if fresh.state else None
        if mine is not None and mine.status in (AttemptStatus.COMPLETED, AttemptStatus.FAILED):
            return fresh  # another run closed this revision at the same moment
        newer = fresh.state.latest if fresh.state else None
        taken = f"revision {newer.revision} ({newer.reason.value})" if newer else "another run"
        raise ClaimLostError(
            f"{record.job_id}: the hour {record.hour:%Y-%m-%dT%H} was taken over by {taken}; this run stopped"
        ) from None
    written = StoredState(state, etag)
    return clean(service, written) if state.cleanup_pending else written


def finalise(service: BlobServiceClient, stored: StoredState, record: JobRecord, outcome: JobOutcome) -> StoredState:
    """Close the revision in its record (from the run logs) and in the hour's state; returns the state as
    written, with its new etag. Raises ClaimLostError when the hour was taken over meanwhile."""
    return apply_record(service, stored, close_record(service, record, outcome))


def _first_error(record: JobRecord) -> str | None:
    if record.task_errors:
        task_id, error = next(iter(record.task_errors.items()))
        return f"{len(record.task_errors)} task(s) failed, e.g. {task_id}: {error}"[:300]
    if record.unaccounted:
        return f"{record.unaccounted} pair(s) found by tasks have no run-log line"
    if record.unaccounted_rows:
        return f"{record.unaccounted_rows} row(s) are not accounted for by the tasks' run logs"
    return None
