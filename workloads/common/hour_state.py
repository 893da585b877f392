"""The life cycle of one scoring hour, stored as ``logs/{hour}/hour.json``.

not ready -> complete (due) -> scoring (revision n submitted) -> scored (revision n) | failed -> ...
and scored -> stale when the hour's aggregates change after scoring (late data, a replay).

Only ``attempts`` and ``current_job_id`` are stored; whether an hour is ready, due or stale is derived
from the clock and the inputs' fingerprint each time (``decide``), so the document cannot disagree
with the blobs it describes. Writes are conditional on the ETag read (optimistic concurrency): two
reconcilers that decide to score the same hour race on one conditional write, and the loser backs off.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient
from pydantic import BaseModel, Field

from workloads.common.ids import JobId
from workloads.common.layout import Container, hour_state_blob
from workloads.common.windows import HOUR, floor_hour

MAX_ATTEMPTS_KEPT = 50
# A revision in flight longer than this belongs to a run that died: the next run replaces it.
CLAIM_TIMEOUT = timedelta(hours=3)


class AttemptStatus(StrEnum):
    SUBMITTED = "submitted"  # claimed and handed to a backend; not yet finalised
    COMPLETED = "completed"  # every pair ok, truly absent, or failed with a reason
    FAILED = "failed"  # inputs unreadable or a task did not finish: the hour stays due


class Reason(StrEnum):
    """Why a revision was scored: the run log says it for every hour."""

    NEVER_SCORED = "never_scored"  # missed or skipped trigger, outage, first run
    INPUTS_CHANGED = "inputs_changed"  # late data or a replay after the hour was scored
    RETRY_FAILED = "retry_failed"  # the previous revision failed
    ABANDONED = "abandoned"  # the previous revision never finished within the claim timeout
    FORCED = "forced"  # an operator asked for it


class Attempt(BaseModel):
    revision: int = Field(ge=1)
    job_id: JobId
    reason: Reason
    status: AttemptStatus
    fingerprint: str  # of the aggregates the revision was planned on
    started_at: datetime
    finished_at: datetime | None = None
    pairs: int = 0
    corrupt_blobs: int = 0  # aggregate blobs whose rows the revision could not use (it completed without them)
    error: str | None = None  # why a revision failed, in one line


class HourState(BaseModel):
    hour: datetime
    stack: str
    current_job_id: str | None = None  # the revision whose predictions readers see
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


def read_state(service: BlobServiceClient, hour: datetime) -> StoredState:
    logs = service.get_container_client(str(Container.LOGS))
    try:
        downloader = logs.download_blob(hour_state_blob(hour))
    except ResourceNotFoundError:
        return StoredState(None, None)
    return StoredState(HourState.model_validate_json(downloader.readall()), str(downloader.properties.etag))


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
    SCORE = "score"
    SKIP = "skip"  # scored on the inputs it has now


@dataclass(frozen=True)
class Decision:
    action: Action
    why: str
    reason: Reason | None = None  # set when action is SCORE


def complete_at(hour: datetime, settle: timedelta) -> datetime:
    """When an hour counts as complete: its last window has closed and the stream job's maximum
    output delay (late-arrival tolerance plus output flush) has passed."""
    return floor_hour(hour) + HOUR + settle


def decide(
    state: HourState | None,
    hour: datetime,
    now: datetime,
    settle: timedelta,
    inputs_fingerprint: str,
    claim_timeout: timedelta,
    *,
    force: bool = False,
) -> Decision:
    """What a reconcile run does with an hour: a pure function of the stored state, clock and inputs."""
    ready_at = complete_at(hour, settle)
    if now < ready_at:
        return Decision(Action.WAIT, f"not ready: complete at {ready_at:%Y-%m-%dT%H:%M}Z")
    latest = state.latest if state else None
    if latest is not None and latest.status is AttemptStatus.SUBMITTED:
        if now - latest.started_at < claim_timeout:
            return Decision(Action.FINALISE, f"revision {latest.revision} in flight ({latest.job_id})")
        return Decision(
            Action.SCORE, f"revision {latest.revision} abandoned since {latest.started_at:%H:%M}Z", Reason.ABANDONED
        )
    if force:
        return Decision(Action.SCORE, "forced by the operator", Reason.FORCED)
    if latest is None:
        return Decision(Action.SCORE, "never scored", Reason.NEVER_SCORED)
    if latest.status is AttemptStatus.FAILED:
        return Decision(Action.SCORE, f"revision {latest.revision} failed: {latest.error}", Reason.RETRY_FAILED)
    if latest.fingerprint != inputs_fingerprint:
        return Decision(Action.SCORE, f"inputs changed since revision {latest.revision}", Reason.INPUTS_CHANGED)
    return Decision(Action.SKIP, f"scored (revision {latest.revision}) on its current inputs")
