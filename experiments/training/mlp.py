"""A small regression MLP trained with data parallelism on synthetic data: the example entry of a
`kind: torch_distributed` job (experiments/mixed_training.yml, docs/training.md).

Run by torchrun on every node (the unit's wrapper, runner/node/train.py, gives it the job's backend, the
records database and the checkpoint directory in its environment). What it shows:
- one backend for all ranks (EDGEJAR_TRAINING_BACKEND, chosen by the planner), and the job's collective
  timeout (EDGEJAR_TRAINING_TIMEOUT_S): a rank whose peer vanished fails after it, and torchrun re-forms
  the job or gives up, instead of waiting gloo's 30 minutes;
- gradients averaged by hand with one all-reduce per step, so that the step time splits into compute and
  communication, and so that ranks may take uneven batches: each rank's gradient is weighted by its batch
  (sum of per-sample gradients over the global batch), so every step is the same global-batch SGD step
  whatever the split, and every rank runs the same number of steps (collectives stay matched);
- `weighting: speed` (EDGEJAR_TRAINING_WEIGHTING): a short calibration times each rank alone, and the
  global batch is split in proportion to the measured speeds;
- a checkpoint every --checkpoint-every steps (written beside and renamed); after a restart the ranks
  agree on the newest checkpoint any of them holds and continue from it;
- per step: loss, batch, compute and communication time, peak memory, into the node's records.

The data (EDGEJAR_TRAINING_DATA, the job's `data`): `synthetic`, a fixed random "teacher" (a linear map
plus a sine) and Gaussian inputs drawn from a generator seeded by (seed, step, rank): no data files, the
same on every board; or the path of a file on every node, written with
`torch.save({"x": inputs, "y": targets})` (x: N x features floats, y: N or N x 1): each step takes the
next global batch of rows (wrapping around), each rank its own consecutive share of them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from runner.node.trainrec import Recorder


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=200, help="training steps (every rank runs them all)")
    p.add_argument("--batch", type=int, default=256, help="global batch: samples per step over all ranks")
    p.add_argument("--features", type=int, default=32)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=20, help="steps between checkpoints (0: none)")
    p.add_argument("--calibrate-steps", type=int, default=5, help="least steps of the speed calibration")
    p.add_argument("--calibrate-s", type=float, default=0.5, help="least seconds of the speed calibration")
    p.add_argument("--step-sleep", type=float, default=0.0, help="seconds to pause after each step")
    return p.parse_args(argv)


def model(args: argparse.Namespace) -> torch.nn.Module:
    torch.manual_seed(args.seed)  # the same initial weights on every rank
    return torch.nn.Sequential(
        torch.nn.Linear(args.features, args.hidden), torch.nn.Tanh(), torch.nn.Linear(args.hidden, 1)
    )


def batch(args: argparse.Namespace, step: int, rank: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    teacher = torch.Generator().manual_seed(args.seed + 1)
    w = torch.randn(args.features, 1, generator=teacher) / args.features**0.5
    g = torch.Generator().manual_seed((args.seed * 1_000_003 + step) * 4096 + rank)
    x = torch.randn(size, args.features, generator=g)
    return x, x @ w + 0.5 * torch.sin(3 * x[:, :1])


class Rows:
    """A data file's rows (see the module's docstring), handed out a global batch per step."""

    def __init__(self, path: Path) -> None:
        doc = torch.load(path, weights_only=True)
        x, y = (doc.get("x"), doc.get("y")) if isinstance(doc, dict) else (None, None)
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or x.dim() != 2:
            raise ValueError(f"{path}: must hold {{'x': N x features, 'y': N or N x 1}} tensors")
        y = y.reshape(-1, 1)
        if len(y) != len(x) or len(x) == 0:
            raise ValueError(f"{path}: x has {len(x)} rows, y {len(y)}")
        self.x, self.y = x.float(), y.float()

    def take(self, step: int, total: int, offset: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's `size` rows of step `step`'s global batch of `total`, from `offset` in it."""
        n = len(self.x)
        index = (torch.arange(size) + step * total + offset) % n
        return self.x[index], self.y[index]


def calibrate(args: argparse.Namespace, net: torch.nn.Module, size: int) -> float:
    """This rank's samples per second alone (no communication), on a batch of `size` (an even share):
    at least --calibrate-steps steps and --calibrate-s seconds, so that a CPU quota (enforced per 100 ms
    period) or cores shared with other work show in the number, not only the first burst."""
    x, y = batch(args, -1, 0, size)
    start = time.perf_counter()
    steps = 0
    while steps < args.calibrate_steps or time.perf_counter() - start < args.calibrate_s:
        net.zero_grad()
        torch.nn.functional.mse_loss(net(x), y).backward()
        steps += 1
    net.zero_grad()
    return size * steps / max(time.perf_counter() - start, 1e-9)


def split(total: int, speeds: list[float]) -> list[int]:
    """`total` samples split in proportion to `speeds`, every rank at least one, summing to `total`."""
    raw = [total * s / sum(speeds) for s in speeds]
    out = [max(1, int(r)) for r in raw]
    order = sorted(range(len(raw)), key=lambda k: raw[k] - int(raw[k]), reverse=True)
    k = 0
    while sum(out) < total:
        out[order[k % len(out)]] += 1
        k += 1
    while sum(out) > total:
        big = max(range(len(out)), key=lambda j: out[j])
        out[big] -= 1
    return out


def resume(net: torch.nn.Module, path: Path) -> int:
    """The step to continue from: the newest checkpoint any rank holds, its weights sent to all."""
    mine = torch.load(path, weights_only=True) if path.is_file() else None
    step = torch.tensor([mine["step"] if mine else 0], dtype=torch.int64)
    newest = step.clone()
    dist.all_reduce(newest, op=dist.ReduceOp.MAX)
    if int(newest) == 0:
        return 0
    holder = torch.tensor([dist.get_rank() if int(step) == int(newest) else dist.get_world_size()])
    dist.all_reduce(holder, op=dist.ReduceOp.MIN)
    if mine and int(step) == int(newest):
        net.load_state_dict(mine["model"])
    for p in net.state_dict().values():
        dist.broadcast(p, src=int(holder))
    return int(newest)


def save(net: torch.nn.Module, step: int, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"step": step, "model": net.state_dict()}, tmp)
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    args = parse(argv)
    source = os.environ.get("EDGEJAR_TRAINING_DATA", "synthetic")
    try:
        rows = None if source == "synthetic" else Rows(Path(source))
    except (OSError, ValueError, RuntimeError) as exc:  # before any peer waits on this rank
        print(f"mlp.py: data {source}: {exc}", file=sys.stderr, flush=True)
        return 2
    if rows is not None:
        args.features = rows.x.shape[1]
    backend = os.environ.get("EDGEJAR_TRAINING_BACKEND", "gloo")
    timeout = timedelta(seconds=float(os.environ.get("EDGEJAR_TRAINING_TIMEOUT_S", "300")))
    dist.init_process_group(backend, timeout=timeout)
    rank, world = dist.get_rank(), dist.get_world_size()
    rec = Recorder.from_env()
    ckpt = rec.checkpoint() if rec else Path(f"mlp-rank{rank}.pt")
    net = model(args)
    opt = torch.optim.SGD(net.parameters(), lr=args.lr)

    weighting = os.environ.get("EDGEJAR_TRAINING_WEIGHTING", "none")
    speeds = [1.0] * world
    if weighting == "speed":
        mine = torch.tensor([calibrate(args, net, max(1, args.batch // world))], dtype=torch.float64)
        gathered = [torch.zeros(1, dtype=torch.float64) for _ in range(world)]
        dist.all_gather(gathered, mine)
        speeds = [float(t) for t in gathered]
    shares = split(args.batch, speeds)
    local = shares[rank]
    first_row = sum(shares[:rank])  # where this rank's rows start in each step's global batch (a data file)
    start = resume(net, ckpt)
    if rec:
        rec.event(
            "resume" if start else "start",
            step=start,
            world_size=world,
            backend=backend,
            weighting=weighting,
            batch=local,
            speeds=[round(s, 1) for s in speeds],
            data="synthetic" if rows is None else f"{source} ({len(rows.x)} rows)",
        )
    params = list(net.parameters())
    loss_value = float("nan")
    for step in range(start, args.steps):
        t0 = time.perf_counter()
        x, y = (
            batch(args, step, rank, local) if rows is None else rows.take(step, args.batch, first_row, local)
        )
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(x), y)
        loss.backward()
        t1 = time.perf_counter()
        # One all-reduce: every gradient and the loss, each weighted by this rank's batch.
        flat = torch.cat([p.grad.reshape(-1) for p in params] + [loss.detach().reshape(1)]) * local
        dist.all_reduce(flat)
        flat /= args.batch
        t2 = time.perf_counter()
        offset = 0
        for p in params:
            p.grad.copy_(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
        opt.step()
        loss_value = float(flat[-1])
        if args.checkpoint_every and (step + 1) % args.checkpoint_every == 0:
            save(net, step + 1, ckpt)
        if args.step_sleep:
            time.sleep(args.step_sleep)
        t3 = time.perf_counter()
        if rec:
            rec.step(step, loss=loss_value, batch=local, step_s=t3 - t0, compute_s=t1 - t0, comm_s=t2 - t1)
    if rec:
        rec.event("end", step=args.steps, final_loss=loss_value)
        rec.close()
    elif rank == 0:
        print(f"final loss {loss_value:.5f}")
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    # Leave without the interpreter's finalization. With gloo (torch 2.13) a worker whose records and
    # process group were already closed was seen to abort there about once in ten runs on the simulated
    # cluster ("terminate called without an active exception", SIGABRT, within milliseconds of its last
    # step's record): gloo's threads outlive the interpreter's teardown. torchrun counts a signal as a
    # failed rank and ends the whole job. Everything is written and the group destroyed by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
