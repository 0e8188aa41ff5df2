"""The placement engine: a pure function from cluster and instances to an assignment.

`place(problem)` takes a `Problem` (nodes, instances, the current assignment, the policy) and
returns a `Placement` or raises `NoPlacementError` that says which instance fits nowhere and why.
Nothing here reads files or talks to hosts.
"""

from runner.placement.engine import place
from runner.placement.model import Instance, Node, Placement, Problem, Verdict

__all__ = ["Instance", "Node", "Placement", "Problem", "Verdict", "place"]
