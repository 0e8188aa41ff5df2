"""The node-side experiment runtime: one experiment instance per process (`python -m runner.node`).

Imports only the stdlib, llama_cpp (lazily, in `mind`), numpy, yaml and psutil: the node's venv has
nothing else.
"""
