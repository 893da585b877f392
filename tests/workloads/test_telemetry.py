"""Telemetry is off unless configured, and on it reaches Application Insights' ingestion API: a fake one here."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from tests.workloads.helpers import publish_data_and_models
from workloads.common import telemetry
from workloads.common.pairs import Pair
from workloads.common.shards import DEFAULT_SHARD_COUNT, shard_name, shard_of
from workloads.common.telemetry import CONNECTION_STRING_ENV

IKEY = "00000000-0000-0000-0000-000000000001"
# Two pairs of one device: one shard, so one scorer task scores both.
PAIRS = [Pair("a", "x"), Pair("a", "y")]
SHARD = shard_name(shard_of("a", DEFAULT_SHARD_COUNT), DEFAULT_SHARD_COUNT)


class Ingestion(ThreadingHTTPServer):
    """Accepts what the Azure Monitor exporter posts to ``<IngestionEndpoint>/v2.1/track`` and keeps it."""

    def __init__(self) -> None:
        self.envelopes: list[dict[str, Any]] = []
        self.paths: list[str] = []
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: Ingestion

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.paths.append(self.path)
        text = body.decode()
        items = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines() if line]
        self.server.envelopes.extend(items)
        reply = json.dumps({"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def ingestion() -> Iterator[Ingestion]:
    server = Ingestion()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def run_scorer(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The scorer CLI in a fresh process that reports, at exit, whether OpenTelemetry was ever imported."""
    probe = (
        "import atexit, sys; atexit.register(lambda: print('OTEL', 'opentelemetry' in sys.modules, file=sys.stderr))"
    )
    run = "sys.argv = ['scorer', *sys.argv[1:]]; from workloads.scorer.cli import app; app()"
    return subprocess.run(
        [sys.executable, "-c", f"{probe}\n{run}", "--hour", "2026-11-25T10", "--shard", SHARD],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_without_a_connection_string_nothing_is_imported_or_sent(service: BlobServiceClient) -> None:
    publish_data_and_models(service, PAIRS)
    env = {k: v for k, v in os.environ.items() if k != CONNECTION_STRING_ENV}
    done = run_scorer(env)
    assert done.returncode == 0, done.stderr
    assert "OTEL False" in done.stderr  # OpenTelemetry was never even imported


def test_with_a_connection_string_the_task_span_and_pair_counts_are_sent(
    service: BlobServiceClient, ingestion: Ingestion
) -> None:
    publish_data_and_models(service, PAIRS)
    endpoint = f"http://127.0.0.1:{ingestion.server_address[1]}/"
    env = {**os.environ, CONNECTION_STRING_ENV: f"InstrumentationKey={IKEY};IngestionEndpoint={endpoint}"}
    done = run_scorer(env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["ok"] == 2
    assert ingestion.paths and all(path.startswith("/v2.1/track") for path in ingestion.paths)
    assert all(e["iKey"] == IKEY for e in ingestion.envelopes)
    spans = [e for e in ingestion.envelopes if e["data"]["baseData"].get("name") == "score_task"]
    assert len(spans) == 1
    properties = spans[0]["data"]["baseData"]["properties"]
    assert (properties["job_id"], properties["ok"], properties["failed"]) == ("manual", "2", "0")
    assert (properties["folder"], properties["slice"], properties["blobs"]) == (SHARD, "0/1", "1")
    assert spans[0]["tags"]["ai.cloud.role"] == "batchscoring-scorer"
    metrics = {
        m["name"]: m
        for e in ingestion.envelopes
        if e["data"]["baseType"] == "MetricData"
        for m in e["data"]["baseData"]["metrics"]
    }
    assert metrics["batchscoring.pairs"]["value"] == 2


def test_an_unusable_connection_string_turns_telemetry_off_not_the_work(capsys: pytest.CaptureFixture[str]) -> None:
    telemetry.reset()
    assert telemetry.setup("batchscoring-test", {CONNECTION_STRING_ENV: "not a connection string"}) is False
    assert not telemetry.enabled() and "telemetry off" in capsys.readouterr().err
    with telemetry.span("score_task") as current:  # the helpers stay no-ops
        assert current is None
