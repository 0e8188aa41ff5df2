"""From experiment files and the inventory to what the nodes run: what each instance needs
(requirements), what `place` writes (hostvars), and moving instances off nodes that are gone (failover).
The decision itself is runner.placement's (pure: data in, decision out)."""
