"""Small builders of real-format files for reader tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from thawcast.variables import ERA5_FEATURES, OPTIONAL_FEATURES, TARGETS


def canonical_cube(years=(2001, 2002), lat=None, lon=None, seed=0, snow: bool = False) -> xr.Dataset:
    """Plausible canonical-unit fields (not physics - just in range) on a small grid; ``snow`` adds ERA5-Land's
    snow water equivalent and density (a depth of swe / 250 m)."""
    rng = np.random.default_rng(seed)
    lat = np.arange(59.0, 71.6, 0.5) if lat is None else lat
    lon = np.arange(-168.0, -140.9, 0.5) if lon is None else lon
    times = pd.date_range(f"{years[0]}-01-01", f"{years[-1]}-12-01", freq="MS")
    shape = (len(times), lat.size, lon.size)
    base = {"t_air": -5, "t_surface": -5, "p_total": 1.0, "p_snow": 0.4, "r_thermal": 250, "r_solar": 100,
            "q_latent": -15, "q_sensible": -5, "w1": 0.3, "w2": 0.3, "w3": 0.3, "w4": 0.3,
            "t_soil1": -1, "t_soil2": -1, "t_soil3": -1, "t_soil4": -1}
    data = {}
    for name in tuple(n for n in ERA5_FEATURES if n not in OPTIONAL_FEATURES) + TARGETS:
        scale = 0.01 if name.startswith(("w", "p_")) else 1.0
        data[name] = (("time", "lat", "lon"), (base[name] + scale * rng.normal(size=shape)).clip(
            0 if name.startswith(("p_", "w")) else None).astype(np.float32))
    if snow:
        data["swe"] = (("time", "lat", "lon"), rng.uniform(0.0, 200.0, shape).astype(np.float32))
        data["snow_density"] = (("time", "lat", "lon"), np.full(shape, 250.0, dtype=np.float32))
    return xr.Dataset(data, coords={"time": times, "lat": lat, "lon": lon})


def monthly(values, start="2001-01-01", bands=False) -> xr.DataArray:
    """A monthly series from ``start``: ``values`` [time] or, with ``bands``, [band, time]."""
    values = np.asarray(values, float)
    t = pd.date_range(start, periods=values.shape[-1], freq="MS")
    if bands:
        return xr.DataArray(values, dims=("band", "time"), coords={"band": np.arange(len(values)), "time": t})
    return xr.DataArray(values, dims="time", coords={"time": t})


def write_cds(ds: xr.Dataset, folder: Path) -> list[Path]:
    from thawcast.ingest.synthetic.world import write_era5land

    return write_era5land(ds, folder)


def rewrite(path: Path, fn, decode_times: bool = True) -> Path:
    """Load a NetCDF, transform it with ``fn(ds) -> ds`` and write it back in place."""
    ds = xr.load_dataset(path, decode_times=decode_times)
    out = fn(ds)
    path.unlink()
    out.to_netcdf(path)
    return path
