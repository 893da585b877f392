"""A canned JSON answer as a `requests` response: what the fake Azure services behind azure-core return."""

from __future__ import annotations

import io
import json
from typing import Any

import requests
import urllib3


def json_response(
    request: requests.PreparedRequest, status: int, payload: Any, headers: dict[str, str] | None = None
) -> requests.Response:
    """A complete response (body, headers, raw stream) that azure-core's RequestsTransport reads like a real one."""
    content = json.dumps(payload).encode() if payload is not None else b""
    all_headers = {"Content-Type": "application/json; charset=utf-8", "Content-Length": str(len(content))}
    all_headers |= headers or {}
    response = requests.Response()
    response.status_code = status
    response._content = content
    response.headers.update(all_headers)
    response.raw = urllib3.HTTPResponse(
        body=io.BytesIO(content), headers=all_headers, status=status, preload_content=False
    )
    response.url = str(request.url)
    response.request = request
    return response
