"""One module per mode; `create(cfg)` picks the class."""

from __future__ import annotations

from runner.node.config import InstanceConfig
from runner.node.modes.base import Mode
from runner.node.modes.hive import Hive
from runner.node.modes.isolated import Amnesiac, Isolated
from runner.node.modes.panopticon import Panopticon
from runner.node.modes.prisoners import PrisonersDilemma
from runner.node.modes.split_brain import SplitBrain

MODES: dict[str, type[Mode]] = {
    "isolated": Isolated,
    "amnesiac_loop": Amnesiac,
    "split_brain": SplitBrain,
    "hive_cluster": Hive,
    "panopticon": Panopticon,
    "prisoners_dilemma": PrisonersDilemma,
}


def create(cfg: InstanceConfig) -> Mode:
    return MODES[cfg.mode](cfg)
