"""The control thread: the loop, the safety filter, the supervisor, its behaviours, telemetry."""
