"""The simulated edge cluster: systemd-nspawn hosts in network namespaces (`python -m runner sim`)."""
