"""Time arithmetic for windows and scoring hours.

Conventions (the same as Azure Stream Analytics tumbling windows):
- windows are aligned to the epoch and cover (end - length, end]: a reading exactly on a boundary
  belongs to the window that ends there;
- scoring hour H holds the windows whose *end* lies in [H, H + 1h), which is also the hour folder
  the aggregate lands in, so one blob prefix holds one hour.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pandas as pd

HOUR = timedelta(hours=1)
# How long after an hour's end its aggregates may still be written by the stream job (late-arrival
# tolerance plus output delay); stack config ``latenessMinutes`` overrides it.
SETTLE = timedelta(minutes=15)


def validate_window(window: timedelta) -> timedelta:
    """Windows must tile an hour exactly, otherwise a window would straddle two scoring hours."""
    seconds = window.total_seconds()
    if seconds < 1 or seconds != int(seconds) or 3600 % int(seconds):
        raise ValueError(
            f"window length {window} must be a whole number of seconds that divides one hour "
            "(e.g. 1, 5, 10, 15, 30 or 60 minutes)"
        )
    return window


def as_utc(moment: datetime) -> datetime:
    """Naive datetimes are taken to be UTC; aware ones are converted."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def floor_hour(moment: datetime) -> datetime:
    return as_utc(moment).replace(minute=0, second=0, microsecond=0)


def parse_hour(text: str) -> datetime:
    """Parse an hour such as ``2026-11-25T16``, ``2026-11-25T16:00`` or ``2026-11-25T16:00:00Z``."""
    cleaned = text.strip().removesuffix("Z")
    if len(cleaned) == 13:  # 2026-11-25T16
        cleaned += ":00"
    try:
        moment = as_utc(datetime.fromisoformat(cleaned))
    except ValueError:
        raise ValueError(f"invalid hour {text!r}: expected e.g. 2026-11-25T16 (UTC)") from None
    if moment != floor_hour(moment):
        raise ValueError(f"invalid hour {text!r}: must be on the hour, e.g. {floor_hour(moment):%Y-%m-%dT%H}")
    return moment


def format_hour(hour: datetime) -> str:
    return f"{floor_hour(hour):%Y-%m-%dT%H}"


def last_complete_hour(now: datetime, lateness: timedelta = SETTLE) -> datetime:
    """The newest hour whose last window has closed and whose late readings have had time to land."""
    return floor_hour(as_utc(now) - lateness) - HOUR


def hours(start: datetime, end: datetime) -> Iterator[datetime]:
    """Hours H with start <= H < end (both floored to the hour)."""
    hour, stop = floor_hour(start), floor_hour(end)
    while hour < stop:
        yield hour
        hour += HOUR


def window_ends(timestamps: pd.Series, window: timedelta) -> pd.Series:
    """End of the (end - window, end] window that holds each timestamp."""
    return timestamps.dt.ceil(pd.Timedelta(window))
