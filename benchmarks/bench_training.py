"""Benchmark: what the Lightning training loop costs against a bare PyTorch loop.

Trains the same GRU (default hyper-parameters, same initial weights, same batches) for the
same number of epochs two ways, each epoch followed by one validation pass:

* ``lightning``: :func:`thawcast.learn.training.fit` (the LightningModule, early stopping,
  best-weight tracking, per-epoch history: what the train stage runs);
* ``bare``: a plain loop with the same optimiser, gradient clipping and batches.

Reports training sequences per second for both and the framework overhead
``1 - seq_s(lightning) / seq_s(bare)`` (aim: under 15%), measured in one run with the
two alternated ``--repeats`` times (best of each kept, the machines are shared and noisy).
Data: windows of the default shape (936 training / 216 validation windows of 24 months x
37 features, 6 bands), random values, so the benchmark does not need the pipeline.

Usage::

    python benchmarks/bench_training.py            # 20 epochs, 3 repeats
    python benchmarks/bench_training.py --quick
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from pathlib import Path

import torch

from thawcast.config import TrainingConfig
from thawcast.learn.training import TensorBatches, WindowTensors, fit
from thawcast.models.hparams import GRUParams
from thawcast.models.registry import build_model
from thawcast.parallel import torch_threads

BANDS, W, F = 6, 24, 37


def data(n: int, seed: int) -> WindowTensors:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, W, F, generator=g)
    band = torch.randint(0, BANDS, (n,), generator=g)
    y = x[:, -6:, :4].mean(dim=1) + 0.1 * torch.randn(n, 4, generator=g)
    return WindowTensors(x, band, y)


def bare(net, train, val: WindowTensors, cfg: TrainingConfig, seed: int, per_epoch: int | None = None) -> float:
    """Seconds to train ``net`` the plain way on ``train`` (:class:`WindowTensors` or ``LazyWindows``; ``per_epoch``
    windows an epoch, all by default), one validation pass per epoch."""
    with torch_threads(cfg.threads):  # as many threads as fit() trains with
        return _bare(net, train, val, cfg, seed, per_epoch)


def _bare(net, train, val: WindowTensors, cfg: TrainingConfig, seed: int, per_epoch: int | None) -> float:
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    batches = TensorBatches(train, cfg.batch_size, shuffle=True, seed=seed, per_epoch=per_epoch)
    t0 = time.perf_counter()
    for _ in range(cfg.max_epochs):
        net.train()
        for x, band, y in batches:
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(net(x, band), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.gradient_clip)
            opt.step()
        net.eval()
        with torch.no_grad():
            for x, band, y in TensorBatches(val, max(cfg.batch_size, 256)):
                torch.nn.functional.mse_loss(net(x, band), y)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-sizes", default="32,64,128", help="comma-separated; params default is 64")
    p.add_argument("--quick", action="store_true", help="5 epochs, 1 repeat")
    p.add_argument("--out", type=Path, default=Path("benchmarks/_out/bench_training.json"))
    a = p.parse_args()
    if a.quick:
        a.epochs, a.repeats = 5, 1
    logging.basicConfig(level=logging.WARNING)
    train, val = data(936, 0), data(216, 1)
    torch.manual_seed(0)
    template = build_model("gru", F, BANDS, GRUParams(), 4)
    seqs = len(train) * a.epochs
    res = {"setup": {"epochs": a.epochs, "train_windows": len(train), "repeats": a.repeats,
                     "threads": TrainingConfig().threads, "torch": torch.__version__}}
    print(f"GRU (default params), {a.epochs} epochs x {len(train)} windows, best of {a.repeats}:")
    for bs in (int(b) for b in a.batch_sizes.split(",")):
        cfg = TrainingConfig(max_epochs=a.epochs, batch_size=bs, patience=10 * a.epochs, accelerator="cpu")
        times = {"lightning": [], "bare": []}
        for _ in range(a.repeats):
            times["lightning"].append(fit(copy.deepcopy(template), train, val, cfg, seed=0, label="bench").seconds)
            times["bare"].append(bare(copy.deepcopy(template), train, val, cfg, seed=0))
        row = {k: {"best_s": min(v), "seq_per_s": seqs / min(v)} for k, v in times.items()}
        row["overhead"] = 1.0 - row["lightning"]["seq_per_s"] / row["bare"]["seq_per_s"]
        res[f"batch_{bs}"] = row
        print(f"  batch {bs:4d}: lightning {row['lightning']['seq_per_s']:7.0f} seq/s, bare"
              f" {row['bare']['seq_per_s']:7.0f} seq/s, overhead {row['overhead']:+.1%} (target < 15%)")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
