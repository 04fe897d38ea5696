"""Servo and IMU calibration: the versioned calibration file and the feedback fit.

``calibration.store`` reads and writes the file the daemon drives the servos from;
``calibration.fit`` turns the wizard's measurements into the numbers stored there (and
needs numpy). Import the one you need: this package imports nothing on its own, so the
daemon loading the file pays for neither the fit nor its dependencies. Nothing here
opens a bus.
"""
