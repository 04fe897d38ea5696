"""How well the wizard calibrates a robot as built: figures per joint.

For each seed, a daemon runs the emulated hardware of a robot with random horn offsets
(+-15 deg), mirrored servos and potentiometer gains (0.7-1.3), hung on its stand and
8x faster than real time; ``plenctl calibrate --operator sim`` calibrates it; then the
stand pose is commanded and each joint's true angle compared with its target.

    .venv/bin/python tests/benchmarks/calibration_accuracy.py [SEED ...]
"""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from calibration.store import load
from plend.hal.emulated.robot import miscalibrated

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the tests' daemon helper
from tests.support import Daemon, wait_for_mode


def config(seed: int) -> str:
    return (
        'hal = "hardware"\n[loop]\ntime_scale = 8.0\nrealtime = false\n'
        f'[hardware]\nbus = "emulated"\nemulated_miscalibration_seed = {seed}\n[sim]\nfixed_base = true\n'
    )


def run(seed: int) -> None:
    truth = miscalibrated(seed)
    with tempfile.TemporaryDirectory() as tmp:
        d = Daemon(Path(tmp), config=config(seed))
        try:
            began = time.perf_counter()
            wizard = ["plend.plenctl", "--socket", str(d.socket), "calibrate", "--operator", "sim"]
            done = subprocess.run([sys.executable, "-m", *wizard], capture_output=True, text=True)
            wall = time.perf_counter() - began
            if done.returncode != 0:
                print(done.stdout[-2000:], done.stderr)
                raise SystemExit(f"seed {seed}: the wizard failed")
            record = load(Path(tmp) / "calibration.json")
            d.ctl("stand")
            wait_for_mode(d, "stand")
            time.sleep(1.5)
            status = d.status()
        finally:
            d.stop()
    stand = {
        j["name"]: math.degrees(j["truth"] - j["target"])
        for j in status["joints"]
        if j["name"] in record.joints
    }
    print(f"seed {seed}: wizard {wall:.1f} s wall (8x real time)")
    header = f"{'joint':<20} {'true off':>8} {'found':>7} {'err deg':>7} {'dir':>5}"
    print(f"{header} {'fit deg':>7} {'stand err':>9}")
    offsets, fits = [], []
    for name, got in record.joints.items():
        want = truth.joints[name]
        err = got.offset_deg - want.offset_deg
        offsets.append(abs(err))
        fits.append(got.fit_error_deg)
        ok = "ok" if got.direction == want.direction else "WRONG"
        print(
            f"{name:<20} {want.offset_deg:>+8.2f} {got.offset_deg:>+7.2f} {err:>+7.2f} {ok:>5} "
            f"{got.fit_error_deg:>7.3f} {stand[name]:>+9.2f}"
        )
    worst_stand = max(abs(v) for v in stand.values())
    right = all(record.joints[n].direction == truth.joints[n].direction for n in record.joints)
    print(
        f"worst: offset {max(offsets):.2f} deg, fit {max(fits):.3f} deg, stand {worst_stand:.2f} deg; "
        f"directions {'all right' if right else 'WRONG'}"
    )


if __name__ == "__main__":
    for seed in [int(a) for a in sys.argv[1:]] or [3, 11, 42]:
        run(seed)
