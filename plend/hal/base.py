"""The hardware boundary: what every backend reads and writes, in SI units, and what some
backends can do besides.

:class:`Hal` is what the control loop needs from every backend. Anything more is a
*capability*: a small runtime-checkable protocol below, which a backend declares by
naming it among its base classes (``class SimHal(Hal, GroundTruth, Respawn)``), so that
mypy checks the backend's methods against it. Code that can use a capability asks with
``isinstance(hal, GroundTruth)`` once, when it is built, never by attribute name. A new
capability (a servo model the backend was identified with, a pose it measures itself) is
one more protocol here, declared by the backends that have it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from plend.model.sensors import ImuReading, Sensors, TorsoTruth
from plend.model.servo_map import Calibration

if TYPE_CHECKING:
    from plend.hal.sim_scene import CameraView, SceneBox

__all__ = [
    "BusFigures", "Calibratable", "Diagnostics", "Filmable", "GroundTruth", "Hal", "ImuReading", "JointTruth",
    "PoseSource", "Respawn", "Sensors", "ServoTruth", "SimulationState", "StatusReport", "TorsoTruth",
]  # fmt: skip


class Hal(Protocol):
    """A robot backend. The control loop calls ``write``, ``write_some`` or ``relax``
    exactly once a tick.

    Constructors do no I/O; ``open`` does. ``close`` is idempotent and leaves the servos
    relaxed.
    """

    name: str

    def open(self, tick_period_s: float) -> None:
        """Acquire the robot; the loop will run every ``tick_period_s`` seconds."""

    def read(self) -> Sensors:
        """Read every sensor once."""

    def write(self, targets: np.ndarray) -> None:
        """Command all 18 joint targets (rad, canonical order); servos powered."""

    def write_some(self, targets: np.ndarray, powered: np.ndarray) -> None:
        """Command the joints where ``powered`` is True; unpower the others."""

    def relax(self) -> None:
        """Unpower every servo."""

    def close(self) -> None:
        """Relax and release the robot; safe to call more than once."""


@runtime_checkable
class GroundTruth(Protocol):
    """A simulated robot knows where its torso really is (evaluation, the emulated
    camera, observations that only a simulation has)."""

    def truth(self) -> TorsoTruth:
        """The torso's true pose now."""


@runtime_checkable
class JointTruth(Protocol):
    """A simulated robot behind real sensors knows its joints' true angles, whatever its
    calibration makes of them (status and the calibration wizard's rehearsal)."""

    def true_joint_angles(self) -> np.ndarray:
        """The joints' actual angles (rad, canonical order) at the last read."""


@runtime_checkable
class Respawn(Protocol):
    """A simulated robot that fell can be stood up again where it lies."""

    def respawn(self, pose: np.ndarray) -> None:
        """Stand the robot up, its joints at ``pose`` and powered."""


@runtime_checkable
class Calibratable(Protocol):
    """A backend that drives servo pulses and reads raw feedback through a calibration:
    what calibration mode and the wizard need."""

    calibration: Calibration

    def raw_code(self, index: int) -> float:
        """The last feedback ADC code of joint ``index`` (NaN before the first read)."""

    def pulse_us(self, index: int, angle_rad: float) -> float:
        """The pulse (microseconds) joint ``index`` gets for ``angle_rad``."""

    def set_calibration(self, calibration: Calibration) -> None:
        """Drive and read every joint through ``calibration`` from the next tick on."""

    def imu_calibration_status(self) -> int | None:
        """The IMU's calibration status byte, or None when it did not answer."""

    def read_imu_offsets(self) -> tuple[int, ...]:
        """The IMU's calibration offsets; raises HalError when it does not answer."""

    def feedback_stamp(self, index: int) -> float:
        """When joint ``index``'s feedback was last read (-inf before the first read)."""

    @property
    def pwm_frame_s(self) -> float | None:
        """The PWM chip's frame period: a pulse written now reaches the servos at the start
        of the next frame (None where a pulse acts at once, or before set-up)."""


@runtime_checkable
class ServoTruth(Protocol):
    """A simulated robot whose servos are hidden from the software that measures them
    (the emulated robot's): what servo identification should find, to check it."""

    def true_servo(self, index: int, since: float, until: float = ...) -> dict[str, float]:
        """Joint ``index``'s true servo model over the ticks stamped ``since`` to ``until``."""


@runtime_checkable
class StatusReport(Protocol):
    """A backend with figures of its own for ``plenctl status`` (bus counters)."""

    def status(self) -> dict[str, Any]:
        """JSON-ready figures."""


@runtime_checkable
class BusFigures(Protocol):
    """A backend on an emulated bus reports its traffic per tick (batch run summaries)."""

    def bus_figures(self) -> dict[str, float]:
        """Transactions, bytes and busy milliseconds per tick since open."""


@runtime_checkable
class Diagnostics(Protocol):
    """The robot's chips, one by one, for ``plend probe``."""

    def expected_chips(self) -> dict[int, str]:
        """The chips the robot should have: I2C address -> what it is."""

    def scan(self) -> set[int]:
        """Addresses that answer on the bus."""

    def read_register(self, address: int, register: int, length: int = 1) -> bytes | None:
        """``length`` bytes from ``register`` of the chip at ``address``; None on an I/O error."""

    def transfers(self) -> dict[str, Callable[[], object]]:
        """Each kind of per-tick transfer, by name, as one call (to time them)."""

    def bus_time(self) -> float | None:
        """An emulated bus's own clock (s), or None on a real bus."""


@runtime_checkable
class SimulationState(Protocol):
    """What a training environment reads from a simulated robot beyond its sensors."""

    def link_angles(self) -> np.ndarray:
        """The joints' true angles in the physics engine (rad, canonical order)."""

    def foot_orientations(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """World orientation quaternions (x, y, z, w) of the right and the left foot."""


@runtime_checkable
class Filmable(GroundTruth, Protocol):
    """A simulated robot that can be drawn: videos of batch runs (plend.daemon.video)."""

    def scene(self) -> list[SceneBox]:
        """The robot's boxes in the world frame; reads, never steps."""

    def render(self, view: CameraView) -> np.ndarray:
        """The world seen from ``view``: RGB, (height, width, 3); reads, never steps."""


@runtime_checkable
class PoseSource(Protocol):
    """The torso's pose measured from outside the robot (the camera tracker's poses as
    the daemon keeps them: plend.daemon.pose.PoseStore)."""

    def problem(self, needs_orientation: bool = False) -> str | None:
        """Why the latest pose cannot be used now (none yet, too old, no orientation), or None."""
