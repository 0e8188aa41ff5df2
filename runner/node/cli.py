"""`python -m runner.node run --config FILE`, `python -m runner.node record-exit --config FILE`,
`python -m runner.node bench --model FILE ...` (runner/node/bench.py) and
`python -m runner.node train --config FILE` (runner/node/train.py) and
`python -m runner.node ready --config FILE` (a serving replica answers a completion: runner/node/serve.py)
and `python -m runner.node frontdoor --config FILE` (the serving front door: runner/node/frontdoor)."""

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
    bench = sub.add_parser("bench", help="measure one model on this node; prints one JSON object")
    bench.add_argument("--model", required=True, type=Path, help="the GGUF file")
    bench.add_argument("--prompt-tokens", type=positive_int, default=64, help="prompt length in tokens")
    bench.add_argument("--gen-tokens", type=positive_int, default=32, help="tokens generated per repetition")
    bench.add_argument("--reps", type=positive_int, default=3, help="measured repetitions")
    bench.add_argument("--warmup", type=int, default=1, help="repetitions run first and not counted")
    bench.add_argument("--threads", type=int, default=0, help="n_threads (0: llama.cpp's choice)")
    bench.add_argument("--n-gpu-layers", type=int, default=0, help="layers offloaded to the GPU (-1: all)")
    bench.add_argument(
        "--install-record",
        type=Path,
        default=Path("/opt/edgejar/wheelhouse/installed.txt"),
        help="roles/edgejar_llama's install record (the wheel key)",
    )
    ready = sub.add_parser("ready", help="wait until a serving replica answers a real completion")
    ready.add_argument("--config", required=True, type=Path, help="the replica's instance config JSON")
    ready.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default 120)")
    door = sub.add_parser("frontdoor", help="run the serving front door (docs/serving.md)")
    door.add_argument("--config", required=True, type=Path, help="the front door's config JSON")
    train = sub.add_parser("train", help="run this node's part of a torch_distributed job (torchrun)")
    train.add_argument("--config", required=True, type=Path, help="the training unit's config JSON")
    train.add_argument(
        "--app-dir", type=Path, default=None, help="where deploy put the code (default: the config's app_dir)"
    )
    train.add_argument("--print", action="store_true", help="print the command and environment, run nothing")
    return p


def train(args: argparse.Namespace) -> int:
    import json

    from runner.node import train as train_mod

    entry = train_mod.load(args.config)
    app_dir = args.app_dir or Path(str(entry.get("app_dir") or "/opt/edgejar/app"))
    argv, env = train_mod.prepare(entry, sys.executable, app_dir)
    if args.print:
        shown = {k: v for k, v in env.items() if k.startswith(("GLOO_", "EDGEJAR_TRAINING_"))}
        print(json.dumps({"argv": argv, "env": shown}, indent=2, sort_keys=True), flush=True)
        return 0
    log.info("%s: %s (GLOO_SOCKET_IFNAME=%s)", entry["id"], " ".join(argv), env["GLOO_SOCKET_IFNAME"])
    train_mod.notify_ready()
    return train_mod.run(entry, argv, env)


def ready(args: argparse.Namespace) -> int:
    import json

    from runner.node import serve

    cfg = config_mod.load(args.config)
    if cfg.mode != "serve":
        raise InputError(f"{args.config}: mode: {cfg.mode!r} is not a serving replica (mode serve)")
    print(json.dumps(serve.ready(cfg, args.timeout)), flush=True)
    return 0


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1 (also used by `python -m runner bench`)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be at least 1")
    return value


def bench(args: argparse.Namespace) -> int:
    import json

    from runner.node import bench as bench_mod

    method = bench_mod.Method(
        prompt_tokens=args.prompt_tokens,
        gen_tokens=args.gen_tokens,
        reps=args.reps,
        warmup=max(args.warmup, 0),
        n_threads=max(args.threads, 0),
        n_gpu_layers=args.n_gpu_layers,
    )
    try:
        result = bench_mod.run(args.model, method, args.install_record)
    except (FileNotFoundError, ValueError) as exc:
        raise InputError(str(exc)) from None
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")


def run(path: Path) -> int:
    from runner.node.engine import Engine
    from runner.node.mind import Mind
    from runner.node.modes import create
    from runner.node.peers import Peers

    cfg = config_mod.load(path)
    if cfg.mode == "serve":  # a serving replica: llama-cpp-python's server, not the experiment engine
        from runner.node import serve

        return serve.run(cfg)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("%s: %s received: stopping", cfg.id, signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    conn = records.connect(cfg.db_path)
    try:
        records.note_machine(conn)
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
    return auth.config_secret(cfg.peer_secret_file, cfg.source)


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
        if args.command == "bench":
            return bench(args)
        if args.command == "train":
            return train(args)
        if args.command == "ready":
            return ready(args)
        if args.command == "frontdoor":
            from runner.node.frontdoor import app as frontdoor

            return frontdoor.serve(args.config)
        return run(args.config) if args.command == "run" else record_exit(args.config)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_status
    except EdgejarError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_status
