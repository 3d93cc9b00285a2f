"""Shared pieces of the readers: safe opening, coordinate normalisation, month checks."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from thawcast.errors import DataError
from thawcast.prep.geometry import wrap_lon

log = logging.getLogger(__name__)

_LAT_NAMES = ("latitude", "lat")
_LON_NAMES = ("longitude", "lon")


#: The first bytes of an HDF5 file (NetCDF-4) and of the classic formats scipy reads (CDF-1 and CDF-2).
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_CLASSIC_SIGNATURES = (b"CDF\x01", b"CDF\x02")


def read_engine(path: Path) -> str:
    """The xarray engine that reads ``path`` safely from many threads at once.

    netCDF-C is not thread-safe and the netCDF4 wheels crash now and then when dask's threads read files
    (xarray issues 7079 and 9779, netcdf4-python 1452; it took down a test worker here). h5py serialises
    every call behind its own lock, and scipy's classic reader is pure Python, so NetCDF-4 files go through
    h5netcdf and CDF-1/CDF-2 files through scipy. Anything else goes to netCDF4 as before: it reads CDF-5
    and names what is wrong with a file that is not NetCDF.
    """
    with open(path, "rb") as f:
        head = f.read(8)
    if head == _HDF5_SIGNATURE:
        return "h5netcdf"
    return "scipy" if head[:4] in _CLASSIC_SIGNATURES else "netcdf4"


def open_netcdf(path: Path, chunks: dict | None = None, use_cftime: bool = False) -> xr.Dataset:
    """Open one NetCDF file lazily, turning any low-level failure into a :class:`DataError`."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    if path.stat().st_size == 0:
        raise DataError(path, "file is empty (0 bytes): an interrupted download?")
    decode = xr.coders.CFDatetimeCoder(use_cftime=True) if use_cftime else True
    try:
        ds = xr.open_dataset(path, engine=read_engine(path), chunks=chunks, decode_times=decode, cache=False)
        # Touch the header of every variable: truncated files often fail only here.
        for name in ds.variables:
            _ = ds[name].dtype
    except Exception as exc:  # noqa: BLE001 - netCDF4/h5py raise OSError, ValueError, RuntimeError, KeyError...
        raise DataError(path, f"not a readable NetCDF file (corrupt or truncated?): {exc}") from None
    return ds


def normalise_grid(ds: xr.Dataset, path: Path) -> xr.Dataset:
    """Rename lat/lon, wrap longitudes to -180..180 and sort both ascending."""
    rename = {}
    for names, target in ((_LAT_NAMES, "lat"), (_LON_NAMES, "lon")):
        found = [n for n in names if n in ds.dims or n in ds.coords]
        if not found:
            raise DataError(path, f"no {target} coordinate (looked for {list(names)})")
        if found[0] != target:
            rename[found[0]] = target
    ds = ds.rename(rename)
    if ds["lon"].ndim != 1 or ds["lat"].ndim != 1:
        raise DataError(path, "only regular latitude/longitude grids are supported")
    lon = wrap_lon(ds["lon"].values)
    ds = ds.assign_coords(lon=("lon", lon, ds["lon"].attrs))
    ds = ds.sortby("lat").sortby("lon")
    return ds


def month_starts(times: Iterable) -> pd.DatetimeIndex:
    """Month-start timestamps for datetime64 or cftime values (any calendar)."""
    out = []
    for t in times:
        if hasattr(t, "calendar") or not isinstance(t, (np.datetime64, pd.Timestamp)):
            out.append(pd.Timestamp(int(t.year), int(t.month), 1))
        else:
            ts = pd.Timestamp(t)
            out.append(pd.Timestamp(ts.year, ts.month, 1))
    return pd.DatetimeIndex(out, name="time")


def check_months(times: pd.DatetimeIndex, path: Path | str, what: str = "data") -> None:
    """Raise if months are duplicated, unsorted or have gaps."""
    if times.has_duplicates:
        dup = sorted({t.strftime("%Y-%m") for t in times[times.duplicated()]})
        raise DataError(path, f"{what} has duplicated months: {', '.join(dup[:12])}")
    if not times.is_monotonic_increasing:
        raise DataError(path, f"{what}: time is not increasing")
    full = pd.date_range(times[0], times[-1], freq="MS")
    if len(full) != len(times):
        missing = full.difference(times)
        listed = ", ".join(t.strftime("%Y-%m") for t in missing[:12])
        raise DataError(path, f"{what} is missing {len(missing)} month(s): {listed}")


def select_years(ds: xr.Dataset, start_year: int, end_year: int, source: str) -> xr.Dataset:
    """Select whole years, raising if the data do not cover them."""
    t = pd.DatetimeIndex(ds["time"].values)
    first, last = t[0], t[-1]
    want_first, want_last = pd.Timestamp(start_year, 1, 1), pd.Timestamp(end_year, 12, 1)
    if first > want_first or last < want_last:
        raise DataError(
            source,
            f"requested years {start_year}-{end_year} are outside the data, which cover"
            f" {first:%Y-%m} to {last:%Y-%m}",
        )
    return ds.sel(time=slice(want_first, want_last))


def check_shared_time(arrays: dict[str, xr.DataArray], where: Path | str) -> None:
    """Raise unless every array has the same time axis."""
    axes = {n: pd.DatetimeIndex(da["time"].values) for n, da in arrays.items()}
    ref_name, ref = next(iter(axes.items()))
    for n, t in axes.items():
        if not t.equals(ref):
            raise DataError(
                where,
                f"'{n}' covers {t[0]:%Y-%m}..{t[-1]:%Y-%m} but '{ref_name}' covers"
                f" {ref[0]:%Y-%m}..{ref[-1]:%Y-%m}: variables must share one time axis",
            )


def look_alike(wanted: str, present: Iterable[str]) -> str | None:
    """The name among ``present`` that is ``wanted`` written another way (case, ``_``/``-``/``.``
    separators: ``T2M``, ``stl_1``), or None. Fuzzy matches are not taken: ``ssr`` and ``str`` are ERA5
    variables of their own, not renamed ``ssrd`` and ``strd``.

    Parameters
    ----------
    wanted
        The expected variable name.
    present
        Names found in the file that are not themselves expected.
    """
    def key(name: str) -> str:
        return re.sub(r"[^0-9a-z]", "", name.lower())

    return next((name for name in present if key(name) == key(wanted)), None)
