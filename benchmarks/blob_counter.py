"""Counting blob operations and bytes, in this process and in worker processes, for the fleet benchmark.

Every storage client of the project sends its requests through azure-core's ``RequestsTransport``
(``StorageSettings.client``); wrapping ``RequestsTransport.send`` sees each HTTP request once per
attempt (retries included, as the storage bill does), with its response's status and length. The
counts live in shared memory, so worker processes started with ``install`` as their initializer add
to the same totals, each under its role (the submitter/driver, or the scorer workers). Workers also
leave their peak RSS there when they exit.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.util
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, urlsplit

from azure.core.pipeline.transport import RequestsTransport

from benchmarks import procstat

ROLES = ("driver", "workers")
OPERATIONS = ("GET", "PUT", "LIST", "HEAD", "DELETE", "OTHER")
CONTAINERS = ("aggregates", "models", "predictions", "logs", "other")
# One row per role: operations, bytes received per container (response bodies), operations per container and
# kind, bytes sent, peak RSS (KiB).
_BY_CONTAINER = len(OPERATIONS) + len(CONTAINERS)
_ROW = _BY_CONTAINER + len(OPERATIONS) * len(CONTAINERS) + 2
_SENT, _PEAK = _ROW - 2, _ROW - 1

_state: dict[str, Any] = {}


def new_counters() -> Any:
    """Shared counters (a locked ``multiprocessing.Array``) that spawned workers can inherit."""
    return multiprocessing.get_context("spawn").Array("q", _ROW * len(ROLES))


def _operation(method: str, url: str) -> str:
    query = parse_qs(urlsplit(url).query)
    if method == "GET" and query.get("comp") == ["list"]:
        return "LIST"
    return method if method in OPERATIONS else "OTHER"


def _container(url: str) -> str:
    # Azurite: /<account>/<container>/<blob>; Azure: /<container>/<blob>.
    parts = [p for p in urlsplit(url).path.split("/") if p]
    for part in parts[:2]:
        if part in CONTAINERS:
            return part
    return "other"


def _body_length(request: Any) -> int:
    body = getattr(request, "data", None)
    if body is None:
        body = getattr(request, "content", None)
    with contextlib.suppress(TypeError):
        return len(body) if body is not None else 0
    return int(request.headers.get("Content-Length", 0) or 0)


def _record(request: Any, response: Any, stream: bool) -> None:
    counters, role = _state["counters"], _state["role"]
    operation = _operation(request.method, request.url)
    received = 0
    if operation != "HEAD":
        length = response.headers.get("Content-Length")
        if length is not None:
            received = int(length)
        elif not stream:
            received = len(response.internal_response.content or b"")
    base, container = role * _ROW, CONTAINERS.index(_container(request.url))
    with counters.get_lock():
        counters[base + OPERATIONS.index(operation)] += 1
        counters[base + len(OPERATIONS) + container] += received
        counters[base + _BY_CONTAINER + container * len(OPERATIONS) + OPERATIONS.index(operation)] += 1
        counters[base + _SENT] += _body_length(request)


def _record_peak_rss() -> None:
    counters, role = _state["counters"], _state["role"]
    peak = procstat.peak_rss_kib()
    with counters.get_lock():
        counters[role * _ROW + _PEAK] = max(counters[role * _ROW + _PEAK], peak)


def install(counters: Any, role: int = 1) -> None:
    """Count every request of this process into ``counters`` under ``ROLES[role]`` (idempotent).

    A worker process (``role`` 1, the pools' initializer) also records its peak RSS as it exits.
    """
    _state["counters"], _state["role"] = counters, role
    if role == ROLES.index("workers") and "finalizer" not in _state:
        _state["finalizer"] = multiprocessing.util.Finalize(None, _record_peak_rss, exitpriority=100)
    if "original" in _state:
        return
    original = RequestsTransport.send
    _state["original"] = original

    def send(self: RequestsTransport, request: Any, **kwargs: Any) -> Any:
        response = original(self, request, **kwargs)
        with contextlib.suppress(Exception):  # counting must never break a request
            _record(request, response, bool(kwargs.get("stream", False)))
        return response

    RequestsTransport.send = send


def uninstall() -> None:
    original = _state.pop("original", None)
    if original is not None:
        RequestsTransport.send = original
    _state.pop("counters", None)


def snapshot(counters: Any) -> dict[str, dict[str, int]]:
    """``{role: {operation: count, ..., "bytes_<container>": n, "<operation>_<container>": count, ...}}``,
    and ``"bytes_sent"``."""
    with counters.get_lock():
        values = list(counters)
    result: dict[str, dict[str, int]] = {}
    for role_index, role in enumerate(ROLES):
        row = values[role_index * _ROW : (role_index + 1) * _ROW]
        counts = {op: int(row[i]) for i, op in enumerate(OPERATIONS)}
        counts |= {f"bytes_{c}": int(row[len(OPERATIONS) + i]) for i, c in enumerate(CONTAINERS)}
        counts |= {
            f"{op}_{c}": int(row[_BY_CONTAINER + i * len(OPERATIONS) + j])
            for i, c in enumerate(CONTAINERS)
            for j, op in enumerate(OPERATIONS)
        }
        counts["bytes_sent"] = int(row[_SENT])
        result[role] = counts
    return result


def peak_rss_kib(counters: Any, role: int) -> int:
    """The largest peak RSS a process of ``role`` recorded (workers record theirs on exit)."""
    with counters.get_lock():
        return int(counters[role * _ROW + _PEAK])


def operations(counts: dict[str, int]) -> int:
    return sum(counts[op] for op in OPERATIONS)


def bytes_received(counts: dict[str, int]) -> int:
    return sum(counts[f"bytes_{c}"] for c in CONTAINERS)


def by_container(counts: dict[str, int]) -> dict[str, dict[str, int]]:
    """``{container: {operation: count}}`` for the containers and operations that were used."""
    found: dict[str, dict[str, int]] = {}
    for container in CONTAINERS:
        ops = {op: counts[f"{op}_{container}"] for op in OPERATIONS if counts[f"{op}_{container}"]}
        if ops:
            found[container] = ops
    return found


def _install_after(own: Any, own_args: tuple[Any, ...], counters: Any, role: int) -> None:
    """A worker's initializer: the pool's own one (e.g. the local backend's parent watch), then the counter."""
    if own is not None:
        own(*own_args)
    install(counters, role)


@contextlib.contextmanager
def counting_process_pools(module: Any, counters: Any) -> Iterator[list[ProcessPoolExecutor]]:
    """While active, process pools that ``module`` creates run ``install(counters)`` in each worker.

    Yields the pools created, so the caller can check that its workers were instrumented.
    """
    created: list[ProcessPoolExecutor] = []
    original = module.ProcessPoolExecutor

    def factory(*args: Any, **kwargs: Any) -> ProcessPoolExecutor:
        own, own_args = kwargs.pop("initializer", None), kwargs.pop("initargs", ())
        pool: ProcessPoolExecutor = original(
            *args, **kwargs, initializer=_install_after, initargs=(own, own_args, counters, ROLES.index("workers"))
        )
        created.append(pool)
        return pool

    with mock.patch.object(module, "ProcessPoolExecutor", factory):
        yield created
