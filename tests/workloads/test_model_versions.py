"""The scikit-learn version policy as the scheduled path applies it: per pair, counted in the report."""

from __future__ import annotations

import json

from azure.storage.blob import BlobServiceClient
from typer.testing import CliRunner

from tests.workloads.helpers import GOOD_PAIRS, publish_data_and_models
from workloads.common.layout import Container, model_blob
from workloads.common.model_versions import runtime_sklearn_version
from workloads.common.pairs import Pair
from workloads.submitter.cli import app as submitter
from workloads.training.cli import app as trainer

runner = CliRunner()


def older_minor() -> str:
    major, minor, *_ = runtime_sklearn_version().split(".")
    return f"{major}.{int(minor) - 1}.0"


def report(hour: str = "2026-11-25T10") -> dict[str, object]:
    result = runner.invoke(submitter, ["report", "--hour", hour, "--json"])
    assert result.exit_code == 0, result.output
    (summary,) = json.loads(result.stdout)
    return summary  # type: ignore[no-any-return]


RUN = ["run", "--hour", "2026-11-25T10", "--workers", "0"]


def publish_with_an_old_model(service: BlobServiceClient) -> Pair:
    """The hour's data and a model per pair, the first pair's recorded as fitted by the previous minor version."""
    publish_data_and_models(service, GOOD_PAIRS)
    old = GOOD_PAIRS[0]
    blob = service.get_container_client(str(Container.MODELS)).get_blob_client(model_blob(old))
    blob.set_blob_metadata({**blob.get_blob_properties().metadata, "sklearn_version": older_minor()})
    return old


def test_a_model_of_another_minor_version_fails_its_pair_unless_the_policy_allows_it(
    service: BlobServiceClient,
) -> None:
    old = publish_with_an_old_model(service)

    assert runner.invoke(submitter, RUN).exit_code == 0
    summary = report()
    assert (summary["pairs_ok"], summary["pairs_failed"]) == (1, 1)
    assert summary["failures_by_reason"] == {"version_mismatch": 1}
    (failure,) = summary["failures"]  # type: ignore[misc]
    assert failure["pair"] == str(old)
    assert f"trained with scikit-learn {older_minor()}" in failure["error"]
    assert "retrain or re-import it" in failure["error"]

    relaxed = runner.invoke(submitter, [*RUN, "--force", "--sklearn-version-policy", "major"])
    assert relaxed.exit_code == 0, relaxed.output
    summary = report()
    assert (summary["pairs_ok"], summary["pairs_failed"], summary["failures_by_reason"]) == (2, 0, {})

    exact = runner.invoke(submitter, [*RUN, "--force"], env={"SCORING_SKLEARN_VERSION_POLICY": "exact"})
    assert exact.exit_code == 0 and report()["failures_by_reason"] == {"version_mismatch": 1}


def test_a_pack_entry_carries_its_models_version_and_the_scorer_applies_the_policy_to_it(
    service: BlobServiceClient,
) -> None:
    """A pack compiled under a relaxed policy never serves a pair the scorer's own policy refuses."""
    old = publish_with_an_old_model(service)
    packed = runner.invoke(trainer, ["pack", "--sklearn-version-policy", "major"])
    assert packed.exit_code == 0 and json.loads(packed.stdout)["skipped"] == {}, packed.output

    assert runner.invoke(submitter, RUN).exit_code == 0
    summary = report()
    assert (summary["pairs_from_pack"], summary["pairs_failed"], summary["failures_by_reason"]) == (
        1,
        1,
        {"version_mismatch": 1},
    )
    assert [failure["pair"] for failure in summary["failures"]] == [str(old)]  # type: ignore[attr-defined]
    assert runner.invoke(submitter, [*RUN, "--force", "--sklearn-version-policy", "major"]).exit_code == 0
    summary = report()
    assert (summary["pairs_from_pack"], summary["pairs_ok"]) == (2, 2)  # both entries serve under "major"
