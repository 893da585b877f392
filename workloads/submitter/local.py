"""The local backend: a pool of worker processes running the scorer entry point, as Batch nodes would.

Workers are started once (spawn, so no threads or sockets are inherited) and kept for the pool's
life, so their storage clients and model caches serve every task and hour they run. Each worker is
one task slot: its BLAS runs one thread, so ``workers`` processes use ``workers`` cores instead of
each starting a thread per core and fighting over them (the scorer image sets the same for Batch).
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from types import TracebackType

from workloads.common.runlog import TaskLog
from workloads.common.storage import StorageSettings
from workloads.scorer.entry import run_manifest
from workloads.scorer.task import ScorerOptions
from workloads.submitter.backend import JobOutcome
from workloads.submitter.plan import JobPlan

BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class TaskFailedError(RuntimeError):
    """A task's failure as plain text: SDK exceptions can hold tracebacks and sockets, which do not
    survive the trip back from a worker process (``cannot pickle 'traceback' object``)."""


def _run_task(settings: StorageSettings, manifest_blob: str, options: ScorerOptions, retries: int) -> TaskLog:
    """A task with Batch-like retries: a failed task (crash, unreadable inputs) is retried; pair
    failures are not (they are logged)."""
    error = ""
    for _ in range(retries + 1):
        try:
            return run_manifest(settings, manifest_blob, options).task
        except Exception as exc:
            error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    raise TaskFailedError(f"failed after {retries + 1} attempt(s): {error}")


class _InlineExecutor(Executor):
    """Runs tasks in the calling process (``workers=0``): handy for debugging and fast tests."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        future: Future[object] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


class LocalBackend:
    name = "local"

    def __init__(
        self,
        settings: StorageSettings,
        workers: int = 2,
        options: ScorerOptions | None = None,
        max_task_retries: int = 1,
    ) -> None:
        self.settings = settings
        self.options = options or ScorerOptions()
        self.max_task_retries = max_task_retries
        # Read by BLAS when numpy loads in a spawned worker; an operator's own setting is kept.
        for name in BLAS_THREAD_VARIABLES:
            os.environ.setdefault(name, "1")
        self._executor: Executor = (
            ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
            if workers > 0
            else _InlineExecutor()
        )

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.close()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def poll(self, job_id: str) -> JobOutcome:
        """Local jobs finish inside ``submit``; one found unfinished belongs to a run that died, which
        the reconciler replaces once its claim times out."""
        return JobOutcome(finished=False)

    def submit(self, plan: JobPlan, manifests: dict[str, str]) -> JobOutcome:
        futures = {
            task_id: self._executor.submit(_run_task, self.settings, blob, self.options, self.max_task_retries)
            for task_id, blob in manifests.items()
        }
        outcome = JobOutcome(finished=True)
        for task_id, future in futures.items():
            try:
                future.result()
            except Exception as exc:
                outcome.task_errors[task_id] = " ".join(str(exc).split())
        return outcome
