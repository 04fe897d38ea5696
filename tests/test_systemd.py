"""plend.service, plend.sysusers and the Raspberry Pi path of install.sh.

The unit is checked with systemd's own tools where they are installed (`systemd-analyze
verify` parses it and checks that the programs it runs exist; it does not check that
user plend exists, which the sysusers tests cover). install.sh's Pi path runs against a
fake system: a copy of the repository with a stub venv, stub system commands on PATH, and
PLEND_SYSROOT pointing at a scratch directory that stands for /.
"""

from __future__ import annotations

import inspect
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from plend.core.config import DEFAULT_CONFIG_PATH, LoopConfig, PathsConfig, SocketConfig
from plend.core.locations import SYSTEM_STATE_DIR
from plend.pwm_off import all_off

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "plend.service"
SYSUSERS = ROOT / "systemd" / "plend.sysusers"
PACKAGES = "python3-venv python3-dev i2c-tools libsystemd-dev pkg-config gcc"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed")


# --- the unit file ----------------------------------------------------------------------


def unit_entries(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment, in order; repeated keys stay repeated."""
    entries, section = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.append((section, key.strip(), value.strip()))
    return entries


ENTRIES = unit_entries(UNIT.read_text())


def values(key: str, section: str = "Service") -> list[str]:
    return [v for s, k, v in ENTRIES if s == section and k == key]


def value(key: str, section: str = "Service") -> str:
    found = values(key, section)
    assert len(found) == 1, f"{key}= appears {len(found)} times in [{section}]"
    return found[0]


def render(repo: Path) -> str:
    """The unit as install.sh installs it for a checkout at ``repo``."""
    text = UNIT.read_text()
    return text.replace("@VENV@", f"{repo}/.venv").replace("@REPO@", str(repo))


def make_repo(repo: Path) -> None:
    """A checkout with an executable stub venv, as the unit's ExecStart= needs."""
    (repo / ".venv" / "bin").mkdir(parents=True)
    for name in ("plend", "python"):
        exe = repo / ".venv" / "bin" / name
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(0o755)
    (repo / "README.md").write_text("plend\n")


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True)


@needs_analyze
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    make_repo(tmp_path / "repo")
    unit = tmp_path / "units" / "plend.service"
    unit.parent.mkdir()
    unit.write_text(render(tmp_path / "repo"))
    done = verify(unit)
    # verify exits 0 even for unknown keys, so its complaints about the unit count too.
    complaints = [line for line in done.stderr.splitlines() if "plend.service" in line]
    assert done.returncode == 0 and complaints == [], done.stderr


@needs_analyze
def test_verify_would_catch_a_misspelt_key_or_a_missing_program(tmp_path: Path) -> None:
    make_repo(tmp_path / "repo")
    unit = tmp_path / "units" / "plend.service"
    unit.parent.mkdir()
    unit.write_text(render(tmp_path / "repo").replace("DeviceAllow=", "DeviceAlow="))
    assert "Unknown key" in verify(unit).stderr
    unit.write_text(render(tmp_path / "nowhere"))
    done = verify(unit)
    assert done.returncode != 0 and "is not executable" in done.stderr


@needs_analyze
def test_unit_sandbox_exposure_stays_low(tmp_path: Path) -> None:
    make_repo(tmp_path / "repo")
    unit = tmp_path / "plend.service"
    unit.write_text(render(tmp_path / "repo"))
    assert ANALYZE is not None
    done = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--no-pager", str(unit)], capture_output=True, text=True
    )
    if done.returncode != 0 and "offline" in done.stderr:
        pytest.skip("systemd-analyze security --offline needs systemd 250 or newer")
    found = re.search(r"Overall exposure level for plend\.service: ([0-9.]+)", done.stdout)
    assert found, done.stdout + done.stderr
    print(f"systemd-analyze security: exposure {found.group(1)} (0 = locked down, 10 = unprotected)")
    assert float(found.group(1)) <= 2.5


def test_unit_is_a_notify_service_with_a_watchdog_that_restarts() -> None:
    assert value("Type") == "notify"
    assert value("NotifyAccess") == "main"
    assert value("WatchdogSec") == "2"
    assert value("Restart") == "on-failure"
    assert value("RestartSec") == "2"
    assert value("KillSignal") == "SIGTERM"
    assert value("TimeoutStopSec") == "10"
    assert value("WantedBy", "Install") == "multi-user.target"


def test_unit_stops_restarting_a_controller_that_keeps_crashing() -> None:
    assert value("StartLimitBurst", "Unit") == "5"
    assert value("StartLimitIntervalSec", "Unit") == "60"


def test_unit_runs_the_daemon_from_the_venv_and_safe_off_after_every_stop() -> None:
    assert value("ExecStart") == "@VENV@/bin/plend run --hal hardware"
    # "-": a failed relax (board unpowered) is logged, but does not mark the unit failed.
    assert value("ExecStopPost") == "-@VENV@/bin/python -m plend.pwm_off"
    # With no arguments safe-off addresses the very bus the unit lets the daemon open.
    assert inspect.signature(all_off).parameters["bus"].default == "/dev/i2c-1"
    assert inspect.signature(all_off).parameters["address"].default == 0x40


def test_the_daemon_has_time_to_relax_before_sigkill() -> None:
    from plend.daemon.daemon import SAFE_STOP_S

    assert int(value("TimeoutStopSec")) >= SAFE_STOP_S + 2


def test_the_daemon_accepts_the_unit_command_line() -> None:
    from plend.hal import backend_names
    from plend.main import _parser

    if "hardware" not in backend_names():
        pytest.skip("no 'hardware' HAL backend registered yet: the unit's ExecStart would be refused")
    args = _parser().parse_args(value("ExecStart").split()[1:])
    assert args.command == "run" and args.hal == "hardware"


def test_unit_runs_as_plend_and_reaches_only_the_i2c_bus() -> None:
    assert value("User") == "plend"
    assert value("Group") == "plend"
    assert value("SupplementaryGroups") == "i2c"
    assert value("DevicePolicy") == "closed"
    assert values("DeviceAllow") == ["/dev/i2c-1 rw"]
    # Each of these would hide /dev/i2c-1 or quietly allow more devices (rtc).
    assert values("PrivateDevices") == []
    assert values("ProtectClock") == []


def test_unit_allows_sched_fifo_and_mlock_without_capabilities() -> None:
    assert int(value("LimitRTPRIO")) >= LoopConfig().rt_priority
    assert value("LimitMEMLOCK") == "infinity"
    assert value("CapabilityBoundingSet") == ""
    assert value("AmbientCapabilities") == ""
    assert values("RestrictRealtime") in ([], ["no"])  # "yes" refuses SCHED_FIFO
    assert value("SystemCallFilter") == "@system-service"  # holds @resources and @memlock


def test_unit_lets_the_socket_hold_its_connections() -> None:
    # Every client past the cap may still ask estop once, so twice the cap, plus the daemon's own.
    assert int(value("LimitNOFILE")) >= 2 * SocketConfig().max_connections + 64


def test_unit_directories_are_where_the_config_expects_them(monkeypatch: pytest.MonkeyPatch) -> None:
    socket = Path(SocketConfig().path)
    assert socket.parent == Path("/run") / value("RuntimeDirectory")
    assert value("RuntimeDirectoryMode") == "0750"
    assert SocketConfig().group == value("Group")
    # What systemd sets for StateDirectory=, as a non-root service user sees it.
    monkeypatch.setenv("STATE_DIRECTORY", f"/var/lib/{value('StateDirectory')}")
    monkeypatch.setattr(os, "geteuid", lambda: 999)
    assert PathsConfig().state_path() == Path(SYSTEM_STATE_DIR) == Path("/var/lib") / value("StateDirectory")
    assert PathsConfig().recordings_path().is_relative_to(PathsConfig().state_path())
    assert DEFAULT_CONFIG_PATH.parent == Path("/etc") / value("ConfigurationDirectory")


def test_unit_environment_and_logging() -> None:
    environment = " ".join(values("Environment")).split()
    assert "OPENBLAS_NUM_THREADS=1" in environment
    assert "PYTHONUNBUFFERED=1" in environment
    assert value("StandardOutput") == "journal"
    assert value("StandardError") == "journal"


def test_unit_sandbox() -> None:
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "tmpfs",
        "BindReadOnlyPaths": "@REPO@",
        "PrivateTmp": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_UNIX",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "SystemCallArchitectures": "native",
        "MemoryDenyWriteExecute": "no",
    }
    assert {key: value(key) for key in expected} == expected


def test_unit_placeholders_are_the_ones_install_sh_fills() -> None:
    text = "\n".join(v for _, _, v in ENTRIES)
    assert set(re.findall(r"@[A-Z]+@", text)) == {"@VENV@", "@REPO@"}
    assert "%" not in text  # a specifier would be expanded by systemd


# --- the system user --------------------------------------------------------------------

SYSUSERS_BIN = shutil.which("systemd-sysusers")


def sysusers(root: Path) -> None:
    assert SYSUSERS_BIN is not None
    conf = root / "etc" / "sysusers.d" / "plend.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(SYSUSERS, conf)
    done = subprocess.run([SYSUSERS_BIN, f"--root={root}", "plend.conf"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def group_members(root: Path, name: str) -> tuple[str, list[str]]:
    for line in (root / "etc" / "group").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields[2], [m for m in fields[3].split(",") if m]
    raise AssertionError(f"no group {name}")


@pytest.mark.skipif(SYSUSERS_BIN is None, reason="systemd-sysusers not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="systemd-sysusers --root writes root-owned files")
def test_sysusers_adds_plend_to_the_existing_i2c_group_of_raspberry_pi_os(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000::/home/pi:/bin/bash\n"
    )
    (tmp_path / "etc" / "group").write_text("root:x:0:\npi:x:1000:\ni2c:x:998:pi\n")
    sysusers(tmp_path)
    assert group_members(tmp_path, "i2c") == ("998", ["pi", "plend"])
    assert group_members(tmp_path, "plend")[1] == []
    plend = [
        line for line in (tmp_path / "etc" / "passwd").read_text().splitlines() if line.startswith("plend:")
    ]
    assert len(plend) == 1
    assert plend[0].split(":")[5:] == ["/var/lib/plend", "/usr/sbin/nologin"]

    before = {p.name: p.read_bytes() for p in (tmp_path / "etc").iterdir() if p.is_file()}
    sysusers(tmp_path)
    assert {p.name: p.read_bytes() for p in (tmp_path / "etc").iterdir() if p.is_file()} == before


@pytest.mark.skipif(SYSUSERS_BIN is None, reason="systemd-sysusers not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="systemd-sysusers --root writes root-owned files")
def test_sysusers_creates_group_i2c_where_it_is_missing(tmp_path: Path) -> None:
    sysusers(tmp_path)
    assert group_members(tmp_path, "i2c")[1] == ["plend"]


# --- install.sh on a (fake) Raspberry Pi ------------------------------------------------

STUBS = {
    # dpkg-query -W -f=... PKG: installed when apt-get (below) has installed it
    "dpkg-query": 'for pkg; do :; done; grep -qx "$pkg" "$STATE/installed" && printf "install ok installed"',
    "apt-get": (
        '[ "$1" = install ] || exit 0; shift\nfor p; do [ "$p" = -y ] || echo "$p" >>"$STATE/installed"; done'
    ),
    # like the real one: enables I2C in config.txt
    "raspi-config": 'printf "dtparam=i2c_arm=on\\n" >>"$PLEND_SYSROOT/boot/firmware/config.txt"',
    "systemctl": (
        "for a; do case $a in --*) ;; *) cmd=$a; break ;; esac; done\n"
        'case $cmd in is-enabled) [ -e "$STATE/enabled" ] ;; enable) touch "$STATE/enabled" ;;'
        " is-active) exit 3 ;; esac"
    ),
    "systemd-sysusers": (
        'g="$PLEND_SYSROOT/etc/group"; grep -q "^i2c:" "$g" || echo "i2c:x:999:" >>"$g"\n'
        "sed -i '/^i2c:/{/[:,]plend/!s/$/,plend/;s/:,plend$/:plend/}' \"$g\""
    ),
    "id": '[ "$1" = -u ] && { echo "$FAKE_UID"; exit 0; }; PATH=/usr/bin:/bin exec id "$@"',
    "runuser": 'shift 3; exec "$@"',  # runuser -u OWNER -- CMD...
}
# What install.sh may call without changing anything.
READ_ONLY = ("dpkg-query", "systemctl is-enabled", "systemctl is-active", "id", "plend --version")
BOOKWORM_CONFIG = (
    "# For more options see config.txt(5)\ndtparam=audio=on\n\n[cm5]\ndtoverlay=dwc2,dr_mode=host\n"
)


@dataclass
class FakePi:
    repo: Path
    sysroot: Path
    bin: Path
    state: Path

    @property
    def config_txt(self) -> Path:
        return self.sysroot / "boot" / "firmware" / "config.txt"

    def run(self, *args: str, uid: int = 0, sudo_user: str = "") -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "PLEND_SYSROOT": str(self.sysroot),
            "STATE": str(self.state),
            "LOG": str(self.state / "calls"),
            "FAKE_UID": str(uid),
            "PYTHON": sys.executable,
            "HOME": str(self.state / "home"),
        }
        env["SUDO_USER"] = sudo_user
        return subprocess.run(
            ["bash", "install.sh", *args], cwd=self.repo, env=env, capture_output=True, text=True
        )

    def calls(self) -> list[str]:
        log = self.state / "calls"
        return log.read_text().splitlines() if log.exists() else []

    def forget_calls(self) -> None:
        (self.state / "calls").unlink(missing_ok=True)

    def install_packages(self) -> None:
        (self.state / "installed").write_text(PACKAGES.replace(" ", "\n") + "\n")

    def changing_calls(self) -> list[str]:
        """The calls that could change the system (--root=... left out)."""
        calls = [" ".join(w for w in c.split() if not w.startswith("--root=")) for c in self.calls()]
        # runuser only hands the command, which logs itself, to the checkout's owner.
        return [c for c in calls if not c.startswith((*READ_ONLY, "runuser "))]


def write_exe(path: Path, body: str) -> None:
    path.write_text(f'#!/bin/sh\necho "{path.name} $*" >>"$LOG"\n{body}\n')
    path.chmod(0o755)


@pytest.fixture
def fake_pi(tmp_path: Path) -> FakePi:
    repo, sysroot, bin_, state = (tmp_path / name for name in ("repo", "sysroot", "bin", "state"))
    (repo / "systemd").mkdir(parents=True)
    shutil.copy(ROOT / "install.sh", repo)
    for path in (UNIT, SYSUSERS):
        shutil.copy(path, repo / "systemd")
    (repo / ".venv" / "bin").mkdir(parents=True)
    write_exe(repo / ".venv" / "bin" / "python", "")
    write_exe(repo / ".venv" / "bin" / "plend", 'echo "plend 0.1.0"')
    (sysroot / "boot" / "firmware").mkdir(parents=True)
    (sysroot / "boot" / "firmware" / "config.txt").write_text(BOOKWORM_CONFIG)
    (sysroot / "etc").mkdir()
    (sysroot / "etc" / "group").write_text("root:x:0:\ni2c:x:998:pi\n")
    (sysroot / "proc" / "device-tree").mkdir(parents=True)
    (sysroot / "proc" / "device-tree" / "model").write_text("Raspberry Pi Zero 2 W Rev 1.0\0")
    bin_.mkdir()
    for name, body in STUBS.items():
        write_exe(bin_ / name, body)
    state.mkdir()
    (state / "installed").write_text("")
    return FakePi(repo, sysroot, bin_, state)


def snapshot(top: Path) -> dict[str, object]:
    found: dict[str, object] = {}
    for path in sorted(top.rglob("*")):
        key = str(path.relative_to(top))
        if path.is_symlink():
            found[key] = ("link", os.readlink(path))
        elif path.is_dir():
            found[key] = "dir"
        else:
            found[key] = (path.read_bytes(), stat.S_IMODE(path.stat().st_mode))
    return found


def test_pi_dry_run_prints_every_system_step_and_changes_nothing(fake_pi: FakePi) -> None:
    before = snapshot(fake_pi.sysroot), snapshot(fake_pi.repo)
    done = fake_pi.run("--pi", "--dry-run", uid=1000)  # no root needed to look
    assert done.returncode == 0, done.stderr
    out, root = done.stdout, fake_pi.sysroot
    for step in [
        "would run: apt-get update",
        f"would run: apt-get install -y {PACKAGES}",
        "would run: raspi-config nonint do_i2c 0",
        f"would append to {fake_pi.config_txt}: dtparam=i2c_arm_baudrate=400000",
        "would run: .venv/bin/python -m pip install --quiet -e .[onnxruntime,systemd,track]",
        f"would run: install -D -m 0644 systemd/plend.sysusers {root}/etc/sysusers.d/plend.conf",
        f"would run: systemd-sysusers --root={root} plend.conf",
        f"{root}/etc/systemd/system/plend.service\n",
        "would run: systemctl daemon-reload",
        f"would run: systemctl --root={root} enable plend.service",
        "==> dry run: nothing was changed",
    ]:
        assert step in out
    assert fake_pi.changing_calls() == []
    assert (snapshot(fake_pi.sysroot), snapshot(fake_pi.repo)) == before


def test_pi_dry_run_on_this_machine_touches_no_system_file() -> None:
    unit, conf = Path("/etc/systemd/system/plend.service"), Path("/etc/sysusers.d/plend.conf")
    if unit.exists() or conf.exists():
        pytest.skip("plend is installed on this machine")
    env = {key: val for key, val in os.environ.items() if key != "PLEND_SYSROOT"}
    done = subprocess.run(
        ["bash", "install.sh", "--pi", "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "would run: systemctl enable plend.service" in done.stdout
    assert "would run: systemd-sysusers plend.conf" in done.stdout
    assert not unit.exists() and not conf.exists()


def test_pi_install_as_root_then_again_changes_nothing(fake_pi: FakePi) -> None:
    done = fake_pi.run("--pi")
    assert done.returncode == 0, done.stderr
    root = fake_pi.sysroot
    assert (root / "etc/systemd/system/plend.service").read_text() == render(fake_pi.repo)
    assert (root / "etc/sysusers.d/plend.conf").read_bytes() == SYSUSERS.read_bytes()
    assert group_members(root, "i2c") == ("998", ["pi", "plend"])
    assert (fake_pi.state / "installed").read_text().split() == PACKAGES.split()
    config = fake_pi.config_txt.read_text()
    assert config.startswith(BOOKWORM_CONFIG)
    assert config.endswith("[all]\ndtparam=i2c_arm_baudrate=400000\n")  # not inside [cm5]
    assert "dtparam=i2c_arm=on" in config
    assert Path(f"{fake_pi.config_txt}.plend-backup").read_text() == BOOKWORM_CONFIG
    assert "systemctl --root" in " ".join(fake_pi.calls()) and (fake_pi.state / "enabled").exists()
    assert "reboot to apply (I2C enabled I2C clock)" in done.stdout
    for cmd in ("plend", "plenctl"):  # on every user's PATH
        assert os.readlink(root / "usr/local/bin" / cmd) == str(fake_pi.repo / ".venv/bin" / cmd)
    assert f"linked plend and plenctl into {root}/usr/local/bin" in done.stdout

    before = snapshot(root)
    fake_pi.forget_calls()
    again = fake_pi.run("--pi")
    assert again.returncode == 0, again.stderr
    assert "the system was already set up; nothing changed" in again.stdout
    assert "reboot" not in again.stdout
    assert snapshot(root) == before
    # Only the venv step runs again (pip finds everything installed).
    assert fake_pi.changing_calls() == ["python -m pip install --quiet -e .[onnxruntime,systemd,track]"]


def test_pi_install_with_dev_adds_the_tools_but_not_the_simulator(fake_pi: FakePi) -> None:
    done = fake_pi.run("--pi", "--dev", "--dry-run")
    assert "pip install --quiet -e .[lint,onnxruntime,systemd,test,track]" in done.stdout


def test_under_sudo_the_venv_is_made_by_the_checkouts_owner(fake_pi: FakePi) -> None:
    if os.geteuid() == 0:  # as root, give the checkout to someone else, as a user's clone is
        for path in [fake_pi.repo, *fake_pi.repo.rglob("*")]:
            os.lchown(path, 65534, 65534)
    owner = pwd.getpwuid(fake_pi.repo.stat().st_uid).pw_name
    done = fake_pi.run("--pi", sudo_user=owner)
    assert done.returncode == 0, done.stderr
    pip = ".venv/bin/python -m pip install --quiet -e .[onnxruntime,systemd,track]"
    assert f"runuser -u {owner} -- {pip}" in fake_pi.calls()
    assert f"sudo usermod -aG plend {owner}" in done.stdout


def test_pi_install_without_root_makes_the_venv_and_says_to_use_sudo(fake_pi: FakePi) -> None:
    fake_pi.install_packages()
    before = snapshot(fake_pi.sysroot)
    done = fake_pi.run(uid=1000)  # the Pi is recognised from its device-tree model
    assert done.returncode == 0, done.stderr
    assert "run: sudo ./install.sh" in done.stdout
    assert fake_pi.changing_calls() == ["python -m pip install --quiet -e .[onnxruntime,systemd,track]"]
    assert snapshot(fake_pi.sysroot) == before


def test_pi_install_without_root_or_packages_stops_before_the_venv(fake_pi: FakePi) -> None:
    done = fake_pi.run("--pi", uid=1000)
    assert done.returncode == 1
    assert "system packages missing: python3-venv" in done.stderr and "sudo ./install.sh" in done.stderr
    assert fake_pi.changing_calls() == []


def test_pi_install_keeps_an_i2c_clock_someone_chose(fake_pi: FakePi) -> None:
    chosen = BOOKWORM_CONFIG.replace(
        "dtparam=audio=on", "dtparam=audio=on\ndtparam=i2c_arm=on,i2c_arm_baudrate=100000"
    )
    fake_pi.config_txt.write_text(chosen)
    done = fake_pi.run("--pi")
    assert done.returncode == 0, done.stderr
    assert "sets the I2C clock to 100000 Hz; leaving it" in done.stderr
    assert fake_pi.config_txt.read_text() == chosen
    assert not any(c.startswith("raspi-config") for c in fake_pi.calls())
    assert "reboot" not in done.stdout


def test_pi_install_refuses_a_checkout_path_the_unit_cannot_name(fake_pi: FakePi, tmp_path: Path) -> None:
    spaced = tmp_path / "my robot"
    fake_pi.repo.rename(spaced)
    fake_pi.repo = spaced
    done = fake_pi.run("--pi")
    assert done.returncode == 1
    assert "clone plend to a plain path" in done.stderr
    assert fake_pi.changing_calls() == []


@pytest.mark.skipif(
    os.geteuid() != 0 or SYSUSERS_BIN is None or shutil.which("systemctl") is None,
    reason="needs root, systemd-sysusers and systemctl (run offline with --root)",
)
def test_pi_install_with_the_real_sysusers_and_systemctl(fake_pi: FakePi) -> None:
    for name in ("systemd-sysusers", "systemctl"):
        (fake_pi.bin / name).unlink()
    done = fake_pi.run("--pi")
    assert done.returncode == 0, done.stderr
    root = fake_pi.sysroot
    assert group_members(root, "i2c") == ("998", ["pi", "plend"])
    assert (root / "etc/systemd/system/multi-user.target.wants/plend.service").is_symlink()
    again = fake_pi.run("--pi")
    assert "the system was already set up; nothing changed" in again.stdout, again.stdout + again.stderr
