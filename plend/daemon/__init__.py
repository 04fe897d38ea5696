"""The runtime around the loop: the control socket, its handlers, start-up, daemon, batch runs."""
