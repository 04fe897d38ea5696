"""PyBullet simulation backend: the same robot model, stepped in lockstep with the loop.

Each :class:`SimHal` owns its own physics client, so several simulations in one process
stay independent. Servos are position controlled with the stall torque and no-load speed
of the real ones. ``write`` (or ``relax``) advances the physics by one control period in
``substeps`` fixed steps, after the configured actuation delay.
"""

from __future__ import annotations

import collections
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from plend.core.config import Config, SimWorld
from plend.core.errors import HalError, require_package
from plend.hal.base import Filmable, Hal, ImuReading, Respawn, Sensors, SimulationState, TorsoTruth
from plend.hal.servo_model import ServoBank
from plend.hal.sim_frames import WorldFrames
from plend.hal.sim_placement import rest_on_both_feet
from plend.hal.sim_scene import CameraView, SceneBox, SceneReader, tiny_render
from plend.model.robot import JOINT_NAMES, NUM_JOINTS, urdf_path
from plend.model.urdf_model import RobotModel, check_robot_urdf, make_variant

GRAVITY = 9.81


def _import_pybullet():  # type: ignore[no-untyped-def]
    require_package("pybullet", "sim")
    with _quiet_fd(2):  # pybullet prints its build time on import
        import pybullet
    return pybullet


@contextlib.contextmanager
def _quiet_fd(fd: int) -> Iterator[None]:
    """Silence a file descriptor around chatty C code (stdout carries JSON summaries)."""
    saved = os.dup(fd)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def _quat_wxyz(q: tuple[float, ...]) -> tuple[float, float, float, float]:
    return (q[3], q[0], q[1], q[2])


def robot_model(world: SimWorld) -> RobotModel:
    """The robot model ``world`` asks for (its URDF or the packaged one), checked."""
    return check_robot_urdf(Path(world.urdf).expanduser() if world.urdf else urdf_path())


class SimHal(Hal, Filmable, Respawn, SimulationState):
    """The robot in PyBullet. Constructing it does nothing; :meth:`open` starts physics
    (after checking the robot model, so a model that is not the robot never moves)."""

    name = "sim"

    def __init__(self, world: SimWorld | None = None, initial_pose: np.ndarray | None = None):
        self.world = world or SimWorld()
        self._initial = np.zeros(NUM_JOINTS) if initial_pose is None else np.asarray(initial_pose, float)
        self._client = None
        self._rng = np.random.default_rng(self.world.seed)
        self._pending: collections.deque[tuple[np.ndarray, np.ndarray | None, float] | None]
        self._pending = collections.deque()
        self.sim_time = 0.0
        self.period = 0.0

    # -- life cycle -------------------------------------------------------------------

    def open(self, tick_period_s: float) -> None:
        if self._client is not None:
            raise HalError("simulation is already open")
        self._model = robot_model(self.world)
        pb = _import_pybullet()
        if self.world.gui and sys.platform == "linux" and not os.environ.get("DISPLAY"):
            # PyBullet would exit the whole process without a word.
            raise HalError("the simulation window needs a display (DISPLAY is not set); run without --gui")
        with _quiet_fd(1), _quiet_fd(2):
            client = pb.connect(pb.GUI if self.world.gui else pb.DIRECT)
        if client < 0:
            raise HalError("could not start the PyBullet physics server")
        self._client = client
        self._pb = pb
        self._c = {"physicsClientId": self._client}
        self.period = tick_period_s
        self._dt = tick_period_s / self.world.substeps
        self._frames = WorldFrames(self.world)
        try:
            self._build_world()
        except BaseException:
            with _quiet_fd(1):
                pb.disconnect(**self._c)
            self._client = None
            raise

    def _build_world(self) -> None:
        pb, c, w = self._pb, self._c, self.world
        pb.resetSimulation(**c)
        pb.setGravity(*self._frames.gravity, **c)  # in the floor's frame: a tilted floor tilts it
        pb.setPhysicsEngineParameter(
            fixedTimeStep=self._dt, numSubSteps=1, numSolverIterations=w.solver_iterations, **c
        )
        self._plane = pb.createMultiBody(0, pb.createCollisionShape(pb.GEOM_PLANE, **c), **c)
        self._robot = self._load_robot()
        self._index = self._joint_indices()
        self._foot_links = tuple(self._link_index(self._model.feet[s]) for s in ("right", "left"))
        self._servos = ServoBank(w.servo_table(), self._dt, self._initial)
        self._apply_world()
        self._place_on_ground()
        self._prev_velocity = np.zeros(3)
        self._last_targets = self._initial.copy()
        self._last_powered: np.ndarray | None = None
        self._powered = True
        self._pushed = False
        self._scene: SceneReader | None = None
        self.sim_time = 0.0

    def _load_robot(self) -> int:
        if not self.world.changes_model():
            return self._load_urdf(self._model.path)
        with tempfile.TemporaryDirectory(prefix="plend-model-") as directory:
            path = make_variant(self._model, self.world, Path(directory))
            with _quiet_fd(2):  # PyBullet reports each mesh it converts
                return self._load_urdf(path)

    def _load_urdf(self, path: Path) -> int:
        pb, c = self._pb, self._c
        flags = pb.URDF_USE_INERTIA_FROM_FILE
        try:
            return int(
                pb.loadURDF(str(path), [0, 0, 0.3], flags=flags, useFixedBase=self.world.fixed_base, **c)
            )
        except pb.error as exc:  # e.g. a mesh file it names is missing
            raise HalError(f"PyBullet could not load the robot model {self._model.path}: {exc}") from None

    def _joint_indices(self) -> list[int]:
        pb, c = self._pb, self._c
        count = pb.getNumJoints(self._robot, **c)
        by_name = {pb.getJointInfo(self._robot, i, **c)[1].decode(): i for i in range(count)}
        return [by_name[n] for n in JOINT_NAMES]

    def _link_index(self, link: str) -> int:
        pb, c = self._pb, self._c
        for i in range(pb.getNumJoints(self._robot, **c)):
            if pb.getJointInfo(self._robot, i, **c)[12].decode() == link:
                return i
        raise HalError(f"link {link!r} not found in {self._model.path}")

    def _apply_world(self) -> None:
        pb, c, w = self._pb, self._c, self.world
        rolling = {"rollingFriction": w.rolling_friction, "spinningFriction": w.spinning_friction}
        pb.changeDynamics(self._plane, -1, lateralFriction=w.friction, **rolling, **c)
        for link in range(-1, pb.getNumJoints(self._robot, **c)):
            mass = pb.getDynamicsInfo(self._robot, link, **c)[0]
            factor = w.mass_scale * self._rng.uniform(1 - w.mass_jitter, 1 + w.mass_jitter)
            # PyBullet scales the link's inertia with its mass.
            pb.changeDynamics(self._robot, link, mass=mass * factor, lateralFriction=w.friction, **c)
            if link >= 0:
                self._add_armature(link)
        for link in self._foot_links:
            pb.changeDynamics(self._robot, link, **rolling, **c)
        table = self._servos.table
        for k, i in enumerate(self._index):
            # The motors' speed cap is set once here and kept by every later command.
            pb.setJointMotorControl2(
                self._robot, i, pb.POSITION_CONTROL, targetPosition=float(self._initial[k]),
                force=0.0, maxVelocity=float(table.speed_rad_s[k]), **c,
            )  # fmt: skip

    def _add_armature(self, link: int) -> None:
        # A servo's gear train multiplies its rotor inertia by the square of the ratio;
        # without it the light links chatter against the ground contact. Added to the
        # link driven by the joint, which approximates the joint-space armature.
        pb, c = self._pb, self._c
        inertia = pb.getDynamicsInfo(self._robot, link, **c)[2]
        armature = self.world.servo_armature_kgm2
        diagonal = [v + armature for v in inertia]
        pb.changeDynamics(self._robot, link, localInertiaDiagonal=diagonal, **c)

    def _place_on_ground(self, pose: np.ndarray | None = None) -> None:
        pb, c = self._pb, self._c
        pose = self._initial if pose is None else pose
        self.set_joint_angles(pose + self._servos.table.offset_rad)
        if not self.world.fixed_base:
            rest_on_both_feet(self._pb, self._robot, self._foot_links, self._c)
        links = range(-1, pb.getNumJoints(self._robot, **c))
        lowest = min(pb.getAABB(self._robot, link, **c)[0][2] for link in links)
        pos, orn = pb.getBasePositionAndOrientation(self._robot, **c)
        clearance = 0.06 if self.world.fixed_base else 1e-4  # on its stand, the feet hang clear
        pb.resetBasePositionAndOrientation(
            self._robot, [pos[0], pos[1], pos[2] - lowest + clearance], orn, **c
        )
        self._command(pose)
        self._servos.reset(pose)

    def respawn(self, pose: np.ndarray) -> None:
        """Stand the robot up where it lies, facing the way it faced, its joints at
        ``pose`` and powered: what a person does for a simulated robot that fell."""
        self._require()
        pb, c = self._pb, self._c
        position, orientation = pb.getBasePositionAndOrientation(self._robot, **c)
        yaw = pb.getEulerFromQuaternion(orientation)[2]
        upright = pb.getQuaternionFromEuler([0.0, 0.0, yaw])
        pb.resetBasePositionAndOrientation(self._robot, [position[0], position[1], 0.3], upright, **c)
        pb.resetBaseVelocity(self._robot, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], **c)
        self._pending.clear()
        self._prev_velocity = np.zeros(3)
        self._place_on_ground(np.asarray(pose, float))

    def close(self) -> None:
        if self._client is None:
            return
        try:
            self.relax()
        finally:
            with _quiet_fd(1):
                self._pb.disconnect(**self._c)
            self._client = None

    def __enter__(self) -> SimHal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- per tick ---------------------------------------------------------------------

    def read(self) -> Sensors:
        self._require()
        states = self._pb.getJointStates(self._robot, self._index, **self._c)
        q = np.fromiter((s[0] for s in states), float, NUM_JOINTS) - self._servos.table.offset_rad
        if self.world.joint_noise_rad:
            q += self._rng.normal(0.0, self.world.joint_noise_rad, NUM_JOINTS)
        return Sensors(stamp=self.sim_time, joint_pos=q, imu=self._imu(), contacts=self._contacts())

    def write(self, targets: np.ndarray, after_s: float = 0.0) -> None:
        """Drive every joint to ``targets`` and advance one period. ``after_s``: the
        servos get the targets only that long after the period starts (a PCA9685 frame)."""
        self._require()
        self._advance((np.asarray(targets, float).copy(), None, after_s))

    def write_some(self, targets: np.ndarray, powered: np.ndarray, after_s: float = 0.0) -> None:
        self._require()
        self._advance((np.asarray(targets, float).copy(), np.asarray(powered, bool).copy(), after_s))

    def relax(self) -> None:
        if self._client is not None:
            self._advance(None)

    def _advance(self, command: tuple[np.ndarray, np.ndarray | None, float] | None) -> None:
        self._pending.append(command)
        if len(self._pending) <= self.world.actuation_delay_ticks:
            applied = (self._last_targets, self._last_powered, 0.0) if self._powered else None
        else:
            applied = self._pending.popleft()
        if applied is None:
            self._unpower(np.ones(NUM_JOINTS, bool))
        else:
            self._command(*applied)
        pb, c = self._pb, self._c
        self._prev_velocity = np.asarray(pb.getBaseVelocity(self._robot, **c)[0])
        servos = self._servos
        for k in range(self.world.substeps):
            t = self.sim_time + k * self._dt
            servos.step(t)
            links = self.link_angles() if servos.has_backlash else None
            pb.setJointMotorControlArray(
                self._robot, self._index, pb.POSITION_CONTROL, **servos.motor_targets(links), **c
            )
            self._push(t)
            pb.stepSimulation(**c)
        self.sim_time += self.period

    def link_angles(self) -> np.ndarray:
        """The joints' true angles in PyBullet (rad, canonical order): the servo models'
        offsets included, no sensor noise."""
        states = self._pb.getJointStates(self._robot, self._index, **self._c)
        return np.fromiter((s[0] for s in states), float, NUM_JOINTS)

    def _command(self, targets: np.ndarray, powered: np.ndarray | None = None, after_s: float = 0.0) -> None:
        mask = np.ones(NUM_JOINTS, bool) if powered is None else powered
        at = self.sim_time + after_s if after_s > 0 else None
        self._servos.command(self.sim_time, targets, mask, self.link_angles(), at)
        self._last_targets = targets
        self._last_powered = powered
        self._powered = True

    def _unpower(self, joints: np.ndarray) -> None:
        self._servos.command(self.sim_time, self._last_targets, ~joints, self.link_angles())
        self._powered = bool(not joints.all())

    def _push(self, t: float) -> None:
        """The world's push: its whole impulse in the one physics step at its time."""
        w = self.world
        if self._pushed or not w.push_impulse_ns or t + 1e-9 < w.push_at_s:
            return
        self._pushed = True
        force = self._frames.push_direction * (w.push_impulse_ns / self._dt)
        com = self._pb.getBasePositionAndOrientation(self._robot, **self._c)[0]
        self._pb.applyExternalForce(self._robot, -1, force.tolist(), com, self._pb.WORLD_FRAME, **self._c)

    def _require(self) -> None:
        if self._client is None:
            raise HalError("simulation is not open; call open() first")

    # -- sensors ----------------------------------------------------------------------

    def _imu(self) -> ImuReading:
        pb, c = self._pb, self._c
        _, orn = pb.getBasePositionAndOrientation(self._robot, **c)
        lin, ang = pb.getBaseVelocity(self._robot, **c)
        torso = np.asarray(pb.getMatrixFromQuaternion(orn)).reshape(3, 3)
        rot = self._frames.imu_in_floor(torso)  # the IMU's axes, in the floor's frame
        gyro = rot.T @ np.asarray(ang)
        if self.world.gyro_noise_rad_s:
            gyro = gyro + self._rng.normal(0.0, self.world.gyro_noise_rad_s, 3)
        accel = (np.asarray(lin) - self._prev_velocity) / self.period if self.period else np.zeros(3)
        specific = rot.T @ (accel - self._frames.gravity)
        # Against true gravity: a tilted floor shows.
        quat = orn if self._frames.level else self._frames.imu_quaternion(torso)
        return ImuReading(
            quat=_quat_wxyz(quat),
            euler=pb.getEulerFromQuaternion(quat),
            gyro=tuple(float(v) for v in gyro),  # type: ignore[arg-type]
            accel=tuple(float(v) for v in specific),  # type: ignore[arg-type]
        )

    def _contacts(self) -> tuple[bool, bool]:
        pb, c, robot, plane = self._pb, self._c, self._robot, self._plane
        right, left = self._foot_links
        return (
            bool(pb.getContactPoints(robot, plane, right, -1, **c)),
            bool(pb.getContactPoints(robot, plane, left, -1, **c)),
        )

    def truth(self) -> TorsoTruth:
        """Ground-truth pose of the torso frame (not of its centre of mass)."""
        self._require()
        pb, c = self._pb, self._c
        com, orn = pb.getBasePositionAndOrientation(self._robot, **c)
        local_com = pb.getDynamicsInfo(self._robot, -1, **c)[3]
        rot = np.asarray(pb.getMatrixFromQuaternion(orn)).reshape(3, 3)
        origin = np.asarray(com) - rot @ np.asarray(local_com)
        lin, _ = pb.getBaseVelocity(self._robot, **c)
        return TorsoTruth(
            position=tuple(float(v) for v in origin),  # type: ignore[arg-type]
            euler=pb.getEulerFromQuaternion(orn),
            velocity=tuple(float(v) for v in lin),  # type: ignore[arg-type]
        )

    def scene(self) -> list[SceneBox]:
        """The robot's boxes in the world frame, for drawing; reads, never steps."""
        self._require()
        if self._scene is None:
            self._scene = SceneReader(self._pb, self._robot, self._c)
        return self._scene.boxes()

    def render(self, view: CameraView) -> np.ndarray:
        """The world seen from ``view`` by PyBullet's software renderer (no display needed):
        RGB, (height, width, 3); reads, never steps."""
        self._require()
        return tiny_render(self._pb, self._c, view)

    def foot_orientations(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """World orientation quaternions (x, y, z, w) of the right and the left foot link."""
        self._require()
        states = self._pb.getLinkStates(self._robot, list(self._foot_links), **self._c)
        return tuple(states[0][5]), tuple(states[1][5])

    def set_joint_angles(self, angles: np.ndarray) -> None:
        """Teleport the joints (their links' true angles) to ``angles`` (for model checks,
        not for control)."""
        self._require()
        for i, q in zip(self._index, np.asarray(angles, float).tolist(), strict=True):
            self._pb.resetJointState(self._robot, i, q, targetVelocity=0.0, **self._c)


def make_sim_hal(
    config: Config, calibration: object = None, initial_pose: np.ndarray | None = None
) -> SimHal:
    """Factory used by the HAL registry (a simulated robot needs no calibration)."""
    return SimHal(config.sim, initial_pose)
