"""The control socket's calibration commands, used by ``plenctl calibrate``.

One wizard at a time holds the session, keyed by its connection: when that connection
closes for any reason (done, Ctrl-C, a killed process) the daemon leaves calibration
mode and relaxes. Files are read and written here, on the socket thread, never on the
control thread: the draft of an unfinished session after every joint, and the
calibration file itself, atomically, with the previous one kept as a backup.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
from typing import Any

from calibration import drafts, store
from plend.control.behaviours import Mode
from plend.control.calibration_mode import (
    FILTER_SPEED_RAD_S,
    JOG_WINDOW_DEG,
    MOVE_SPEED_RAD_S,
    SAFE_MARGIN_DEG,
    CalibrationMode,
)
from plend.control.loop import ControlLoop, Request
from plend.control.supervisor import Supervisor
from plend.core.config import Config
from plend.core.errors import PlendError
from plend.daemon.protocol import only
from plend.daemon.server import ArgumentError, Handler, argument, current_connection
from plend.hal.base import Calibratable, JointTruth
from plend.model.robot import JOINTS

log = logging.getLogger("plend.calibration")

COMMAND_TIMEOUT_S = 2.0

# Each wizard command's arguments: name -> (type, required).
_OPS: dict[str, dict[str, tuple[type, bool]]] = {
    "move": {"joint": (str, True), "angle": (float, True)},
    "relax": {},
    "set": {
        "joint": (str, True), "confirmed": (bool, False), "offset_deg": (float, False),
        "direction": (int, False), "code_at_zero": (float, False), "codes_per_rad": (float, False),
    },
    "sweep": {"joint": (str, True), "low": (float, True), "high": (float, True), "points": (int, True)},
    "state": {"imu": (bool, False)},
    "identify": {"joint": (str, True), "targets": (list, True), "runs": (int, False)},
    "imu_offsets": {},
}  # fmt: skip


class CalibrationUnavailableError(PlendError, RuntimeError):
    """Calibration cannot run here or now."""


def _checked(op: str, args: dict[str, Any]) -> dict[str, Any]:
    spec = _OPS[op]
    unknown = sorted(set(args) - set(spec))
    if unknown:
        raise ArgumentError(f"calibrate {op}: unknown argument(s) {', '.join(unknown)}")
    out = {}
    for key, (kind, required) in spec.items():
        try:
            value = argument(args, key, kind, required)
        except ArgumentError as exc:
            raise ArgumentError(f"calibrate {op}: {exc}") from None
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ArgumentError(f"calibrate {op}: {key!r} must be finite, got {value!r}")
        out[key] = value
    return out


class CalibrationControls:
    """Handlers of the ``calibrate_*`` commands."""

    def __init__(self, loop: ControlLoop, supervisor: Supervisor, config: Config):
        self.loop, self.supervisor, self.config = loop, supervisor, config
        self.path = config.calibration_path()
        self.robot_id = config.hardware.robot_name()
        self._owner: int | None = None
        self._lock = threading.Lock()

    def handlers(self) -> dict[str, Handler]:
        ops: dict[str, Handler] = {f"calibrate_{op}": self._op(op) for op in _OPS}
        return {
            **ops,
            "calibrate_begin": self.begin,
            "calibrate_draft": self.draft,
            "calibrate_save": self.save,
            "calibrate_end": self.end,
        }

    def _submit(self, name: str, **args: Any) -> dict[str, Any]:
        return self.loop.submit(Request(name, **args)).wait(COMMAND_TIMEOUT_S)

    def _session_live(self) -> bool:
        return self._owner is not None and self.supervisor.mode == Mode.CALIBRATE

    def _require_owner(self) -> None:
        if not self._session_live():
            raise CalibrationUnavailableError(
                "no calibration session is running (it ended, or the daemon relaxed); start one with "
                "'plenctl calibrate'"
            )
        if self._owner != current_connection():
            raise CalibrationUnavailableError("another 'plenctl calibrate' holds the calibration session")

    # -- session ---------------------------------------------------------------------------

    def begin(self, args: dict[str, Any]) -> dict[str, Any]:
        if args:
            raise ArgumentError(f"calibrate_begin takes no arguments, got {sorted(args)}")
        hal = self.loop.hal
        if not isinstance(hal, Calibratable):
            raise CalibrationUnavailableError(
                f"the {self.config.hal} backend has nothing to calibrate: calibration needs the hardware "
                "backend (on a PC rehearse with 'plend run --hal hardware --bus emulated')"
            )
        with self._lock:
            if self._session_live():
                raise CalibrationUnavailableError(
                    "another 'plenctl calibrate' is running; finish it there (or 'plenctl relax' ends it)"
                )
            truth = hal.true_joint_angles if isinstance(hal, JointTruth) else None
            mode = CalibrationMode(hal, self.loop.safety, self.config.safety.joint_limits(), truth)
            self._submit("calibrate_begin", mode=mode)
            self._owner = current_connection()
        log.info("calibration wizard started")
        return self._session_info(mode)

    def _session_info(self, mode: CalibrationMode) -> dict[str, Any]:
        try:
            stored = store.load_optional(self.path)
        except store.CalibrationError:
            stored = None
        draft = drafts.load_draft(self.path)
        if draft is not None and draft.robot_id != self.robot_id:
            draft = None
        joints = []
        for j in JOINTS:
            if not j.wired:
                continue
            lo, hi = mode.lower[j.index], mode.upper[j.index]
            joints.append({
                "name": j.name, "role": j.role, "side": j.side, "limb": j.limb,
                "lower": float(lo), "upper": float(hi), "has_feedback": j.adc is not None,
                "working": mode.working[j.name].servo(),
            })  # fmt: skip
        hal_calibration = mode.hal.calibration
        return {
            "robot_id": self.robot_id,
            "path": str(self.path),
            "hal": self.config.hal,
            "bus": self.config.hardware.bus,
            "truth": mode.truth is not None,
            "feedback_polarity": self.config.hardware.feedback_polarity,
            "problem": hal_calibration.problem,
            "stored": None if stored is None else dataclasses.asdict(stored),
            "draft": None if draft is None else dataclasses.asdict(draft),
            "joints": joints,
            "limits": {
                "jog_window_deg": JOG_WINDOW_DEG,
                "safe_margin_deg": SAFE_MARGIN_DEG,
                "move_speed_rad_s": MOVE_SPEED_RAD_S,
                "filter_speed_rad_s": FILTER_SPEED_RAD_S,
                "identify_speed_rad_s": self.config.safety.max_speed_rad_s,
            },
            # What servo identification needs to know of the loop and of the simulation
            # its parameters are for.
            "rate_hz": self.config.loop.rate_hz,
            "sim_substeps": self.config.sim.substeps,
            "pwm_frame_s": mode.hal.pwm_frame_s,
        }

    def _op(self, op: str) -> Handler:
        def handler(args: dict[str, Any]) -> dict[str, Any]:
            checked = _checked(op, args)
            self._require_owner()
            return self._submit("calibrate", op=op, **checked)

        return handler

    def end(self, args: dict[str, Any]) -> dict[str, Any]:
        if args:
            raise ArgumentError(f"calibrate_end takes no arguments, got {sorted(args)}")
        with self._lock:
            if self._session_live() and self._owner != current_connection():
                raise CalibrationUnavailableError("another 'plenctl calibrate' holds the calibration session")
            live = self._session_live()
            self._owner = None
        if live:
            self._submit("calibrate_end")
            log.info("calibration wizard finished; servos relaxed")
        return {"mode": self.supervisor.mode}

    def connection_closed(self, connection: int) -> None:
        """A client went away; if it held the session, leave calibration mode and relax."""
        with self._lock:
            if connection != self._owner:
                return
            live = self._session_live()
            self._owner = None
        if live:
            log.warning("calibration wizard disconnected; leaving calibration mode, servos relaxed")
            try:
                self._submit("calibrate_end")
            except PlendError as exc:
                log.error("could not leave calibration mode: %s", exc)

    # -- files -----------------------------------------------------------------------------

    def draft(self, args: dict[str, Any]) -> dict[str, Any]:
        """Keep (or with ``draft: null`` drop) the unfinished session's results."""
        only(args, "draft", command="calibrate_draft")
        self._require_owner()
        if "draft" not in args:
            raise ArgumentError("calibrate_draft needs a 'draft' (an object, or null to drop it)")
        if args["draft"] is None:
            drafts.remove_draft(self.path)
            return {"draft": None}
        try:
            draft = drafts.draft_from_json({"version": store.CALIBRATION_VERSION, **args["draft"]})
        except (store.CalibrationError, TypeError) as exc:
            raise ArgumentError(f"calibration draft refused: {exc}") from None
        if draft.robot_id != self.robot_id:
            raise ArgumentError(
                f"calibration draft is for robot {draft.robot_id!r}, this is {self.robot_id!r}"
            )
        try:
            drafts.save_draft(self.path, draft)
        except OSError as exc:
            raise CalibrationUnavailableError(
                f"cannot keep the draft next to {self.path}: {exc.strerror or exc}; "
                "make that directory writable for the daemon, or set [paths] state_dir"
            ) from None
        return {"draft": str(drafts.draft_path(self.path)), "joints": len(draft.joints)}

    def save(self, args: dict[str, Any]) -> dict[str, Any]:
        """Validate and write the calibration file, then drive the servos with it."""
        only(args, "record", command="calibrate_save")
        self._require_owner()
        try:
            record = store.from_json(args.get("record"))
        except store.CalibrationError as exc:
            raise ArgumentError(f"calibration refused, nothing written: {exc}") from None
        if record.robot_id != self.robot_id:
            raise ArgumentError(f"calibration is for robot {record.robot_id!r}, this is {self.robot_id!r}")
        try:
            store.save(self.path, record)
        except store.CalibrationError as exc:
            raise ArgumentError(str(exc)) from None
        except OSError as exc:
            raise CalibrationUnavailableError(
                f"cannot write {self.path}: {exc.strerror or exc}; the previous calibration is untouched"
            ) from None
        drafts.remove_draft(self.path)
        self._submit("calibrate_apply", calibration=store.to_servo_calibration(record, self.path))
        log.info("calibration saved to %s and in use", self.path)
        backup = store.backup_path(self.path)
        return {"path": str(self.path), "backup": str(backup) if backup.exists() else None}
