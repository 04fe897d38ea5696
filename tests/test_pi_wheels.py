"""plend installs on a 64-bit Raspberry Pi from wheels alone.

pip's own resolver is asked, from the package index this machine's pip is configured
with (as install.sh's pip is), for the daemon's dependencies (pyproject's, plus the
[onnxruntime] extra the Pi install adds) as Raspberry Pi OS Bookworm (Python 3.11,
glibc 2.36) and Trixie (Python 3.13, glibc 2.41) on aarch64 would install them, with
``--only-binary=:all:``: a dependency, direct or pulled in, that has no aarch64 wheel for
that Python fails here. pip evaluates environment markers for the machine it runs on, so
the markers of plend's own requirements are evaluated here for the Pi. (systemd-python
is left out: it is built on the Pi from source, with the gcc and libsystemd-dev that
install.sh installs, and the daemon runs without it.) Needs the package index; set
PLEND_OFFLINE=1 to skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PI_EXTRAS = ("onnxruntime",)
# Raspberry Pi OS releases: (Python, glibc).
RELEASES = {"bookworm": ("3.11", 36), "trixie": ("3.13", 41)}

pytestmark = pytest.mark.skipif(bool(os.environ.get("PLEND_OFFLINE")), reason="PLEND_OFFLINE is set")


def pi_requirements(python: str) -> list[str]:
    """plend's requirements for a 64-bit Pi, markers evaluated for it, markers dropped."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in PI_EXTRAS:
        wanted += project["optional-dependencies"][extra]
    pi = {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "aarch64",
          "python_version": python, "python_full_version": f"{python}.0", "implementation_name": "cpython",
          "os_name": "posix", "extra": ""}  # fmt: skip
    out = []
    for text in wanted:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate(pi):
            requirement.marker = None
            out.append(str(requirement))
    return out


def resolve(requirements: list[str], python: str, glibc: int, tmp: Path) -> subprocess.CompletedProcess[str]:
    """pip's answer to: install these on an aarch64 Linux with this Python and glibc."""
    # pip takes a platform tag literally, so every manylinux level the glibc accepts is named.
    platforms = [f"manylinux_2_{minor}_aarch64" for minor in range(17, glibc + 1)] + ["manylinux2014_aarch64"]
    command = [
        sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
        "--only-binary=:all:", "--target", str(tmp / "target"), "--report", str(tmp / "report.json"),
        "--python-version", python, "--implementation", "cp",
        *(arg for p in platforms for arg in ("--platform", p)),
        *requirements,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_the_daemons_dependencies_resolve_to_aarch64_wheels(release: str, tmp_path: Path) -> None:
    python, glibc = RELEASES[release]
    requirements = pi_requirements(python)
    assert any(r.startswith("gpiod") for r in requirements), "Blinka needs gpiod on a Pi"
    done = resolve(requirements, python, glibc, tmp_path)
    assert done.returncode == 0, f"{release}: {done.stderr[-3000:]}"
    installs = json.loads((tmp_path / "report.json").read_text())["install"]
    files = {
        item["metadata"]["name"].lower(): item["download_info"]["url"].rsplit("/", 1)[-1] for item in installs
    }
    assert all(name.endswith(".whl") for name in files.values()), files
    for needed in ("numpy", "onnxruntime", "gpiod", "adafruit-blinka", "mcap"):
        assert needed in files, f"{needed} missing from {sorted(files)}"
    tag = f"cp{python.replace('.', '')}"
    for compiled in ("numpy", "onnxruntime", "gpiod"):
        assert f"-{tag}-" in files[compiled] and "aarch64" in files[compiled], files[compiled]


def test_a_dependency_without_an_aarch64_wheel_fails_the_check(tmp_path: Path) -> None:
    # pybullet publishes x86_64 wheels only: as a dependency it would break the Pi install.
    python, glibc = RELEASES["bookworm"]
    done = resolve([*pi_requirements(python), "pybullet>=3.2.5"], python, glibc, tmp_path)
    assert done.returncode != 0
    assert "pybullet" in done.stderr and "No matching distribution" in done.stderr
