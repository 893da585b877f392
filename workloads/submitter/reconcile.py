"""Reconciling recent hours: every complete hour scored exactly once on its latest inputs.

Each scheduled run looks at a bounded window of recent hours and, per hour, derives what to do from
the stored state, the clock and the fingerprint of the hour's aggregate blobs (``hour_state.decide``):
score hours never scored (missed or skipped triggers, outages), re-score hours whose inputs changed
after scoring (late data, replays) or whose last revision failed, finish revisions a previous run
submitted, and leave everything else alone. A second run right after the first does nothing.

Each revision is claimed with a conditional write of the hour's state before anything is submitted,
and its Batch job id is deterministic (stack + hour + revision): two reconcilers at once cannot both
score an hour. Nothing waits for a timeout that it can see through: a claim whose local owner process is
gone is replaced at once, a claim with no job record long after planning should have ended is replaced, a
revision whose record was closed by a run that then failed to write the state is applied from the record,
and an unfinished switch (``cleanup_pending``) is finished. A run that loses its claim to another stops
with one line and deletes its own predictions. A storage failure on one hour is that hour's result
(``Action.ERROR``), never the end of the run for the others.
"""

from __future__ import annotations

import math
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
    Decision,
    HourState,
    Owner,
    Reason,
    StateConflictError,
    StoredState,
    claim_age,
    claim_expired,
    decide,
    read_state,
    write_state,
)
from workloads.common.runlog import error_line
from workloads.common.shards import DEFAULT_SHARD_COUNT
from workloads.common.windows import HOUR, SETTLE, floor_hour
from workloads.submitter.backend import Backend
from workloads.submitter.finalise import ClaimLostError, apply_record, clean, delete_revision, finalise
from workloads.submitter.plan import DEFAULT_TASK_BYTES, Trust, job_id_for, plan_hour
from workloads.submitter.record import JobRecord, read_record, write_record
from workloads.submitter.submit import submit_plan

# A claim with no job record this long after it was made belongs to a run that died while planning (planning
# a million pairs takes seconds, ``benchmarks/planning.py``): it is replaced without waiting for the timeout.
RECORD_GRACE = timedelta(minutes=30)


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

    # A dead claim closed behind the window: nothing re-scores the hour on its own, so the run must not look done.
    left_unscored: bool = False

    @property
    def failed(self) -> bool:
        return self.status is AttemptStatus.FAILED or self.action is Action.ERROR or self.left_unscored

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


def finishing_window(now: datetime, settings: ReconcileSettings) -> list[datetime]:
    """The hours just older than the window, as many as a claim can live: a revision claimed when its hour was
    the window's oldest must still be finalised (or its switch finished) after the hour leaves the window."""
    oldest = window(now, settings)[0]
    extra = math.ceil(settings.claim_timeout / HOUR) + 1
    return [oldest - i * HOUR for i in reversed(range(1, extra + 1))]


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
        """Finish what older hours left in flight (reported only when there was something), then reconcile the
        window."""
        results = []
        for hour in finishing_window(now, self.settings):
            result = self.hour(hour, now, finish_only=True)
            if result.job_id is not None or result.action is Action.ERROR:
                self.log(f"{hour:%Y-%m-%dT%H} {result.action.value}: {result.why}")
                results.append(result)
        for hour in window(now, self.settings):
            result = self.hour(hour, now)
            self.log(f"{hour:%Y-%m-%dT%H} {result.action.value}: {result.why}")
            results.append(result)
        return results

    def hour(self, hour: datetime, now: datetime, *, force: bool = False, finish_only: bool = False) -> HourResult:
        """Reconcile one hour. Never raises for the hour's own trouble (storage down, a corrupt state
        document, a bug): that is the hour's ``error`` result, and the next run takes the hour up again."""
        stack = self.settings.stack
        with telemetry.span("reconcile_hour", hour=f"{floor_hour(hour):%Y-%m-%dT%H}", stack=stack) as current:
            try:
                result = self._hour(floor_hour(hour), now, force=force, finish_only=finish_only)
            except Exception as exc:
                result = HourResult(floor_hour(hour), Action.ERROR, error_line(exc)[:500])
            if current is not None:
                current.set_attribute("action", result.action.value)
                current.set_attribute("status", result.status.value if result.status else "")
                current.set_attribute("job_id", result.job_id or "")
        telemetry.count_hour(result.action.value, result.status.value if result.status else None, stack=stack)
        return result

    def _hour(self, hour: datetime, now: datetime, *, force: bool, finish_only: bool) -> HourResult:
        inputs = list_hour_inputs(self.service, hour)
        current = fingerprint(inputs)
        stored = read_state(self.service, hour)

        def decision_now() -> Decision:
            return decide(stored, hour, now, self.settings.settle, current, self.settings.claim_timeout, force=force)

        decision = decision_now()
        finished: JobRecord | None = None
        if decision.action is Action.FINALISE:
            step = self._finalise_in_flight(stored, now)
            if isinstance(step, HourResult):
                return step
            if isinstance(step, Decision):
                decision = step
            else:
                finished, stored = step
                decision = decision_now()
        cleaned = decision.action is Action.CLEAN
        if cleaned:
            stored = clean(self.service, stored)
            decision = decision_now()
        if decision.action is Action.SCORE and finish_only:
            if decision.reason is Reason.ABANDONED:
                return self._abandon(stored, decision.why, now)
            decision = Decision(Action.SKIP, f"outside the reconcile window: {decision.why}")
        if decision.action is Action.SCORE:
            assert decision.reason is not None
            return self._score(hour, stored, inputs, decision.reason, decision.why, now)
        if finished is not None:
            return HourResult(
                hour,
                Action.SKIP,
                f"finished {finished.job_id}: {finished.status.value}",
                job_id=finished.job_id,
                status=finished.status,
                record=finished,
            )
        if cleaned:
            job_id = stored.state.current_job_id if stored.state else None
            return HourResult(
                hour, Action.CLEAN, f"finished switching to {job_id}: other revisions deleted", None, job_id
            )
        return HourResult(hour, decision.action, decision.why)

    # -- steps -----------------------------------------------------------------------------------------
    def _finalise_in_flight(
        self, stored: StoredState, now: datetime
    ) -> tuple[JobRecord, StoredState] | HourResult | Decision:
        """Close a revision submitted earlier if it has finished (its record and the hour's new state); a
        Decision to replace its claim if it is dead and left nothing to close; an HourResult while it runs.

        Its record is read, and its job polled, before its claim is judged: a run that closed the record and
        died before writing the state, or a job that finished after the claim's timeout, is closed from what
        it left, never thrown away."""
        assert stored.state is not None and stored.state.latest is not None
        latest = stored.state.latest
        hour = stored.state.hour
        record = read_record(self.service, hour, latest.job_id)
        try:
            if record is not None and record.status is not AttemptStatus.SUBMITTED:
                # Its run closed the record, then failed to write the hour's state: apply the record now.
                return record, apply_record(self.service, stored, record)
            if record is not None:
                outcome = self.backend.poll(latest.job_id)
                if outcome.finished:
                    return record, finalise(self.service, stored, record, outcome)
        except ClaimLostError as exc:
            assert record is not None
            return self._lost(record, str(exc))
        dead = claim_expired(stored, now, self.settings.claim_timeout)
        age = claim_age(stored, now)
        if dead is None and record is None and age >= RECORD_GRACE:
            dead = f"claimed {int(age.total_seconds() // 60)} min ago, never submitted"
        if dead is not None:
            return Decision(Action.SCORE, f"revision {latest.revision} abandoned: {dead}", Reason.ABANDONED)
        doing = "in flight" if record is not None else "being planned"
        return HourResult(hour, Action.WAIT, f"revision {latest.revision} {doing}", job_id=latest.job_id)

    def _abandon(self, stored: StoredState, why: str, now: datetime) -> HourResult:
        """Close a dead claim of an hour outside the window without re-scoring it (the report shows it failed;
        ``submitter run --hour`` re-scores it)."""
        assert stored.state is not None and stored.state.latest is not None
        state = stored.state.model_copy(deep=True)
        latest = state.attempts[-1]
        latest.status, latest.finished_at, latest.error = AttemptStatus.ABANDONED, now, why
        write_state(self.service, state, stored.etag)
        why = f"{why}; outside the reconcile window, not re-scored (submitter run --hour re-scores it)"
        return HourResult(
            state.hour, Action.SKIP, why, Reason.ABANDONED, latest.job_id, AttemptStatus.ABANDONED, left_unscored=True
        )

    def _lost(self, record: JobRecord, why: str) -> HourResult:
        """This run's revision lost its claim: say so in its record, remove its predictions (they are not the
        hour's), and leave the hour to the run that took it over."""
        record.status = AttemptStatus.ABANDONED
        write_record(self.service, record)
        state = read_state(self.service, record.hour).state
        if state is None or state.current_job_id != record.job_id:
            delete_revision(self.service, record.hour, record.job_id)
        return HourResult(record.hour, Action.SKIP, why, record.reason, record.job_id, AttemptStatus.ABANDONED, record)

    def _score(
        self, hour: datetime, stored: StoredState, inputs: list[InputBlob], reason: Reason, why: str, now: datetime
    ) -> HourResult:
        state = stored.state.model_copy(deep=True) if stored.state else HourState(hour=hour, stack=self.settings.stack)
        revision = state.next_revision()
        job_id = job_id_for(self.settings.stack, hour, revision)
        if reason is Reason.ABANDONED and state.latest is not None:
            # The replaced claim is closed in the same write that makes the new one: it never stays submitted.
            state.latest.status, state.latest.finished_at, state.latest.error = AttemptStatus.ABANDONED, now, why
        state.attempts.append(
            Attempt(
                revision=revision,
                job_id=job_id,
                reason=reason,
                status=AttemptStatus.SUBMITTED,
                fingerprint=fingerprint(inputs),
                started_at=now,
                owner=Owner.this_process(self.backend.name),
                claim_timeout=self.settings.claim_timeout,
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
            try:
                finalise(self.service, claimed, record, outcome)
            except ClaimLostError as exc:
                return self._lost(record, str(exc))
            status = record.status
        return HourResult(hour, Action.SCORE, why, reason, job_id, status, record)
