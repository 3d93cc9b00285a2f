"""Benchmark: memory of thawcast's index-based windows vs materialised [N, w, F] windows.

For growing record lengths (months) and feature counts, builds the windows of every band
two ways and measures the bytes each holds (``tracemalloc`` peak while building and
running one epoch of batches):

* ``index``: :class:`thawcast.prep.windows.WindowSet`: the monthly ``[band, time, F]`` array
  once, two integer index arrays, batches gathered from a strided view;
* ``copy``: every window stacked into one ``[N, w, F]`` array up front (the usual
  "make sequences" loop).

The claim: ``index`` memory grows with months x features, ``copy`` with windows x w x
features (about ``w`` times more). Reports bytes per (band x month x feature) for both and
their ratio, measured in one run.

Usage::

    python benchmarks/bench_windows.py              # 23 to 200 years, 36 and 72 features
    python benchmarks/bench_windows.py --quick
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc

import numpy as np
import pandas as pd

from thawcast.prep.windows import WindowSet, window_index

BANDS = 6
WINDOW = 24
BATCH = 256


def _epoch(get_batch, n: int) -> float:
    """Touch every window once in shuffled batches; returns a checksum so nothing is optimised away."""
    order = np.random.default_rng(0).permutation(n)
    total = 0.0
    for i in range(0, n, BATCH):
        total += float(get_batch(order[i:i + BATCH]).sum(dtype=np.float64))
    return total


def measure(mode: str, years: int, n_features: int) -> dict:
    times = pd.date_range("2001-01-01", periods=12 * years, freq="MS")
    x = np.random.default_rng(1).normal(size=(BANDS, len(times), n_features)).astype(np.float32)
    base = x.nbytes
    tracemalloc.start()
    t0 = time.perf_counter()
    band, last = window_index(times, BANDS, WINDOW, times.year[0], times.year[-1])
    if mode == "index":
        ws = WindowSet(x=x, band=band, last=last, length=WINDOW, times=times,
                       feature_names=tuple(f"f{i}" for i in range(n_features)))
        check = _epoch(ws.inputs, len(ws))
    else:
        windows = np.stack([x[b, k - WINDOW + 1:k + 1] for b, k in zip(band, last, strict=True)])
        check = _epoch(lambda idx: windows[idx], len(windows))
    wall = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    cells = BANDS * len(times) * n_features
    return {"mode": mode, "years": years, "features": n_features, "windows": len(band),
            "extra_peak_mib": peak / 2**20, "monthly_array_mib": base / 2**20,
            "bytes_per_cell": (base + peak) / cells, "wall_s": wall, "checksum": round(check, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    grid = [(23, 36), (100, 36)] if args.quick else [(23, 36), (100, 36), (200, 36), (200, 72)]
    rows = []
    for years, feats in grid:
        a, b = measure("index", years, feats), measure("copy", years, feats)
        assert a["checksum"] == b["checksum"], "the two layouts must yield the same windows"
        rows += [a, b]
        print(f"{years:4d} yr x {feats:3d} features, {a['windows']:6d} windows:"
              f" index {a['bytes_per_cell']:6.1f} B/cell ({a['monthly_array_mib'] + a['extra_peak_mib']:8.1f} MiB),"
              f" copy {b['bytes_per_cell']:6.1f} B/cell ({b['monthly_array_mib'] + b['extra_peak_mib']:8.1f} MiB);"
              f" memory ratio index/copy {a['bytes_per_cell'] / b['bytes_per_cell']:.3f},"
              f" epoch time ratio {a['wall_s'] / b['wall_s']:.2f}", flush=True)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
