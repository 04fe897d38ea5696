"""plend: the on-robot software of a PLEN2-class small biped.

The subpackages, lowest layer first (tests/test_layers.py keeps imports pointing down):

- ``plend.core``: errors, config, clocks, files and formats.
- ``plend.model``: the robot as data: joint table and limits, readings, servo maths, URDF,
  simulated worlds.
- ``plend.hal``: the hardware boundary and its backends (simulation, hardware, emulated
  chips, a fake robot for tests).
- ``plend.control``: the control thread: loop, safety filter, supervisor, behaviours,
  telemetry.
- ``plend.daemon``: the runtime around the loop: the control socket and its handlers,
  start-up, the daemon and batch runs.
- ``plend.cli``, ``plend.drive``, ``plend.track``: the other commands: evaluate, recordings,
  plots, the live view, probe; teleoperation; the camera tracker.

The entry points stay at the top: ``plend.main`` (the ``plend`` command), ``plend.plenctl``
and ``plend.pwm_off`` (run by the systemd unit when the daemon stops).
"""

__version__ = "0.1.0"
