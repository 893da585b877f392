"""A fake Azure Batch service behind the real azure-batch SDK.

The SDK is used as is: only the HTTP layer is replaced (a requests adapter inside azure-core's
RequestsTransport), so the tests see the exact request bodies the SDK would send to Azure and the
SDK parses canned service responses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from azure.batch import BatchClient
from azure.core.pipeline.transport import RequestsTransport
from requests.adapters import BaseAdapter

from tests.fake_http import Call, FakeCredential, json_response

ENDPOINT = "https://acct.westeurope.batch.azure.com"
Handler = Callable[["Call"], tuple[int, Any]]


@dataclass
class FakeBatchService(BaseAdapter):
    """Routes requests to handlers by (method, path); records every call."""

    handlers: dict[tuple[str, str], Handler] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        call = Call.of(request)
        self.calls.append(call)
        handler = self.handlers.get((call.method, call.path))
        if handler is None:
            status, payload = 404, {"code": "NotFound", "message": {"value": f"no fake for {call.method} {call.path}"}}
        else:
            status, payload = handler(call)
        headers = {"Content-Type": "application/json; odata=minimalmetadata"}
        if status == 429:
            headers["Retry-After"] = "0"
        return json_response(request, status, payload, headers)

    def close(self) -> None:
        pass

    def of(self, method: str, path: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path == path]

    def client(self) -> BatchClient:
        session = requests.Session()
        session.mount("https://", self)
        return BatchClient(
            ENDPOINT,
            FakeCredential(),
            transport=RequestsTransport(session=session, session_owner=False),
            retry_backoff_factor=0,
            retry_total=3,
        )


def batch_error(code: str, status: int) -> tuple[int, dict[str, Any]]:
    return status, {
        "odata.metadata": f"{ENDPOINT}/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element",
        "code": code,
        "message": {"lang": "en-US", "value": f"{code} (fake)"},
    }


def task_results(call: Call, statuses: dict[str, tuple[str, str | None]] | None = None) -> tuple[int, dict[str, Any]]:
    """A 200 addtaskcollection answer: success unless ``statuses`` says (status, error code) for a task."""
    results = []
    for task in call.body["value"]:
        status, code = (statuses or {}).get(task["id"], ("success", None))
        result: dict[str, Any] = {"status": status, "taskId": task["id"]}
        if code:
            result["error"] = {"code": code, "message": {"lang": "en-US", "value": code}}
        results.append(result)
    return 200, {"value": results}


def task_page(tasks: list[dict[str, Any]], next_link: str | None = None) -> tuple[int, dict[str, Any]]:
    """A 200 list-tasks answer (one page; ``next_link`` points at the next one)."""
    page: dict[str, Any] = {
        "odata.metadata": f"{ENDPOINT}/$metadata#tasks",
        "value": tasks,
    }
    if next_link:
        page["odata.nextLink"] = next_link
    return 200, page


def failed_task(task_id: str, exit_code: int | None, message: str, retries: int = 2) -> dict[str, Any]:
    """A task as ``$select=id,executionInfo`` returns it once it failed on its last retry."""
    info: dict[str, Any] = {
        "startTime": "2026-11-25T11:02:00Z",
        "endTime": "2026-11-25T11:03:00Z",
        "retryCount": retries,
        "requeueCount": 0,
        "result": "failure",
        "failureInfo": {"category": "usererror", "code": "FailureExitCode", "message": message},
    }
    if exit_code is not None:
        info["exitCode"] = exit_code
    return {"id": task_id, "executionInfo": info}
