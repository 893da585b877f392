"""Submitting one planned revision: manifests, hand-off to the backend, the job record."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
from azure.storage.blob import BlobServiceClient

from workloads.common.aggregates import KEYS
from workloads.common.frames import to_parquet
from workloads.common.hour_state import Reason
from workloads.common.layout import Container, manifest_blob
from workloads.common.manifest import TaskManifest
from workloads.submitter.backend import Backend, JobOutcome
from workloads.submitter.plan import JobPlan
from workloads.submitter.record import JobRecord, JobStatus, write_record


def write_manifests(service: BlobServiceClient, plan: JobPlan) -> dict[str, str]:
    """One manifest blob per task, so a Batch command line carries a blob name, not thousands of pairs;
    each task's input blob is written first, so no manifest ever names inputs that are not there."""
    write_inputs(service, plan)
    logs = service.get_container_client(str(Container.LOGS))

    def upload(task: TaskManifest) -> tuple[str, str]:
        name = manifest_blob(plan.hour, plan.job_id, task.task_id)
        logs.upload_blob(name, task.model_dump_json(), overwrite=True)
        return task.task_id, name

    with ThreadPoolExecutor(max_workers=16) as pool:
        return dict(pool.map(upload, plan.tasks))


def task_rows(plan: JobPlan) -> list[pa.Table]:
    """The hour's rows cut per task (in task order), each in the hour's (pair, window) order.

    One pass over the hour: pairs are factorised once and rows sorted by task with a stable sort,
    instead of filtering the hour once per task (which would cost tasks x rows).
    """
    frame = plan.rows if plan.rows is not None else pd.DataFrame(columns=list(KEYS))
    task_of = {(p.device_id, p.sensor): i for i, task in enumerate(plan.tasks) for p in task.pairs}
    # Devices and sensors factorised apart (C speed), then combined: no Python tuple per row.
    devices, device_names = pd.factorize(frame["device_id"])
    sensors, sensor_names = pd.factorize(frame["sensor"])
    combined = devices.astype(np.int64) * max(1, len(sensor_names)) + sensors
    pair_codes, rows_pair = np.unique(combined, return_inverse=True)
    names, width = (device_names.tolist(), sensor_names.tolist()), max(1, len(sensor_names))
    unique_task = np.array(
        [task_of.get((names[0][code // width], names[1][code % width]), -1) for code in pair_codes.tolist()],
        dtype=np.int64,
    )
    row_task = unique_task[rows_pair] if len(rows_pair) else np.empty(0, np.int64)
    order = np.argsort(row_task, kind="stable")
    bounds = np.searchsorted(row_task[order], np.arange(len(plan.tasks) + 1))
    table = pa.Table.from_pandas(frame, preserve_index=False)
    return [table.take(order[bounds[i] : bounds[i + 1]]) for i in range(len(plan.tasks))]


def write_inputs(service: BlobServiceClient, plan: JobPlan) -> None:
    """Each task's rows in its own blob, written before its manifest: a task never waits on, or
    reads, another task's share of the hour."""
    logs = service.get_container_client(str(Container.LOGS))
    pending = [(task.inputs_blob, rows) for task, rows in zip(plan.tasks, task_rows(plan), strict=True)]

    def upload(item: tuple[str | None, pa.Table]) -> None:
        name, rows = item
        if name is not None:
            logs.upload_blob(name, to_parquet(rows), overwrite=True)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(upload, pending))


def new_record(plan: JobPlan, backend: str, revision: int, reason: Reason) -> JobRecord:
    return JobRecord(
        job_id=plan.job_id,
        stack=plan.stack,
        hour=plan.hour,
        revision=revision,
        reason=reason,
        backend=backend,
        status=JobStatus.SUBMITTED,
        submitted_at=datetime.now(UTC),
        fingerprint=plan.fingerprint,
        inputs=[b.name for b in plan.inputs],
        tasks=len(plan.tasks),
        pairs=plan.pairs,
        silent_pairs=[str(p) for p in plan.silent_pairs],
        input_issues=plan.input_issues,
    )


def submit_plan(
    service: BlobServiceClient, plan: JobPlan, backend: Backend, revision: int, reason: Reason
) -> tuple[JobRecord, JobOutcome]:
    """Write the manifests and the record, then hand the tasks over; the record is finalised later
    (``finalise``), from the run logs, once the backend says the job has finished."""
    record = new_record(plan, backend.name, revision, reason)
    manifests = write_manifests(service, plan)
    record.manifests = sorted(manifests.values())
    write_record(service, record)
    return record, backend.submit(plan, manifests)
