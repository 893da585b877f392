"""What the fake Azure services behind azure-core share: the recorded call, a token, and a canned JSON answer."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import requests
import urllib3
from azure.core.credentials import AccessToken


@dataclass
class Call:
    """One request as a fake service saw it: the JSON body decoded (the SDKs send str or bytes, never a stream)."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any

    @classmethod
    def of(cls, request: requests.PreparedRequest) -> Call:
        url = urlparse(str(request.url))
        raw = request.body
        body = json.loads(raw) if isinstance(raw, str | bytes) and raw else None
        return cls(str(request.method), url.path, parse_qs(url.query), body)


class FakeCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("fake-token", int((datetime.now(UTC) + timedelta(hours=1)).timestamp()))


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
