"""Rich consoles that stay readable when output is piped or captured (CI logs, container logs)."""

from __future__ import annotations

from rich.console import Console

PIPED_WIDTH = 160  # rich falls back to 80 columns without a terminal, which truncates tables


def console(*, stderr: bool = False) -> Console:
    out = Console(stderr=stderr)
    return out if out.is_terminal else Console(stderr=stderr, width=PIPED_WIDTH)
