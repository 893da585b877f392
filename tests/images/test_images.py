"""The two images, built for real and run: the scorer against Azurite, the submitter's CLI."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta

import pandas as pd
from azure.storage.blob import BlobServiceClient

from tests.workloads.helpers import HOUR, aggregates_for, hour_manifests, publish_data_and_models
from workloads.aggregator.publish import publish_aggregates
from workloads.common.aggregates import DEFAULT_MODEL_FEATURES
from workloads.common.frames import read_predictions
from workloads.common.manifest import TaskManifest
from workloads.common.model_metadata import list_models
from workloads.common.pairs import Pair
from workloads.common.shards import DEFAULT_SHARD_COUNT, shard_name, shard_of
from workloads.scorer.task import score_task
from workloads.submitter.plan import plan_hour
from workloads.submitter.submit import write_manifests
from workloads.training.families import ModelSpec
from workloads.training.packs import rebuild_packs
from workloads.training.pool import TrainingRequest, plan_training, write_training_job


def inspect(tag: str) -> dict[str, object]:
    out = subprocess.run(["docker", "image", "inspect", tag], check=True, capture_output=True, text=True).stdout
    config: dict[str, object] = json.loads(out)[0]["Config"]
    return config


def python_in(tag: str, code: str) -> str:
    result = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "python", tag, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def has_module(tag: str, module: str) -> bool:
    return python_in(tag, f"import importlib.util; print(importlib.util.find_spec('{module}') is not None)") == "True"


def test_scorer_image_is_non_root_with_the_cli_as_entrypoint_and_no_pulumi(scorer_image: str) -> None:
    config = inspect(scorer_image)
    assert config["User"] == "10001"
    assert config["Entrypoint"] == ["scorer"]
    assert config["Labels"]["org.opencontainers.image.title"] == "batchscoring-scorer"  # type: ignore[index]
    assert has_module(scorer_image, "sklearn") and has_module(scorer_image, "skops")
    assert not has_module(scorer_image, "pulumi") and not has_module(scorer_image, "azure.batch")


def test_submitter_image_has_the_batch_sdk_but_not_scikit_learn(submitter_image: str) -> None:
    config = inspect(submitter_image)
    assert config["User"] == "10001" and config["Entrypoint"] == ["submitter"] and config["Cmd"] == ["reconcile"]
    assert has_module(submitter_image, "azure.batch")
    assert not has_module(submitter_image, "sklearn") and not has_module(submitter_image, "pulumi")
    helps = {}
    for args in (["--help"], ["reconcile", "--help"], ["run", "--help"], ["report", "--help"]):
        result = subprocess.run(
            ["docker", "run", "--rm", submitter_image, *args], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        assert "Usage" in result.stdout
        helps[" ".join(args)] = result.stdout
    assert "--wait" in helps["run --help"] and "--backend" in helps["run --help"]
    assert "--trusted-types" in helps["reconcile --help"] and "--hours" in helps["reconcile --help"]


# Two pairs of one device: one shard folder, one task.
PAIRS = [Pair("a", "x"), Pair("a", "y")]
SHARD = shard_name(shard_of("a", DEFAULT_SHARD_COUNT), DEFAULT_SHARD_COUNT)


def _in_process(service: BlobServiceClient) -> pd.DataFrame:
    """The shard's predictions scored in this process, as the reference."""
    (planned,) = hour_manifests(service)
    manifest = TaskManifest.model_validate({**planned.model_dump(), "job_id": "in-process", "task_id": "t0"})
    score_task(service, manifest)
    return read_predictions(service, HOUR, "in-process").sort_values(["device_id", "sensor", "window_end"])


def test_scorer_container_predicts_what_the_in_process_scorer_does(
    scorer_image: str, service: BlobServiceClient, azurite: tuple[int, str]
) -> None:
    publish_data_and_models(service, PAIRS)
    expected = _in_process(service)

    result = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "host",
            "-e",
            f"AZURE_STORAGE_CONNECTION_STRING={azurite[1]}",
            scorer_image,
            "--hour",
            "2026-11-25T10",
            "--shard",
            SHARD,
            "--job-id",
            "container",
            "--task-id",
            "t1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["ok"], summary["failed"]) == (2, 0)
    got = read_predictions(service, HOUR, "container").sort_values(["device_id", "sensor", "window_end"])
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True))


def test_scorer_container_scores_a_planned_task_from_its_shards_pack(
    scorer_image: str, service: BlobServiceClient, azurite: tuple[int, str]
) -> None:
    publish_data_and_models(service, PAIRS)
    expected = _in_process(service)  # no packs yet: every pair scored with its own skops model, by scikit-learn
    assert rebuild_packs(service.get_container_client("models"), DEFAULT_SHARD_COUNT).written[SHARD] == 2
    plan = plan_hour(service, "dev", HOUR, shard_count=DEFAULT_SHARD_COUNT)
    assert [t.folder for t in plan.tasks] == [SHARD]
    manifest = write_manifests(service, plan)["task-00000"]
    docker = ["docker", "run", "--rm", "--network", "host", "-e", f"AZURE_STORAGE_CONNECTION_STRING={azurite[1]}"]
    result = subprocess.run(
        [*docker, scorer_image, "--manifest", manifest],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["ok"], summary["pack"], summary["pack_pairs"], summary["model_pairs"]) == (2, "used", 2, 0)
    got = read_predictions(service, HOUR, plan.job_id).sort_values(["device_id", "sensor", "window_end"])
    assert (got["is_anomaly"].to_numpy() == expected["is_anomaly"].to_numpy()).all()
    assert abs(got["score"].to_numpy() - expected["score"].to_numpy()).max() <= 1e-9


def test_scorer_image_runs_a_training_task_as_a_batch_task_would(
    scorer_image: str, service: BlobServiceClient, azurite: tuple[int, str]
) -> None:
    """Training on the pool runs the scorer image with ``--entrypoint trainer`` and ``task --manifest <blob>``
    (``BatchBackend.container_task``): the image must hold the trainer, and train and pack its shard."""
    start = HOUR - timedelta(hours=3)
    publish_aggregates(service, aggregates_for(PAIRS, start, windows=36), DEFAULT_SHARD_COUNT)
    request = TrainingRequest(
        stack="dev",
        start=start,
        end=HOUR,
        shard_count=DEFAULT_SHARD_COUNT,
        features=DEFAULT_MODEL_FEATURES,
        model=ModelSpec(family="iforest", params={"n_estimators": 5}),
        min_rows=24,
    )
    plan = plan_training(service, request)
    (task_id, manifest), *_ = write_training_job(service, plan, "batch").items()
    docker = ["docker", "run", "--rm", "--network", "host", "-e", f"AZURE_STORAGE_CONNECTION_STRING={azurite[1]}"]
    result = subprocess.run(
        [*docker, "--entrypoint", "trainer", scorer_image, "task", "--manifest", manifest],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert (line["task_id"], line["trained"], line["skipped"], line["pack_entries"]) == (task_id, 2, {}, 2)
    published = list_models(service.get_container_client("models"))
    assert {p: m.family for p, m in published.items() if not isinstance(m, str)} == dict.fromkeys(PAIRS, "iforest")
