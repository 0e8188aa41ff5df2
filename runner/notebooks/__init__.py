"""The controller's side of notebook kernels (docs/notebooks.md): a client of the gateway."""
