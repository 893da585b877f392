"""Process facts for the fleet benchmark, from Linux's /proc where it has them.

Peak RSS comes from ``VmHWM`` rather than ``getrusage``: on Linux ``ru_maxrss`` survives ``exec``, so
a process started by a large parent reports the parent's peak as its own. ``VmHWM`` belongs to the
process's own address space and starts afresh at ``exec``.
"""

from __future__ import annotations

import contextlib
import os
import resource
from pathlib import Path


def peak_rss_kib() -> int:
    """This process's peak resident set size in KiB (``getrusage`` where /proc is missing)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def pid_cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a process has used so far (Linux /proc), or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine since boot, all cores (Linux /proc/stat), or None.

    Busy is everything but idle and iowait; the difference of two readings says how much CPU every process
    together used meanwhile, so what a measured process did not use was used by others."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    ticks = [int(v) for v in first[1:9]]  # user nice system idle iowait irq softirq steal
    total = sum(ticks)
    return (total - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK"), total / os.sysconf("SC_CLK_TCK")


def azurite_cpu_seconds(port: int | None) -> float | None:
    """CPU time used so far by the Azurite process that serves ``port`` (Linux /proc), or None."""
    if port is None or not Path("/proc").is_dir():
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if not any(b"azurite" in a for a in argv) or str(port).encode() not in argv:
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14 and 15 of stat)
    return None
