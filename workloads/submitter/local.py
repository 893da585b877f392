"""The local backend: a pool of worker processes running the task image's programs, as Batch nodes would.

Scoring tasks run the scorer's entry point; a training job's tasks (``TaskCommand("trainer", ...)``) the
trainer's, on the same workers with the same retries.

Workers are started once (spawn, so no threads or sockets are inherited) and kept for the pool's
life, so their storage clients and model caches serve every task and hour they run. Each worker is
one task slot: its BLAS runs one thread, so ``workers`` processes use ``workers`` cores instead of
each starting a thread per core and fighting over them (the scorer image sets the same for Batch).

Workers die with the submitter. A submitter killed outright (SIGKILL, the OOM killer, a container
stopped without grace) runs no shutdown, and its workers would live on: each holds both ends of the
pool's queues, so none sees end-of-file, and a busy one is not reading anyway. Orphans finish (or hang
in) a task of a revision that the next run replaces, then wait forever, holding memory and keeping
multiprocessing's resource tracker alive (it exits only once every holder of its pipe, workers
included, has closed it). So each worker watches its parent.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from types import TracebackType

from workloads.common.storage import StorageSettings
from workloads.scorer.entry import run_manifest
from workloads.scorer.task import ScorerOptions
from workloads.submitter.backend import JobOutcome, JobSpec, TaskCommand
from workloads.submitter.plan import JobPlan

BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
PARENT_CHECK_SECONDS = 0.5
ORPHANED_EXIT_CODE = 70  # EX_SOFTWARE: nobody is left to read it, but it is not a task's success or failure


def _exit_when_orphaned(parent_pid: int, interval: float) -> None:
    """Exit the moment this process's parent is no longer ``parent_pid``, checking every ``interval`` s.

    A parent that dies is replaced by init or the nearest subreaper, so the pid changes; comparing with
    the pid the parent passed in (rather than one read here) also catches a parent that died before
    this ran. Polling, because PR_SET_PDEATHSIG fires when the parent's creating *thread* exits (here
    the executor's manager thread), not the parent process, and is Linux-only. ``os._exit``, because a
    task may be running in the main thread and need not finish: its revision was abandoned with the
    submitter, and the next reconcile replaces it at once (its claim's owner process is gone, ``hour_state.Owner``).
    """
    while os.getppid() == parent_pid:
        time.sleep(interval)
    os._exit(ORPHANED_EXIT_CODE)


def _watch_parent(parent_pid: int, interval: float = PARENT_CHECK_SECONDS) -> None:
    """The pool's initializer: a daemon thread per worker, so a submitter's death takes its workers along."""
    threading.Thread(
        target=_exit_when_orphaned, args=(parent_pid, interval), name="exit-when-orphaned", daemon=True
    ).start()


class TaskFailedError(RuntimeError):
    """A task's failure as plain text: SDK exceptions can hold tracebacks and sockets, which do not
    survive the trip back from a worker process (``cannot pickle 'traceback' object``)."""


def _run_program(settings: StorageSettings, command: TaskCommand, options: ScorerOptions) -> object:
    """What the task image's program would do with the manifest, in this process."""
    if command.program == "trainer":
        from workloads.training.task import run_training_manifest  # only a training job's workers need it

        return run_training_manifest(settings, command.manifest)
    return run_manifest(settings, command.manifest, options).task


def _run_task(settings: StorageSettings, command: TaskCommand, options: ScorerOptions, retries: int) -> object:
    """A task with Batch-like retries: a failed task (crash, unreadable inputs) is retried; pair
    failures are not (they are logged)."""
    error = ""
    for _ in range(retries + 1):
        try:
            return _run_program(settings, command, options)
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
            ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_watch_parent,
                initargs=(os.getpid(),),
            )
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
        the reconciler replaces at once when that run's process is gone (or once its claim times out)."""
        return JobOutcome(finished=False)

    def submit(self, plan: JobPlan, manifests: dict[str, str]) -> JobOutcome:
        return self.run_commands({task_id: TaskCommand("scorer", blob) for task_id, blob in manifests.items()})

    def submit_tasks(self, job: JobSpec, tasks: dict[str, TaskCommand]) -> JobOutcome:
        """Any job's tasks on the same workers, with the same retries (the wall-clock limit is Batch's alone)."""
        return self.run_commands(tasks)

    def run_commands(self, tasks: dict[str, TaskCommand]) -> JobOutcome:
        futures = {
            task_id: self._executor.submit(_run_task, self.settings, command, self.options, self.max_task_retries)
            for task_id, command in tasks.items()
        }
        outcome = JobOutcome(finished=True)
        for task_id, future in futures.items():
            try:
                future.result()
            except Exception as exc:
                outcome.task_errors[task_id] = " ".join(str(exc).split())
        return outcome
