"""The supervisor: which behaviour runs, bumpless switching, e-stop and fault handling.

It runs on the control thread only. Commands arrive already validated (files read,
numbers checked) and are applied between ticks; :meth:`Supervisor.update` is called once
a tick with fresh sensors and the targets last written, and returns this tick's targets
(``None`` relaxes the servos). Safety monitors run first, so a fall, stale sensors or a
servo that cannot follow always win over what a behaviour wants.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from plend.control.behaviours import (
    Behaviour,
    Mode,
    ReadsPose,
    Relax,
    Replay,
    Stand,
    Steerable,
    Stepping,
    Trajectory,
    Walk,
)  # fmt: skip
from plend.control.blend import Blend
from plend.control.calibration_mode import CalibrationMode
from plend.control.monitors import Fault, FaultLog, MonitorCounts, Monitors, crouch_pose
from plend.core.config import GaitConfig, SafetyConfig
from plend.core.errors import PlendError
from plend.drive.lease import ENDS_DRIVE, DriveLease, steer
from plend.hal.base import Calibratable, PoseSource, Respawn, Sensors
from plend.model.robot import stand_pose
from plend.model.servo_map import Calibration

log = logging.getLogger("plend.supervisor")

# A simulated robot whose servos are off and that leans or turns more than this is going
# down: nobody holds it, so ``reset`` stands it up as it would one already lying.
TOPPLING_TILT_DEG = 5.0
TOPPLING_RATE_RAD_S = 0.3

# The latched faults that calibrating may start over, and that a new calibration clears.
CALIBRATION_FIXES = ("calibration", "tracking")


class CommandError(PlendError, RuntimeError):
    """A command cannot be carried out in the robot's current state."""


Reply = dict[str, Any] | None  # a command's answer; None: the mode alone


class Supervisor:
    """Chooses this tick's targets from the active behaviour, the faults and the e-stop.

    Args:
        safety: the ``[safety]`` config its monitors judge by.
        period_s: the control period.
        on_change: called with the new mode whenever it changes.
        hal: the backend, for what it can do besides moving: stand a fallen simulated
            robot up (:class:`~plend.hal.base.Respawn`), take a new calibration
            (:class:`~plend.hal.base.Calibratable`). The supervisor keeps no handle to it.
        pose: the camera's poses, for behaviours that read them.
        gait: the ``[gait]`` config walks are made with.
        wall_clock: real seconds, for the drive lease.
    """

    def __init__(
        self,
        safety: SafetyConfig,
        period_s: float,
        on_change: Callable[[str], None] | None = None,
        hal: object = None,
        pose: PoseSource | None = None,
        gait: GaitConfig | None = None,
        wall_clock: Callable[[], float] = time.monotonic,
    ):
        self.safety = safety
        self.gait = gait or GaitConfig()
        self.period = period_s
        self.behaviour: Behaviour = Relax()
        self.policy: Behaviour | None = None
        self.estopped = False
        self._faults = FaultLog()
        self._monitors = Monitors(safety, period_s)
        self._blend = Blend()
        self._measured: np.ndarray = stand_pose()
        self._now = 0.0
        self._tilt_deg = 0.0
        self._gyro: Any = (0.0, 0.0, 0.0)  # the last IMU angular rate (rad/s), read on reset only
        self._on_change = on_change or (lambda mode: None)
        self._respawn_robot = hal.respawn if isinstance(hal, Respawn) else None
        self._set_calibration = hal.set_calibration if isinstance(hal, Calibratable) else None
        self._pose = pose  # the camera's pose store (plend.daemon.pose.PoseStore), on the robot
        self._session: CalibrationMode | None = None  # the calibration wizard's, while it runs
        self.drive = DriveLease()  # plenctl drive's session and its dead-man lease
        self._wall = wall_clock  # the lease runs in real seconds, whatever the loop's time scale
        # Taken whatever runs, a calibration session included.
        self._anytime: dict[str, Callable[..., Reply]] = {
            "estop": self._cmd_estop, "reset": self._cmd_reset, "sim_respawn": self._cmd_sim_respawn,
            "relax": self._cmd_relax, "calibrate_end": self._cmd_relax, "stop": self._cmd_stop,
            "calibrate": self._cmd_calibrate, "calibrate_apply": self._cmd_calibrate_apply,
            "drive_end": self._cmd_drive_end,
        }  # fmt: skip
        # Taken only when the robot may move and no calibration session runs.
        self._moves: dict[str, Callable[..., Reply]] = {
            "stand": self._cmd_stand, "gait": self._cmd_gait, "replay": self._cmd_replay,
            "policy_load": self._cmd_policy_load, "policy_start": self._cmd_policy_start,
            "policy_command": self._cmd_policy_command,
            "drive": self._cmd_drive, "calibrate_begin": self._cmd_calibrate_begin,
        }  # fmt: skip

    # -- state --------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        """The running behaviour's name (a :class:`~plend.control.behaviours.Mode`), or "estop"."""
        if self.estopped:
            return Mode.ESTOP
        return self.behaviour.name

    @property
    def counts(self) -> MonitorCounts:
        return self._monitors.counts

    @property
    def faults(self) -> list[Fault]:
        """The faults in force."""
        return self._faults.active

    @property
    def history(self) -> list[Fault]:
        """The last 50 faults raised, cleared ones included."""
        return self._faults.history

    # -- commands (control thread, between ticks) ----------------------------------------

    def commands(self) -> frozenset[str]:
        """The names :meth:`handle` takes."""
        return frozenset(self._anytime) | frozenset(self._moves)

    def handle(self, name: str, **args: Any) -> dict[str, Any]:
        """Apply one command; raise :class:`CommandError` to refuse it unchanged."""
        if name in ENDS_DRIVE:
            self.drive.end(f"'{name}' was asked")
            self._faults.clear("drive")
        handler = self._anytime.get(name)
        if handler is None:
            handler = self._moves.get(name)
            if handler is None:
                raise CommandError(f"unknown command {name!r}")
            if self._session is not None:
                raise CommandError(
                    f"cannot {name}: a calibration wizard is running; finish or abort it first "
                    "(or 'plenctl relax' ends it)"
                )
            self._check_may_move(name, calibration_ok=name == "calibrate_begin")
        reply = handler(**args)
        return {"mode": self.mode} if reply is None else reply

    def block(self, code: str, message: str) -> None:
        """Refuse to move (a fault that ``reset`` does not clear); for code "calibration",
        applying a new calibration clears it."""
        self._fault(code, message, latched=True, resettable=False)

    def _cmd_estop(self) -> Reply:
        self._estop()
        return None

    def _cmd_reset(self) -> Reply:
        return {"mode": self.mode, "respawned": True} if self._reset() else None

    def _cmd_sim_respawn(self) -> Reply:
        self._check_may_move("respawn the robot")
        self._respawn()
        return {"mode": self.mode, "respawned": True}

    def _cmd_relax(self) -> Reply:
        self._switch(Relax())
        return None

    def _cmd_calibrate(self, **args: Any) -> Reply:
        """One calibration wizard command, answered by the session (its reply as it is)."""
        if self._session is None or self.estopped:
            raise CommandError("the calibration session has ended (the daemon relaxed or was e-stopped)")
        return self._session.handle(**args)

    def _cmd_calibrate_apply(self, calibration: Calibration) -> Reply:
        if self._session is not None:
            self._session.apply(calibration)
        elif self._set_calibration is not None:
            self._set_calibration(calibration)
        else:
            raise CommandError("this backend has no calibration to apply")
        for code in CALIBRATION_FIXES:
            self._faults.clear(code)
        return None

    def _cmd_drive_end(self, session: str, reason: str) -> Reply:
        if self.drive.session == session:
            self._drive_stop(reason)
        return None

    def _check_may_move(self, name: str, calibration_ok: bool = False) -> None:
        if self.estopped:
            raise CommandError(f"cannot {name}: the e-stop is latched; run 'plenctl reset' first")
        # Calibrating is the fix for a wrong calibration and for a servo that could not
        # follow its target (it may be miscalibrated); the wizard starts limp either way.
        latched = [f for f in self._faults.latched() if not (calibration_ok and f.code in CALIBRATION_FIXES)]
        if latched:
            raise CommandError(
                f"cannot {name}: fault '{latched[0].code}' is latched ({latched[0].message}); "
                + ("run 'plenctl reset' first" if latched[0].resettable else "run 'plenctl calibrate'")
            )

    def _cmd_calibrate_begin(self, mode: CalibrationMode) -> Reply:
        if not isinstance(self.behaviour, Relax):
            # Calibration starts limp: a standing robot would fall. The wizard asks first.
            raise CommandError(
                f"cannot calibrate while in {self.mode}: put the robot on its stand, run 'plenctl relax', "
                "then calibrate"
            )
        self._session = mode
        self._switch(mode)
        return None

    def _cmd_stand(self) -> Reply:
        if self._tilt_deg > self.safety.fall_tilt_deg and self._respawn_robot is not None:
            self._respawn()  # a simulated robot lying on the floor is stood up, not driven
            return {"mode": self.mode, "respawned": True}
        self._switch(Stand())
        return None

    def _cmd_stop(self) -> Reply:
        if not isinstance(self.behaviour, (Relax, Stand)):
            self.behaviour.stop()
        return None

    def _cmd_gait(self, speed: float, turn: float = 0.0, side: float = 0.0) -> Reply:
        if isinstance(self.behaviour, Walk) and not self.behaviour.finished:
            self.behaviour.set_command(speed, turn, side)
        else:
            self._check_upright("walk")
            self._switch(Walk(speed, turn, side, self.gait))
        return None

    def _cmd_drive(self, session: str, command: dict[str, float], lease_s: float, walker: str) -> Reply:
        """A drive update: renew the lease, steer what walks, or start ``walker`` from
        standing once the command asks for motion."""
        result = self._drive(session, command, lease_s, walker)
        return {"mode": self.mode, **result}  # the mode after the update: a walk may have started

    def _drive(self, session: str, command: dict[str, float], lease_s: float, walker: str) -> dict[str, Any]:
        self.drive.may_drive(session)  # a refused update takes no lease and leaves no fault
        now = self.behaviour
        if isinstance(now, Stepping) and now.stopping and not now.finished:  # stands first, walks anew
            self._take_lease(session, lease_s)
            return {"walker": None, "took": []}
        if now is self.policy or (isinstance(now, Walk) and not now.finished):
            self._take_lease(session, lease_s)
            self.drive.walker = now
            return {"walker": now.name, "took": steer(now, command)}
        if not isinstance(now, (Stand, Relax)) and not now.finished:  # a walk that just ended is idle
            raise CommandError(f"cannot drive while {self.mode} runs; stop it first")
        if not any(command.values()):  # nothing walks and nothing is asked: nothing to hold
            return {"walker": None, "took": []}
        self._check_upright("drive")
        if walker == "policy":
            self._cmd_policy_start()
        else:
            self._switch(Walk(command["speed"], command["turn"], command["side"], self.gait))
        self._take_lease(session, lease_s)
        self.drive.walker = self.behaviour
        return {"walker": walker, "took": steer(self.behaviour, command)}

    def _take_lease(self, session: str, lease_s: float) -> None:
        self.drive.renew(session, self._wall(), lease_s)
        self._faults.clear("drive")

    def _drive_stop(self, reason: str) -> None:
        """The dead-man rule: end the session and stop the walk at its next step."""
        self.drive.end(reason)
        if self.mode in (Mode.SINE, Mode.POLICY):
            self.behaviour.stop()
        self._fault("drive", f"dead-man: {reason}; the walk stops at its next step", latched=False)

    def _cmd_replay(self, trajectory: Trajectory) -> Reply:
        self._check_upright("replay")
        self._switch(Replay(trajectory))
        return None

    def _cmd_policy_load(self, behaviour: Behaviour) -> Reply:
        self.policy = behaviour
        return None

    def _cmd_policy_start(self, command: tuple[float, float, float] | None = None) -> Reply:
        if self.policy is None:
            raise CommandError("no policy is loaded; run 'plenctl policy load FILE' first")
        problem = self._pose_problem(self.policy)
        if problem:
            raise CommandError(f"cannot start the policy: {problem}")
        self._check_upright("start the policy")
        if command is not None:
            self._cmd_policy_command(command)
        self._switch(self.policy)
        return None

    def _cmd_policy_command(self, command: tuple[float, float, float]) -> Reply:
        """The loaded policy's walking command (speed, turn, side), checked by the policy
        against the ranges it was trained for; taken at its gait's next step."""
        if not isinstance(self.policy, Steerable):
            raise CommandError("no policy that takes commands is loaded; run 'plenctl policy load' first")
        try:
            self.policy.set_command(*command)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        return None

    def _check_upright(self, name: str) -> None:
        """Refuse to set off a robot that is down: it would only trip the fall monitor."""
        if self._tilt_deg > self.safety.fall_tilt_deg:
            how = "'plenctl stand' stands a simulated one up" if self._respawn_robot else "by hand"
            raise CommandError(
                f"cannot {name}: the robot is down (torso tilted {self._tilt_deg:.0f} degrees); "
                f"stand it up first ({how})"
            )

    def _pose_problem(self, behaviour: Behaviour) -> str | None:
        """Why ``behaviour`` cannot have the camera pose it reads, or None."""
        if not (isinstance(behaviour, ReadsPose) and behaviour.needs_pose):
            return None
        if self._pose is None:
            return "this daemon has no camera pose source"
        return self._pose.problem(behaviour.needs_orientation)

    def _estop(self) -> None:
        if not self.estopped:
            self._monitors.counts.estops += 1
            log.warning("e-stop: servos relaxed, latched until reset")
        self.estopped = True
        self._switch(Relax())

    def _reset(self) -> bool:
        """Clear the e-stop and latched faults; returns whether a simulated robot that fell,
        or is falling with its servos off, was stood up again (a real one stays relaxed
        where it lies). With nothing latched, what the robot does goes on (a standing robot
        is not dropped)."""
        latched = self.estopped or bool(self._faults.latched())
        if latched:
            log.info("reset: e-stop and latched faults cleared; robot stays relaxed")
        self.estopped = False
        self._faults.clear_latched()
        turn_rate = float(np.linalg.norm(np.nan_to_num(np.asarray(self._gyro, float))))
        toppling = isinstance(self.behaviour, Relax) and (
            self._tilt_deg > TOPPLING_TILT_DEG or turn_rate > TOPPLING_RATE_RAD_S
        )
        if (self._tilt_deg > self.safety.fall_tilt_deg or toppling) and self._respawn_robot is not None:
            self._respawn()
            return True
        if latched:
            self._switch(Relax())
        return False

    def _respawn(self) -> None:
        if self._respawn_robot is None:
            raise CommandError("only a simulated robot can be respawned; stand a real one up by hand")
        pose = stand_pose()
        self._respawn_robot(pose)
        self._measured = pose.copy()  # the stand starts from where the joints now are
        self._tilt_deg = 0.0
        self._monitors.tilted_ticks = 0
        log.info("simulation: the robot was stood up again")
        self._switch(Stand())

    def _switch(self, behaviour: Behaviour) -> None:
        previous = self.mode
        if self._session is not None and behaviour is not self._session:
            self._session.close()  # leaving calibration: joints unpowered, limits restored
            self._session = None
        behaviour.start(self._measured)
        self.behaviour = behaviour
        # Stand and calibration move from the measured pose by themselves; the others hold
        # their first pose while the blend brings the joints to it.
        own_pace = isinstance(behaviour, (Relax, Stand)) or behaviour is self._session
        self._blend.begin(None if own_pace else self._measured)
        if self.mode != previous:
            log.info("mode %s -> %s", previous, self.mode)
            self._on_change(self.mode)

    # -- per tick ----------------------------------------------------------------------

    def powered_mask(self) -> np.ndarray | None:
        """Joints to power this tick when not all (calibration powers one); None: all."""
        if self._session is not None and not self.estopped:
            return self._session.powered()
        return None

    def sense(self, sensors: Sensors) -> None:
        """Take this tick's readings: switches start from this measured pose."""
        self._now = sensors.stamp
        roll, pitch, _ = sensors.imu.euler
        self._tilt_deg = math.degrees(math.acos(max(-1.0, min(1.0, math.cos(roll) * math.cos(pitch)))))
        self._gyro = sensors.imu.gyro
        measured = sensors.joint_pos
        self._measured = np.where(np.isfinite(measured), measured, stand_pose())

    def update(self, sensors: Sensors, last_targets: np.ndarray | None) -> np.ndarray | None:
        """This tick's targets (None: relax). ``last_targets`` are those last written."""
        self._run_monitors(sensors, last_targets)
        lapsed = self.drive.check(self._wall(), self.behaviour)
        if lapsed:
            self._drive_stop(lapsed)
        if self.estopped:
            return None
        if self.behaviour.finished:
            self._switch(Stand())
        blending = self._blend.active
        try:
            targets = self.behaviour.update(sensors, 0.0 if blending else self.period)
        except Exception as exc:  # e.g. a policy's non-finite output: stand, report, go on
            if not isinstance(exc, PlendError):  # a bug, not a refusal: keep its traceback
                log.exception("behaviour %s failed", self.behaviour.name)
            self._fault("behaviour", f"{self.behaviour.name} stopped: {exc}", latched=False)
            self._switch(Stand())
            targets = self.behaviour.update(sensors, self.period)
        if targets is None or not blending:
            return targets
        return self._blend.apply(targets, self.period)

    def _run_monitors(self, sensors: Sensors, last_targets: np.ndarray | None) -> None:
        m = self._monitors
        # On its calibration stand the robot may lie at any angle, and its joints are not
        # calibrated yet, so the fall and tracking monitors have nothing to judge by.
        calibrating = self._session is not None
        if self.mode not in (Mode.RELAX, Mode.ESTOP, Mode.CALIBRATE) and m.fall(sensors):
            m.counts.falls += 1
            self._fault("fall", f"torso tilted past {self.safety.fall_tilt_deg} degrees", latched=True)
            self._switch(
                Relax() if self.safety.fall_action == "relax" else Stand(crouch_pose(), 0.3, Mode.CROUCH)
            )
        stale = m.stale(sensors)
        active = self._faults.has("stale_sensors")
        if stale and not active:
            m.counts.stale += 1
            self._fault("stale_sensors", stale, latched=False)
            # Half-calibrated servos must not be driven to a pose: calibration always relaxes.
            stand = self.safety.stale_action == "stand" and not calibrating
            self._switch(Stand() if stand else Relax())
        elif not stale and active:
            self._faults.clear("stale_sensors")
            log.info("sensors fresh again")
        self._check_pose()
        tracking = m.tracking(sensors, None if calibrating else last_targets, sensors.stamp)
        if tracking and not any(f.code == "tracking" for f in self._faults.latched()):
            m.counts.tracking += 1
            self._fault("tracking", tracking, latched=True)
            self._switch(Relax())

    def _check_pose(self) -> None:
        """A behaviour that reads the camera's pose stands the robot when it goes stale
        (the joints and the IMU are fine, so standing is safe); the fault clears once
        poses are fresh again, and walking does not resume by itself."""
        active = self._faults.has("stale_pose")
        problem = self._pose_problem(self.behaviour)
        if problem and not active:
            self._monitors.counts.stale += 1
            self._fault("stale_pose", f"{self.behaviour.name} stopped: {problem}", latched=False)
            self._switch(Stand())
        elif active and not problem and (self._pose is None or self._pose.problem() is None):
            self._faults.clear("stale_pose")
            log.info("camera pose fresh again")

    def _fault(self, code: str, message: str, latched: bool, resettable: bool = True) -> None:
        log.error("fault %s: %s", code, message)
        self._faults.add(Fault(code, message, self._now, latched, resettable))

    def fault_list(self) -> list[dict[str, Any]]:
        """Active faults, for status."""
        return self._faults.listed()
