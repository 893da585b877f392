from __future__ import annotations

import json

import pandas as pd
import pytest
from azure.storage.blob import BlobServiceClient
from typer.testing import CliRunner

from tests.workloads.helpers import GOOD_PAIRS, HOUR, aggregates_for, publish_data_and_models
from workloads.aggregator.publish import publish_aggregates
from workloads.common.pairs import Pair
from workloads.common.storage import StorageSettings
from workloads.scorer.cli import app as scorer
from workloads.submitter.cli import app as submitter
from workloads.submitter.plan import plan_hour
from workloads.submitter.submit import write_manifests

runner = CliRunner()


def flat(text: str) -> str:
    """CLI output without rich's box drawing and line wrapping, for matching messages."""
    return " ".join(text.replace("│", " ").split())


def test_scorer_scores_pairs_given_inline(service: BlobServiceClient) -> None:
    publish_data_and_models(service, GOOD_PAIRS)
    publish_aggregates(service, aggregates_for([*GOOD_PAIRS, Pair("no-model", "x")]))
    result = runner.invoke(
        scorer, ["--hour", "2026-11-25T10", "--pairs", "a/x,b/x,no-model/x,silent/x", "--task-id", "t1"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["ok"], summary["failed"], summary["no_data"]) == (2, 1, 1)
    assert summary["log_blob"] == "logs/2026/11/25/10/manual/tasks/t1.jsonl"
    failing = runner.invoke(scorer, ["--hour", "2026-11-25T10", "--pairs", "a/x,no-model/x", "--fail-on-pair-errors"])
    assert failing.exit_code == 3


def test_scorer_reads_a_manifest_blob(service: BlobServiceClient) -> None:
    publish_data_and_models(service, GOOD_PAIRS)
    plan = plan_hour(service, "dev", HOUR, chunk_size=10)
    blob = write_manifests(service, plan)["task-00000"]
    result = runner.invoke(scorer, ["--manifest", blob])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["job_id"] == "score-dev-2026112510-r001"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --manifest, --manifest-file, or both --hour and --pairs"),
        (["--hour", "2026-11-25T10", "--pairs", "no-slash"], "expected DEVICE/SENSOR"),
        (["--hour", "2026-11-25T10:30", "--pairs", "a/x"], "must be on the hour"),
        (["--concurrency", "0", "--hour", "2026-11-25T10", "--pairs", "a/x"], "--concurrency"),
    ],
)
def test_scorer_rejects_bad_arguments_with_a_clear_message(
    settings: StorageSettings, args: list[str], message: str
) -> None:
    result = runner.invoke(scorer, args)
    assert result.exit_code == 2
    assert message in flat(result.output)


def test_missing_storage_settings_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_URL", raising=False)
    result = runner.invoke(scorer, ["--hour", "2026-11-25T10", "--pairs", "a/x"])
    assert result.exit_code == 2
    assert "AZURE_STORAGE_CONNECTION_STRING" in flat(result.output)


def test_submitter_plan_then_run_then_run_again(service: BlobServiceClient) -> None:
    publish_data_and_models(service, GOOD_PAIRS)
    plan = runner.invoke(submitter, ["plan", "--hour", "2026-11-25T10", "--stack", "dev", "--chunk-size", "1"])
    assert plan.exit_code == 0, plan.output
    assert [t["pairs"] for t in json.loads(plan.stdout)["tasks"]] == [["a/x"], ["b/x"]]

    args = ["run", "--hour", "2026-11-25T10", "--stack", "dev", "--workers", "0"]
    first = runner.invoke(submitter, args)
    assert first.exit_code == 0, first.output
    (hour,) = json.loads(first.stdout)
    assert (hour["action"], hour["reason"], hour["status"]) == ("score", "never_scored", "completed")
    second = runner.invoke(submitter, args)
    assert second.exit_code == 0
    assert json.loads(second.stdout)[0]["action"] == "skip"
    assert "scored (revision 1) on its current inputs" in flat(second.stderr)


def test_submitter_rejects_a_bad_stack(settings: StorageSettings) -> None:
    result = runner.invoke(submitter, ["run", "--stack", "Prod!", "--hour", "2026-11-25T10"])
    assert result.exit_code == 2
    assert "invalid stack name" in flat(result.output)


def test_report_shows_jobs_failures_and_timings(service: BlobServiceClient) -> None:
    publish_data_and_models(service, GOOD_PAIRS)
    publish_aggregates(service, aggregates_for([*GOOD_PAIRS, Pair("no-model", "x")]))
    assert (
        runner.invoke(submitter, ["run", "--hour", "2026-11-25T10", "--stack", "dev", "--workers", "0"]).exit_code == 0
    )
    as_json = runner.invoke(submitter, ["report", "--hour", "2026-11-25T10", "--json"])
    assert as_json.exit_code == 0, as_json.output
    (summary,) = json.loads(as_json.stdout)
    assert (summary["job_id"], summary["status"], summary["revision"]) == ("score-dev-2026112510-r001", "scored", 1)
    assert (summary["pairs_ok"], summary["pairs_failed"], summary["tasks_logged"]) == (2, 1, 1)
    assert summary["failures"] == [
        {
            "pair": "no-model/x",
            "task": "task-00000",
            "reason": "missing_model",
            "error": "no model at models/no-model/x/model.skops",
        }
    ]
    assert summary["pair_ms_max"] >= summary["pair_ms_p50"] > 0
    table = runner.invoke(submitter, ["report", "--hour", "2026-11-25T11", "--last", "2"])
    assert table.exit_code == 0
    rows = [flat(line) for line in table.stdout.splitlines()]
    assert any(r.startswith("2026-11-25T10 scored 1 never_scored") for r in rows), table.stdout
    assert any(r.startswith("2026-11-25T11 pending") for r in rows) and "missing_model" in flat(table.stdout)


def test_batch_backend_settings_missing_are_named(settings: StorageSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BATCH_ACCOUNT_URL", raising=False)
    result = runner.invoke(submitter, ["run", "--backend", "batch", "--hour", "2026-11-25T10"])
    assert result.exit_code == 2
    assert "BATCH_ACCOUNT_URL" in flat(result.output)


def test_batch_run_with_wait_reports_and_records_the_outcome(
    service: BlobServiceClient, settings: StorageSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The --wait path end to end: fake Batch service for the job, real Azurite for logs and records."""
    from tests.workloads.fake_batch import FakeBatchService, task_results
    from tests.workloads.test_batch_backend import SETTINGS
    from workloads.scorer.entry import run_manifest
    from workloads.scorer.task import ScorerOptions
    from workloads.submitter import cli
    from workloads.submitter.batch import BatchBackend

    publish_data_and_models(service, GOOD_PAIRS)
    publish_aggregates(service, aggregates_for([*GOOD_PAIRS, Pair("no-model", "x")]))
    job = "score-dev-2026112510-r001"
    created: list[bool] = []

    def add_and_run(call: object) -> tuple[int, object]:
        # The "pool" runs each added task with the real scorer entry point, as a node would.
        for task in call.body["value"]:  # type: ignore[attr-defined]
            run_manifest(settings, task["commandLine"].removeprefix("--manifest "), ScorerOptions())
        return task_results(call)  # type: ignore[arg-type]

    done = {"active": 0, "running": 0, "completed": 2, "succeeded": 2, "failed": 0}
    fake = FakeBatchService()
    fake.handlers = {
        ("GET", f"/jobs/{job}"): lambda call: (
            (200, {"id": job, "state": "completed"})
            if created
            else (404, {"code": "JobNotFound", "message": {"value": "no"}})
        ),
        ("POST", "/jobs"): lambda call: (created.append(True), (201, None))[1],
        ("GET", f"/jobs/{job}/tasks"): lambda call: (200, {"value": []}),
        ("POST", f"/jobs/{job}/addtaskcollection"): add_and_run,
        ("PATCH", f"/jobs/{job}"): lambda call: (200, None),
        ("GET", f"/jobs/{job}/taskcounts"): lambda call: (200, {"taskCounts": done, "taskSlotCounts": done}),
    }
    monkeypatch.setattr(cli, "_batch_backend", lambda: BatchBackend(fake.client(), SETTINGS, log=lambda _: None))
    result = runner.invoke(
        submitter,
        [
            "run",
            "--backend",
            "batch",
            "--hour",
            "2026-11-25T10",
            "--stack",
            "dev",
            "--chunk-size",
            "2",
            "--wait",
            "--poll-seconds",
            "1",
        ],
    )
    # A pair without a model is a pair failed with a reason: the revision completes, the report says why.
    assert result.exit_code == 0, result.output
    assert "missing_model" in flat(result.stdout) and job in flat(result.stdout)
    record = json.loads(runner.invoke(submitter, ["report", "--hour", "2026-11-25T10", "--json"]).stdout)[0]
    assert (record["status"], record["job_id"], record["pairs_ok"], record["pairs_failed"]) == ("scored", job, 2, 1)
    assert [c.path for c in fake.calls if c.method == "GET"][-1] == f"/jobs/{job}/tasks"  # finalised after --wait


def test_trainer_publishes_models_for_pairs_with_enough_history(service: BlobServiceClient) -> None:
    from datetime import timedelta

    from workloads.common.layout import Container
    from workloads.common.model_metadata import list_models
    from workloads.training.cli import app as trainer

    rich, thin = Pair("a", "x"), Pair("b", "x")
    for back in range(1, 4):
        hour = HOUR - timedelta(hours=back)
        frames = [aggregates_for([rich], hour, seed=back)] + (
            [aggregates_for([thin], hour, windows=2)] if back == 1 else []
        )
        publish_aggregates(service, pd.concat(frames))
    result = runner.invoke(trainer, ["--from", "2026-11-25T07", "--to", "2026-11-25T10", "--features", "avg,stdev"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["published"] == 1 and "b/x" in summary["skipped"]
    (meta,) = list_models(service.get_container_client(str(Container.MODELS))).values()
    assert meta.features == ("avg", "stdev") and meta.training_rows == 36  # type: ignore[union-attr]

    bad = runner.invoke(trainer, ["--from", "2026-11-25T07", "--to", "2026-11-25T10", "--features", "avg,median"])
    assert bad.exit_code == 2 and "unknown feature(s) ['median']" in flat(bad.output)
    backwards = runner.invoke(trainer, ["--from", "2026-11-25T10", "--to", "2026-11-25T07"])
    assert backwards.exit_code == 2 and "must come after" in flat(backwards.output)
