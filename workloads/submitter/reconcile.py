"""Reconciling recent hours: every complete hour scored exactly once on its latest inputs.

Each scheduled run looks at a bounded window of recent hours and, per hour, derives what to do from
the stored state, the clock and the fingerprint of the hour's aggregate blobs (``hour_state.decide``):
score hours never scored (missed or skipped triggers, outages), re-score hours whose inputs changed
after scoring (late data, replays) or whose last revision failed, finish revisions a previous run
submitted, and leave everything else alone. A second run right after the first does nothing.

Each revision is claimed with a conditional write of the hour's state before anything is submitted,
and its Batch job id is deterministic (stack + hour + revision): two reconcilers at once cannot both
score an hour, and a crashed one leaves a claim that the next run finishes or, after the claim
timeout, replaces.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from azure.storage.blob import BlobServiceClient

from workloads.common import telemetry
from workloads.common.hour_inputs import InputBlob, fingerprint, list_hour_inputs
from workloads.common.hour_state import (
    CLAIM_TIMEOUT,
    Action,
    Attempt,
    AttemptStatus,
    HourState,
    Reason,
    StateConflictError,
    StoredState,
    decide,
    read_state,
    write_state,
)
from workloads.common.shards import DEFAULT_SHARD_COUNT
from workloads.common.windows import HOUR, SETTLE, floor_hour
from workloads.submitter.backend import Backend
from workloads.submitter.finalise import finalise
from workloads.submitter.plan import DEFAULT_TASK_BYTES, Trust, job_id_for, plan_hour
from workloads.submitter.record import JobRecord, read_record
from workloads.submitter.submit import submit_plan


@dataclass(frozen=True)
class ReconcileSettings:
    stack: str
    shard_count: int = DEFAULT_SHARD_COUNT  # a task per shard folder; each shard's model pack serves its tasks
    max_task_bytes: int = DEFAULT_TASK_BYTES  # a shard with more aggregate bytes is split into slices
    hours: int = 24  # how far back each run looks
    settle: timedelta = SETTLE  # after an hour's end before it counts as complete
    claim_timeout: timedelta = CLAIM_TIMEOUT  # a revision in flight longer than this is abandoned
    trust: Trust = field(default_factory=Trust)


@dataclass
class HourResult:
    """What one run did with one hour; the run log and the CLI print one line of it per hour."""

    hour: datetime
    action: Action
    why: str
    reason: Reason | None = None
    job_id: str | None = None
    status: AttemptStatus | None = None  # of the revision this run submitted or finalised
    record: JobRecord | None = field(default=None, repr=False)

    @property
    def failed(self) -> bool:
        return self.status is AttemptStatus.FAILED

    @property
    def lost_inputs(self) -> dict[str, str]:
        """Corrupt aggregate blobs a completed revision had to do without: their rows are lost, so the
        run that scored the hour must not report plain success."""
        if self.status is not AttemptStatus.COMPLETED or self.record is None:
            return {}
        return dict(self.record.input_issues.get("corrupt_blobs", {}))


def window(now: datetime, settings: ReconcileSettings) -> list[datetime]:
    """The hours a run at ``now`` looks at, oldest first, ending with the current hour's predecessor."""
    newest = floor_hour(now) - HOUR
    return [newest - i * HOUR for i in reversed(range(settings.hours))]


class Reconciler:
    def __init__(
        self,
        service: BlobServiceClient,
        backend: Backend,
        settings: ReconcileSettings,
        log: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.service = service
        self.backend = backend
        self.settings = settings
        self.log = log

    def run(self, now: datetime) -> list[HourResult]:
        results = []
        for hour in window(now, self.settings):
            result = self.hour(hour, now)
            self.log(f"{hour:%Y-%m-%dT%H} {result.action.value}: {result.why}")
            results.append(result)
        return results

    def hour(self, hour: datetime, now: datetime, *, force: bool = False) -> HourResult:
        """Reconcile one hour. Raises only for storage errors outside a claimed revision."""
        stack = self.settings.stack
        with telemetry.span("reconcile_hour", hour=f"{floor_hour(hour):%Y-%m-%dT%H}", stack=stack) as current:
            result = self._hour(floor_hour(hour), now, force=force)
            if current is not None:
                current.set_attribute("action", result.action.value)
                current.set_attribute("status", result.status.value if result.status else "")
                current.set_attribute("job_id", result.job_id or "")
        telemetry.count_hour(result.action.value, result.status.value if result.status else None, stack=stack)
        return result

    def _hour(self, hour: datetime, now: datetime, *, force: bool) -> HourResult:
        inputs = list_hour_inputs(self.service, hour)
        current = fingerprint(inputs)
        stored = read_state(self.service, hour)
        decision = decide(
            stored.state, hour, now, self.settings.settle, current, self.settings.claim_timeout, force=force
        )
        if decision.action is Action.FINALISE:
            closed = self._finalise_in_flight(stored)
            if closed is None:
                latest = stored.state.latest if stored.state else None
                return HourResult(hour, Action.WAIT, decision.why, job_id=latest.job_id if latest else None)
            finished, stored = closed
            decision = decide(
                stored.state, hour, now, self.settings.settle, current, self.settings.claim_timeout, force=force
            )
            if decision.action is not Action.SCORE:
                return HourResult(
                    hour,
                    Action.SKIP,
                    f"finished {finished.job_id}: {finished.status.value}",
                    job_id=finished.job_id,
                    status=finished.status,
                    record=finished,
                )
        if decision.action is not Action.SCORE:
            return HourResult(hour, decision.action, decision.why)
        assert decision.reason is not None
        return self._score(hour, stored, inputs, decision.reason, decision.why, now)

    # -- steps -----------------------------------------------------------------------------------------
    def _finalise_in_flight(self, stored: StoredState) -> tuple[JobRecord, StoredState] | None:
        """Close a revision submitted earlier if its job has finished (its record and the hour's new
        state); None while it runs."""
        assert stored.state is not None and stored.state.latest is not None
        latest = stored.state.latest
        record = read_record(self.service, stored.state.hour, latest.job_id)
        if record is None:  # claimed, but the claimant died before writing its record: wait for the timeout
            return None
        outcome = self.backend.poll(latest.job_id)
        if not outcome.finished:
            return None
        try:
            return record, finalise(self.service, stored, record, outcome)
        except StateConflictError:
            return None  # another run finalised it at the same moment

    def _score(
        self, hour: datetime, stored: StoredState, inputs: list[InputBlob], reason: Reason, why: str, now: datetime
    ) -> HourResult:
        state = stored.state or HourState(hour=hour, stack=self.settings.stack)
        revision = state.next_revision()
        job_id = job_id_for(self.settings.stack, hour, revision)
        state.attempts.append(
            Attempt(
                revision=revision,
                job_id=job_id,
                reason=reason,
                status=AttemptStatus.SUBMITTED,
                fingerprint=fingerprint(inputs),
                started_at=now,
            )
        )
        try:
            etag = write_state(self.service, state, stored.etag)
        except StateConflictError:
            return HourResult(hour, Action.SKIP, "claimed by another reconcile run", reason, job_id)
        claimed = StoredState(state, etag)
        plan = plan_hour(
            self.service,
            self.settings.stack,
            hour,
            shard_count=self.settings.shard_count,
            max_task_bytes=self.settings.max_task_bytes,
            revision=revision,
            inputs=inputs,
            trust=self.settings.trust,
        )
        record, outcome = submit_plan(self.service, plan, self.backend, revision, reason)
        status = AttemptStatus.SUBMITTED
        if outcome.finished:
            finalise(self.service, claimed, record, outcome)
            status = record.status
        return HourResult(hour, Action.SCORE, why, reason, job_id, status, record)
