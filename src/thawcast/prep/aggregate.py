"""Area-weighted band means of gridded monthly fields, streamed chunk by chunk."""

from __future__ import annotations

import logging

import numpy as np
import xarray as xr

from thawcast.errors import DataError
from thawcast.prep.geometry import BandGeometry, band_weights

log = logging.getLogger(__name__)


def band_means(ds: xr.Dataset, geometry: BandGeometry, source: str | None = None) -> xr.Dataset:
    """Weighted mean over each band's land cells, per month.

    Weights are cell area x overlap fraction with the band's land (see
    :func:`thawcast.prep.geometry.band_weights`); missing values (ocean in ERA5-Land, land-only
    CMIP variables over sea) drop out of both numerator and denominator. The result stays
    lazy when ``ds`` is dask-backed, so ``.compute()`` streams over its time chunks.

    Parameters
    ----------
    ds
        Fields with dims ``time, lat, lon`` (lat/lon ascending, -180..180).
    geometry
        Band geometry.
    source
        Name used in error messages (the file or folder).

    Returns
    -------
    xarray.Dataset
        Dims ``band, time``; attributes and units of each variable are kept.
    """
    weights = band_weights(ds["lat"].values, ds["lon"].values, geometry, source=source)
    # Per band, crop to the rows and columns that carry its weight, then one weighted sum per chunk:
    # numerator sum(w x) over valid cells, denominator sum(w) over the same cells. A band covers a sixth of
    # the rows, so the cropped sums do a sixth of the work of one product over every band's full box.
    boxes = []
    for b in range(weights.sizes["band"]):
        wb = weights.isel(band=b)
        rows, cols = np.flatnonzero(wb.sum("lon").values > 0), np.flatnonzero(wb.sum("lat").values > 0)
        if rows.size == 0:
            raise DataError(source, f"band {b} has no land on this grid")
        box = {"lat": slice(rows[0], rows[-1] + 1), "lon": slice(cols[0], cols[-1] + 1)}
        boxes.append((box, wb.isel(box)))
    dims = ["lat", "lon"]
    # Products summed by numpy's own (pairwise) sum, not a BLAS or einsum dot: those split or order the sum by
    # thread count and memory alignment, so the last bits of a band mean varied between dask's threads and a
    # dask worker process, and with load. Twice the time of a dot (benchmarks/bench_band_aggregation.py).
    out = xr.Dataset({
        name: xr.concat([(da.isel(box).fillna(0.0) * w).sum(dims) / (da.isel(box).notnull() * w).sum(dims)
                         for box, w in boxes], dim=weights["band"])
        for name, da in ds.data_vars.items()
    })
    for name in ds.data_vars:
        out[name].attrs = dict(ds[name].attrs)
    out["band"].attrs = {"long_name": "latitude band index (Table 1 of Rahaman 2025)"}
    out = out.assign_coords(
        lat_min=("band", np.array(geometry.edges[:-1])),
        lat_max=("band", np.array(geometry.edges[1:])),
    )
    out["lat_min"].attrs = {"units": "degrees_north", "long_name": "band lower latitude"}
    out["lat_max"].attrs = {"units": "degrees_north", "long_name": "band upper latitude"}
    return out.transpose("band", ...)


def compute_streaming(ds: xr.Dataset, max_open_files: int = 4, client=None) -> xr.Dataset:
    """Compute a lazy (dask-backed) result with at most ``max_open_files`` files held open (per process).

    Each open NetCDF file keeps HDF5 chunk caches of the data read from it, so with
    xarray's default of 128 cached file handles a cube of yearly files ends up resident
    in memory anyway. Bounding the handle cache keeps memory at a few chunks (measured in
    ``benchmarks/bench_band_aggregation.py``). ``client``: a ``dask.distributed`` client
    (:func:`thawcast.parallel.dask_client`) whose workers compute it, else dask's threads here.
    """
    if client is None:
        from dask.diagnostics import ProgressBar

        with xr.set_options(file_cache_maxsize=max_open_files), ProgressBar(minimum=5.0):
            return ds.compute()
    client.run(_cap_open_files, max_open_files)
    return client.compute(ds, sync=True)


def _cap_open_files(n: int) -> None:
    """On a dask worker: at most ``n`` NetCDF files held open (xarray's file cache, for the worker's life)."""
    xr.set_options(file_cache_maxsize=n)
