"""One run of the planning benchmark, in a fresh process that imports what the submitter imports to plan.

``python -c "...main(argv)" SPEC OUT`` (see ``benchmarks/planning.py``) plans one hour the way reconcile does
before it hands the tasks to a backend: list the hour (``list_hour_inputs``), ``plan_hour`` on that listing,
``write_manifests``. It writes OUT (JSON): wall and CPU time per step, this process's peak RSS, Azurite's
CPU over the same interval (its pid, from /proc), the whole machine's busy CPU meanwhile (what others used),
the load average, and every blob request by kind and container (``benchmarks/blob_counter.py``). It also
checks the plan: one task per shard folder, each naming its folder's blobs, and no download at all.

Imports are kept to what a submitter process has, so its peak RSS is the submitter's.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MIB_KIB = 1024.0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return float(usage.ru_utime + usage.ru_stime)


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def main(argv: Sequence[str]) -> int:
    began = time.perf_counter()
    from datetime import datetime

    from benchmarks import blob_counter
    from benchmarks.procstat import machine_cpu_seconds, peak_rss_kib, pid_cpu_seconds
    from workloads.common.hour_inputs import list_hour_inputs
    from workloads.common.storage import StorageSettings
    from workloads.submitter.plan import plan_hour
    from workloads.submitter.submit import write_manifests

    imported = time.perf_counter()
    spec: dict[str, Any] = json.loads(Path(argv[0]).read_text())
    hour = datetime.fromisoformat(spec["hour"])
    azurite_pid = int(spec["azurite_pid"])
    settings = StorageSettings.model_validate({"connection_string": os.environ["AZURE_STORAGE_CONNECTION_STRING"]})
    service = settings.client()
    counters = blob_counter.new_counters()
    blob_counter.install(counters, role=blob_counter.ROLES.index("driver"))
    ready_rss_kib, ready_cpu = _rss_kib("VmRSS"), _cpu()

    load_before = os.getloadavg()
    machine_before = machine_cpu_seconds()
    azurite_before = pid_cpu_seconds(azurite_pid)
    marks = [(time.perf_counter(), _cpu())]
    inputs = list_hour_inputs(service, hour)
    marks.append((time.perf_counter(), _cpu()))
    plan = plan_hour(
        service,
        "bench",
        hour,
        shard_count=int(spec["shard_count"]),
        revision=int(spec["revision"]),
        inputs=inputs,
    )
    marks.append((time.perf_counter(), _cpu()))
    manifests = write_manifests(service, plan)
    marks.append((time.perf_counter(), _cpu()))
    azurite_after = pid_cpu_seconds(azurite_pid)
    machine_after = machine_cpu_seconds()
    load_after = os.getloadavg()
    blob_counter.uninstall()

    counts = blob_counter.snapshot(counters)["driver"]
    steps = ("list", "plan", "manifests")
    wall = {s: marks[i + 1][0] - marks[i][0] for i, s in enumerate(steps)}
    cpu = {s: marks[i + 1][1] - marks[i][1] for i, s in enumerate(steps)}
    total_wall, total_cpu = marks[-1][0] - marks[0][0], marks[-1][1] - marks[0][1]
    azurite_cpu = azurite_after - azurite_before if azurite_before is not None and azurite_after is not None else None
    machine: dict[str, Any] = {}
    if machine_before is not None and machine_after is not None:
        busy = machine_after[0] - machine_before[0]
        machine = {
            "machine_busy_cpu_s": round(busy, 3),
            "machine_cpu_capacity_s": round(machine_after[1] - machine_before[1], 3),
            # Everything else on the machine meanwhile (other people's tests, for instance): busy minus ours.
            "others_cpu_s": round(busy - total_cpu - (azurite_cpu or 0.0), 3),
        }

    by_container = blob_counter.by_container(counts)
    expected_inputs = int(spec["files_per_shard"])
    checks = {
        "tasks_equal_shards": len(plan.tasks) == int(spec["shard_count"]) == plan.shards,
        "each_task_names_its_folder_blobs": all(len(t.inputs) == expected_inputs for t in plan.tasks),
        "a_manifest_per_task": len(manifests) == len(plan.tasks),
        "no_download": counts["GET"] == 0,
        "no_model_request": "models" not in by_container,
        "one_put_per_manifest": counts["PUT"] == len(plan.tasks),
    }
    result = {
        "revision": int(spec["revision"]),
        "wall_s": round(total_wall, 4),
        "cpu_s": round(total_cpu, 4),
        "wall_s_by_step": {k: round(v, 4) for k, v in wall.items()},
        "cpu_s_by_step": {k: round(v, 4) for k, v in cpu.items()},
        "azurite_cpu_s": round(azurite_cpu, 3) if azurite_cpu is not None else None,
        **machine,
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in load_after],
        "peak_rss_mib": round(peak_rss_kib() / MIB_KIB, 1),  # VmHWM: this process's own peak since exec
        "ru_maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / MIB_KIB, 1),
        "rss_before_planning_mib": round(ready_rss_kib / MIB_KIB, 1),
        "import_s": round(imported - began, 3),
        "process_cpu_s_before_planning": round(ready_cpu, 3),
        "blobs_listed": len(inputs),
        "tasks": len(plan.tasks),
        "shards": plan.shards,
        "manifests": len(manifests),
        "blob_ops": {op: counts[op] for op in blob_counter.OPERATIONS if counts[op]},
        "blob_ops_by_container": by_container,
        "bytes_received": blob_counter.bytes_received(counts),
        "bytes_sent": counts["bytes_sent"],
        "checks": checks,
    }
    Path(argv[1]).write_text(json.dumps(result, indent=2))
    return 0 if all(checks.values()) else 3


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
