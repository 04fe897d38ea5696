"""Errors, config, clocks, files and formats: what every layer uses; no threads, no devices."""
