"""install.sh: lint-clean, helpful on bad options."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_install_script_passes_shellcheck() -> None:
    venv_bin = str(Path(sys.executable).parent)
    shellcheck = shutil.which("shellcheck", path=venv_bin) or shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (./install.sh --dev provides it)")
    done = subprocess.run([shellcheck, "install.sh", ".ci/run"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_unknown_option_is_refused_before_doing_anything() -> None:
    done = subprocess.run(["bash", "install.sh", "--bogus"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2
    assert "unknown option '--bogus'" in done.stderr
    assert done.stdout == ""


def test_help_names_the_options() -> None:
    done = subprocess.run(["bash", "install.sh", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and "--dev" in done.stdout


def test_help_names_the_pi_options() -> None:
    done = subprocess.run(["bash", "install.sh", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert "--pi" in done.stdout and "--dry-run" in done.stdout and "sudo ./install.sh" in done.stdout


def test_dry_run_on_a_pc_prints_the_venv_steps_only(tmp_path: Path) -> None:
    # An empty PLEND_SYSROOT has no /proc/device-tree/model: a PC, even when run on a Pi.
    env = {**os.environ, "PLEND_SYSROOT": str(tmp_path), "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", "install.sh", "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    pip = "would run: .venv/bin/python -m pip install --quiet -e .[live,onnxruntime,plot,sim,track,video]"
    assert pip in done.stdout
    for system_step in ("apt-get", "raspi-config", "systemctl", "sysusers", "config.txt"):
        assert system_step not in done.stdout
    assert list(tmp_path.iterdir()) == []


@dataclass
class FakePc:
    """A copy of install.sh with a stand-in venv (its python only logs) and its own HOME."""

    repo: Path
    home: Path
    log: Path

    def run(self, *args: str, python: str = sys.executable) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "HOME": str(self.home),
            "PLEND_SYSROOT": str(self.repo.parent / "sysroot"),  # empty: not a Pi
            "PYTHON": python,
            "LOG": str(self.log),
            "PATH": "/usr/local/bin:/usr/bin:/bin",
        }
        env.pop("SUDO_USER", None)
        return subprocess.run(
            ["bash", "install.sh", *args], cwd=self.repo, env=env, capture_output=True, text=True
        )


@pytest.fixture
def fake_pc(tmp_path: Path) -> FakePc:
    repo, home = tmp_path / "repo", tmp_path / "home"
    (repo / ".venv" / "bin").mkdir(parents=True)
    shutil.copy(ROOT / "install.sh", repo)
    for name, body in (("python", ""), ("plend", 'echo "plend 0.1.0"'), ("plenctl", "")):
        exe = repo / ".venv" / "bin" / name
        exe.write_text(f'#!/bin/sh\necho "{name} $*" >>"$LOG"\n{body}\n')
        exe.chmod(0o755)
    home.mkdir()
    return FakePc(repo, home, tmp_path / "calls")


def test_install_links_plend_and_plenctl_into_the_users_bin(fake_pc: FakePc) -> None:
    done = fake_pc.run()
    assert done.returncode == 0, done.stderr
    bin_dir = fake_pc.home / ".local" / "bin"
    for cmd in ("plend", "plenctl"):
        assert os.readlink(bin_dir / cmd) == str(fake_pc.repo / ".venv" / "bin" / cmd)
    assert f"linked plend and plenctl into {bin_dir}" in done.stdout
    # A fresh login adds ~/.local/bin to PATH; until then the script says how.
    assert f'export PATH="{bin_dir}:$PATH"' in done.stdout
    assert "try: .venv/bin/plend run" in done.stdout
    again = fake_pc.run()
    assert f"plend and plenctl already linked in {bin_dir}" in again.stdout


def test_install_leaves_someone_elses_plenctl_alone(fake_pc: FakePc) -> None:
    bin_dir = fake_pc.home / ".local" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "plenctl").write_text("#!/bin/sh\necho mine\n")
    old = fake_pc.home / "old-checkout" / ".venv" / "bin" / "plend"
    (bin_dir / "plend").symlink_to(old)  # an earlier clone of plend: replaced
    done = fake_pc.run()
    assert done.returncode == 0, done.stderr
    assert (bin_dir / "plenctl").read_text() == "#!/bin/sh\necho mine\n"
    assert f"{bin_dir / 'plenctl'} exists and is not a link; leaving it" in done.stderr
    assert os.readlink(bin_dir / "plend") == str(fake_pc.repo / ".venv" / "bin" / "plend")


def test_dry_run_shows_the_links_and_makes_none(fake_pc: FakePc) -> None:
    done = fake_pc.run("--dry-run")
    bin_dir = fake_pc.home / ".local" / "bin"
    assert f"would run: ln -s {fake_pc.repo}/.venv/bin/plenctl {bin_dir}/plenctl" in done.stdout
    assert not bin_dir.exists()


def test_on_32_bit_arm_onnxruntime_is_left_out(fake_pc: FakePc, tmp_path: Path) -> None:
    arm32 = tmp_path / "python3-armhf"
    # Answers the machine question as a 32-bit Raspberry Pi OS Python does; all else succeeds.
    arm32.write_text('#!/bin/sh\ncase "$*" in *struct*) echo "armv7l 32" ;; esac\n')
    arm32.chmod(0o755)
    done = fake_pc.run("--dry-run", python=str(arm32))
    assert done.returncode == 0, done.stderr
    assert "pip install --quiet -e .[plot,sim]" in done.stdout
    assert "onnxruntime has no wheels here; policies run on plend's numpy evaluator" in done.stderr
