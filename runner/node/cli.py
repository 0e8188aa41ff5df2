"""`python -m runner.node run --config FILE` and `python -m runner.node record-exit --config FILE`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from runner.errors import EdgejarError, InputError
from runner.node import auth, lifecycle, records
from runner.node import config as config_mod

log = logging.getLogger("runner.node")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m runner.node", description="Run one edgejar experiment instance."
    )
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the instance (a long-lived process under systemd)")
    run.add_argument("--config", required=True, type=Path, help="the instance config JSON")
    rec = sub.add_parser("record-exit", help="record how the last run ended (systemd ExecStopPost)")
    rec.add_argument("--config", required=True, type=Path, help="the instance config JSON")
    return p


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")


def run(path: Path) -> int:
    from runner.node.engine import Engine
    from runner.node.mind import Mind
    from runner.node.modes import create
    from runner.node.peers import Peers

    cfg = config_mod.load(path)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("%s: %s received: stopping", cfg.id, signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    conn = records.connect(cfg.db_path)
    try:
        mind = Mind(cfg)
        engine = Engine(cfg, conn, mind, create(cfg), stop)
        engine.start()
        rt = cfg.runtime
        if rt.cycles and engine.cycle > rt.cycles:
            lifecycle.end(conn, cfg.id, engine.life, "completed", engine.cycle - 1, None)
            log.info("%s: all %d cycles are already done", cfg.id, rt.cycles)
            return 0
        try:
            backoff = float(cfg.setting("reconnect_max_s", 5.0))
            peers = Peers(
                cfg.address,
                cfg.port,
                cfg.peers,
                engine.hello,
                secret=peer_secret(cfg),
                me=cfg.id,
                experiment=cfg.experiment,
                allowed=cfg.members,
                backoff_max_s=backoff,
            )
        except OSError as exc:
            raise EdgejarError(
                f"{cfg.id}: cannot listen on {cfg.address}:{cfg.port}: {exc.strerror}"
            ) from exc
        try:
            engine.run(peers)
        finally:
            peers.close(flush_s=2.0)
    finally:
        conn.close()
    return 0


def peer_secret(cfg: config_mod.InstanceConfig) -> bytes:
    """The experiment's peer secret. An instance without peers and without a secret file gets a random
    one: its port then accepts nobody (never an unauthenticated peer)."""
    if cfg.peer_secret_file is None:
        if cfg.peers:
            raise InputError(f"{cfg.source}: peer_secret_file: needed to talk to peers (launch writes it)")
        return os.urandom(32)
    try:
        return auth.read_secret(cfg.peer_secret_file)
    except OSError as exc:
        raise InputError(
            f"{cfg.source}: peer_secret_file: cannot read {cfg.peer_secret_file} ({exc.strerror})"
        ) from None
    except ValueError as exc:
        raise InputError(f"{cfg.source}: peer_secret_file: {exc}") from None


def record_exit(path: Path) -> int:
    cfg = config_mod.load(path)
    conn = records.connect(cfg.db_path)
    try:
        cause = lifecycle.record_exit(conn, cfg.id, os.environ)
    finally:
        conn.close()
    print(f"{cfg.id}: exit recorded: {cause}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _logging()
    try:
        return run(args.config) if args.command == "run" else record_exit(args.config)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_status
    except EdgejarError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_status
