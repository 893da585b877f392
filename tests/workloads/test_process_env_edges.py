"""Edges of the processes and the environment the CLIs run in (issue 17, findings 5 and 8).

A submitter killed outright must not leave its local workers (nor multiprocessing's resource tracker)
running; bad storage and Batch variables are all named in one line, not one per failed start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from workloads.common.storage import StorageSettings
from workloads.demo.azurite import connection_string
from workloads.submitter.batch_settings import BatchSettings
from workloads.submitter.cli import app as submitter

REPO = Path(__file__).resolve().parents[2]
STORAGE_ENV = (
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT_URL",
    "AZURE_STORAGE_RETRY_TOTAL",
    "AZURE_STORAGE_RETRY_BACKOFF_SECONDS",
    "AZURE_STORAGE_TIMEOUT_SECONDS",
)
BAD_NUMBERS = {
    "AZURE_STORAGE_RETRY_TOTAL": "abc",
    "AZURE_STORAGE_RETRY_BACKOFF_SECONDS": "-1",
    "AZURE_STORAGE_TIMEOUT_SECONDS": "0",
}

# --- Finding 5: a killed submitter takes its workers and the resource tracker along -----------------

# A submitter in miniature: the local backend's real pool, one worker busy in a task, one idle (the
# two states an orphan can be found in), then blocked until it is killed.
SUBMITTER = """
import os, sys, time
from workloads.common.storage import StorageSettings
from workloads.submitter.local import LocalBackend

backend = LocalBackend(StorageSettings(account_url="https://orphans.blob.core.windows.net"), workers=2)
busy = backend._executor.submit(time.sleep, 120)
idle = backend._executor.submit(os.getpid)
idle.result(timeout=60)
print("ready", flush=True)
time.sleep(120)
"""


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time in clock ticks) of a process, or None once it has been reaped."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ", which may hold spaces
    return fields[0], int(fields[1]), int(fields[19])


def _descendants(root: int) -> dict[int, int]:
    """Every descendant of ``root`` now, as pid -> start time (the pair names a process despite pid reuse)."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[1], []).append((int(entry.name), stat[2]))
    found: dict[int, int] = {}
    todo = [root]
    while todo:
        for pid, start in children.get(todo.pop(), []):
            found[pid] = start
            todo.append(pid)
    return found


def _alive(pid: int, start: int) -> bool:
    """Still running: a zombie counts as gone (whether init reaps it promptly is not the pool's doing)."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in "ZX" and stat[2] == start


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.fixture
def submitter_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """The miniature submitter, started; whatever it leaves behind is killed afterwards, pass or fail."""
    output = tmp_path / "submitter.log"
    with output.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-c", SUBMITTER], cwd=REPO, stdout=sink, stderr=subprocess.STDOUT)
    family: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 60
        while b"ready" not in output.read_bytes():
            assert process.poll() is None, output.read_text()
            assert time.monotonic() < deadline, "the pool never started: " + output.read_text()
            time.sleep(0.1)
        family.update(_descendants(process.pid))
        yield process, output
    finally:
        family.update(_descendants(process.pid))
        process.kill()
        process.wait()
        for pid, start in family.items():
            if _alive(pid, start):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_a_killed_submitter_leaves_no_workers_and_no_resource_tracker(
    submitter_process: tuple[subprocess.Popen[bytes], Path],
) -> None:
    """SIGKILL runs no shutdown, so only the workers' own watch on their parent can end them; the tracker
    must follow once the last worker has closed its pipe."""
    process, output = submitter_process
    family = _descendants(process.pid)
    commands = {pid: _command(pid) for pid in family}
    workers = [pid for pid, command in commands.items() if "multiprocessing.spawn" in command]
    trackers = [pid for pid, command in commands.items() if "resource_tracker" in command]
    assert (len(workers), len(trackers)) == (2, 1), commands

    process.send_signal(signal.SIGKILL)  # no shutdown runs: the case a graceful exit never tests
    killed = time.monotonic()
    process.wait()
    survivors = dict(family)
    gone_after: dict[int, float] = {}
    while survivors and time.monotonic() - killed < 5:
        for pid, start in list(survivors.items()):
            if not _alive(pid, start):
                gone_after[pid] = time.monotonic() - killed
                del survivors[pid]
        time.sleep(0.05)
    assert not survivors, ({pid: commands[pid] for pid in survivors}, output.read_text())
    print(
        "gone after the kill (s): "
        + ", ".join(f"{'tracker' if pid in trackers else 'worker'} {gone_after[pid]:.2f}" for pid in family)
    )


# --- Finding 8: every bad variable named at once ---------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in STORAGE_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_every_bad_storage_number_is_named_in_one_line(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AZURE_STORAGE_CONNECTION_STRING", connection_string(10000))
    for name, value in BAD_NUMBERS.items():
        clean_env.setenv(name, value)
    with pytest.raises(ValueError) as error:
        StorageSettings.from_env()
    assert str(error.value) == (
        "AZURE_STORAGE_RETRY_TOTAL must be an integer from 0 to 20, got 'abc'; "
        "AZURE_STORAGE_RETRY_BACKOFF_SECONDS must be a number of seconds from 0 to 60, got '-1'; "
        "AZURE_STORAGE_TIMEOUT_SECONDS must be a number of seconds above 0 to 3600, got '0'"
    )


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ({"AZURE_STORAGE_CONNECTION_STRING": "nonsense"}, "AZURE_STORAGE_CONNECTION_STRING is malformed: part 1"),
        ({}, "set exactly one of AZURE_STORAGE_CONNECTION_STRING (Azurite) or AZURE_STORAGE_ACCOUNT_URL"),
        ({"AZURE_STORAGE_ACCOUNT_URL": "acct.blob.core.windows.net"}, "AZURE_STORAGE_ACCOUNT_URL must be an http(s)"),
    ],
)
def test_a_bad_storage_source_and_bad_numbers_are_named_together(
    clean_env: pytest.MonkeyPatch, source: dict[str, str], problem: str
) -> None:
    for name, value in {**source, **BAD_NUMBERS}.items():
        clean_env.setenv(name, value)
    with pytest.raises(ValueError) as error:
        StorageSettings.from_env()
    problems = str(error.value).split("; ")
    assert len(problems) == 4 and problems[0].startswith(problem), problems
    assert [p.split()[0] for p in problems[1:]] == list(BAD_NUMBERS)
    assert "\n" not in str(error.value)


def test_the_submitter_cli_names_every_bad_storage_variable_in_one_error_line(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AZURE_STORAGE_CONNECTION_STRING", "nonsense")
    for name, value in BAD_NUMBERS.items():
        clean_env.setenv(name, value)
    result = CliRunner().invoke(submitter, ["report", "--hour", "2026-11-25T10"])
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.output.splitlines() if line.strip()]
    assert line.startswith("error: AZURE_STORAGE_CONNECTION_STRING is malformed: ")
    assert all(name in line for name in BAD_NUMBERS), line
    assert "Traceback" not in result.output


def test_batch_settings_name_every_bad_variable_including_a_non_integer_retry_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    good = {
        "BATCH_ACCOUNT_URL": "https://acct.westeurope.batch.azure.com",
        "BATCH_POOL_ID": "scoring",
        "SCORER_IMAGE": "acr.azurecr.io/scorer:1",
        "AZURE_STORAGE_ACCOUNT_URL": "https://acct.blob.core.windows.net",
        "SCORER_IDENTITY_RESOURCE_ID": "/subscriptions/s/resourceGroups/g/providers/x/identities/scorer",
    }
    for name, value in good.items():
        monkeypatch.setenv(name, value)
    assert BatchSettings.from_env().pool_id == "scoring"
    monkeypatch.setenv("BATCH_ACCOUNT_URL", "http://acct.westeurope.batch.azure.com")
    monkeypatch.delenv("SCORER_IMAGE")
    monkeypatch.setenv("BATCH_TASK_MAX_RETRIES", "two")
    monkeypatch.setenv("BATCH_TASK_MAX_WALL_MINUTES", "0")
    with pytest.raises(ValueError) as error:
        BatchSettings.from_env()
    message = str(error.value)
    assert "\n" not in message
    problems = message.removeprefix("Batch backend settings are incomplete or invalid: ").split("; ")
    named = [problem.split(":")[0] for problem in problems]
    assert named == ["BATCH_ACCOUNT_URL", "SCORER_IMAGE", "BATCH_TASK_MAX_RETRIES", "BATCH_TASK_MAX_WALL_MINUTES"]
    assert "BATCH_TASK_MAX_RETRIES: Input should be a valid integer" in message


def test_the_submitter_cli_names_every_bad_batch_variable_in_one_error_line(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("AZURE_STORAGE_CONNECTION_STRING", connection_string(10000))
    for name in ("BATCH_ACCOUNT_URL", "BATCH_POOL_ID", "SCORER_IMAGE", "SCORER_IDENTITY_RESOURCE_ID"):
        clean_env.delenv(name, raising=False)
    clean_env.setenv("BATCH_TASK_MAX_RETRIES", "2.5")
    result = CliRunner().invoke(submitter, ["run", "--backend", "batch", "--hour", "2026-11-25T10"])
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.output.splitlines() if line.strip()]
    assert line.startswith("error: Batch backend settings are incomplete or invalid: ")
    for name in ("BATCH_ACCOUNT_URL", "BATCH_POOL_ID", "SCORER_IMAGE", "SCORER_IDENTITY_RESOURCE_ID"):
        assert f"{name}: Field required" in line
    assert "BATCH_TASK_MAX_RETRIES: Input should be a valid integer" in line
