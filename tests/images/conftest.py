"""Fixtures for building and running the real images.

No registry is reachable here, so ``FROM python:3.11-slim`` cannot be pulled: the tests build a
stand-in base image from Debian packages with debootstrap (from the mirror this machine's apt is
configured with, read from its config) and pass it as the images' BASE_IMAGE build argument.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE_TAG = "batchscoring-test-base:{suite}"


def run(*args: str, timeout: float = 900, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload,no-any-return]


def docker_available() -> str | None:
    """None when a Docker engine answers, else why not."""
    if shutil.which("docker") is None:
        return "no docker client on this machine"
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    return None if probe.returncode == 0 else "no Docker engine running (scripts/ensure-docker.sh starts one as root)"


def apt_mirror_and_suite() -> tuple[str, str]:
    """The Debian mirror and release this machine's apt uses (never a host name written in the repo)."""
    suite = next(
        line.split("=", 1)[1].strip().strip('"')
        for line in Path("/etc/os-release").read_text().splitlines()
        if line.startswith("VERSION_CODENAME=")
    )
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        match = re.search(r"^URIs:\s*(\S+)", sources.read_text(), re.MULTILINE)
        if match:
            return match.group(1), suite
    legacy = Path("/etc/apt/sources.list")
    match = re.search(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", legacy.read_text() if legacy.exists() else "", re.MULTILINE)
    if not match:
        raise RuntimeError("cannot find a Debian mirror in /etc/apt")
    return match.group(1), suite


@pytest.fixture(scope="session")
def base_image() -> str:
    reason = docker_available()
    if reason:
        pytest.skip(f"image tests need a Docker engine: {reason}")
    mirror, suite = apt_mirror_and_suite()
    tag = BASE_TAG.format(suite=suite)
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0:
        return tag
    if shutil.which("debootstrap") is None or os.geteuid() != 0:
        pytest.skip("building the stand-in base image needs debootstrap and root")
    with tempfile.TemporaryDirectory() as tmp:
        rootfs = Path(tmp) / "rootfs"
        run(
            "debootstrap",
            "--variant=minbase",
            "--include=python3,python3-venv,ca-certificates",
            suite,
            str(rootfs),
            mirror,
        )
        # Trust what this machine trusts, so pip inside the build reaches the same package index.
        shutil.copy("/etc/ssl/certs/ca-certificates.crt", rootfs / "etc/ssl/certs/ca-certificates.crt")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", "-", tag], stdin=tar.stdout, check=True, capture_output=True, timeout=600)
        tar.wait()
    return tag


def build(image: str, base: str) -> str:
    tag = f"batchscoring-{image}:test"
    args = [
        "docker",
        "build",
        "--network",
        "host",
        "--target",
        image,
        "--build-arg",
        f"BASE_IMAGE={base}",
        "-t",
        tag,
        ".",
    ]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"docker build {image} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return tag


@pytest.fixture(scope="session")
def scorer_image(base_image: str) -> str:
    return build("scorer", base_image)


@pytest.fixture(scope="session")
def submitter_image(base_image: str) -> str:
    return build("submitter", base_image)
