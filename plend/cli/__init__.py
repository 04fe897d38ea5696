"""plend's subcommands that are not the daemon (evaluate, recordings, plots, the live view,
probe), and plenctl's status table."""
