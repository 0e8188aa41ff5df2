"""`python -m runner bench`: models measured on the nodes (roles/edgejar_bench, runner/node/bench.py),
every run kept in a results database, runs compared side by side."""
