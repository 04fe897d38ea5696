"""The robot as data: joint table and limits, readings, servo maths, URDF, simulated worlds."""
