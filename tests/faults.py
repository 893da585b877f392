"""A fault-injecting HTTP proxy in front of Azurite, for tests that need storage to misbehave.

Point a connection string at the proxy (``proxy.connection_string(azurite_conn)``) and every
client that uses it, in this process, in worker processes or in subprocess CLIs, goes through it.
Requests are forwarded unchanged; a request whose decoded URL path matches a rule gets that rule's
fault instead:

``status``          an Azure-style error answer (503 ServerBusy by default), never forwarded;
``drop``            the connection is closed without an answer, never forwarded;
``reset_mid_body``  forwarded, then the status line, the headers with the real Content-Length and
                    half of the body are sent before the connection is closed;
``delay``           forwarded after ``delay`` seconds (to run into the client's read timeout).

Only the standard library: ``http.server.ThreadingHTTPServer`` in front, one keep-alive
``http.client`` connection to Azurite per client connection behind.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Literal, NamedTuple, Self
from urllib.parse import unquote, urlsplit

FaultKind = Literal["status", "drop", "reset_mid_body", "delay"]

# Hop-by-hop headers (RFC 9110 7.6.1) are the proxy's own business on each side.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding"}
    | {"upgrade", "proxy-connection", "expect"}
)
# An upstream connection idle longer than this is replaced rather than reused: Azurite (node)
# closes idle keep-alive connections after 5 s, and a request sent into that race would fail.
UPSTREAM_IDLE_SECONDS = 2.0


@dataclass(eq=False)
class Rule:
    """One fault: which requests (``pattern`` searched in the decoded path, ``method``; None = any
    method) get which fault, and how many times (``times``; None = every matching request)."""

    pattern: str
    fault: FaultKind = "status"
    method: str | None = "GET"
    times: int | None = None
    status: int = 503
    error_code: str = "ServerBusy"
    message: str = "The server is currently unable to receive requests. Please retry your request."
    delay: float = 0.0
    hits: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._regex = re.compile(self.pattern)
        if self.fault not in {"status", "drop", "reset_mid_body", "delay"}:
            raise ValueError(f"unknown fault kind {self.fault!r}")
        if self.method is not None:
            self.method = self.method.upper()

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and method != self.method:
            return False
        if self.times is not None and self.hits >= self.times:
            return False
        return self._regex.search(path) is not None

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


class Exchange(NamedTuple):
    """One request as the proxy saw it, logged just before its answer went out: ``status`` is the
    status line sent (None for ``drop``; for ``delay`` also when the client had given up by then),
    ``fault`` the kind of the rule that fired (None when simply forwarded)."""

    method: str
    path: str
    status: int | None
    fault: FaultKind | None


class FaultProxy:
    """``with FaultProxy(azurite_port) as proxy: proxy.add(Rule(r"/aggregates/.*\\.parquet"))``."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1", host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._log: list[Exchange] = []
        self._generation = 0  # bumped by clear(): a request still in flight then is not logged after it
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._connections = 0
        self._server = _Server((host, 0), _Handler, self)
        self._thread: threading.Thread | None = None

    # -- life cycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # cuts delays short
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
        with self._lock:
            open_sockets, self._sockets = list(self._sockets), set()
        for sock in open_sockets:  # wakes handlers waiting on idle keep-alive connections; they close
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def connection_string(self, account_connection_string: str) -> str:
        """The same connection string with its BlobEndpoint on the proxy (path-style, as Azurite)."""
        parts: dict[str, str] = {}
        for segment in account_connection_string.split(";"):
            if "=" in segment:
                key, _, value = segment.partition("=")
                parts[key] = value
        account = parts.get("AccountName", "devstoreaccount1")
        parts["BlobEndpoint"] = f"{self.endpoint}/{account}"
        return "".join(f"{key}={value};" for key, value in parts.items())

    # -- rules and records --------------------------------------------------------------------

    def add(self, rule: Rule) -> Rule:
        """Add a rule (checked after the ones already there); returns it, to read ``rule.hits`` later."""
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        """Remove every rule and forget the log."""
        with self._lock:
            self._rules.clear()
            self._log.clear()
            self._generation += 1

    @property
    def rules(self) -> list[Rule]:
        with self._lock:
            return list(self._rules)

    @property
    def log(self) -> list[Exchange]:
        with self._lock:
            return list(self._log)

    @property
    def connections(self) -> int:
        """Client connections accepted since start (keep-alive keeps this far below the requests)."""
        with self._lock:
            return self._connections

    def requests(self, pattern: str = "", method: str | None = None) -> list[Exchange]:
        """The logged exchanges whose path matches ``pattern`` (searched) and method, in order."""
        regex = re.compile(pattern)
        return [e for e in self.log if regex.search(e.path) and (method is None or e.method == method.upper())]

    def _take(self, method: str, path: str) -> tuple[Rule | None, int]:
        """The first live rule for a request (counting the hit), and the generation to log it under."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
                    rule.hits += 1
                    return rule, self._generation
            return None, self._generation

    def _record(self, generation: int, exchange: Exchange) -> None:
        with self._lock:
            if generation == self._generation:
                self._log.append(exchange)

    def _track(self, sock: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._sockets.add(sock)
                self._connections += 1
            else:
                self._sockets.discard(sock)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], handler: type[_Handler], proxy: FaultProxy) -> None:
        self.proxy = proxy
        super().__init__(address, handler)

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that hangs up (a read timeout, a test's end) or an upstream that went away mid-answer (an outage in
        # the soak) is routine; anything else is a bug here.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, http.client.HTTPException)):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def _hard_close(sock: socket.socket) -> None:
    """Close a connection for every holder of the socket (a forked child may hold a copy of it)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class _Upstream:
    """One keep-alive connection to Azurite, replaced when idle too long or broken."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.conn: http.client.HTTPConnection | None = None
        self.last_used = 0.0

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def exchange(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[http.client.HTTPResponse, bytes]:
        for attempt in (1, 2):
            reused = self.conn is not None and time.monotonic() - self.last_used < UPSTREAM_IDLE_SECONDS
            if not reused:
                self.close()
                self.conn = http.client.HTTPConnection(*self.address, timeout=120)
            assert self.conn is not None
            try:
                self.conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                for name, value in headers:
                    self.conn.putheader(name, value)
                self.conn.endheaders(body if body or method in {"PUT", "POST", "PATCH"} else None)
                response = self.conn.getresponse()
                data = response.read()  # also for HEAD: frees the connection for the next request
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt == 2 or not reused:  # only a stale kept-alive connection is worth a retry
                    raise
                continue
            self.last_used = time.monotonic()
            if response.will_close:
                self.close()
            return response, data
        raise AssertionError("unreachable")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 60  # an idle client connection is closed after this long

    def setup(self) -> None:
        super().setup()
        self.upstream = _Upstream(self.server.proxy.upstream)
        self.server.proxy._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.upstream.close()
            self.server.proxy._track(self.connection, add=False)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the proxy's log is the list of exchanges

    # -- one request --------------------------------------------------------------------------

    def _relay(self) -> None:
        proxy = self.server.proxy
        method = self.command
        path = unquote(urlsplit(self.path).path)
        body = self._read_body()
        rule, generation = proxy._take(method, path)
        fault = None if rule is None else rule.fault

        def record(status: int | None) -> None:
            # Logged before the answer goes out, so a client that has its answer finds it logged.
            proxy._record(generation, Exchange(method, path, status, fault))

        if rule is None:
            self._forward(method, body, record)
        elif rule.fault == "status":
            record(rule.status)
            self._send_error_status(method, rule)
        elif rule.fault == "drop":
            record(None)
            self._drop()
        elif rule.fault == "reset_mid_body":
            self._forward(method, body, record, cut=True)
        else:
            proxy._stopping.wait(rule.delay)
            self._forward(method, body, record)

    def __getattr__(self, name: str) -> Callable[[], None]:
        # The base class dispatches to do_<METHOD>: relay every method.
        if name.startswith("do_"):
            return self._relay
        raise AttributeError(name)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in {b"\r\n", b"\n", b""}:  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward(self, method: str, body: bytes, record: Callable[[int | None], None], *, cut: bool = False) -> None:
        """Send the request on to Azurite and its answer back (all of it, or half of the body if ``cut``)."""
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(body))))
        try:
            response, data = self.upstream.exchange(method, self.path, headers, body)
        except OSError as exc:
            record(502)
            self._send_simple(502, "BadGateway", f"fault proxy: upstream failed: {exc}", method)
            return
        status = response.status
        record(status)
        no_body = method == "HEAD" or status in {204, 304} or 100 <= status < 200
        self.send_response_only(status, response.reason)
        for name, value in response.getheaders():
            lower = name.lower()
            if lower in HOP_BY_HOP or (lower == "content-length" and not no_body):
                continue
            self.send_header(name, value)
        if not no_body:
            self.send_header("Content-Length", str(len(data)))
        try:
            self.end_headers()
            if cut:
                self.wfile.write(data[: len(data) // 2])
                self._drop()
            elif not no_body:
                self.wfile.write(data)
        except OSError:  # the client gave up (a read timeout), nothing to tell it
            self.close_connection = True

    def _send_error_status(self, method: str, rule: Rule) -> None:
        self._send_simple(rule.status, rule.error_code, rule.message, method)

    def _send_simple(self, status: int, code: str, message: str, method: str) -> None:
        request_id = str(uuid.uuid4())
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            f"<Error><Code>{code}</Code><Message>{message}\nRequestId:{request_id}\n"
            f"Time:{time.strftime('%Y-%m-%dT%H:%M:%S.0000000Z', time.gmtime())}</Message></Error>"
        ).encode()
        self.send_response_only(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Server", "Windows-Azure-Blob/1.0 Microsoft-HTTPAPI/2.0")
        self.send_header("x-ms-request-id", request_id)
        self.send_header("x-ms-version", self.headers.get("x-ms-version", "2025-01-05"))
        self.send_header("x-ms-error-code", code)
        self.send_header("Date", formatdate(usegmt=True))
        self.send_header("Content-Length", "0" if method == "HEAD" else str(len(body)))
        try:
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(body)
        except OSError:
            self.close_connection = True

    def _drop(self) -> None:
        self.close_connection = True
        _hard_close(self.connection)
