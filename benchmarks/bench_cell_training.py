"""Benchmark: training throughput of a cell model (issue "Every grid cell", item 4).

Trains GRUs across grid cells as train-cells does: windows gathered batch by batch from one ``[cell, time, feature]``
array (:class:`~thawcast.learn.training.LazyWindows`), an epoch a fresh sample of windows, batch 512. Two ways:

* ``lightning``: :func:`thawcast.learn.training.fit` (what the stage runs: the LightningModule, early stopping,
  best-weight tracking, the validation pass);
* ``bare``: a plain loop over the same batches with the same optimiser and clipping, and the same validation pass.

Reports training sequences per second of both, the framework overhead ``1 - seq_s(lightning) / seq_s(bare)`` (goal:
under 15%), and the bare loop's floating-point rate as a share of this machine's fp32 GEMM peak measured in the same
run on the same number of threads (``training.threads``: a 2048 x 2048 matmul, best of 5). The GRU's flops per
sequence are counted from its gate matrices (2 x 3 H x (I + H) per layer and step, the backward pass twice the
forward). Models: the default GRU (``models.gru``), the tuned cell GRU (``metrics/cell_tuning.json``, when
``tune-cells`` has run) and the largest GRU the cell search space allows (``tuning.cells.space``).
Data: random values in the default cell array's shape (4,002 cells x 276 months x 38 inputs).

Usage::

    python benchmarks/bench_cell_training.py            # 2 epochs of 32,768 windows, 2 repeats
    python benchmarks/bench_cell_training.py --quick
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from bench_training import bare

from thawcast.config import TrainingConfig
from thawcast.learn.training import LazyWindows, WindowTensors, fit
from thawcast.models.hparams import GRUParams
from thawcast.models.registry import build_model
from thawcast.parallel import torch_threads
from thawcast.prep.windows import WindowSet, window_index

#: The default cell array: cells, months, inputs (34 monthly features, lat, lon, elevation_m, z) and window length.
CELLS, MONTHS, F, W = 4002, 276, 38, 24


def cell_windows(cells: int, seed: int) -> WindowSet:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((cells, MONTHS, F), dtype=np.float32)
    y = rng.standard_normal((cells, MONTHS, 4), dtype=np.float32)
    times = pd.date_range("2001-01-01", periods=MONTHS, freq="MS")
    cell, last = window_index(times, cells, W, 2003, 2018)
    return WindowSet(x=x, band=cell, last=last, length=W, times=times, feature_names=tuple(f"f{i}" for i in range(F)),
                     y=y)


def gru_variants(params: Path, tuning_file: Path) -> list[tuple[str, GRUParams]]:
    """``(label, hyper-parameters)`` of the default GRU, the tuned cell GRU (if ``tuning_file`` holds one) and the
    largest GRU of the cell search space."""
    from thawcast.config import load_config
    from thawcast.learn.cells import cell_settings

    cfg = load_config(params)
    default = cfg.models.hparams("gru")
    out = [(f"default GRU ({default.hidden} x {default.layers})", default)]
    if tuning_file.exists() and "gru" in cfg.cells.architectures:
        tuned = cell_settings(cfg, "gru", tuning_file).hparams
        out.append((f"tuned cell GRU ({tuned.hidden} x {tuned.layers})", tuned))
    space = cfg.tuning.cells.space_for("gru")

    def top(name: str, now: int) -> int:
        dim = space.get(name)
        return now if dim is None else int(max(dim.values))

    largest = default.model_copy(update={"hidden": top("hidden", default.hidden), "layers": top("layers", default.layers)})
    out.append((f"largest GRU of the cell search space ({largest.hidden} x {largest.layers})", largest))
    return out


def gru_flops(hidden: int, layers: int, inputs: int = F, steps: int = W) -> float:
    """Multiply-add flops of one training sequence: gate matrices only, backward = 2 x forward."""
    per_step = sum(2 * 3 * hidden * ((inputs if k == 0 else hidden) + hidden) for k in range(layers))
    return 3.0 * per_step * steps


def gemm_peak(threads: int, n: int = 2048) -> float:
    """fp32 GEMM flop rate (best of 5) on ``threads`` torch threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    with torch_threads(threads):
        torch.mm(a, b)
        best = min(_timed(lambda: torch.mm(a, b)) for _ in range(5))
    return 2.0 * n ** 3 / best


def _timed(call) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--per-epoch", type=int, default=32768)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="1 epoch of 8,192 windows, 1 repeat, 800 cells")
    p.add_argument("--out", type=Path, default=Path("benchmarks/_out/bench_cell_training.json"))
    a = p.parse_args()
    cells = CELLS
    if a.quick:
        a.epochs, a.per_epoch, a.repeats, cells = 1, 8192, 1, 800
    logging.basicConfig(level=logging.WARNING)
    ws = cell_windows(cells, 0)
    train = LazyWindows(ws)
    val = WindowTensors.from_windows(WindowSet(x=ws.x, band=ws.band[:4096], last=ws.last[:4096], length=W,
                                               times=ws.times, feature_names=ws.feature_names, y=ws.y), unit_ids=False)
    cfg = TrainingConfig(max_epochs=a.epochs, batch_size=512, patience=10 * a.epochs, accelerator="cpu")
    peak = gemm_peak(cfg.threads)
    seqs = a.per_epoch * a.epochs
    res = {"setup": {"cells": cells, "train_windows": len(ws), "per_epoch": a.per_epoch, "epochs": a.epochs,
                     "batch_size": cfg.batch_size, "threads": cfg.threads, "repeats": a.repeats,
                     "torch": torch.__version__, "gemm_peak_gflop_s": peak / 1e9}}
    print(f"fp32 GEMM peak on {cfg.threads} thread(s): {peak / 1e9:.1f} GFLOP/s")
    for label, hp in gru_variants(Path("params.yaml"), Path("metrics/cell_tuning.json")):
        torch.manual_seed(0)
        template = build_model("gru", F, 1, hp, 0, 4)
        times = {"lightning": [], "bare": []}
        for _ in range(a.repeats):
            times["lightning"].append(fit(copy.deepcopy(template), train, val, cfg, seed=0, label="bench",
                                          windows_per_epoch=a.per_epoch).seconds)
            times["bare"].append(bare(copy.deepcopy(template), train, val, cfg, 0, a.per_epoch))
        row = {k: {"best_s": min(v), "seq_per_s": seqs / min(v)} for k, v in times.items()}
        row["overhead"] = 1.0 - row["lightning"]["seq_per_s"] / row["bare"]["seq_per_s"]
        flops = gru_flops(hp.hidden, hp.layers)
        row["gflop_per_s_bare"] = row["bare"]["seq_per_s"] * flops / 1e9
        row["share_of_gemm_peak"] = row["bare"]["seq_per_s"] * flops / peak
        res[label] = row
        print(f"  {label}: lightning {row['lightning']['seq_per_s']:7.0f} seq/s, bare {row['bare']['seq_per_s']:7.0f}"
              f" seq/s, overhead {row['overhead']:+.1%} (goal < 15%); {row['gflop_per_s_bare']:.1f} GFLOP/s ="
              f" {row['share_of_gemm_peak']:.0%} of the GEMM peak")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
