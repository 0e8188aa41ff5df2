"""Notebook kernels on the cluster's nodes (docs/notebooks.md).

One Jupyter Kernel Gateway on the coordinator is the single URL users connect to. Its kernels start on
the nodes through edgejar's kernel provisioner (`provisioner.py`): each request is placed with edgejar's
own placement engine (`choose.py`) over the pool the notebooks role writes (`pool.py`: the nodes, their
kernel slots and what the placed experiments already claim), then started over SSH by the node's kernel
helper (`ctl.py`) as a hardened transient systemd unit with `MemoryMax`, bound to the node's cluster
address.
"""
