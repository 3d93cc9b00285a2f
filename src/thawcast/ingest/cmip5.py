"""CMIP5 CMOR NetCDF files as ESGF serves them.

File names follow the CMIP5 Data Reference Syntax::

    <var>_<table>_<model>_<experiment>_<ensemble>_<YYYYMM>-<YYYYMM>.nc
    tas_Amon_IPSL-CM5A-MR_rcp85_r1i1p1_200601-210012.nc

Atmospheric variables are in table ``Amon``; the land variable ``mrsos`` (and ``mrlsl``)
in ``Lmon``, the snow amount ``snw`` and depth ``snd`` in ``LImon`` - any table is accepted.
Snow is optional: an experiment without it opens without the snow features. A variable may be split over several time chunks;
they are concatenated after checking that they neither overlap nor leave gaps. Calendars
``noleap``/``365_day`` (IPSL) and the standard ones are decoded with cftime and reduced
to month starts. Units are CMIP's (K, kg m-2 s-1, W m-2 with ``hfls``/``hfss`` positive
upward, kg m-2) and converted through :mod:`thawcast.variables`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import xarray as xr

from thawcast.catalogue import CMIP5_EXPERIMENTS
from thawcast.errors import DataError
from thawcast.ingest.common import (
    check_months,
    check_shared_time,
    month_starts,
    normalise_grid,
    open_netcdf,
)
from thawcast.variables import CMIP5_NAMES, VARIABLES, to_canonical

CMIP5_VARIABLES: tuple[str, ...] = tuple(v.cmip5 for v in VARIABLES.values() if v.cmip5)
SUPPORTED_CALENDARS = ("noleap", "365_day", "standard", "gregorian", "proleptic_gregorian", "360_day")

_NAME = re.compile(
    r"^(?P<var>[A-Za-z0-9]+)_(?P<table>[A-Za-z0-9]+)_(?P<model>[A-Za-z0-9.\-]+)_(?P<exp>[A-Za-z0-9]+)"
    r"_(?P<ens>r\d+i\d+p\d+)_(?P<start>\d{6})-(?P<end>\d{6})\.nc$"
)


def cmip5_filename(var: str, model: str, experiment: str, ensemble: str, start: str, end: str) -> str:
    """DRS file name, e.g. ``tas_Amon_IPSL-CM5A-MR_rcp45_r1i1p1_200601-203012.nc``."""
    table = VARIABLES[{v.cmip5: k for k, v in VARIABLES.items() if v.cmip5}[var]].cmip5_table
    return f"{var}_{table}_{model}_{experiment}_{ensemble}_{start}-{end}.nc"


def find_cmip5_files(folder: Path, model: str, experiment: str, ensemble: str) -> dict[str, list[Path]]:
    """Files of one model/experiment/member in ``folder``, grouped by variable, sorted by start."""
    if experiment not in CMIP5_EXPERIMENTS:
        raise DataError(folder, f"unknown scenario/experiment '{experiment}'; valid: {list(CMIP5_EXPERIMENTS)}")
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "CMIP5 folder not found")
    found: dict[str, list[tuple[str, Path]]] = {}
    for p in folder.iterdir():
        m = _NAME.match(p.name)
        if m and m["model"] == model and m["exp"] == experiment and m["ens"] == ensemble:
            found.setdefault(m["var"], []).append((m["start"], p))
    return {v: [p for _, p in sorted(items)] for v, items in found.items()}


def folder_holds(folder: Path, limit: int = 6) -> str:
    """What a CMIP5 folder holds, for an error that found none of the files it looked for: each model,
    experiment and member with its variables, then files whose names do not follow the DRS (a few of each)."""
    runs: dict[tuple[str, str, str], set[str]] = {}
    other = []
    for p in sorted(Path(folder).iterdir()) if Path(folder).is_dir() else []:
        if (m := _NAME.match(p.name)) is not None:
            runs.setdefault((m["model"], m["exp"], m["ens"]), set()).add(m["var"])
        elif p.suffix == ".nc":
            other.append(p.name)
    parts = [f"{' '.join(k)} ({', '.join(sorted(v))})" for k, v in sorted(runs.items())[:limit]]
    parts += [f"and {len(runs) - limit} more"] if len(runs) > limit else []
    if other:
        parts.append(f"{len(other)} .nc files not named var_table_model_experiment_member_YYYYMM-YYYYMM.nc"
                     f" ({', '.join(other[:limit])}{', ...' if len(other) > limit else ''})")
    return "the folder holds " + ("; ".join(parts) if parts else "no .nc files")


def _open_chunk(path: Path, var: str, chunks: dict | None) -> tuple[xr.DataArray, dict]:
    """One variable of one chunk file in canonical units, and the file's global attributes."""
    ds = open_netcdf(path, chunks=chunks, use_cftime=True)
    if var not in ds:
        raise DataError(path, f"variable '{var}' not in file (has {sorted(ds.data_vars)})")
    cal = ds["time"].encoding.get("calendar", ds["time"].attrs.get("calendar", "standard"))
    if cal not in SUPPORTED_CALENDARS:
        raise DataError(path, f"unsupported calendar '{cal}'; supported: {list(SUPPORTED_CALENDARS)}")
    ds = normalise_grid(ds, path)
    times = month_starts(ds["time"].values)
    m = _NAME.match(path.name)
    if m:
        expect = pd.date_range(pd.Timestamp(m["start"] + "01"), pd.Timestamp(m["end"] + "01"), freq="MS")
        if len(times) == 0 or times[0] != expect[0] or times[-1] != expect[-1]:
            raise DataError(
                path, f"file name says {m['start']}-{m['end']} but the time axis covers"
                f" {times[0]:%Y%m}-{times[-1]:%Y%m} (truncated file?)" if len(times) else "empty time axis",
            )
    check_months(times, path, "time axis")
    da = ds[var].assign_coords(time=times)
    da = da.drop_vars([c for c in da.coords if c not in ("time", "lat", "lon")])
    return to_canonical(da, "cmip5", var, path), dict(ds.attrs)


def open_cmip5(
    folder: Path,
    experiment: str,
    model: str = "IPSL-CM5A-MR",
    ensemble: str = "r1i1p1",
    variables: Sequence[str] = CMIP5_VARIABLES,
    chunks: dict | None = None,
) -> xr.Dataset:
    """Open one CMIP5 experiment (all requested variables) in canonical names and units.

    Raises
    ------
    DataError
        Unknown experiment, missing variable files, corrupt files, unsupported calendar,
        overlapping or missing months between chunks, wrong units.
    """
    chunks = {"time": 120} if chunks is None else chunks
    files = find_cmip5_files(folder, model, experiment, ensemble)
    missing = [v for v in variables if v not in files and not VARIABLES[CMIP5_NAMES[v]].optional]
    variables = [v for v in variables if v in files]  # an optional variable (snow) may be absent
    if not files:
        raise DataError(folder, f"no files of {model} {experiment} {ensemble}; {folder_holds(folder)}")
    if missing:
        raise DataError(
            folder, f"no files for variable(s) {missing} of {model} {experiment} {ensemble}"
            f" (expected names like {cmip5_filename(missing[0], model, experiment, ensemble, 'YYYYMM', 'YYYYMM')});"
            f" {folder_holds(folder)}",
        )
    out = {}
    first: dict = {}
    for v in variables:
        opened = [_open_chunk(p, v, chunks) for p in files[v]]
        parts = [da for da, _ in opened]
        first = first or opened[0][1]
        for (p1, a), (p2, b) in zip(zip(files[v], parts), list(zip(files[v], parts))[1:]):
            if b["time"].values[0] <= a["time"].values[-1]:
                raise DataError(p2, f"overlaps {p1.name} (duplicated months)")
        da = xr.concat(parts, dim="time") if len(parts) > 1 else parts[0]
        check_months(pd.DatetimeIndex(da["time"].values), folder, f"{v} {experiment} (across files)")
        out[da.name] = da
    check_shared_time(out, folder)
    try:
        ds = xr.Dataset(out).unify_chunks()
    except ValueError as exc:
        raise DataError(folder, f"variables of {experiment} are on different grids: {exc}") from None
    ds.attrs = {
        **{k: v for k, v in first.items() if k in ("thawcast_synthetic", "comment", "institute_id")},
        "source_format": "CMIP5 CMOR NetCDF (ESGF)", "model_id": model, "experiment_id": experiment,
        "ensemble": ensemble, "source_files": ", ".join(p.name for v in variables for p in files[v]),
    }
    return ds
