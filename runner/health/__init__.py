"""Node health: one cheap probe per node per poll over persistent SSH connections, pure parsing, status
decisions with hysteresis, and Prometheus textfile metrics. Used by `python -m runner health` and
the monitor."""
