"""Area-weighted band means of gridded monthly fields, streamed chunk by chunk."""

from __future__ import annotations

import logging

import numpy as np
import xarray as xr

from thawcast.geometry import BandGeometry, band_weights

log = logging.getLogger(__name__)


def band_means(ds: xr.Dataset, geometry: BandGeometry, source: str | None = None) -> xr.Dataset:
    """Weighted mean over each band's land cells, per month.

    Weights are cell area x overlap fraction with the band's land (see
    :func:`thawcast.geometry.band_weights`); missing values (ocean in ERA5-Land, land-only
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
    per_band = []
    for b in range(geometry.n_bands):
        w = weights.isel(band=b)
        rows = np.flatnonzero(w.sum("lon").values > 0)
        cols = np.flatnonzero(w.sum("lat").values > 0)
        sub = ds.isel(lat=slice(rows[0], rows[-1] + 1), lon=slice(cols[0], cols[-1] + 1))
        wb = w.isel(lat=slice(rows[0], rows[-1] + 1), lon=slice(cols[0], cols[-1] + 1)).drop_vars("band")
        per_band.append(sub.weighted(wb).mean(("lat", "lon"), keep_attrs=True))
    out = xr.concat(per_band, dim=xr.DataArray(np.arange(geometry.n_bands), dims="band", name="band"))
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
