"""ERA5-Land monthly means as the Copernicus CDS delivers ``reanalysis-era5-land-monthly-means``.

Handles the layouts seen in practice:

* time coordinate ``valid_time`` (CDS NetCDF since 2024), ``time`` (older CDS/CDO output)
  or an integer ``date`` in YYYYMMDD (GRIB converted by cfgrib/earthkit);
* latitude descending (CDS) or ascending; longitude -180..180 or 0..360;
* one file per year, per variable or per ``stepType`` (CDS splits instantaneous and
  accumulated fields into separate files of one zip) - all are combined;
* CDS units: K, metres of water per day, J m-2 per day with ECMWF sign conventions
  (fluxes positive downward). Conversion to canonical units goes through
  :mod:`thawcast.variables`;
* snow (``sd``, ``rsn``) is optional: files without it give a dataset without the snow
  features; with both, the snow depth (m) is derived per cell as ``sd / rsn``;
* the invariant surface geopotential (``z``, m2 s-2; ECMWF serves it as a file of its own, global or cut to an
  area) gives each cell's height (:func:`open_elevation`, :func:`elevation_at`). It is not a monthly file: one in
  the monthly folder is an error that says where it belongs.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from thawcast.errors import DataError
from thawcast.ingest.common import (
    check_months,
    check_shared_time,
    look_alike,
    month_starts,
    normalise_grid,
    open_netcdf,
    read_engine,
)
from thawcast.variables import ERA5_NAMES, INVARIANTS, SNOW_DEPTH_FROM, VARIABLES, to_canonical

log = logging.getLogger(__name__)

ERA5_SHORT_NAMES: tuple[str, ...] = tuple(v.era5 for v in VARIABLES.values() if v.era5)
_SUFFIXES = (".nc", ".nc4", ".netcdf")
_DROP = ("number", "expver", "step", "surface", "depthBelowLandLayer", "heightAboveGround")


def list_netcdf(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    """Expand a folder (or a list of files/folders) into sorted NetCDF paths."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    files: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            files.extend(sorted(p for p in item.iterdir() if p.suffix in _SUFFIXES))
        else:
            files.append(item)
    if not files:
        raise DataError(items[0] if items else None, "no NetCDF files (*.nc, *.nc4) found")
    return files


#: What CDS files call the time axis that :func:`_normalise_time` renames ``time``.
_TIME_NAMES = ("valid_time", "date")


def _normalise_time(ds: xr.Dataset, path: Path) -> xr.Dataset:
    if "valid_time" in ds.dims or "valid_time" in ds.coords:
        if "time" in ds.coords and "time" not in ds.dims:
            ds = ds.drop_vars("time")
        ds = ds.rename({"valid_time": "time"})
    elif "date" in ds.dims or "date" in ds.coords:
        raw = np.asarray(ds["date"].values)
        if not np.issubdtype(raw.dtype, np.integer):
            raise DataError(path, f"'date' coordinate has dtype {raw.dtype}; expected integer YYYYMMDD")
        try:
            parsed = pd.to_datetime(raw.astype(str), format="%Y%m%d")
        except ValueError as exc:
            raise DataError(path, f"'date' coordinate is not YYYYMMDD: {exc}") from None
        ds = ds.assign_coords(date=("date", parsed.values)).rename({"date": "time"})
    elif "time" not in ds.dims:
        raise DataError(path, "no time coordinate (looked for 'valid_time', 'time', integer 'date')")
    ds = ds.drop_vars([c for c in _DROP if c in ds.variables])
    return ds.assign_coords(time=month_starts(ds["time"].values))


def open_era5land_file(
    path: Path, chunks: dict | None = None, variables: Sequence[str] = ERA5_SHORT_NAMES
) -> xr.Dataset:
    """One CDS file with normalised time and grid; the requested variables it holds,
    converted to canonical names and units (others are dropped). ``chunks`` name the canonical dimensions: a
    ``time`` chunk applies to the file's own time axis (``valid_time`` in CDS files, ``date`` in older ones)."""
    if chunks is not None and "time" in chunks:  # xarray ignores chunks of dimensions a file does not have
        chunks = {**chunks, **{name: chunks["time"] for name in _TIME_NAMES}}
    ds = open_netcdf(path, chunks=chunks)
    invariant = [str(n) for n in ds.data_vars if str(n) in _INVARIANT_NAMES]
    if invariant and not any(str(n) in ERA5_NAMES for n in ds.data_vars):
        raise DataError(path, f"an ERA5-Land invariant file ({', '.join(invariant)}), not monthly means: take it out"
                        " of the monthly folder and name it in source.geopotential_file")
    _check_names(ds, path, variables)
    ds = _normalise_time(ds, path)
    ds = normalise_grid(ds, path)
    check_months(pd.DatetimeIndex(ds["time"].values), path, "time axis")
    converted = [to_canonical(ds[v], "era5", v, path) for v in variables if v in ds]
    out = xr.Dataset({da.name: da for da in converted})
    out.attrs = dict(ds.attrs)
    return out


_INVARIANT_NAMES = frozenset(v.era5 for v in INVARIANTS.values())
_GEOPOTENTIAL = INVARIANTS["elevation_m"]


def open_elevation(path: Path, around: tuple[np.ndarray, np.ndarray] | None = None) -> xr.DataArray:
    """ERA5-Land's invariant surface geopotential file as the surface height (m) ``[lat, lon]``, loaded, with
    ascending latitudes and longitudes in -180..180 (global 0..360 files included); with ``around`` (latitudes and
    longitudes of points) only the box around them, half a degree wider, is read and checked.

    A file on a finer grid than the monthly files' serves them too (their centres are among its points): each
    cell's height is then the point value at its centre, not a cell mean.

    Raises
    ------
    DataError
        No ``z`` in the file, units that are not geopotential's, more than one time step, or heights outside
        ``INVARIANTS["elevation_m"].valid_range``.
    """
    ds = open_netcdf(path)
    name = _GEOPOTENTIAL.era5
    if name not in ds:
        raise DataError(path, f"no variable '{name}' ({_GEOPOTENTIAL.long_name}); the file has"
                        f" {sorted(map(str, ds.data_vars))}")
    ds = normalise_grid(ds[[name]], path)
    if around is not None:
        lat, lon = (np.asarray(v, float) for v in around)
        ds = ds.sel(lat=slice(lat.min() - 0.5, lat.max() + 0.5), lon=slice(lon.min() - 0.5, lon.max() + 0.5))
    extra = [d for d in ds[name].dims if d not in ("lat", "lon")]
    if any(ds.sizes[d] != 1 for d in extra):
        steps = {d: ds.sizes[d] for d in extra}
        raise DataError(path, f"'{name}' has {steps} steps; the invariant geopotential has one")
    height = to_canonical(ds[name].squeeze(extra, drop=True), "era5", name, path).load()
    height = height.drop_vars([c for c in height.coords if c not in ("lat", "lon")])
    lo, hi = _GEOPOTENTIAL.valid_range
    bad = ((height < lo) | (height > hi)).values
    if bad.any():
        raise DataError(path, f"{int(bad.sum())} heights outside {lo:g}..{hi:g} m (range"
                        f" {float(height.min()):.0f}..{float(height.max()):.0f}): not a surface geopotential?")
    return height


def elevation_at(height: xr.DataArray, lat: np.ndarray, lon: np.ndarray, source: Path | str) -> np.ndarray:
    """The heights (m) of :func:`open_elevation` at points ``lat``/``lon`` (degrees), each of which must be a
    point of the file's grid (within 0.001 degree) with a height: the ERA5-Land cells' centres.

    Raises
    ------
    DataError
        Naming how many points the file's grid does not hold (or holds no height for) and the first of them: a
        file on another grid, or one cut to a smaller area.
    """
    lat, lon = np.asarray(lat, float), np.asarray(lon, float)
    out = np.full(lat.shape, np.nan)
    i = _grid_index(height["lat"].values, lat)
    j = _grid_index(height["lon"].values, lon)
    found = (i >= 0) & (j >= 0)
    out[found] = height.values[i[found], j[found]]
    missing = ~np.isfinite(out)
    if missing.any():
        k = int(np.flatnonzero(missing)[0])
        raise DataError(source, f"{int(missing.sum())} of {lat.size} ERA5-Land cells are not on its grid or have no"
                        f" height, first ({lat[k]:.3f} N, {lon[k]:.3f} E): the geopotential must be on the"
                        " monthly files' grid and cover them")
    return out


def _grid_index(coords: np.ndarray, values: np.ndarray, tolerance: float = 1e-3) -> np.ndarray:
    """Index of the coordinate (ascending) each value is, within ``tolerance``; -1 where none is."""
    right = np.clip(np.searchsorted(coords, values), 0, coords.size - 1)
    left = np.maximum(right - 1, 0)
    nearest = np.where(np.abs(coords[left] - values) <= np.abs(coords[right] - values), left, right)
    return np.where(np.abs(coords[nearest] - values) <= tolerance, nearest, -1)


def _check_names(ds: xr.Dataset, path: Path, variables: Sequence[str]) -> None:
    """A requested variable that is absent while a look-alike is present was renamed: say so (a file that
    simply lacks it is fine, CDS splits variables across files)."""
    unknown = [str(n) for n in ds.data_vars if str(n) not in ERA5_NAMES]
    for v in variables:
        if v not in ds and (alike := look_alike(v, unknown)) is not None:
            raise DataError(path, f"no variable '{v}' ({VARIABLES[ERA5_NAMES[v]].long_name}) but '{alike}': ERA5-Land"
                            f" names it '{v}'; rename it back (the file has {sorted(map(str, ds.data_vars))})")


def check_complete(held: Mapping[Path, tuple[pd.DatetimeIndex, Collection[str]]]) -> None:
    """Every ERA5-Land variable the pipeline needs (all but the optional snow) is in some file for every month
    the files cover.

    Parameters
    ----------
    held
        Per file, its months and the canonical names of the variables :func:`open_era5land_file` read from it.

    Raises
    ------
    DataError
        Naming a file without the variable for months no other file has it for (renamed past recognition,
        ``2t`` for ``t2m`` say, or left out of the download), and the variables that file does hold.
    """
    months = pd.DatetimeIndex(sorted(set().union(*(set(m) for m, _ in held.values()))))
    for var in VARIABLES.values():
        if not var.era5 or var.optional:
            continue
        have = set().union(*(set(m) for m, names in held.values() if var.name in names))
        gap = months[~months.isin(list(have))]
        if len(gap):
            path = next(p for p, (m, names) in held.items() if var.name not in names and m.isin(gap).any())
            with xr.open_dataset(path, engine=read_engine(path), decode_times=False) as ds:
                names = sorted(map(str, ds.data_vars))
            raise DataError(path, f"no variable '{var.era5}' ({var.long_name}) for {gap[0]:%Y-%m}..{gap[-1]:%Y-%m}"
                            f" ({len(gap)} months), and no other file has it for those months; the file has {names}")


def open_era5land(
    paths: str | Path | Sequence[str | Path],
    variables: Sequence[str] = ERA5_SHORT_NAMES,
    chunks: dict | None = None,
) -> xr.Dataset:
    """Open ERA5-Land monthly means in canonical names and units (lazily, dask-backed).

    Parameters
    ----------
    paths
        A folder of NetCDF files, a file, or a list of either.
    variables
        ERA5 short names to read (default: the 12 features and 4 soil temperatures).
    chunks
        Dask chunks (default ``{"time": 12}``): aggregation then streams a year at a time.

    Returns
    -------
    xarray.Dataset
        Dimensions ``time`` (month starts), ``lat``, ``lon`` ascending; canonical names.

    Raises
    ------
    DataError
        Corrupt files, missing variables, wrong units, duplicated or missing months,
        or files on different grids - naming the file(s).
    """
    chunks = {"time": 12} if chunks is None else chunks
    files = list_netcdf(paths)
    pieces: dict[str, list[tuple[Path, xr.DataArray]]] = {v: [] for v in variables}
    grid: tuple[np.ndarray, np.ndarray, Path] | None = None
    first_attrs: dict = {}
    for f in files:
        ds = open_era5land_file(f, chunks, variables)
        if grid is None:
            grid = (ds["lat"].values, ds["lon"].values, f)
            first_attrs = dict(ds.attrs)
        elif ds.sizes["lat"] != grid[0].size or ds.sizes["lon"] != grid[1].size or not (
            np.allclose(ds["lat"].values, grid[0]) and np.allclose(ds["lon"].values, grid[1])
        ):
            raise DataError(f, f"grid differs from that of {grid[2].name}; regrid all files alike")
        for v in variables:
            name = ERA5_NAMES[v]
            if name in ds:
                pieces[v].append((f, ds[name]))
    absent = [v for v, got in pieces.items() if not got]
    missing = [v for v in absent if not VARIABLES[ERA5_NAMES[v]].optional]
    if absent and not missing:
        log.info("ERA5-Land files hold no %s: the features that need them are unavailable", absent)
    for v in absent:
        pieces.pop(v)
    if missing:
        where = files[0].parent if len(files) > 1 else files[0]
        raise DataError(where, f"variable(s) {missing} not found in {len(files)} ERA5-Land file(s) (variables are"
                        " found by their ERA5-Land short names, as the CDS writes them)")
    out = {}
    for v, items in pieces.items():
        items.sort(key=lambda item: item[1]["time"].values[0])
        _check_overlaps(items, v)
        da = xr.concat([da for _, da in items], dim="time") if len(items) > 1 else items[0][1]
        check_months(pd.DatetimeIndex(da["time"].values), items[0][0].parent, f"ERA5-Land '{v}'")
        out[da.name] = da
    check_shared_time(out, files[0].parent)
    ds = with_snow_depth(xr.Dataset(out))
    ds.attrs = {**first_attrs, "source_format": "ERA5-Land monthly means (CDS NetCDF)",
                "source_files": ", ".join(f.name for f in files)}
    return ds


def with_snow_depth(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with the snow depth (m) = snow water equivalent (mm = kg m-2) / snow density (kg m-3) per cell and
    month, in place of the density (an input to the depth only); unchanged without both."""
    swe, density = SNOW_DEPTH_FROM
    if density not in ds:
        return ds
    out = ds.drop_vars(density)
    if swe in ds:
        var = VARIABLES["snow_depth"]
        depth = ds[swe] / ds[density]
        out["snow_depth"] = depth.assign_attrs(units=var.unit, long_name=var.long_name,
                                               era5_name=f"{VARIABLES[swe].era5} / {VARIABLES[density].era5}")
    return out


def _check_overlaps(items: list[tuple[Path, xr.DataArray]], var: str) -> None:
    for (f1, a), (f2, b) in itertools.pairwise(items):
        if b["time"].values[0] <= a["time"].values[-1]:
            raise DataError(
                f2, f"duplicated months for '{var}': overlaps {f1.name} (both hold"
                f" {pd.Timestamp(b['time'].values[0]):%Y-%m})",
            )
