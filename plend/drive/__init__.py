"""Driving the robot by hand: ``plenctl drive`` with a keyboard or a gamepad.

The client side (keys, gamepad, display, the link to the daemon) lives in
:mod:`plend.drive.client` and its helpers; the daemon side is the drive lease
(:mod:`plend.drive.lease`), which the supervisor checks every tick so that a client that
stops sending, or whose connection drops, stops the walk at the next step.
"""
