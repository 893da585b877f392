"""One self-contained HTML page about a range of hours, for people: what was scored, when, where, and what broke.

Built from what ``submitter report`` already reads (each hour's state, its latest revision's record and run
logs) plus the current predictions, with plotly (figures as data, rendered by plotly.js, which is inlined
once so the page opens offline and can be mailed or archived as one file):

- a status grid of the hours (scored, partial, stale, failed, pending, ...);
- a timeline of the latest revisions' tasks per node, from the task lines of the run logs;
- throughput per hour (pairs scored per second of the revision's wall clock) and pairs per path;
- anomalies per device and hour as a heatmap (the devices with the most anomalies, at most ``top_devices``);
- every failed pair with its reason, and every input or task problem.

Every text that comes from storage (errors, blob names) is escaped; ids are validated where they enter.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from workloads.common.runlog import PairStatus
from workloads.common.windows import format_hour
from workloads.submitter.report import HourReport, HourStatus, issue_lines

STATUS_COLOURS = {
    HourStatus.SCORED: "#2e7d32",
    HourStatus.PARTIAL: "#9e9d24",
    HourStatus.EMPTY: "#90a4ae",
    HourStatus.STALE: "#f9a825",
    HourStatus.SCORING: "#1565c0",
    HourStatus.CLEANING: "#4fc3f7",
    HourStatus.PENDING: "#ef6c00",
    HourStatus.FAILED: "#c62828",
    HourStatus.NOT_READY: "#cfd8dc",
}


def _plotly() -> Any:
    try:
        import plotly.graph_objects as go
    except ImportError as exc:  # the submitter image ships without it
        raise RuntimeError(f"the HTML report needs the 'report' extra (pip install '.[report]'): {exc}") from None
    return go


def status_figure(reports: Sequence[HourReport]) -> Any:
    go = _plotly()
    figure = go.Figure()
    for status, colour in STATUS_COLOURS.items():
        hours = [r for r in reports if r.status is status]
        if hours:
            figure.add_bar(
                x=[r.hour for r in hours],
                y=[1] * len(hours),
                name=status.value,
                marker_color=colour,
                hovertext=[_hover(r) for r in hours],
                hoverinfo="text",
            )
    figure.update_layout(title="Hours by status", barmode="overlay", height=220, yaxis_visible=False, bargap=0.05)
    return figure


def _hover(report: HourReport) -> str:
    summary = report.summary()
    return (
        f"{summary['hour']}: {summary['status']}, revision {summary['revision']} ({summary['reason']})<br>"
        f"ok {summary['pairs_ok']}, failed {summary['pairs_failed']}, no data {summary['pairs_no_data']}, "
        f"anomalies {summary['anomalies']}"
    )


def timeline_figure(reports: Sequence[HourReport]) -> Any:
    go = _plotly()
    figure = go.Figure()
    for r in reports:
        if not r.tasks:
            continue
        hour = format_hour(r.hour)
        figure.add_bar(
            base=[t.started_at for t in r.tasks],
            x=[(t.finished_at - t.started_at).total_seconds() * 1000 for t in r.tasks],
            y=[t.host for t in r.tasks],
            orientation="h",
            name=hour,
            hovertext=[f"{hour} {t.task_id}: {t.started_at:%H:%M:%S} - {t.finished_at:%H:%M:%S}" for t in r.tasks],
            hoverinfo="text",
        )
    figure.update_layout(title="Tasks per node (latest revision of each hour)", barmode="overlay", xaxis_type="date")
    return figure


def throughput_figure(reports: Sequence[HourReport]) -> Any:
    go = _plotly()
    hours, rates, from_pack, from_models = [], [], [], []
    for r in reports:
        if not r.tasks:
            continue
        wall = (max(t.finished_at for t in r.tasks) - min(t.started_at for t in r.tasks)).total_seconds()
        ok = sum(t.ok for t in r.tasks)
        hours.append(r.hour)
        rates.append(ok / wall if wall > 0 else float(ok))
        from_pack.append(sum(t.pack_pairs for t in r.tasks))
        from_models.append(sum(t.model_pairs for t in r.tasks))
    figure = go.Figure()
    figure.add_bar(x=hours, y=rates, name="pairs scored per second", yaxis="y")
    figure.add_scatter(x=hours, y=from_pack, name="pairs from model packs", yaxis="y2", mode="lines+markers")
    figure.add_scatter(x=hours, y=from_models, name="pairs from their own models", yaxis="y2", mode="lines+markers")
    figure.update_layout(
        title="Throughput per hour",
        yaxis={"title": "pairs/s"},
        yaxis2={"title": "pairs", "overlaying": "y", "side": "right"},
    )
    return figure


def anomaly_figure(predictions: pd.DataFrame, top_devices: int = 40) -> Any:
    go = _plotly()
    figure = go.Figure()
    if predictions.empty:
        figure.update_layout(title="Anomalies per device and hour (no predictions)")
        return figure
    frame = predictions.assign(hour=pd.to_datetime(predictions["window_end"], utc=True).dt.floor("h"))
    counts = frame.groupby(["device_id", "hour"])["is_anomaly"].sum().unstack(fill_value=0)
    counts = counts.loc[counts.sum(axis=1).sort_values(ascending=False).index[:top_devices]].sort_index()
    figure.add_heatmap(
        z=counts.to_numpy(), x=list(counts.columns), y=list(counts.index), colorscale="Reds", colorbar_title="windows"
    )
    figure.update_layout(
        title=f"Anomalous windows per device and hour (top {min(top_devices, len(counts))} devices)",
        height=max(300, 18 * len(counts) + 120),
    )
    return figure


def _failures_table(reports: Sequence[HourReport]) -> str:
    rows = [
        (format_hour(r.hour), f"{p.device_id}/{p.sensor}", p.task_id, p.reason or "", p.error or "")
        for r in reports
        for p in r.pairs
        if p.status is PairStatus.FAILED
    ]
    if not rows:
        return "<p>No failed pairs.</p>"
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    head = "".join(f"<th>{h}</th>" for h in ("hour", "pair", "task", "reason", "error"))
    return f'<table id="failures"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _issues_list(reports: Sequence[HourReport]) -> str:
    items = [f"{format_hour(r.hour)}: {kind}: {detail}" for r in reports for kind, detail in issue_lines(r.summary())]
    if not items:
        return "<p>No input or task problems.</p>"
    return "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in items) + "</ul>"


def render(reports: Sequence[HourReport], predictions: pd.DataFrame, generated_at: datetime, title: str) -> str:
    """The whole page as one string: plotly.js inline once, one div per figure, tables as plain HTML."""
    from plotly.offline import get_plotlyjs

    figures = {
        "status": status_figure(reports),
        "timeline": timeline_figure(reports),
        "throughput": throughput_figure(reports),
        "anomalies": anomaly_figure(predictions),
    }
    divs = "\n".join(
        f'<section class="chart">{fig.to_html(full_html=False, include_plotlyjs=False, div_id=key)}</section>'
        for key, fig in figures.items()
    )
    counts = {s: sum(r.status is s for r in reports) for s in HourStatus}
    summary = ", ".join(f"{n} {s.value}" for s, n in counts.items() if n)
    span = f"{format_hour(reports[0].hour)} to {format_hour(reports[-1].hour)}" if reports else "no hours"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #263238; }}
table {{ border-collapse: collapse; font-size: 0.9rem; }}
td, th {{ border: 1px solid #cfd8dc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }}
.chart {{ margin-bottom: 1rem; }}
</style>
<script>{get_plotlyjs()}</script>
</head><body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(span)}: {html.escape(summary)}. Generated {generated_at:%Y-%m-%d %H:%M} UTC.</p>
{divs}
<h2>Failed pairs</h2>
{_failures_table(reports)}
<h2>Inputs and tasks</h2>
{_issues_list(reports)}
</body></html>
"""
