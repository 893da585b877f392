"""Reading back what happened in an hour: job records and run logs, as one summary per job."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from azure.storage.blob import BlobServiceClient

from workloads.common.layout import Container, hour_prefix
from workloads.common.runlog import PairLog, PairStatus, TaskLog, parse_jsonl
from workloads.common.windows import format_hour
from workloads.submitter.record import JobRecord


@dataclass
class JobReport:
    hour: datetime
    job_id: str
    record: JobRecord | None = None
    tasks: list[TaskLog] = field(default_factory=list)
    pairs: list[PairLog] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)  # blob -> error

    @property
    def failures(self) -> list[PairLog]:
        return [p for p in self.pairs if p.status is PairStatus.FAILED]

    def summary(self) -> dict[str, Any]:
        task_seconds = [t.timings_ms.get("total", 0.0) / 1000 for t in self.tasks]
        pair_ms = sorted(p.timings_ms["total"] for p in self.pairs if "total" in p.timings_ms)
        count = {s: sum(p.status is s for p in self.pairs) for s in PairStatus}
        return {
            "hour": format_hour(self.hour),
            "job_id": self.job_id,
            "status": self.record.status.value if self.record else "unknown",
            "backend": self.record.backend if self.record else None,
            "tasks_planned": self.record.tasks if self.record else None,
            "tasks_logged": len(self.tasks),
            "task_errors": self.record.task_errors if self.record else {},
            "pairs_ok": count[PairStatus.OK],
            "pairs_failed": count[PairStatus.FAILED],
            "pairs_no_data": count[PairStatus.NO_DATA],
            "anomalies": sum(p.anomalies for p in self.pairs),
            "task_seconds_mean": round(statistics.fmean(task_seconds), 3) if task_seconds else None,
            "task_seconds_max": round(max(task_seconds), 3) if task_seconds else None,
            "pair_ms_p50": round(pair_ms[len(pair_ms) // 2], 2) if pair_ms else None,
            "pair_ms_max": round(pair_ms[-1], 2) if pair_ms else None,
            "failures": [
                {"pair": f"{p.device_id}/{p.sensor}", "task": p.task_id, "reason": p.reason, "error": p.error}
                for p in self.failures
            ],
            "unreadable": self.unreadable,
        }


def collect(service: BlobServiceClient, hour: datetime) -> list[JobReport]:
    """Every job that ran in the hour, with its record and run logs (one listing, then the blobs)."""
    logs = service.get_container_client(str(Container.LOGS))
    prefix = hour_prefix(hour)
    blobs: dict[str, list[str]] = defaultdict(list)
    for blob in logs.list_blobs(name_starts_with=prefix):
        job_id, _, rest = blob.name.removeprefix(prefix).partition("/")
        if rest == "job.json" or (rest.startswith("tasks/") and rest.endswith(".jsonl")):
            blobs[job_id].append(blob.name)
    reports = []
    for job_id, names in sorted(blobs.items()):
        report = JobReport(hour=hour, job_id=job_id)
        for name in sorted(names):
            try:
                data = logs.download_blob(name).readall()
                if name.endswith("job.json"):
                    report.record = JobRecord.model_validate_json(data)
                else:
                    task, pairs = parse_jsonl(data)
                    report.pairs.extend(pairs)
                    if task is not None:
                        report.tasks.append(task)
            except Exception as exc:  # one unreadable log must not hide the others
                report.unreadable[name] = f"{type(exc).__name__}: {exc}"
        reports.append(report)
    return reports
