"""An Azurite process the benchmarks start, restart and wait for, so that timings run on settled storage.

Right after bulk uploads Azurite saves its metadata every few seconds and stalls; restarting it (it saves on
SIGTERM and loads on start) and waiting until it is idle gives every measured run the same storage.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from benchmarks.procstat import pid_cpu_seconds


class Azurite:
    """One Azurite on a folder of its own; ``restart`` saves its metadata and loads it back (settled storage)."""

    def __init__(self, location: Path, port: int) -> None:
        self.location, self.port = location, port
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts: list[dict[str, float]] = []

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 1800.0) -> float:
        from workloads.demo.azurite import azurite_command, is_listening

        self.location.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        # A million blobs' metadata lives in the emulator's heap: give it room (the default can be ~2-4 GiB).
        env["NODE_OPTIONS"] = f"{env.get('NODE_OPTIONS', '')} --max-old-space-size=8192".strip()
        log = (self.location / "azurite.log").open("ab")
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [
                str(azurite_command()),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(self.port),
                "--location",
                str(self.location),
                "--skipApiVersionCheck",
                "--loose",
                "--silent",  # no access log: the bulk load is millions of lines
                "--disableTelemetry",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not is_listening(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Azurite did not start on port {self.port}; see {self.location / 'azurite.log'}")
            time.sleep(0.2)
        return time.perf_counter() - started

    def stop(self, timeout: float = 1800.0) -> float:
        """SIGTERM: Azurite saves its metadata (if changed) and exits."""
        if self.process is None:
            return 0.0
        started = time.perf_counter()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise RuntimeError("Azurite did not stop in time (killed): its metadata may not be saved") from None
        finally:
            self.process = None
        return time.perf_counter() - started

    def restart(self) -> dict[str, float]:
        took = {"stop_s": round(self.stop(), 2), "start_s": round(self.start(), 2)}
        self.restarts.append(took)
        return took

    def settle(
        self, min_wait: float = 6.0, window: float = 2.0, idle_share: float = 0.05, timeout: float = 900.0
    ) -> float:
        """Wait until Azurite has been idle for ``window`` seconds, at least ``min_wait`` after the last request
        (Loki saves its metadata 5 s after a change, which on a million blobs is seconds of CPU)."""
        started = time.monotonic()
        time.sleep(min_wait)
        while time.monotonic() - started < timeout:
            before = pid_cpu_seconds(self.pid)
            time.sleep(window)
            after = pid_cpu_seconds(self.pid)
            if before is None or after is None or after - before <= idle_share * window:
                break
        return time.monotonic() - started

    def metadata_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.location.glob("__azurite_db_blob*") if p.is_file())
