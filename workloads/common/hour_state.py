"""The life cycle of one scoring hour, stored as ``logs/{hour}/hour.json``.

not ready -> complete (due) -> scoring (revision n submitted) -> cleaning -> scored (revision n) | failed -> ...
and scored -> stale when the hour's aggregates change after scoring (late data, a replay).

Only ``attempts``, ``current_job_id`` and ``cleanup_pending`` are stored; whether an hour is ready, due or
stale is derived from the clock and the inputs' fingerprint each time (``decide``), so the document cannot
disagree with the blobs it describes. Writes are conditional on the ETag read (optimistic concurrency): two
reconcilers that decide to score the same hour race on one conditional write, and the loser backs off.

Switching the hour to a completed revision is one conditional write that also sets ``cleanup_pending``;
the hour is not done until the other revisions' predictions are deleted and ``scored.json`` names the new
one, after which a second write clears it. A run that fails in between leaves the flag, and the next run
finishes the job (``Action.CLEAN``): cleanup is a state of the hour, not a best effort.

A claim (a revision ``submitted``) is judged by the storage service's clock, never the reconciler's: its age
is the ``Date`` of the response that read the state minus the state blob's ``Last-Modified`` (both stamped by
the service), so reconcilers whose clocks disagree by hours still agree on it, and by the timeout its
claimant stored with it. A claim whose owner is a local process on this host that no longer runs is dead at
once. A dead claim is still finalised first (its job may have finished, its record may be closed); only
then is it replaced (``reconcile``).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient
from pydantic import BaseModel, Field

from workloads.common.ids import JobId
from workloads.common.layout import Container, hour_state_blob
from workloads.common.windows import HOUR, floor_hour

MAX_ATTEMPTS_KEPT = 50
# A revision in flight longer than this belongs to a run that died: the next run replaces it. The default
# serves the local backend, whose dead runs are found at once by their owner process (``Owner``); the Batch
# backend derives its own from the job's wall-clock limit (``batch_settings.BatchSettings.claim_timeout``).
CLAIM_TIMEOUT = timedelta(hours=3)


class AttemptStatus(StrEnum):
    SUBMITTED = "submitted"  # claimed and handed to a backend; not yet finalised
    COMPLETED = "completed"  # every pair ok, truly absent, or failed with a reason
    FAILED = "failed"  # inputs unreadable or a task did not finish: the hour stays due
    ABANDONED = "abandoned"  # its owner died or its claim timed out: a later revision took the hour over


class Reason(StrEnum):
    """Why a revision was scored: the run log says it for every hour."""

    NEVER_SCORED = "never_scored"  # missed or skipped trigger, outage, first run
    INPUTS_CHANGED = "inputs_changed"  # late data or a replay after the hour was scored
    RETRY_FAILED = "retry_failed"  # the previous revision failed
    ABANDONED = "abandoned"  # the previous revision never finished within the claim timeout
    FORCED = "forced"  # an operator asked for it


class Owner(BaseModel):
    """The process that claimed a revision. Only a local run's owner can be checked (its tasks run in that
    process's workers, so they die with it); a Batch job outlives the submitter that created it."""

    host: str
    pid: int
    started: int | None = None  # the process's start time in clock ticks since boot: a reused pid differs
    backend: str = "local"
    # Boot id and pid namespace of the process table the pid belongs to: two containers with one host name
    # (a fixed ``hostname:``) have different tables, and a pid of one means nothing in the other.
    table: str | None = None

    @classmethod
    def this_process(cls, backend: str) -> Owner:
        pid = os.getpid()
        process = _process(pid)
        started = process[0] if process else None
        return cls(host=socket.gethostname(), pid=pid, started=started, backend=backend, table=_process_table())

    def gone(self) -> bool:
        """True only when this is a local run's owner in this host's process table and that process no longer
        runs (absent, a zombie, or its pid reused by a younger process); False whenever it cannot be known."""
        if self.backend != "local" or self.host != socket.gethostname():
            return False
        if self.table is None or self.table != _process_table():
            return False
        process = _process(self.pid)
        if process is None:
            return True
        started, state = process
        return state == "Z" or (self.started is not None and started != self.started)


def _process_table() -> str | None:
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}:{Path('/proc/self/ns/pid').readlink()}"
    except OSError:  # no /proc (not Linux) or a restricted one: liveness cannot be known, the timeout applies
        return None


def _process(pid: int) -> tuple[int, str] | None:
    """(start time in clock ticks since boot, state letter) from ``/proc/<pid>/stat`` (fields 22 and 3, counted
    after the parenthesised command name, which may hold spaces), None if there is no such process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[19]), fields[0]


class Attempt(BaseModel):
    revision: int = Field(ge=1)
    job_id: JobId
    reason: Reason
    status: AttemptStatus
    fingerprint: str  # of the aggregates the revision was planned on
    started_at: datetime
    owner: Owner | None = None
    # The claimant's claim timeout (derived from its backend): whoever reads the state (another run, the
    # report) judges the claim by it, so they agree with the claimant; a caller's own applies only without it.
    claim_timeout: timedelta | None = None
    finished_at: datetime | None = None
    pairs: int = 0
    corrupt_blobs: int = 0  # aggregate blobs whose rows the revision could not use (it completed without them)
    error: str | None = None  # why a revision failed, in one line


class HourState(BaseModel):
    hour: datetime
    stack: str
    current_job_id: str | None = None  # the revision whose predictions readers see
    # The current revision's switch is not finished: other revisions' predictions may still exist, or
    # scored.json may not name it yet. The next run finishes it before anything else.
    cleanup_pending: bool = False
    attempts: list[Attempt] = Field(default_factory=list)

    @property
    def latest(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def current(self) -> Attempt | None:
        return next((a for a in reversed(self.attempts) if a.job_id == self.current_job_id), None)

    def next_revision(self) -> int:
        return (self.latest.revision + 1) if self.latest else 1


class StateConflictError(Exception):
    """Another writer changed the hour's state since it was read."""


@dataclass(frozen=True)
class StoredState:
    state: HourState | None
    etag: str | None  # None: no document yet
    # How long ago the document was last written, by the storage service's clock (its Date minus the blob's
    # Last-Modified); None when unknown (no document, or no Date header).
    age: timedelta | None = None


def read_state(service: BlobServiceClient, hour: datetime) -> StoredState:
    logs = service.get_container_client(str(Container.LOGS))
    served: dict[str, datetime] = {}

    def service_date(response: Any) -> None:
        date = response.http_response.headers.get("Date")
        if date:
            served["date"] = parsedate_to_datetime(date)

    try:
        downloader = logs.download_blob(hour_state_blob(hour), raw_response_hook=service_date)
    except ResourceNotFoundError:
        return StoredState(None, None)
    state = HourState.model_validate_json(downloader.readall())
    modified = downloader.properties.last_modified
    # Date has one-second resolution; Last-Modified too: a negative age is clamped.
    age = max(timedelta(0), served["date"] - modified) if "date" in served and modified else None
    return StoredState(state, str(downloader.properties.etag), age)


def write_state(service: BlobServiceClient, state: HourState, etag: str | None) -> str:
    """Write only if nobody else wrote since ``etag`` was read (``None``: only if there is no document)."""
    state.attempts = state.attempts[-MAX_ATTEMPTS_KEPT:]
    blob = service.get_blob_client(str(Container.LOGS), hour_state_blob(state.hour))
    data = state.model_dump_json(indent=2)
    try:
        if etag is None:
            result = blob.upload_blob(data, overwrite=False)
        else:
            result = blob.upload_blob(
                data,
                overwrite=True,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
    except (ResourceExistsError, ResourceModifiedError) as exc:
        raise StateConflictError(f"state of hour {state.hour:%Y-%m-%dT%H} changed while being updated") from exc
    return str(result["etag"])


class Action(StrEnum):
    WAIT = "wait"  # not complete yet
    FINALISE = "finalise"  # a submitted revision must be checked before anything else
    CLEAN = "clean"  # the current revision's switch is unfinished: delete the others' outputs, mark it scored
    SCORE = "score"
    SKIP = "skip"  # scored on the inputs it has now
    ERROR = "error"  # storage failed while this run handled the hour: the next run takes it up again


@dataclass(frozen=True)
class Decision:
    action: Action
    why: str
    reason: Reason | None = None  # set when action is SCORE


def complete_at(hour: datetime, settle: timedelta) -> datetime:
    """When an hour counts as complete: its last window has closed and the stream job's maximum
    output delay (late-arrival tolerance plus output flush) has passed."""
    return floor_hour(hour) + HOUR + settle


def claim_age(stored: StoredState, now: datetime) -> timedelta:
    """How long the latest revision has been claimed: by the service's clock when the read said (the claim is
    the last write of a state whose latest revision is submitted), else by the local clock."""
    latest = stored.state.latest if stored.state else None
    if stored.age is not None:
        return stored.age
    return now - latest.started_at if latest is not None else timedelta(0)


def claim_expired(stored: StoredState, now: datetime, claim_timeout: timedelta) -> str | None:
    """Why the latest (submitted) revision's claim is dead, or None while its run may be alive: its local
    owner process is gone, or the claim is older than the claimant's timeout (``claim_timeout`` for claims
    that did not store one) by the storage service's clock."""
    latest = stored.state.latest if stored.state else None
    assert latest is not None
    if latest.owner is not None and latest.owner.gone():
        return f"its run (pid {latest.owner.pid} on {latest.owner.host}) is gone"
    timeout = latest.claim_timeout if latest.claim_timeout is not None else claim_timeout
    age = claim_age(stored, now)
    if age >= timeout:
        return (
            f"claimed {int(age.total_seconds() // 60)} min ago (claim timeout {int(timeout.total_seconds() // 60)} min)"
        )
    return None


def decide(
    stored: StoredState,
    hour: datetime,
    now: datetime,
    settle: timedelta,
    inputs_fingerprint: str,
    claim_timeout: timedelta,
    *,
    force: bool = False,
) -> Decision:
    """What a reconcile run does with an hour: a pure function of the stored state, clocks and inputs
    (``Owner.gone`` reads the local process table, which is the point of it)."""
    state = stored.state
    ready_at = complete_at(hour, settle)
    if now < ready_at:
        return Decision(Action.WAIT, f"not ready: complete at {ready_at:%Y-%m-%dT%H:%M}Z")
    latest = state.latest if state else None
    if latest is not None and latest.status is AttemptStatus.SUBMITTED:
        # Even a dead claim is finalised first: its job may have finished, or its record been closed by a
        # run that died before writing this state. The reconciler replaces it only after looking.
        dead = claim_expired(stored, now, claim_timeout)
        state_of = f"abandoned? {dead}" if dead else f"in flight ({latest.job_id})"
        return Decision(Action.FINALISE, f"revision {latest.revision} {state_of}")
    if state is not None and state.cleanup_pending:
        return Decision(Action.CLEAN, f"revision {state.current.revision if state.current else '?'} not cleaned up")
    if force:
        return Decision(Action.SCORE, "forced by the operator", Reason.FORCED)
    if latest is None:
        return Decision(Action.SCORE, "never scored", Reason.NEVER_SCORED)
    if latest.status in (AttemptStatus.FAILED, AttemptStatus.ABANDONED):
        return Decision(Action.SCORE, f"revision {latest.revision} failed: {latest.error}", Reason.RETRY_FAILED)
    if latest.fingerprint != inputs_fingerprint:
        return Decision(Action.SCORE, f"inputs changed since revision {latest.revision}", Reason.INPUTS_CHANGED)
    return Decision(Action.SKIP, f"scored (revision {latest.revision}) on its current inputs")
