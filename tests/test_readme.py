"""The README's commands, run as written by a new user on a PC: not root, a fresh HOME.

Every command in the README's ``sh`` and ``console`` blocks is either run here or listed
in NOT_RUN with the reason; a command added to the README and to neither fails the first
test. The user is ``nobody`` when the tests run as root (as CI does), otherwise the user
running them. The user gets a copy of the checkout and a virtual environment of their own
that sees the packages the test environment has installed: ``install.sh`` runs for real
in it, except that its ``pip install`` step is a stand-in (the real one is what
``.ci/run`` itself runs first). Two substitutions: the socket path ``/tmp/plend.sock``
becomes one in the user's own temporary folder, so that parallel runs cannot meet, and
the daemon is stopped with SIGTERM rather than the shell's ``kill %1``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
NOBODY = 65534

# The README commands each scenario runs, in order.
QUICK_START = [
    "./install.sh && .venv/bin/plend run --hal sim --fast --gait sine --speed 0.5 --duration 20 --summary json",
    ".venv/bin/plend run --hal sim --fast --gait sine --speed 0.5 --duration 20 --summary json",
    ".venv/bin/plend run --fast --friction 0.5 --mass-scale 1.2 --actuation-delay 1 --summary json",
    ".venv/bin/plend run --fast --mass-jitter 0.2 --seed 7 --summary json",
    ".venv/bin/plend run --hal hardware --bus emulated --fast --gait sine --speed 0.5 --duration 20 --summary json",
    "plend probe --bus emulated",
    "plend run --hal sim --fast --policy policies/walk.onnx --duration 20 --summary json",
    "plend run --fast --speed 0.5 --turn -1 --summary json",
    ".venv/bin/plend run --friction 9",
]
DAEMON = [
    "plend run --socket /tmp/plend.sock",
    "export PLEND_SOCKET=/tmp/plend.sock",
    "plenctl gait sine --speed 0.5",
    "plenctl gait sine --speed 0.3",
    "plenctl status",
    "plenctl gait sine --speed 2",
    "plenctl stop",
    "plenctl estop",
    "plenctl stand",
    "plenctl reset",
    "plenctl policy list",
    "plenctl policy load walk",
    "plenctl policy start",
    "plenctl policy start --speed 0.8 --turn 0.2",
    "plenctl policy command --turn -0.3",
    "plenctl policy command --speed 1.5",
    "plenctl calibration show",
]
REHEARSAL = [
    "plend run --config rehearsal.toml --socket /tmp/plend.sock &",
    "plenctl --socket /tmp/plend.sock calibrate --operator sim",
    "plenctl --socket /tmp/plend.sock calibration show",
    "kill %1",
]
TOOLS = [
    ".venv/bin/plend world 3 --factors sole_height,push",
    "plend track --print-marker marker.png --print-floor-marker floor.png --print-board board.png",
    ".venv/bin/plend --config /tmp run",
]
PICTURES = [
    "plend run --fast --duration 20 --speed 0.5 --video walk.mp4",
    "plend run --fast --duration 6 --speed 1.0 --video docs/walk.gif --video-size 240x180 --video-fps 10",
    "plend run --fast --duration 20 --record walk.mcap",
    "plend plot walk.mcap",
    "plend plot walk.mcap -o walk-arms.svg --joints arms",
    "plend export walk.mcap -o walk.csv",
]
NOT_RUN = {
    "plenctl gait sine --speed 0.5 --turn 0.3 --side 0.2": "a running daemon (tests/test_daemon.py walks turning "
    "and side-stepping)",
    "plenctl drive": "asks a person at the keyboard (tests/test_drive_e2e.py types into it in tmux)",
    "plenctl drive --gamepad": "a gamepad (tests/test_drive_e2e.py drives with a fake one)",
    "plenctl replay walk.mcap": "a running daemon that may read the file (tests/test_replay_recording.py)",
    "plenctl replay walk.mcap --measured": "as above",
    "plend live --socket /tmp/plend.sock": "serves until stopped, beside a running daemon (tests/test_live.py)",
    ".venv/bin/plend run --fast --urdf my_plen.urdf": "the reader's own URDF (tests/test_urdf_model.py runs variants)",
    ".venv/bin/plend evaluate --urdf my_plen.urdf --factors servo_backlash,servo_delay": "the reader's own URDF",
    ".venv/bin/plend evaluate --worlds 50 --seconds 20 --speed 0.5 --json report.json": "minutes of simulation (tests/benchmarks/robustness.py; tests/test_evaluate.py runs a small one)",
    ".venv/bin/plend evaluate --worlds 20 --policy policies/walk.onnx": "minutes of simulation, as above",
    ".venv/bin/plend evaluate --as-configured --set sim.sole_height_right_mm=5.5 --set sim.sole_edge_radius_mm=4": "minutes of simulation, as above",
    ".venv/bin/plend evaluate --as-configured --config rounded-feet.toml --speed 1.0": "the reader's own config file; minutes of simulation",
    "plend track --calibrate": "a real camera and a printed board (tests/test_track.py calibrates the emulated one)",
    "plend track --set-floor": "a real camera and a floor marker (tests/test_track.py, emulated)",
    "plend track --socket /run/plend/plend.sock": "a real camera beside a running robot",
    "plenctl status --json | jq .pose": "a running tracker; jq may not be installed",
    "plend track --duration 20 --summary json --record walk-poses.mcap": "a real camera",
    "plend track --camera emulated --duration 20 --summary json": "20 s of simulated walking filmed (tests/test_track.py films a shorter one)",
    "plend track --camera emulated --socket /tmp/plend.sock": "a running daemon (tests/test_camera_policy.py)",
    "plend track --camera emulated --calibrate --yes": "tests/test_track.py calibrates the emulated camera",
    "./install.sh --dev && .venv/bin/python -m pytest": "it is .ci/run, which runs this suite",
    "plenctl calibrate": "asks a person at the keyboard (tests/test_calibration_terminal.py types into it)",
    "plenctl calibrate --joint r_knee_r_shin": "asks a person at the keyboard, as above",
    "python -m policies.train --steps 2000000 --seed 3 --out runs/s3b/walk.onnx --no-progress": "how the "
    "shipped policy was trained: an hour or more (tests/test_training.py trains briefly)",
    "python -m policies.train --out runs/mine/walk.onnx": "hours of training (tests/test_training.py trains "
    "briefly)",
    "python -m policies.evaluate runs/mine/walk.onnx": "needs that training's file; minutes of walks "
    "(tests/test_training.py evaluates a small one)",
    ".venv/bin/python tests/benchmarks/policy_targets.py runs/mine/walk.onnx": "a benchmark of minutes, "
    "as above",
    "git clone <this repository> plend && cd plend": "a placeholder for the reader's clone",
    "sudo ./install.sh": "the Pi's system set-up (tests/test_systemd.py runs it against a fake Pi)",
    "sudo systemctl start plend": "a Pi with the service installed",
    "sudo usermod -aG plend $USER": "a Pi with the plend group",
    "journalctl -u plend -f": "a Pi with the service's journal",
    "plenctl calibrate --servos": "a calibrated robot on its stand (tests/test_servo_wizard.py measures "
    "emulated servos)",
    "plenctl calibrate --servos --joint r_knee_r_shin": "as above, one joint",
    "plend run --servo-model /var/lib/plend/calibration.json": "a robot's measured servos; "
    "tests/test_servo_store.py runs the simulation with a calibration file's servos",
    ".venv/bin/plend --config rehearsal.toml run --socket /tmp/plend.sock &": "the servo rehearsal "
    "takes minutes; tests/benchmarks/servo_identification.py runs it, tests/test_servo_wizard.py a few joints",
    ".venv/bin/plenctl --socket /tmp/plend.sock calibrate --operator sim": "as above",
    ".venv/bin/plenctl --socket /tmp/plend.sock calibrate --servos --operator sim": "as above",
}


def readme_commands() -> list[str]:
    """Each command of the README's sh blocks, and each ``$ `` line of its console blocks."""
    found = []
    for lang, body in re.findall(r"```(sh|console)\n(.*?)```", README.read_text(), re.S):
        for line in body.splitlines():
            if lang == "console":
                if line.startswith("$ "):
                    found.append(line[2:].strip())
            elif command := re.sub(r"\s+#.*$", "", line).strip():
                found.append(command)
    return found


def test_every_readme_command_is_run_here_or_says_why_not() -> None:
    covered = set(QUICK_START) | set(DAEMON) | set(REHEARSAL) | set(TOOLS) | set(PICTURES) | set(NOT_RUN)
    missing = [c for c in readme_commands() if c not in covered]
    assert not missing, f"README commands that tests/test_readme.py neither runs nor explains: {missing}"
    stale = [c for c in covered if c not in readme_commands()]
    assert not stale, f"tests/test_readme.py lists commands the README no longer has: {stale}"


@dataclass
class User:
    """An unprivileged user with a fresh HOME and a copy of the checkout."""

    home: Path
    checkout: Path
    socket: Path
    uid: int | None  # None: the current user, who is not root

    def run(self, script: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        script = script.replace("/tmp/plend.sock", str(self.socket))
        env = {
            "HOME": str(self.home),
            "PATH": f"{self.home}/.local/bin:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "OPENBLAS_NUM_THREADS": "1",
        }
        for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # this machine's BLAS settings
            if key in os.environ:
                env[key] = os.environ[key]
        prefix = [] if self.uid is None else [
            "setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups",
        ]  # fmt: skip
        return subprocess.run(
            [*prefix, "bash", "-c", f"set -u\n{script}"], cwd=self.checkout, env=env,
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip


def _everyone_may(path: Path, bits: int) -> bool:
    """Whether any user may use ``path`` (``bits``: 0o4 read, 0o1 run) and reach it."""
    return bool(os.stat(path).st_mode & bits) and all(os.stat(p).st_mode & 0o001 for p in path.parents)


def _interpreter() -> str | None:
    """A Python of this one's version that any user may run (a venv's or pyenv's may
    live in root's home)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (
        getattr(sys, "_base_executable", sys.executable),
        f"/usr/bin/python{version}",
        f"/usr/local/bin/python{version}",
    ):
        path = Path(candidate).resolve()
        if path.is_file() and _everyone_may(path, 0o001):
            return str(path)
    return None


@pytest.fixture(scope="module")
def user() -> Iterator[User]:
    pytest.importorskip("pybullet")
    root = os.geteuid() == 0
    if root and shutil.which("setpriv") is None:
        pytest.skip("needs setpriv to run as an unprivileged user")
    python = _interpreter()
    packages = Path(sysconfig.get_paths()["purelib"])
    if python is None or (root and not _everyone_may(packages, 0o004)):
        pytest.skip("no Python and packages that an unprivileged user can reach")
    base = Path(tempfile.mkdtemp(prefix="plend-readme-", dir="/tmp"))
    base.chmod(0o755)
    checkout, home = base / "plend", base / "home"
    ignore = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*_cache", ".hypothesis", "*.egg-info")
    shutil.copytree(ROOT, checkout, ignore=ignore)
    home.mkdir()
    _user_venv(python, checkout / ".venv", packages)
    if root:
        for path in [base, *base.rglob("*")]:
            os.lchown(path, NOBODY, NOBODY)
    yield User(home, checkout, base / "plend.sock", NOBODY if root else None)
    shutil.rmtree(base, ignore_errors=True)


def _user_venv(python: str, venv: Path, packages: Path) -> None:
    """The user's own venv: it sees their checkout and the packages installed for the tests;
    its pip is a stand-in that installs nothing."""
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3.*/site-packages"))
    (site / "plend-readme.pth").write_text(f"{venv.parent}\n{packages}\n")
    (site / "pip").mkdir()
    (site / "pip" / "__init__.py").write_text("")
    (site / "pip" / "__main__.py").write_text(
        'print("pip: a stand-in in the README test; nothing installed")\n'
    )
    for name, module in (("plend", "plend.main"), ("plenctl", "plend.plenctl")):
        script = venv / "bin" / name
        script.write_text(f"#!{venv}/bin/python\nimport sys\nfrom {module} import main\nsys.exit(main())\n")
        script.chmod(0o755)


@pytest.mark.slow
def test_quick_start_and_batch_runs(user: User) -> None:
    install = user.run("./install.sh")
    assert install.returncode == 0, install.stderr
    assert f"linked plend and plenctl into {user.home}/.local/bin" in install.stdout
    for command in QUICK_START[1:-1]:
        done = user.run(command)
        assert done.returncode == 0, f"{command}: {done.stderr[-2000:]}"
        if "--summary json" in command:
            assert '"fell": false' in done.stdout, command
        else:
            assert "answers" in done.stdout
    bad = user.run(QUICK_START[-1])
    assert bad.returncode == 2 and "plend: error: sim.friction = 9.0 is out of range" in bad.stderr


def _session(commands: list[str]) -> str:
    """A bash script that runs ``commands`` in order, each echoed with its exit code; the
    first one starts the daemon in the background."""
    lines = [f"{commands[0].rstrip(' &')} 2>daemon.log &", "daemon=$!",
             'for _ in $(seq 300); do [ -S /tmp/plend.sock ] && break; sleep 0.1; done']  # fmt: skip
    for command in commands[1:]:
        if command == "kill %1":
            continue
        lines.append(f"echo '$ {command}'; {command}; echo \"rc=$?\"")
    lines += ["kill -TERM $daemon", "wait $daemon", 'echo "daemon rc=$?"']
    return "\n".join(lines)


@pytest.mark.slow
def test_the_daemon_and_plenctl_as_the_readme_shows(user: User) -> None:
    done = user.run(_session(DAEMON))
    out = done.stdout
    said = done.stderr + (user.checkout / "daemon.log").read_text()[-4000:]  # what a failure shows
    assert "walking on the sine gait at speed 0.5 (mode sine)" in out
    assert "speed 0.3 from the next step" in out
    assert "mode      sine" in out
    assert "speed 2.0 is out of range" in done.stderr
    assert "stopping: sine ends at its next safe point" in out
    assert "every move is refused until 'plenctl reset'" in out
    assert "cannot stand: the e-stop is latched" in done.stderr
    assert "e-stop and faults cleared" in out
    assert f"walk.onnx                  41   12  residual    50  {user.checkout}/policies/walk.onnx" in out
    assert f"loaded {user.checkout}/policies/walk.onnx" in out, said
    assert "walking on the loaded policy (mode policy)" in out, said
    assert "policy command speed 0.8, turn -0.3, side +0 from the next step" in out, said
    assert "speed 1.5 is outside what this policy was trained for: [0, 1]" in done.stderr
    calibration = f"{user.home}/.local/state/plend/calibration.json"
    assert f"no calibration at {calibration}; calibrate the robot first" in done.stderr
    expected = ["0", "0", "0", "0", "1", "0", "0", "1", "0", "0", "0", "0", "0", "0", "1", "1"]
    assert re.findall(r"^rc=(\d+)$", out, re.M) == expected, out + said
    assert "daemon rc=0" in out
    assert "socket group" not in (user.checkout / "daemon.log").read_text()


@pytest.mark.slow
def test_the_calibration_rehearsal_needs_no_root_and_keeps_its_own_file(user: User) -> None:
    toml = re.search(r"save this as `rehearsal.toml`:\n\n```toml\n(.*?)```", README.read_text(), re.S)
    assert toml is not None, "the README's rehearsal.toml block"
    (user.checkout / "rehearsal.toml").write_text(toml.group(1))
    if user.uid is not None:
        os.lchown(user.checkout / "rehearsal.toml", user.uid, user.uid)
    done = user.run(_session(REHEARSAL), timeout=600)
    saved = user.home / ".local/state/plend/emulated/seed-11/calibration.json"
    assert f"Saved {saved}." in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]
    assert f"{saved}\ncalibration v3 of emulated robot (seed 11)" in done.stdout
    assert re.findall(r"^rc=(\d+)$", done.stdout, re.M) == ["0", "0"]
    # The README's emulated robot still runs afterwards: the rehearsal did not block it.
    after = user.run(QUICK_START[4])
    assert after.returncode == 0 and '"fell": false' in after.stdout, after.stderr[-2000:]


@pytest.mark.slow
def test_the_world_printer_and_the_marker_printer_as_the_readme_shows(user: User) -> None:
    assert user.run("./install.sh").returncode == 0  # puts plend on the user's PATH
    world = user.run(TOOLS[0])
    assert world.returncode == 0, world.stderr
    assert "[sim]" in world.stdout and "sole_height" in world.stdout
    printed = user.run(TOOLS[1])
    assert printed.returncode == 0, printed.stderr
    for name in ("marker.png", "floor.png", "board.png"):
        assert (user.checkout / name).stat().st_size > 1000, name
    bad = user.run(TOOLS[2])
    assert bad.returncode == 2 and "config file /tmp is a directory, not a regular file" in bad.stderr


@pytest.mark.slow
def test_videos_recordings_plots_and_exports_as_the_readme_shows(user: User) -> None:
    assert user.run("./install.sh").returncode == 0  # puts plend on the user's PATH
    for command in PICTURES:
        done = user.run(command)
        assert done.returncode == 0, f"{command}: {done.stderr[-2000:]}"
    for name, size in (("walk.mp4", 100_000), ("docs/walk.gif", 100_000), ("walk.mcap", 100_000),
                       ("walk.png", 50_000), ("walk-arms.svg", 50_000), ("walk.csv", 100_000)):  # fmt: skip
        assert (user.checkout / name).stat().st_size > size, name
    gif = (user.checkout / "docs/walk.gif").stat().st_size
    assert gif < 1_000_000, f"the README's GIF is {gif} bytes; keep it under 1 MB"
