from __future__ import annotations

import json

import pandas as pd
import pytest
from azure.storage.blob import BlobServiceClient
from typer.testing import CliRunner

from tests.workloads.helpers import GOOD_PAIRS, HOUR, aggregates_for, publish_data_and_models, train_on
from workloads.aggregator.publish import publish_aggregates
from workloads.common.aggregates import DEFAULT_MODEL_FEATURES
from workloads.common.layout import Container, local_aggregate_blob
from workloads.common.modelstore import publish_model
from workloads.common.pairs import Pair
from workloads.common.shards import DEFAULT_SHARD_COUNT, shard_name, shard_of
from workloads.common.storage import StorageSettings
from workloads.scorer.cli import app as scorer
from workloads.submitter.cli import app as submitter
from workloads.submitter.plan import plan_hour
from workloads.submitter.submit import write_manifests
from workloads.training.packs import rebuild_packs

runner = CliRunner()


def flat(text: str) -> str:
    """CLI output without rich's box drawing and line wrapping, for matching messages."""
    return " ".join(text.replace("│", " ").split())


SHARD_OF_A = shard_name(3, DEFAULT_SHARD_COUNT)  # device "a" (and "silent"); "b" is in shard 2, "no-model" in 9


def test_the_devices_lie_in_the_shards_these_tests_name() -> None:
    shards = {d: shard_of(d, DEFAULT_SHARD_COUNT) for d in ("a", "silent", "b", "no-model")}
    assert shards == {"a": 3, "silent": 3, "b": 2, "no-model": 9}


def test_scorer_scores_the_shard_folder_it_is_given(service: BlobServiceClient) -> None:
    scored = [Pair("a", "x"), Pair("a", "y")]
    publish_data_and_models(service, [*scored, Pair("b", "x")])
    publish_aggregates(service, aggregates_for([*scored, Pair("b", "x"), Pair("a", "no-model")]))
    models = service.get_container_client(str(Container.MODELS))
    silent = Pair("silent", "x")  # a model in the shard's pack, no rows this hour
    publish_model(models, silent, train_on(aggregates_for([silent])), DEFAULT_MODEL_FEATURES)
    rebuild_packs(models, DEFAULT_SHARD_COUNT)
    result = runner.invoke(scorer, ["--hour", "2026-11-25T10", "--shard", SHARD_OF_A, "--task-id", "t1"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["ok"], summary["failed"], summary["no_data"]) == (2, 1, 1)
    # Only that folder's blob was read: b/x, in another shard, is not scored here.
    assert (summary["folder"], summary["aggregate_blobs"], summary["pairs"]) == (SHARD_OF_A, 1, 3)
    assert summary["log_blob"] == "logs/2026/11/25/10/manual/tasks/t1.jsonl"
    failing = runner.invoke(scorer, ["--hour", "2026-11-25T10", "--shard", SHARD_OF_A, "--fail-on-pair-errors"])
    assert failing.exit_code == 3


def test_scorer_reads_a_manifest_blob(service: BlobServiceClient) -> None:
    publish_data_and_models(service, GOOD_PAIRS)
    plan = plan_hour(service, "dev", HOUR, shard_count=DEFAULT_SHARD_COUNT)
    blob = write_manifests(service, plan)["task-00000"]
    result = runner.invoke(scorer, ["--manifest", blob])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["job_id"], summary["folder"], summary["ok"]) == (
        "score-dev-2026112510-r001",
        plan.tasks[0].folder,
        1,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --manifest, --manifest-file, or both --hour and --shard"),
        (["--hour", "2026-11-25T10"], "give --manifest, --manifest-file, or both --hour and --shard"),
        (["--hour", "2026-11-25T10", "--shard", "no-shard"], "invalid shard name 'no-shard'"),
        (["--hour", "2026-11-25T10", "--shard", "s00016-of-00016"], "invalid shard 16 for 16 shards"),
        (["--hour", "2026-11-25T10:30", "--shard", SHARD_OF_A], "must be on the hour"),
        (["--concurrency", "0", "--hour", "2026-11-25T10", "--shard", SHARD_OF_A], "--concurrency"),
        (["--hour", "2026-11-25T10", "--pairs", "a/x"], "No such option"),  # replaced by --shard
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
    result = runner.invoke(scorer, ["--hour", "2026-11-25T10", "--shard", SHARD_OF_A])
    assert result.exit_code == 2
    assert "AZURE_STORAGE_CONNECTION_STRING" in flat(result.output)


def test_submitter_plan_then_run_then_run_again(service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch) -> None:
    publish_data_and_models(service, GOOD_PAIRS)
    planned = runner.invoke(submitter, ["plan", "--hour", "2026-11-25T10", "--stack", "dev"])
    assert planned.exit_code == 0, planned.output
    shown = json.loads(planned.stdout)
    b_shard = shard_name(2, DEFAULT_SHARD_COUNT)
    inputs = [local_aggregate_blob(f"2026/11/25/10/{s}") for s in (b_shard, SHARD_OF_A)]
    assert shown == {
        "job_id": "score-dev-2026112510-r001",
        "hour": "2026-11-25T10",
        "shards": 2,
        "tasks": [
            {"task_id": "task-00000", "folder": b_shard, "slice": "0/1", "blobs": 1},
            {"task_id": "task-00001", "folder": SHARD_OF_A, "slice": "0/1", "blobs": 1},
        ],
        "inputs": inputs,
        "fingerprint": plan_hour(service, "dev", HOUR, shard_count=DEFAULT_SHARD_COUNT).fingerprint,
    }

    args = ["run", "--hour", "2026-11-25T10", "--stack", "dev", "--workers", "0"]
    first = runner.invoke(submitter, args)
    assert first.exit_code == 0, first.output
    (hour,) = json.loads(first.stdout)
    assert (hour["action"], hour["reason"], hour["status"]) == ("score", "never_scored", "completed")
    assert (hour["record"]["tasks"], hour["record"]["shards"], hour["record"]["ok"]) == (2, 2, 2)
    second = runner.invoke(submitter, args)
    assert second.exit_code == 0
    assert json.loads(second.stdout)[0]["action"] == "skip"
    assert "scored (revision 1) on its current inputs" in flat(second.stderr)

    # --task-input-mib (or SCORING_TASK_INPUT_MIB) sizes the tasks: a shard with more MiB is sliced. The plan reads
    # no rows, so a blob of 1.5 MiB of anything counts by its listed size.
    big = f"2026/11/25/10/{SHARD_OF_A}/big.parquet"
    service.get_container_client(str(Container.AGGREGATES)).upload_blob(big, b"\0" * (3 * 2**19))
    sliced = runner.invoke(submitter, ["plan", "--hour", "2026-11-25T10", "--task-input-mib", "1"])
    assert sliced.exit_code == 0, sliced.output
    assert [(t["folder"], t["slice"], t["blobs"]) for t in json.loads(sliced.stdout)["tasks"]] == [
        (b_shard, "0/1", 1),
        (SHARD_OF_A, "0/2", 2),
        (SHARD_OF_A, "1/2", 2),
    ]
    monkeypatch.setenv("SCORING_TASK_INPUT_MIB", "1")
    assert (
        json.loads(runner.invoke(submitter, ["plan", "--hour", "2026-11-25T10"]).stdout)["tasks"]
        == json.loads(sliced.stdout)["tasks"]
    )
    monkeypatch.delenv("SCORING_TASK_INPUT_MIB")
    # --shard-count (or SCORING_SHARD_COUNT): folders of another count are no shards of it, their rows are refiled.
    monkeypatch.setenv("SCORING_SHARD_COUNT", "4")
    recounted = json.loads(runner.invoke(submitter, ["plan", "--hour", "2026-11-25T10"]).stdout)
    assert recounted["shards"] == 0 and [t["folder"] for t in recounted["tasks"]] == [b_shard, SHARD_OF_A]
    for bad in (["--task-input-mib", "0"], ["--chunk-size", "1"], ["--shard-count", "0"]):
        refused = runner.invoke(submitter, ["plan", "--hour", "2026-11-25T10", *bad])
        assert refused.exit_code == 2, (bad, refused.output)


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
    # One task per shard folder: b (shard 2), a (shard 3), no-model (shard 9), in shard order.
    assert (summary["pairs_ok"], summary["pairs_failed"], summary["tasks_logged"]) == (2, 1, 3)
    assert (summary["pairs"], summary["shards"], summary["rows_unaccounted"]) == (3, 3, 0)
    assert summary["failures"] == [
        {
            "pair": "no-model/x",
            "task": "task-00002",
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

    done = {"active": 0, "running": 0, "completed": 3, "succeeded": 3, "failed": 0}  # a task per shard folder
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
