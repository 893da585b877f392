"""The HTML report on real Azurite data, opened in a real headless Chromium (Debian's package)."""

from __future__ import annotations

import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient
from typer.testing import CliRunner

from tests.workloads.helpers import HOUR, publish_data_and_models
from workloads.common.layout import Container, model_blob
from workloads.common.pairs import Pair
from workloads.common.storage import StorageSettings
from workloads.submitter.cli import app as submitter
from workloads.submitter.local import LocalBackend
from workloads.submitter.reconcile import Reconciler, ReconcileSettings

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PAIRS = [Pair(f"dev-{d}", s) for d in range(4) for s in ("temp", "hum")]
CHARTS = ("status", "timeline", "throughput", "anomalies")


@pytest.fixture
def page(service: BlobServiceClient, settings: StorageSettings, tmp_path: Path) -> Path:
    """Two scored hours (one pair's model deleted, so it fails) and the report of three, one never scored."""
    for hour in (HOUR, HOUR + timedelta(hours=1)):
        publish_data_and_models(service, PAIRS, hour)
    service.get_container_client(str(Container.MODELS)).delete_blob(model_blob(PAIRS[0]))
    with LocalBackend(settings, workers=0) as backend:
        reconciler = Reconciler(service, backend, ReconcileSettings(stack="dev"))
        for hour in (HOUR, HOUR + timedelta(hours=1)):
            result = reconciler.hour(hour, HOUR + timedelta(hours=3))
            assert result.record is not None and result.record.tasks == 4  # the 4 devices' shard folders
    path = tmp_path / "report.html"
    result = CliRunner().invoke(
        submitter, ["report", "--hour", "2026-11-25T12", "--last", "3", "--html", str(path), "--json"]
    )
    assert result.exit_code == 0, result.output
    return path


def test_the_page_is_self_contained_and_lists_what_failed(page: Path) -> None:
    text = page.read_text()
    assert "<script src=" not in text and "Plotly.newPlot" in text  # plotly.js inline, no network needed
    assert all(f'id="{chart}"' in text for chart in CHARTS)
    assert "dev-0/temp" in text and "missing_model" in text and "1 pending" in text and "2 scored" in text


def chromium(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--virtual-time-budget=10000"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium: scripts/ensure-chromium.sh installs Debian's package as root"
)
def test_the_page_renders_its_charts_in_a_browser_without_errors(page: Path, tmp_path: Path) -> None:
    dom = chromium("--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    # plotly.js draws each figure into an SVG of class main-svg once its script ran.
    for chart in CHARTS:
        start = dom.stdout.index(f'id="{chart}"')
        assert 'class="main-svg"' in dom.stdout[start : start + 20_000], f"{chart} was not drawn"
    errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line and ("Error" in line or "Uncaught" in line)]
    assert not errors, errors
    shot = tmp_path / "report.png"
    done = chromium(f"--screenshot={shot}", "--window-size=1280,2200", page.as_uri())
    assert done.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
