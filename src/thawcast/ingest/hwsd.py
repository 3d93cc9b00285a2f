"""Static inputs: HWSD topsoil grids shipped in ``permamodel`` and a rasterised lithology map.

HWSD (Harmonized World Soil Database v1.2, regridded to 3 arc-minutes by NCAR and
distributed inside the MIT-licensed PyPI package ``permamodel`` as
``permamodel/data/T_{CLAY,SAND,SILT,OC}.nc4``): topsoil (0-30 cm) clay, sand and silt
percentage by weight and organic carbon percentage by weight. These are real data.

Lithology: a NetCDF raster with an integer variable ``lithology`` (codes 0..8 in the
order of :data:`thawcast.prep.soil.LITHOLOGY_CLASSES`, -1 or missing outside the
map) on a regular lat/lon grid, e.g. the USGS Geologic Map of Alaska (SIM 3340)
rasterised with ``gdal_rasterize`` after mapping its rock types to the nine classes.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import xarray as xr

from thawcast.catalogue import LITHOLOGY_CLASSES
from thawcast.errors import DataError
from thawcast.ingest.common import normalise_grid, open_netcdf

HWSD_VARIABLES = {"clay_pct": "T_CLAY", "sand_pct": "T_SAND", "silt_pct": "T_SILT", "oc_top_pct": "T_OC"}


def hwsd_dir() -> Path:
    """Folder of the HWSD grids inside the installed ``permamodel`` package."""
    try:
        root = importlib.resources.files("permamodel") / "data"
    except ModuleNotFoundError:
        raise DataError(None, "the 'permamodel' package (HWSD grids) is not installed; run `make install`") from None
    return Path(str(root))


def open_hwsd(lat_range: tuple[float, float], lon_range: tuple[float, float], folder: Path | None = None,
              margin: float = 0.5) -> xr.Dataset:
    """HWSD topsoil texture and organic carbon (percent by weight) over a box.

    Cells where clay + sand + silt is 0 (water, ice, rock: no soil in HWSD) are missing.
    """
    folder = hwsd_dir() if folder is None else Path(folder)
    out = {}
    for name, var in HWSD_VARIABLES.items():
        path = folder / f"{var}.nc4"
        ds = normalise_grid(open_netcdf(path), path)
        if var not in ds:
            raise DataError(path, f"variable '{var}' missing")
        da = ds[var].sel(lat=slice(lat_range[0] - margin, lat_range[1] + margin),
                         lon=slice(lon_range[0] - margin, lon_range[1] + margin)).load()
        if da.attrs.get("units") != "%":
            raise DataError(path, f"'{var}' has units {da.attrs.get('units')!r}; expected '%'")
        out[name] = da.where(da >= 0).astype("float64")
        out[name].attrs = {"units": "%", "long_name": da.attrs.get("long_name", var), "source": path.name}
    ds = xr.Dataset(out)
    soil = (ds["clay_pct"] + ds["sand_pct"] + ds["silt_pct"]) > 0
    return ds.where(soil)


def open_lithology(path: Path) -> xr.DataArray:
    """Integer lithology class codes on a lat/lon grid (missing outside the map)."""
    path = Path(path)
    ds = normalise_grid(open_netcdf(path), path)
    if "lithology" not in ds:
        raise DataError(path, f"no 'lithology' variable (has {sorted(ds.data_vars)})")
    codes = ds["lithology"].load()
    valid = codes.where(codes >= 0)
    if float(valid.max()) > 8:
        raise DataError(path, f"lithology codes must be 0..8, found {int(valid.max())}")
    return valid


def unknown_lithology(hwsd: xr.Dataset) -> xr.DataArray:
    """Lithology codes on the HWSD grid, all ``unknown``: what the static stages use without a lithology raster."""
    return xr.full_like(hwsd["clay_pct"], LITHOLOGY_CLASSES.index("unknown"), dtype=float).rename("lithology")
