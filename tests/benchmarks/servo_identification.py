"""How well servo identification finds an emulated robot's hidden servos, and what it buys.

For each seed, a daemon runs the emulated hardware of a robot as built (horn offsets,
mirrored servos, potentiometer gains: ``emulated_miscalibration_seed``) whose servos have
their own seeded delay, lag, dead band, backlash and speed (``emulated_servo_seed``, the
hidden truth), hung on its stand, 8x faster than real time, with a slew limit of 20 rad/s
so that its servos can be driven past their speed, and its loop at 60 Hz so that the
ticks walk through the PCA9685's 50 Hz frames (the delay found is their average).
``plenctl calibrate --operator sim`` calibrates it; then ``plenctl calibrate --servos``
(its wizard, in this process, to read the truth the emulation reports) measures every
servo. Printed per joint: true and found values and their errors; per seed the worst;
robot time and fit time; how far the sweep's and the refined feedback line read from the
link at the stand pose.

Then 10 s of the sine gait's joint targets (speed 0.5, at 50 Hz) are replayed open loop,
on the stand, on the emulated robot and in the simulation with the identified, the true
and today's default servo model: the per-joint rms difference of the measured angles,
as it is and less its constant part, and from the robot's true angles (as an exact
feedback calibration would read them; they hold where the calibration's jog left each
link in its play, which the simulation does not have). Both first come to the stand
pose from below, so that a servo's play sits at the same side on the robot and in the
simulation.

    .venv/bin/python tests/benchmarks/servo_identification.py [SEED ...] [--joint NAME ...] [--time-scale X]
        [--keep DIR]
    .venv/bin/python tests/benchmarks/servo_identification.py --refit DIR [SEED ...]

(default seeds 1 2 3; with ``--joint`` only those joints are measured, and the replay,
which needs every joint's servo, is left out. ``--time-scale`` runs the emulated robot
that many times faster than real time, default 8: on a loaded machine a fast one misses
ticks, and what it records then changes from one run to the next. ``--keep DIR`` writes
each seed's recordings and true servos to ``DIR/seed-N.pkl``; ``--refit DIR`` fits those
again, with the fit as it is now, and prints the same tables without running a robot, so
a change to the fit is measured on the very same recordings.)

The last line: ``worst: delay X ms, time constant Y %, backlash Z deg, speed W %``.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import math
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the tests' daemon helper
from calibration import servo_wizard
from calibration.joint_steps import now as _now
from calibration.servo_checks import ServoRefusedError, assess
from calibration.servo_id import fit_runs
from calibration.store import SERVO_MODEL_KEYS, ServoRecord, load
from calibration.wizard import Options
from gaits.sine import stand_pose
from gaits.walker import SineGait
from plend.core.config import Config, replace_section
from plend.core.config import load as load_config
from plend.core.servo_source import apply_servo_model
from plend.daemon.runtime import robot_calibration
from plend.hal.emulated.operator import SimulatedOperator
from plend.hal.emulated.robot import make_emulated_hardware_hal, miscalibrated, with_true_servos
from plend.hal.sim import SimHal
from plend.model.robot import JOINTS, joint_index
from plend.model.servo_map import JointCalibration, angle_to_code, angle_to_pulse_us, pulse_us_to_angle
from plend.plenctl import Client
from tests.support import Daemon

PERIOD = 0.02
APPROACH_DEG = 4.0  # the replay comes to the stand pose from this far below
UNITS = {"delay_ms": "ms", "time_constant_ms": "%", "dead_band_deg": "deg", "backlash_deg": "deg",
         "speed_rad_s": "%"}  # fmt: skip
TARGETS = {
    "delay_ms": 5.0,
    "time_constant_ms": 15.0,
    "dead_band_deg": 0.3,
    "backlash_deg": 0.3,
    "speed_rad_s": 15.0,
}


TIME_SCALE = [8.0]  # the emulated robot's speed-up; --time-scale sets it


def config_text(seed: int) -> str:
    return (
        f'hal = "hardware"\n[loop]\ntime_scale = {TIME_SCALE[0]}\nrealtime = false\nrate_hz = 60.0\n'
        "[safety]\nmax_speed_rad_s = 20.0\n"
        f'[hardware]\nbus = "emulated"\nemulated_miscalibration_seed = {seed}\nemulated_servo_seed = {seed}\n'
        "[sim]\nfixed_base = true\n"
    )


def identify(seed: int, tmp: Path, joints: tuple[str, ...] = ()) -> servo_wizard.ServoWizard:
    d = Daemon(tmp, config=config_text(seed))
    try:
        wizard = ["plend.plenctl", "--socket", str(d.socket), "calibrate", "--operator", "sim"]
        for attempt in (1, 2):  # a second run resumes where the first stopped, as a person would
            done = subprocess.run([sys.executable, "-m", *wizard], capture_output=True, text=True)
            if done.returncode == 0:
                break
            stopped = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
            print(f"seed {seed}: calibration attempt {attempt} stopped ({stopped})")
        else:
            print(done.stdout[-3000:], done.stderr)
            raise SystemExit(f"seed {seed}: the calibration wizard failed")
        client = Client(d.socket, timeout=10.0)
        out = io.StringIO()
        try:
            found = servo_wizard.identify(client, SimulatedOperator({}), Options(joints=joints), out)
            status = client.request("status")
            ticks, late = status["ticks"], status["lateness_ms"]
            print(f"seed {seed}: loop {ticks} ticks, {status['overruns']} overruns, lateness ms {late}")
        finally:
            client.close()
        if found.exit_code != 0:
            print(out.getvalue()[-3000:])
            raise SystemExit(f"seed {seed}: servo identification failed")
        return found
    finally:
        d.stop()


def error(key: str, true: float, found: float) -> float:
    return 100.0 * (found / true - 1.0) if UNITS[key] == "%" else found - true


def table(
    seed: int, found: dict[str, ServoRecord], truths: dict[str, list[dict[str, float]]]
) -> dict[str, float]:
    print(f"seed {seed}: true / found (error)")
    print(f"{'joint':<20}" + "".join(f"{k:>24}" for k in SERVO_MODEL_KEYS) + f"{'fit deg':>9}")
    worst = dict.fromkeys(SERVO_MODEL_KEYS, 0.0)
    for name in (j.name for j in JOINTS if j.name in found):
        servo, runs = found[name], truths[name]
        row = f"{name:<20}"
        for key in SERVO_MODEL_KEYS:
            true = float(np.mean([r[key] for r in runs]))
            value = getattr(servo, key)
            e = error(key, true, value)
            worst[key] = max(worst[key], abs(e))
            mark = "" if abs(e) <= TARGETS[key] else "!"
            speed_mark = ">=" if key == "speed_rad_s" and not servo.speed_reached else ""
            row += f"{true:>8.2f} /{speed_mark}{value:>7.2f} ({e:+6.2f}){mark:1}"
        print(row + f"{servo.fit_error_deg:>9.2f}")
    print("worst: " + ", ".join(f"{k} {v:.2f} {UNITS[k]}" for k, v in worst.items()))
    return worst


def reading_error_deg(line: JointCalibration, true: JointCalibration, angle: float) -> float:
    """What ``line`` reads, less the truth, where the link is at ``angle`` in the frame of
    the commanded angles (the true angle less the horn's error that calibration left)."""
    horn = pulse_us_to_angle(angle_to_pulse_us(0.0, line), true)
    return math.degrees((angle_to_code(angle + horn, true) - line.code_at_zero) / line.codes_per_rad - angle)


def lines(seed: int, swept: dict[str, JointCalibration], refined: dict[str, JointCalibration]) -> None:
    """Per joint, how far the sweep's and the refined feedback line read from the link's
    angle at the stand pose (deg), and their slopes' errors (%)."""
    truth = miscalibrated(seed).joints
    stand = stand_pose()
    worst = [0.0, 0.0]
    row = []
    for name in (j.name for j in JOINTS if j.wired and j.name in refined):
        angle = float(stand[joint_index(name)])
        errors = [reading_error_deg(line[name], truth[name], angle) for line in (swept, refined)]
        slopes = [100.0 * (line[name].codes_per_rad / truth[name].codes_per_rad - 1.0)
                  for line in (swept, refined)]  # fmt: skip
        worst = [max(w, abs(e)) for w, e in zip(worst, errors, strict=True)]
        row.append(f"{name}={errors[0]:+.2f}/{errors[1]:+.2f} ({slopes[0]:+.2f}/{slopes[1]:+.2f} %)")
    print(f"seed {seed}: feedback at the stand pose, swept / refined line, deg off the link (slope error):")
    print("    " + " ".join(row))
    print(f"seed {seed}: feedback worst at the stand pose: swept {worst[0]:.2f}, refined {worst[1]:.2f} deg")


def gait_targets(seconds: float) -> np.ndarray:
    gait = SineGait(0.5)
    return np.array([gait.update(None, PERIOD) for _ in range(round(seconds / PERIOD))])


def replay_emulated(config: Config, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The emulated robot's measured angles, its true angles (what its feedback
    calibration would read if it were exact), and the mean time from a tick's start to
    its PWM write (s)."""
    hal = make_emulated_hardware_hal(config, robot_calibration(config), stand_pose())
    hal.open(PERIOD)
    true: list[np.ndarray] = []
    try:
        measured = _replay(hal, targets, true)
        return measured, np.array(true), hal.robot.pwm_latency(-math.inf)[0]  # type: ignore[attr-defined]
    finally:
        hal.close()


def replay_sim(config: Config, targets: np.ndarray) -> np.ndarray:
    hal = SimHal(config.sim, stand_pose())
    hal.open(PERIOD)
    try:
        return _replay(hal, targets)
    finally:
        hal.close()


def _replay(hal: object, targets: np.ndarray, true: list[np.ndarray] | None = None) -> np.ndarray:
    # Every joint comes to the stand pose from below, so that a servo with play sits at the
    # same side of it on the robot and in the simulation: each starts at the stand pose
    # as it knows it, and the emulated robot's is the true one, not where its calibration
    # puts it, so without this the joints that the gait leaves still (the hips' yaw, the
    # arms) would keep that difference.
    below = stand_pose() - math.radians(APPROACH_DEG)
    for pose, ticks in ((below, 25), (stand_pose(), 75)):  # 0.5 s below, then stand 1.5 s
        for _ in range(ticks):
            hal.read()  # type: ignore[attr-defined]
            hal.write(pose)  # type: ignore[attr-defined]
    measured = []
    for q in targets:
        measured.append(hal.read().joint_pos.copy())  # type: ignore[attr-defined]
        if true is not None:
            true.append(hal.true_joint_angles())  # type: ignore[attr-defined]
        hal.write(q)  # type: ignore[attr-defined]
    return np.array(measured)


def true_model(config: Config, seed: int, write_s: float) -> Config:
    """The simulation with the robot's true servos, each delay as the simulation means it:
    from the tick's start, the write and half a PWM frame (the average wait) included."""
    world = with_true_servos(config.sim, seed)
    extra = 1000.0 * write_s + 500.0 / config.hardware.pwm_frequency_hz
    joints = {n: {**t, "delay_ms": t["delay_ms"] + extra} for n, t in world.servo.joints.items()}
    servo = dataclasses.replace(world.servo, joints=joints)
    return dataclasses.replace(config, sim=dataclasses.replace(world, servo=servo))


def replay(seed: int, tmp: Path) -> dict[str, tuple[float, float, float]]:
    """Per model (identified, true, default): the worst per-joint rms difference (deg) of
    the simulation's measured angles from the emulated robot's over 10 s of the sine gait,
    as they are and less each joint's constant difference (the feedback calibration's
    residual, which no servo model can show), and from the robot's true angles (what it
    would measure with an exact feedback calibration)."""
    path = tmp / "replay.toml"
    path.write_text(config_text(seed) + f'[paths]\nstate_dir = "{tmp}"\n')
    config = load_config(path)
    targets = gait_targets(10.0)
    robot, robot_true, write_s = replay_emulated(config, targets)
    plain = replace_section(config, "hardware", emulated_servo_seed=None)
    models = {
        "identified": apply_servo_model(replace_section(plain, "sim", servo_model="calibration")),
        "true": true_model(plain, seed, write_s),
        "default": plain,
    }
    wired = [j.index for j in JOINTS if j.wired]
    out = {}
    for label, model in models.items():
        simulated = replay_sim(model, targets)
        difference = (simulated - robot)[:, wired]
        raw = np.degrees(np.sqrt(np.mean(difference**2, axis=0)))
        moving = np.degrees(np.std(difference, axis=0))
        exact = np.degrees(np.sqrt(np.mean((simulated - robot_true)[:, wired] ** 2, axis=0)))
        out[label] = (float(raw.max()), float(moving.max()), float(exact.max()))
        print(
            f"  replay, {label:>10} model, rms per joint (deg), as is / less its constant difference "
            "/ from the robot's true angles:"
        )
        print(
            "    "
            + " ".join(
                f"{JOINTS[i].name}={r:.2f}/{m:.2f}/{e:.2f}"
                for i, r, m, e in zip(wired, raw, moving, exact, strict=True)
            )
        )
    return out


def print_worst(overall: dict[str, float]) -> None:
    """The benchmark's last line: the worst error of each value over the seeds."""
    print(
        f"worst: delay {overall['delay_ms']:.1f} ms, time constant {overall['time_constant_ms']:.0f} %, "
        f"backlash {overall['backlash_deg']:.2f} deg, speed {overall['speed_rad_s']:.0f} % "
        f"(dead band {overall['dead_band_deg']:.2f} deg)"
    )


def refit(path: Path) -> tuple[dict[str, ServoRecord], dict[str, list[dict[str, float]]], float]:
    """A kept identification's servos fitted again (as the wizard fits them), its truths,
    and the fit's time (s)."""
    with path.open("rb") as f:
        kept = pickle.load(f)
    runs, owners, _ = servo_wizard.split_recordings(kept["recordings"], kept["substeps"], kept["frame"])
    began = time.perf_counter()
    fits = fit_runs(runs, servo_wizard.repeats(len(runs)))
    took = time.perf_counter() - began
    servos = {}
    for name in kept["recordings"]:
        try:
            mine = [f for f, owner in zip(fits, owners, strict=True) if owner == name]
            servos[name] = assess(mine, kept["rate_hz"], kept["substeps"], _now())
        except ServoRefusedError as exc:
            print(f"  {name} refused: {exc}")
    return servos, kept["truths"], took


def main_refit(folder: Path, seeds: list[int]) -> None:
    overall = dict.fromkeys(SERVO_MODEL_KEYS, 0.0)
    errors: list[dict[str, float]] = []
    for seed in seeds:
        servos, truths, took = refit(folder / f"seed-{seed}.pkl")
        worst = table(seed, servos, truths)
        print(f"seed {seed}: fit {took:.0f} s")
        for key in overall:
            overall[key] = max(overall[key], worst[key])
        errors += all_errors(servos, truths)
    spread(errors)
    print_worst(overall)


def main(seeds: list[int], joints: tuple[str, ...] = (), keep: Path | None = None) -> None:
    overall = dict.fromkeys(SERVO_MODEL_KEYS, 0.0)
    replays: list[dict[str, tuple[float, float, float]]] = []
    errors: list[dict[str, float]] = []
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            began = time.perf_counter()
            found = identify(seed, Path(tmp), joints)
            wall = time.perf_counter() - began
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                info = found.session.info
                kept = {
                    "recordings": found.recordings, "truths": found.truths, "rate_hz": float(info["rate_hz"]),
                    "substeps": int(info["sim_substeps"]), "frame": info.get("pwm_frame_s"),
                }  # fmt: skip
                with (keep / f"seed-{seed}.pkl").open("wb") as f:
                    pickle.dump(kept, f)
            worst = table(seed, found.servos, found.truths)
            print(
                f"seed {seed}: robot time {found.robot_time_s:.0f} s for {len(found.servos)} servos "
                f"(moves and excitations); fit {found.fit_s:.0f} s; wall {wall:.0f} s "
                f"({TIME_SCALE[0]:g}x real time)"
            )
            saved = load(Path(tmp) / "calibration.json")
            assert saved.servos, "nothing was saved"
            lines(seed, found.calibration.joints, saved.joints)
            if not joints:  # the replay needs every joint's servo
                replays.append(replay(seed, Path(tmp)))
                line = ", ".join(f"{k} {r:.2f} / {m:.2f} / {e:.2f}" for k, (r, m, e) in replays[-1].items())
                print(
                    f"seed {seed}: replay, worst joint rms as is / less its constant difference / from the "
                    f"robot's true angles (deg): {line}"
                )
        for key in overall:
            overall[key] = max(overall[key], worst[key])
        errors += all_errors(found.servos, found.truths)
    spread(errors)
    if replays:
        line = ", ".join(
            f"{k} " + " / ".join(f"{max(r[k][i] for r in replays):.2f}" for i in range(3)) for k in replays[0]
        )
        print(
            "replay over the seeds, worst joint rms as is / less its constant difference / from the robot's "
            f"true angles (deg): {line}"
        )
    print_worst(overall)


def all_errors(
    found: dict[str, ServoRecord], truths: dict[str, list[dict[str, float]]]
) -> list[dict[str, float]]:
    """Per joint found, each value's |error| (units as :data:`UNITS`)."""
    return [
        {
            k: abs(error(k, float(np.mean([r[k] for r in truths[name]])), getattr(servo, k)))
            for k in SERVO_MODEL_KEYS
        }
        for name, servo in found.items()
    ]


def spread(errors: list[dict[str, float]]) -> None:
    """Per value over every joint and seed: median, 90th percentile, worst error and how
    many joints miss the target."""
    print(f"over {len(errors)} joints: |error| median / 90 % / worst, joints outside the target")
    for key in SERVO_MODEL_KEYS:
        e = np.array([row[key] for row in errors])
        outside = int((e > TARGETS[key]).sum())
        print(
            f"  {key:<18} {np.median(e):6.2f} / {np.percentile(e, 90):6.2f} / {e.max():6.2f} {UNITS[key]:<3} "
            f"(target {TARGETS[key]:g}): {outside} of {len(e)} outside"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("seeds", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--joint", action="append", default=[], metavar="NAME")
    parser.add_argument("--time-scale", type=float, default=TIME_SCALE[0])
    parser.add_argument("--keep", type=Path, metavar="DIR", help="write each seed's recordings there")
    parser.add_argument("--refit", type=Path, metavar="DIR", help="fit the recordings kept there again")
    options = parser.parse_args()
    TIME_SCALE[0] = options.time_scale
    if options.refit is not None:
        main_refit(options.refit, options.seeds)
    else:
        main(options.seeds, tuple(options.joint), options.keep)
