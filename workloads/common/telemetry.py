"""Optional OpenTelemetry traces and metrics to Application Insights, beside the run logs (the source of truth).

Off unless ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set (the variable azure-monitor-opentelemetry itself
reads; the stack sets it for the submitter and its Batch tasks when ``telemetry`` is on). Off means off:
nothing is imported (OpenTelemetry and the exporter cost a second of import on a loaded node) and nothing
is sent. On, :func:`setup` calls ``configure_azure_monitor`` once per process, and the helpers below record
one span per scored task and per reconciled hour, with counters of pairs by status and hours by action.
Telemetry never fails the work it describes: an exporter error is the exporter's to log.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any

CONNECTION_STRING_ENV = "APPLICATIONINSIGHTS_CONNECTION_STRING"
METER = "batchscoring"

_state: dict[str, Any] = {}  # "tracer", "meter", instruments; empty while telemetry is off


def enabled() -> bool:
    return bool(_state)


def setup(service_name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Turn telemetry on for this process if a connection string is configured; True when it is on."""
    if _state:
        return True
    connection = (environ if environ is not None else os.environ).get(CONNECTION_STRING_ENV, "").strip()
    if not connection:
        return False
    # The exporter's own usage statistics ("statsbeat") go to Microsoft, not to this stack's resource: off
    # unless the operator turns them back on.
    os.environ.setdefault("APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL", "true")
    try:
        from azure.monitor.opentelemetry import configure_azure_monitor
        from opentelemetry.sdk.resources import Resource

        configure_azure_monitor(
            connection_string=connection,
            resource=Resource.create({"service.name": service_name}),
            enable_live_metrics=False,
            # Every span: a run makes a few per task (its own and its handful of blob calls), far below what a
            # rate-limited sampler (the exporter's default, 5 traces/s) is for, and it would drop task spans.
            sampling_ratio=1.0,
        )
    except Exception as exc:  # a malformed connection string, a missing extra: the work goes on without it
        print(f"telemetry off: {CONNECTION_STRING_ENV} not usable: {type(exc).__name__}: {exc}", file=sys.stderr)
        return False
    from opentelemetry import metrics, trace

    meter = metrics.get_meter(METER)
    _state.update(
        tracer=trace.get_tracer(METER),
        pairs=meter.create_counter("batchscoring.pairs", unit="{pair}", description="Pairs by status"),
        hours=meter.create_counter("batchscoring.hours", unit="{hour}", description="Reconciled hours by action"),
        task_seconds=meter.create_histogram("batchscoring.task.duration", unit="s", description="Task wall time"),
    )
    return True


@contextlib.contextmanager
def span(name: str, **attributes: str | int | float | bool) -> Iterator[Any]:
    """A span around a unit of work, or nothing at all when telemetry is off."""
    tracer = _state.get("tracer")
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current


def count_pairs(counts: Mapping[str, int], **attributes: str) -> None:
    if "pairs" in _state:
        for status, value in counts.items():
            if value:
                _state["pairs"].add(value, {"status": status, **attributes})


def count_hour(action: str, status: str | None, **attributes: str) -> None:
    if "hours" in _state:
        _state["hours"].add(1, {"action": action, "status": status or "", **attributes})


def task_duration(seconds: float, **attributes: str) -> None:
    if "task_seconds" in _state:
        _state["task_seconds"].record(seconds, attributes)


def flush(timeout_ms: int = 10_000) -> None:
    """Export what is buffered now: a Batch task's process may be gone before the exporter's next batch."""
    if _state:
        from opentelemetry import metrics, trace

        for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
            force_flush = getattr(provider, "force_flush", None)
            if force_flush is not None:
                force_flush(timeout_ms)


def reset() -> None:
    """Forget this process's telemetry objects (tests)."""
    _state.clear()
