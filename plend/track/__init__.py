"""The camera pose source: see the robot from outside.

``plend track`` runs in its own process (OpenCV stays out of the daemon): it reads a
camera, finds the ArUco marker on the robot's torso (or a coloured ball, the original
project's method), turns it into the torso's pose in the floor frame and streams it to
the daemon's ``pose`` command. Only :mod:`plend.track.settings` and
:mod:`plend.track.geometry` are imported by the daemon; the rest needs ``cv2``.
"""
