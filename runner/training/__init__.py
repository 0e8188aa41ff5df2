"""The `torch_distributed` experiment kind (seed 002): one training job over several nodes.

`spec` reads and checks its experiment file; `plan` turns it into units for the placement engine (one
per node, holding that node's ranks), chooses the job's one communication backend, and writes the
units' host_vars entries.
"""
