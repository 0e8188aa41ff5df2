"""What launch did per instance (the reconcile step's results), said after `runner up`, and `--watch`:
the journals of the instances that launch started or restarted, streamed to the terminal."""

from __future__ import annotations

import logging
import selectors
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from runner.health.poll import Poller
from runner.health.targets import load_targets
from runner.monitor import actions

log = logging.getLogger(__name__)

RECONCILE_TASK = "Reconcile the instances (units, configs, drop-ins; prune, restart, start, wait)"


@dataclass(frozen=True)
class Launched:
    node: str
    id: str
    action: str  # none, started, restarted
    why: tuple[str, ...]
    ok: bool
    state: str
    log_tail: tuple[str, ...] = ()


def from_results(results: Mapping[str, Mapping[str, Any]]) -> list[Launched]:
    """Pure: node -> reconcile result, as one entry per instance (sorted by node and id)."""
    out = []
    for node, res in sorted(results.items()):
        for inst in [*(res.get("instances") or []), *(res.get("training") or [])]:
            out.append(
                Launched(
                    node=node,
                    id=str(inst.get("id")),
                    action=str(inst.get("action", "none")),
                    why=tuple(inst.get("why") or ()),
                    ok=bool(inst.get("ok", True)),
                    state=str(inst.get("state", "")),
                    log_tail=tuple(inst.get("log_tail") or ()),
                )
            )
    return out


def summary(launched: list[Launched], removed: Mapping[str, list[str]]) -> list[str]:
    """Pure: the lines `runner up` prints about what launch changed, and each failure with its log."""
    lines = []
    changed = [x for x in launched if x.action != "none"]
    kept = len(launched) - len(changed)
    for x in changed:
        lines.append(f"{x.action}: {x.id} on {x.node} ({'; '.join(x.why)})")
    for node, ids in sorted(removed.items()):
        lines.extend(f"removed: {iid} from {node}" for iid in ids)
    lines.append(f"{len(changed)} unit(s) started or restarted, {kept} left running as they were")
    for x in launched:
        if not x.ok:
            lines.append(f"NOT RUNNING: {x.id} on {x.node} is {x.state}; its journal:")
            lines.extend(f"    {line}" for line in x.log_tail or ("(no journal lines)",))
    return lines


def watch(inventory: Path, launched: list[Launched], seconds: float, out: TextIO = sys.stdout) -> None:
    """Stream the journals of the started and restarted instances for `seconds` (Ctrl-C ends it early)."""
    todo = [x for x in launched if x.action != "none"]
    if not todo:
        log.info("watch: nothing was started or restarted")
        return
    targets = load_targets(inventory, sorted({x.node for x in todo}))
    poller = Poller(targets)
    procs: dict[int, tuple[str, subprocess.Popen[str]]] = {}
    sel = selectors.DefaultSelector()
    try:
        for x in todo:
            proc = poller.popen(x.node, actions.journal_command(x.id, lines=5))
            assert proc.stdout is not None
            procs[proc.stdout.fileno()] = (x.id, proc)
            sel.register(proc.stdout, selectors.EVENT_READ)
        width = max(len(x.id) for x in todo)
        log.info("watch: following %d instance(s) for %g s (Ctrl-C stops)", len(todo), seconds)
        end = time.monotonic() + seconds
        while procs and (left := end - time.monotonic()) > 0:
            for key, _ in sel.select(timeout=min(left, 0.5)):
                iid, proc = procs[key.fd]
                line = proc.stdout.readline() if proc.stdout else ""
                if not line:
                    sel.unregister(key.fileobj)
                    del procs[key.fd]
                    continue
                out.write(f"{iid:<{width}} | {line}")
                out.flush()
    except KeyboardInterrupt:
        pass
    finally:
        for _, proc in procs.values():
            proc.terminate()
        for _, proc in procs.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
        sel.close()
        poller.shutdown()
