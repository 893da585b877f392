"""Issue 17, items 1-3: no crash or partial failure leaves an hour's outputs or state wrong (real Azurite, fault proxy).

1. a failed cleanup after a re-score is finished by the next run; ``scored.json`` is written for every revision;
2. a run whose claim is taken over stops with one line and leaves the hour to the new owner; a reconciler whose
   clock is ahead does not take over a live claim (the claim's age is the storage service's);
3. a run whose final state write failed is repaired from its job record by the next run; a claim whose local
   owner process is gone is replaced at once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient
from typer.testing import CliRunner

from tests.faults import FaultProxy, Rule
from tests.workloads.helpers import HOUR, hour_manifests, publish_data_and_models
from workloads.common.frames import read_hour_predictions
from workloads.common.hour_state import (
    Action,
    Attempt,
    AttemptStatus,
    HourState,
    Owner,
    Reason,
    StoredState,
    claim_expired,
    decide,
    read_state,
    write_state,
)
from workloads.common.layout import Container, hour_prefix, run_log_blob, scored_marker_blob
from workloads.common.pairs import Pair
from workloads.common.runlog import parse_jsonl
from workloads.common.storage import StorageSettings
from workloads.scorer.cli import app as scorer
from workloads.scorer.task import score_task
from workloads.submitter.backend import JobOutcome
from workloads.submitter.finalise import clean
from workloads.submitter.local import LocalBackend
from workloads.submitter.plan import JobPlan, job_id_for
from workloads.submitter.reconcile import Reconciler, ReconcileSettings
from workloads.submitter.report import HourStatus, collect, issue_lines

PAIRS = [Pair(f"dev-{i}", "temp") for i in range(6)]
NOW = HOUR + timedelta(hours=2)
SETTLE = timedelta(minutes=15)


def submitted(**fields: Any) -> Attempt:
    """Revision 1 of the hour as its claim leaves it (``submitted``), with ``fields`` replaced."""
    defaults: dict[str, Any] = {
        "revision": 1,
        "job_id": job_id_for("dev", HOUR, 1),
        "reason": Reason.NEVER_SCORED,
        "status": AttemptStatus.SUBMITTED,
        "fingerprint": "f",
        "started_at": NOW,
    }
    return Attempt(**{**defaults, **fields})


def reconciler(service: BlobServiceClient, backend: Any, **kwargs: Any) -> Reconciler:
    return Reconciler(service, backend, ReconcileSettings(stack="dev", hours=1, **kwargs))


def prediction_folders(service: BlobServiceClient) -> set[str]:
    """The job folders under the hour's prefix of ``predictions``, as a reader listing by prefix sees them."""
    blobs = service.get_container_client(str(Container.PREDICTIONS)).list_blobs(name_starts_with=hour_prefix(HOUR))
    return {b.name[len(hour_prefix(HOUR)) :].split("/")[0] for b in blobs}


def marker(service: BlobServiceClient) -> dict[str, Any]:
    logs = service.get_container_client(str(Container.LOGS))
    return dict(json.loads(logs.download_blob(scored_marker_blob(HOUR)).readall()))


@pytest.fixture
def faulty_service(service: BlobServiceClient, faulty_settings: StorageSettings) -> BlobServiceClient:
    return faulty_settings.client()


class ArmsDuringTasks(LocalBackend):
    """Arms proxy rules once tasks start (after the claim and the plan), so only what follows meets them."""

    def __init__(self, settings: StorageSettings, proxy: FaultProxy, *rules: Rule) -> None:
        super().__init__(settings, workers=0)
        self.proxy, self.rules = proxy, rules

    def submit(self, plan: JobPlan, manifests: dict[str, str]) -> JobOutcome:
        for rule in self.rules:
            self.proxy.add(rule)
        return super().submit(plan, manifests)


# 1. Cleanup that cannot be skipped.
def test_a_failed_cleanup_after_a_rescore_is_finished_by_the_next_run(
    faulty_service: BlobServiceClient, faulty_settings: StorageSettings, fault_proxy: FaultProxy
) -> None:
    service = faulty_service
    publish_data_and_models(service, PAIRS)
    with LocalBackend(faulty_settings, workers=0) as backend:
        first = reconciler(service, backend).hour(HOUR, NOW)
    assert first.status is AttemptStatus.COMPLETED
    assert marker(service)["job_id"] == first.job_id == job_id_for("dev", HOUR, 1)

    # r002 is forced; every listing of `predictions` fails while it is finalised (cleanup's first step).
    listing = Rule(r"/predictions$")
    with ArmsDuringTasks(faulty_settings, fault_proxy, listing) as backend:
        second = reconciler(service, backend).hour(HOUR, NOW, force=True)
    fault_proxy.clear()
    assert listing.hits >= 1
    assert second.action is Action.ERROR and second.failed  # the hour named, the run does not report success
    assert "503" in second.why or "ServerBusy" in second.why or "HttpResponseError" in second.why
    state = read_state(service, HOUR).state
    assert state is not None and state.current_job_id == job_id_for("dev", HOUR, 2) and state.cleanup_pending
    cleaning = collect(service, HOUR, NOW, SETTLE)
    assert cleaning.status is HourStatus.CLEANING
    assert "cleaning" in [kind for kind, _ in issue_lines(cleaning.summary())]
    assert prediction_folders(service) == {job_id_for("dev", HOUR, 1), job_id_for("dev", HOUR, 2)}

    with LocalBackend(faulty_settings, workers=0) as backend:
        repaired = reconciler(service, backend).hour(HOUR, NOW)
    assert (repaired.action, repaired.job_id) == (Action.CLEAN, job_id_for("dev", HOUR, 2))
    assert prediction_folders(service) == {job_id_for("dev", HOUR, 2)}  # a prefix reader sees one revision
    assert marker(service)["job_id"] == job_id_for("dev", HOUR, 2)
    state = read_state(service, HOUR).state
    assert state is not None and not state.cleanup_pending
    assert collect(service, HOUR, NOW, SETTLE).status is HourStatus.SCORED
    predictions = read_hour_predictions(service, HOUR)
    assert (
        len(predictions) == len(PAIRS) * 12 and not predictions.duplicated(["device_id", "sensor", "window_end"]).any()
    )
    with LocalBackend(faulty_settings, workers=0) as backend:
        assert reconciler(service, backend).hour(HOUR, NOW).action is Action.SKIP


def test_scored_json_is_written_for_a_first_revision_even_if_its_first_write_fails(
    faulty_service: BlobServiceClient, faulty_settings: StorageSettings, fault_proxy: FaultProxy
) -> None:
    service = faulty_service
    publish_data_and_models(service, PAIRS[:2])
    put_marker = Rule(r"/scored\.json$", method="PUT")
    with ArmsDuringTasks(faulty_settings, fault_proxy, put_marker) as backend:
        first = reconciler(service, backend).hour(HOUR, NOW)
    fault_proxy.clear()
    assert first.action is Action.ERROR and put_marker.hits >= 1
    assert not service.get_blob_client(str(Container.LOGS), scored_marker_blob(HOUR)).exists()
    with LocalBackend(faulty_settings, workers=0) as backend:
        assert reconciler(service, backend).hour(HOUR, NOW).action is Action.CLEAN
    assert marker(service)["job_id"] == job_id_for("dev", HOUR, 1)


# 2. Claims that survive skew and takeover.
class TakenOverMidway(LocalBackend):
    """While its tasks are about to run, a second reconciler (``rival``) looks at the hour at ``rival_now``."""

    def __init__(self, settings: StorageSettings, service: BlobServiceClient, rival_now: datetime, **rival: Any):
        super().__init__(settings, workers=0)
        self.service, self.rival_now, self.rival = service, rival_now, rival
        self.rival_result: Any = None

    def submit(self, plan: JobPlan, manifests: dict[str, str]) -> JobOutcome:
        with LocalBackend(self.settings, workers=0) as other:
            self.rival_result = reconciler(self.service, other, **self.rival).hour(HOUR, self.rival_now)
        return super().submit(plan, manifests)


def test_a_run_whose_claim_is_taken_over_stops_cleanly_and_leaves_the_hour_to_the_new_owner(
    service: BlobServiceClient, settings: StorageSettings
) -> None:
    publish_data_and_models(service, PAIRS)
    # The first run's claim timeout is zero (as for a run slower than its bound): the rival replaces it.
    with TakenOverMidway(settings, service, NOW) as backend:
        first = reconciler(service, backend, claim_timeout=timedelta(0)).hour(HOUR, NOW)
    rival = backend.rival_result
    assert (rival.action, rival.reason, rival.status) == (Action.SCORE, Reason.ABANDONED, AttemptStatus.COMPLETED)
    assert first.status is AttemptStatus.ABANDONED and first.action is Action.SKIP
    assert "taken over by revision 2" in first.why and "\n" not in first.why
    state = read_state(service, HOUR).state
    assert state is not None
    assert [(a.revision, a.status) for a in state.attempts] == [
        (1, AttemptStatus.ABANDONED),  # never left `submitted`
        (2, AttemptStatus.COMPLETED),
    ]
    assert state.current_job_id == job_id_for("dev", HOUR, 2) and not state.cleanup_pending
    assert prediction_folders(service) == {job_id_for("dev", HOUR, 2)}  # the loser removed its own predictions
    assert marker(service)["job_id"] == job_id_for("dev", HOUR, 2)
    assert collect(service, HOUR, NOW, SETTLE).status is HourStatus.SCORED


def test_a_reconciler_with_a_clock_ahead_does_not_take_over_a_live_claim(
    service: BlobServiceClient, settings: StorageSettings
) -> None:
    publish_data_and_models(service, PAIRS[:3])
    # The rival's clock is 5 minutes ahead and its claim timeout 1 minute: by its own clock the claim is
    # 5 minutes old; by the storage service's (the state blob's Last-Modified vs the response's Date) it is not.
    with TakenOverMidway(settings, service, NOW + timedelta(minutes=5), claim_timeout=timedelta(minutes=1)) as backend:
        first = reconciler(service, backend).hour(HOUR, NOW)
    assert backend.rival_result.action is Action.WAIT
    assert first.status is AttemptStatus.COMPLETED
    state = read_state(service, HOUR).state
    assert state is not None and [a.status for a in state.attempts] == [AttemptStatus.COMPLETED]


def test_claim_age_is_the_services_not_the_callers() -> None:
    owner = Owner(host="elsewhere", pid=1)  # another host's process: its liveness cannot be checked here
    attempt = submitted(started_at=NOW - timedelta(hours=5), owner=owner)  # the claimant's clock was far behind
    state = HourState(hour=HOUR, stack="dev", attempts=[attempt])
    young = StoredState(state, "etag", age=timedelta(seconds=20))
    old = StoredState(state, "etag", age=timedelta(hours=4))
    assert claim_expired(young, NOW, timedelta(hours=3)) is None
    assert claim_expired(old, NOW, timedelta(hours=3)) == "claimed 240 min ago (claim timeout 180 min)"
    # Even a dead claim is finalised first (its record and job are looked at before it is replaced).
    assert decide(old, HOUR, NOW, SETTLE, "f", timedelta(hours=3)).action is Action.FINALISE


# 3. Nothing waits for a timeout when it can know.
def score_with_a_failed_final_write(service: BlobServiceClient, settings: StorageSettings, proxy: FaultProxy) -> Any:
    """Score the hour while every write of ``hour.json`` after the claim answers 503: the job record is closed,
    the hour's state still says submitted."""
    put_state = Rule(r"/hour\.json$", method="PUT")
    with ArmsDuringTasks(settings, proxy, put_state) as backend:
        result = reconciler(service, backend).hour(HOUR, NOW)
    proxy.clear()
    assert put_state.hits >= 1
    return result


def test_a_failed_final_state_write_is_repaired_from_the_job_record(
    faulty_service: BlobServiceClient, faulty_settings: StorageSettings, fault_proxy: FaultProxy
) -> None:
    service = faulty_service
    publish_data_and_models(service, PAIRS)
    first = score_with_a_failed_final_write(service, faulty_settings, fault_proxy)
    assert first.action is Action.ERROR
    state = read_state(service, HOUR).state
    assert state is not None and state.latest is not None and state.latest.status is AttemptStatus.SUBMITTED

    # The next run, one minute later (no 3-hour claim timeout), closes the hour from the completed job record.
    with LocalBackend(faulty_settings, workers=0) as backend:
        repaired = reconciler(service, backend).hour(HOUR, NOW + timedelta(minutes=1))
    assert (repaired.action, repaired.status) == (Action.SKIP, AttemptStatus.COMPLETED)
    state = read_state(service, HOUR).state
    assert state is not None and state.current_job_id == job_id_for("dev", HOUR, 1)
    assert collect(service, HOUR, NOW, SETTLE).status is HourStatus.SCORED
    assert marker(service)["job_id"] == job_id_for("dev", HOUR, 1)
    assert len(read_hour_predictions(service, HOUR)) == len(PAIRS) * 12


def write_claim(service: BlobServiceClient, owner: Owner) -> None:
    """The hour's state as a run leaves it right after its claim: revision 1 submitted, by ``owner``."""
    claim = submitted(fingerprint="whatever", started_at=datetime.now(UTC), owner=owner)
    write_state(service, HourState(hour=HOUR, stack="dev", attempts=[claim]), None)


def test_a_claim_whose_local_owner_is_gone_is_replaced_at_once(
    service: BlobServiceClient, settings: StorageSettings
) -> None:
    publish_data_and_models(service, PAIRS[:2])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    owner = Owner.this_process("local").model_copy(update={"pid": int(dead.stdout), "started": 1})
    write_claim(service, owner)
    assert collect(service, HOUR, NOW, SETTLE).status is HourStatus.FAILED  # not "scoring" for 3 hours
    with LocalBackend(settings, workers=0) as backend:
        result = reconciler(service, backend).hour(HOUR, NOW)
    assert (result.action, result.reason, result.status) == (Action.SCORE, Reason.ABANDONED, AttemptStatus.COMPLETED)
    assert f"pid {owner.pid}" in result.why
    state = read_state(service, HOUR).state
    assert state is not None and [a.status for a in state.attempts] == [
        AttemptStatus.ABANDONED,
        AttemptStatus.COMPLETED,
    ]


def test_a_live_local_owner_keeps_its_claim(service: BlobServiceClient, settings: StorageSettings) -> None:
    write_claim(service, Owner.this_process("local"))
    assert collect(service, HOUR, NOW, SETTLE).status is HourStatus.SCORING


def test_the_reader_reads_the_pointer_again_when_a_revision_vanishes_under_it(
    faulty_service: BlobServiceClient, faulty_settings: StorageSettings, fault_proxy: FaultProxy
) -> None:
    service = faulty_service
    publish_data_and_models(service, PAIRS[:2])
    with LocalBackend(faulty_settings, workers=0) as backend:
        reconciler(service, backend).hour(HOUR, NOW)
    # The first download of a prediction blob answers 404, as when a switch deletes it between list and GET.
    gone = fault_proxy.add(
        Rule(r"/predictions/.*\.parquet$", status=404, error_code="BlobNotFound", message="gone", times=1)
    )
    predictions = read_hour_predictions(service, HOUR)
    assert gone.hits == 1 and len(predictions) == 2 * 12


# Every outcome leaves a run log: a task that cannot finish writes one with its error, and the CLI ends in one line.
def test_a_task_whose_predictions_write_is_refused_leaves_a_failed_run_log(
    faulty_service: BlobServiceClient, faulty_settings: StorageSettings, fault_proxy: FaultProxy
) -> None:
    service = faulty_service
    publish_data_and_models(service, PAIRS[:2])
    (manifest, *_) = hour_manifests(service)
    fault_proxy.add(Rule(r"/predictions/.*\.parquet$", method="PUT"))
    with pytest.raises(HttpResponseError):
        score_task(service, manifest)
    log = service.get_container_client(str(Container.LOGS)).download_blob(
        run_log_blob(HOUR, manifest.job_id, manifest.task_id)
    )
    task, pairs = parse_jsonl(log.readall())
    assert task is not None and task.error is not None and pairs == []
    assert task.error.startswith("HttpResponseError: The server is currently unable")


def test_a_bug_in_a_task_ends_in_one_line_and_a_run_log(
    service: BlobServiceClient, settings: StorageSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish_data_and_models(service, PAIRS[:2])
    (manifest, *_) = hour_manifests(service)
    path = tmp_path / "manifest.json"
    path.write_text(manifest.model_dump_json())

    def broken(*_: object, **__: object) -> None:
        raise KeyError("window_end")

    monkeypatch.setattr("workloads.scorer.task._score_from_pack", broken)
    result = CliRunner().invoke(scorer, ["--manifest-file", str(path)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == ["error: task failed: KeyError: 'window_end'"]
    log = service.get_container_client(str(Container.LOGS)).download_blob(
        run_log_blob(HOUR, manifest.job_id, manifest.task_id)
    )
    task, _ = parse_jsonl(log.readall())
    assert task is not None and task.error == "KeyError: 'window_end'"


def test_a_claim_is_judged_by_its_claimants_timeout_so_the_report_agrees() -> None:
    attempt = submitted(
        owner=Owner(host="elsewhere", pid=1, backend="batch"),
        claim_timeout=timedelta(hours=2, minutes=45),  # a Batch claimant's derived timeout
    )
    stored = StoredState(
        HourState(hour=HOUR, stack="dev", attempts=[attempt]), "etag", age=timedelta(hours=2, minutes=50)
    )
    # The report passes the local default (3 h); the claimant's own 2 h 45 min rules, as it does for every run.
    assert claim_expired(stored, NOW, timedelta(hours=3)) is not None
    young = StoredState(stored.state, "etag", age=timedelta(hours=2))
    assert claim_expired(young, NOW, timedelta(hours=3)) is None
    # A run told to be quicker cannot take over a Batch job that may still be running within its bound.
    assert claim_expired(young, NOW, timedelta(minutes=1)) is None


def test_a_record_closed_by_a_run_that_then_died_is_applied_not_thrown_away(
    faulty_service: BlobServiceClient, faulty_settings: StorageSettings, fault_proxy: FaultProxy
) -> None:
    service = faulty_service
    publish_data_and_models(service, PAIRS[:3])
    assert score_with_a_failed_final_write(service, faulty_settings, fault_proxy).action is Action.ERROR
    # The run that closed the record is gone (as a CLI process would be by now): its claim is dead, yet its
    # completed record is applied instead of a new revision replacing it.
    stored = read_state(service, HOUR)
    assert stored.state is not None and stored.state.latest is not None and stored.state.latest.owner is not None
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    stored.state.latest.owner = stored.state.latest.owner.model_copy(update={"pid": int(dead.stdout)})
    write_state(service, stored.state, stored.etag)
    with LocalBackend(faulty_settings, workers=0) as backend:
        repaired = reconciler(service, backend).hour(HOUR, NOW)
    assert (repaired.action, repaired.status, repaired.job_id) == (
        Action.SKIP,
        AttemptStatus.COMPLETED,
        job_id_for("dev", HOUR, 1),
    )
    state = read_state(service, HOUR).state
    assert state is not None and [a.status for a in state.attempts] == [AttemptStatus.COMPLETED]


def test_a_revision_left_in_flight_is_finished_after_its_hour_leaves_the_window(
    faulty_service: BlobServiceClient, faulty_settings: StorageSettings, fault_proxy: FaultProxy
) -> None:
    service = faulty_service
    publish_data_and_models(service, PAIRS[:2])
    assert score_with_a_failed_final_write(service, faulty_settings, fault_proxy).action is Action.ERROR
    later = HOUR + timedelta(hours=3, minutes=20)  # a one-hour window is 12:00 only; 10:00 is behind it
    with LocalBackend(faulty_settings, workers=0) as backend:
        results = reconciler(service, backend).run(later)
    # Reported: 10:00 (behind the window, finished from its record) and the window's 12:00; the other hours behind
    # the window had nothing in flight and are not mentioned.
    assert [r.hour for r in results] == [HOUR, HOUR + timedelta(hours=2)]
    assert (results[0].action, results[0].status) == (Action.SKIP, AttemptStatus.COMPLETED)
    assert results[0].why == f"finished {job_id_for('dev', HOUR, 1)}: completed"
    assert marker(service)["job_id"] == job_id_for("dev", HOUR, 1)


def test_cleaning_from_an_old_state_never_deletes_a_newer_revision_nor_moves_the_marker_back(
    service: BlobServiceClient,
) -> None:
    predictions = service.get_container_client(str(Container.PREDICTIONS))
    folders = [job_id_for("dev", HOUR, r) for r in (1, 2, 3)] + ["manual"]
    for folder in folders:
        predictions.upload_blob(f"{hour_prefix(HOUR)}{folder}/task-00000.parquet", b"x")
    service.get_container_client(str(Container.LOGS)).upload_blob(
        scored_marker_blob(HOUR), json.dumps({"job_id": folders[2], "revision": 3})
    )
    attempts = [
        Attempt(
            revision=r,
            job_id=folders[r - 1],
            reason=Reason.NEVER_SCORED,
            status=AttemptStatus.COMPLETED,
            fingerprint="f",
            started_at=NOW,
        )
        for r in (1, 2)
    ]
    state = HourState(hour=HOUR, stack="dev", current_job_id=folders[1], cleanup_pending=True, attempts=attempts)
    etag = write_state(service, state, None)
    # A run that read this state (r002 current) cleans while r003 has been claimed and finished meanwhile.
    clean(service, StoredState(state, etag))
    assert prediction_folders(service) == {folders[1], folders[2], "manual"}  # only the older r001 went
    assert marker(service)["job_id"] == folders[2]  # r003's marker stands


def test_a_dead_claim_behind_the_window_is_closed_and_the_run_does_not_report_success(
    service: BlobServiceClient, settings: StorageSettings
) -> None:
    publish_data_and_models(service, PAIRS[:2])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    write_claim(service, Owner.this_process("local").model_copy(update={"pid": int(dead.stdout), "started": 1}))
    later = HOUR + timedelta(hours=3, minutes=20)  # a one-hour window is 12:00 only; 10:00 is behind it
    with LocalBackend(settings, workers=0) as backend:
        results = reconciler(service, backend).run(later)
    behind = results[0]
    assert (behind.hour, behind.action, behind.status) == (HOUR, Action.SKIP, AttemptStatus.ABANDONED)
    assert "not re-scored" in behind.why and behind.failed  # the CLI exits 1 naming the hour
    state = read_state(service, HOUR).state
    assert state is not None and [a.status for a in state.attempts] == [AttemptStatus.ABANDONED]
