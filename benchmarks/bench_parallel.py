"""Benchmark: how seed-spread-like work uses the cores: threads per training and processes side by side.

Trains the same kind of GRU (default hyper-parameters, random windows of the default shape) ``--jobs`` times,
each job a different seed, three ways, all measured in one run:

* ``serial, 2 threads``: one after another in this process, torch on two threads (the old default);
* ``serial, 1 thread``: one after another, one thread each (``training.threads: 1``);
* ``2 processes, 1 thread``: side by side in two spawned processes (:func:`thawcast.parallel.map_processes`,
  as ``seed-spread``, ``tune`` and ``explain`` run them with ``compute.workers: 2``).

Reports the wall time of each and the speed-ups against the old default. The process start (spawn, imports)
is inside the parallel wall time, as it is in the stages.

Usage::

    python benchmarks/bench_parallel.py            # 8 jobs of 20 epochs
    python benchmarks/bench_parallel.py --quick    # 2 jobs of 3 epochs
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch
from bench_training import BANDS, F, data  # the same random windows of the default shape

from thawcast.config import TrainingConfig
from thawcast.learn.training import fit
from thawcast.models.hparams import GRUParams
from thawcast.models.registry import build_model
from thawcast.parallel import map_processes


def job(spec: tuple[int, int, int]) -> float:
    """Train one GRU from ``seed`` for ``epochs`` on ``threads`` threads; returns the fit's seconds."""
    seed, epochs, threads = spec
    logging.getLogger("thawcast").setLevel(logging.WARNING)
    torch.manual_seed(seed)
    net = build_model("gru", F, BANDS, GRUParams(), 4)
    cfg = TrainingConfig(max_epochs=epochs, patience=10 * epochs, accelerator="cpu", threads=threads)
    return fit(net, data(936, seed), data(216, seed + 1000), cfg, seed=seed, label="bench").seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=8)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="2 jobs of 3 epochs")
    p.add_argument("--out", type=Path, default=Path("benchmarks/_out/bench_parallel.json"))
    a = p.parse_args()
    if a.quick:
        a.jobs, a.epochs = 2, 3
    logging.basicConfig(level=logging.WARNING)
    job((0, 1, 1))  # warm-up: the first fit in a process pays one-off costs that are not the mode's
    wall = {}
    for name, threads in (("serial, 2 threads", 2), ("serial, 1 thread", 1)):
        t0 = time.perf_counter()
        for seed in range(a.jobs):
            job((seed, a.epochs, threads))
        wall[name] = time.perf_counter() - t0
    t0 = time.perf_counter()
    list(map_processes(job, [(seed, a.epochs, 1) for seed in range(a.jobs)], 2))
    wall["2 processes, 1 thread"] = time.perf_counter() - t0
    base = wall["serial, 2 threads"]
    res = {"setup": {"jobs": a.jobs, "epochs": a.epochs, "train_windows": 936, "torch": torch.__version__},
           "wall_s": wall, "speedup_vs_serial_2_threads": {k: base / v for k, v in wall.items()}}
    print(f"GRU (default params), {a.jobs} trainings of {a.epochs} epochs x 936 windows:")
    for k, v in wall.items():
        print(f"  {k:22s} {v:7.1f} s   speed-up {base / v:4.2f}x")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
