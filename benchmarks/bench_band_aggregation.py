"""Benchmark: streaming band aggregation vs. loading the whole ERA5-Land cube.

Generates a full 0.1 degree ERA5-Land-format cube for the study box (121 x 271 cells x
276 months x 16 variables, CDS layout, one file per year - random but in-range values),
then aggregates it to band means twice, each in a fresh process:

* ``stream``: thawcast's reader + ``band_means`` over dask chunks of 12 months, computed
  with ``compute_streaming`` (bounded open-file cache), as the ``bands`` stage does;
* ``naive``: the same files loaded fully into memory first, then averaged;
* ``cluster1``, ``cluster2``: the streaming aggregation on a dask.distributed LocalCluster of 1 and 2
  single-threaded worker processes (``compute.scheduler: local``), with each worker's peak RSS;
* ``cells``: the grid-cell path beside it (issue "Every grid cell"): the land cells' ``[cell, time, variable]``
  store of all 16 variables written to NetCDF a year at a time (:mod:`thawcast.prep.cells`; goal: peak RSS
  under 4 GB for the full grid);
* ``cells1``, ``cells2``: the same store read by a LocalCluster of 1 and 2 worker processes (the ``cells`` stage
  with ``compute.scheduler: local``), with each worker's peak RSS.

Reports wall time and peak RSS of each and their ratios (measured in one run; the
machines are shared and noisy, so compare ratios, not absolute numbers).

Usage::

    python benchmarks/bench_band_aggregation.py            # full cube (~0.6 GB of NetCDF)
    python benchmarks/bench_band_aggregation.py --years 3  # quick look
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

HERE = Path(__file__).resolve().parent
MODES = ["stream", "naive", "cluster1", "cluster2", "cells", "cells1", "cells2"]


def generate(folder: Path, years: int, seed: int = 0) -> None:
    from thawcast.ingest.synthetic.world import write_era5land
    from thawcast.variables import ERA5_FEATURES, TARGETS, VARIABLES

    folder.mkdir(parents=True, exist_ok=True)
    lat = np.round(np.arange(59.2, 71.4 + 1e-9, 0.1), 3)
    lon = np.round(np.arange(-168.0, -141.0 + 1e-9, 0.1), 3)
    rng = np.random.default_rng(seed)
    for year in range(2001, 2001 + years):
        if (folder / f"era5land_monthly_{year}.nc").exists():
            continue
        times = pd.date_range(f"{year}-01-01", periods=12, freq="MS")
        data = {}
        for name in tuple(n for n in ERA5_FEATURES if VARIABLES[n].era5) + TARGETS:  # snow_depth is derived
            lo, hi = VARIABLES[name].valid_range
            mid, span = (lo + hi) / 2, (hi - lo) / 10
            data[name] = (("time", "lat", "lon"),
                          (mid + span * rng.random((12, lat.size, lon.size), dtype=np.float32)).astype(np.float32))
        write_era5land(xr.Dataset(data, coords={"time": times, "lat": lat, "lon": lon}), folder)
        print(f"generated {year}", flush=True)


def run_mode(mode: str, folder: Path) -> dict:
    import psutil

    from thawcast.config import StudyAreaConfig
    from thawcast.ingest.era5land import open_era5land
    from thawcast.prep.aggregate import band_means, compute_streaming
    from thawcast.prep.geometry import BandGeometry

    geom = BandGeometry.from_config(StudyAreaConfig())
    base_mib = psutil.Process().memory_info().rss / 2**20  # after imports, before any data
    t0 = time.perf_counter()
    ds = open_era5land(folder, chunks={"time": 12})
    workers = {}
    if mode.startswith("cells"):
        return _run_cells(mode, ds, geom, folder, base_mib, t0)
    if mode == "naive":
        out = band_means(ds.load(), geom).compute()
    elif mode.startswith("cluster"):
        from thawcast.parallel import dask_client

        with dask_client("local", int(mode.removeprefix("cluster"))) as client:
            out = compute_streaming(band_means(ds, geom), client=client)
            workers = client.run(_peak_rss_mib)
    else:
        out = compute_streaming(band_means(ds, geom))
    wall = time.perf_counter() - t0
    peak_mib = _peak_rss_mib()
    return {"mode": mode, "wall_s": wall, "peak_rss_mib": peak_mib, "work_mib": peak_mib - base_mib,
            "worker_peak_rss_mib": max(workers.values(), default=None), "checksum": float(out["t_air"].sum())}


def _run_cells(mode: str, ds: xr.Dataset, geom, folder: Path, base_mib: float, t0: float) -> dict:
    from thawcast.parallel import dask_client
    from thawcast.prep.cells import cell_store, land_cells, write_cell_store

    workers = {}
    n_workers = int(mode.removeprefix("cells") or 0)
    with dask_client("local" if n_workers else "threads", n_workers) as client:  # the default scheduler inside
        cells = land_cells(ds["t_soil1"].notnull().all("time").compute(), geom)
        path = folder.parent / f"{mode}_store.nc"
        write_cell_store(cell_store(ds, cells, tuple(ds.data_vars)), path)
        if client is not None:
            workers = client.run(_peak_rss_mib)
    wall = time.perf_counter() - t0
    peak_mib = _peak_rss_mib()
    with xr.open_dataset(path) as saved:
        checksum = float(saved["values"].sel(variable="t_air").sum(dtype="float64"))
        shape = saved["values"].shape
    return {"mode": mode, "wall_s": wall, "peak_rss_mib": peak_mib, "work_mib": peak_mib - base_mib,
            "worker_peak_rss_mib": max(workers.values(), default=None), "checksum": checksum, "cells": shape[0],
            "store_mib": path.stat().st_size / 2**20, "raw_mib": np.prod(shape) * 4 / 2**20}


def _peak_rss_mib() -> float:
    """Peak resident memory of this process (a dask worker when run through ``client.run``), MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--years", type=int, default=23)
    ap.add_argument("--dir", type=Path, default=HERE / "_out" / "era5land_0.1deg")
    ap.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode:
        print(json.dumps(run_mode(args.mode, args.dir)))
        return
    generate(args.dir, args.years)
    size_mib = sum(p.stat().st_size for p in args.dir.glob("*.nc")) / 2**20
    cells = xr.open_dataset(next(args.dir.glob("*.nc"))).sizes
    print(f"cube: {cells['latitude']} x {cells['longitude']} cells x {12 * args.years} months x 16 variables,"
          f" {size_mib:.0f} MiB on disk")
    results = {}
    for mode in MODES:
        proc = subprocess.run([sys.executable, __file__, "--dir", str(args.dir), "--mode", mode],
                              capture_output=True, text=True, check=True)
        results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[mode]
        per_worker = (f"   peak RSS per worker {r['worker_peak_rss_mib']:6.0f} MiB"
                      if r["worker_peak_rss_mib"] is not None else "")
        print(f"{mode:>8}: wall {r['wall_s']:7.1f} s   peak RSS {r['peak_rss_mib']:8.0f} MiB"
              f"   (above the post-import baseline: {r['work_mib']:6.0f} MiB){per_worker}")
    s, n = results["stream"], results["naive"]
    assert abs(s["checksum"] - n["checksum"]) <= 1e-6 * abs(n["checksum"]), "naive disagrees with stream"
    for mode in ("cluster1", "cluster2"):  # the same chunks and sums, elsewhere: the same bits
        assert results[mode]["checksum"] == s["checksum"], f"{mode} disagrees with stream"
    print(f"ratios stream/naive: wall {s['wall_s'] / n['wall_s']:.2f}, peak RSS {s['peak_rss_mib'] / n['peak_rss_mib']:.2f},"
          f" working memory {s['work_mib'] / n['work_mib']:.2f}")
    c1, c2 = results["cluster1"], results["cluster2"]
    print(f"ratios LocalCluster: 2 workers / 1 worker wall {c2['wall_s'] / c1['wall_s']:.2f};"
          f" 2 workers / dask threads (stream) wall {c2['wall_s'] / s['wall_s']:.2f}")
    c = results["cells"]
    for mode in ("cells1", "cells2"):  # the same chunks, read elsewhere: the same store
        assert results[mode]["checksum"] == c["checksum"], f"{mode} disagrees with cells"
    k1, k2 = results["cells1"], results["cells2"]
    print(f"ratios cell store on a LocalCluster: 2 workers / 1 worker wall {k2['wall_s'] / k1['wall_s']:.2f};"
          f" 2 workers / dask threads wall {k2['wall_s'] / c['wall_s']:.2f}")
    print(f"cells: {c['cells']} land cells, a {c['raw_mib']:.0f} MiB [cell, time, variable] store ({c['store_mib']:.0f}"
          f" MiB compressed); ratios cells/bands (stream): wall {c['wall_s'] / s['wall_s']:.2f},"
          f" peak RSS {c['peak_rss_mib'] / s['peak_rss_mib']:.2f}; peak RSS under 4 GB: {c['peak_rss_mib'] < 4096}")


if __name__ == "__main__":
    main()
