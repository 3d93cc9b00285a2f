"""Build the synthetic Alaska and write it in the real file formats.

* ERA5-Land: one CDS-style NetCDF per year (``valid_time``, descending ``latitude``,
  CDS units and ``GRIB_*`` attributes), land cells only (ocean missing, as in ERA5-Land),
  soil temperature from :mod:`thawcast.ingest.synthetic.soil`.
* CMIP5: CMOR/DRS files for each variable and experiment on the IPSL-CM5A-MR grid
  (2.5 x 1.2676 degrees, 0..360 longitudes, ``365_day`` calendar), a regional subset
  of the global grid, split into time chunks of up to 50 years (as ESGF serves long runs).
* Lithology: a rasterised 9-class map (the classes of the paper's USGS aggregation).
* ERA5-Land's invariant geopotential (``z``, m2 s-2) of the relief (:mod:`thawcast.ingest.synthetic.relief`), as
  ECMWF serves it beside the monthly means: one time step, land and sea.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import xarray as xr

from thawcast import __version__
from thawcast.catalogue import LITHOLOGY_CLASSES
from thawcast.config import Config
from thawcast.ingest.cmip5 import cmip5_filename
from thawcast.ingest.synthetic import SYNTHETIC_NOTE
from thawcast.ingest.synthetic.climate import IPSL_LIKE_BIAS, RCP_START, generate
from thawcast.ingest.synthetic.relief import elevation, terrain
from thawcast.ingest.synthetic.soil import (
    ColumnState,
    SoilParams,
    layer_matrix,
    node_grid,
    simulate,
    snow_pack,
)
from thawcast.prep.geometry import BandGeometry, band_weights, wrap_lon
from thawcast.variables import GRAVITY, VARIABLES, from_canonical

log = logging.getLogger(__name__)


#: IPSL-CM5A-MR atmosphere grid: 144 x 143 (2.5 x 180/142 degrees).
IPSL_LON = np.arange(144) * 2.5
IPSL_LAT = -90.0 + np.arange(143) * (180.0 / 142.0)

_SYN_ATTRS = {"thawcast_synthetic": "true", "comment": SYNTHETIC_NOTE}


def _global_attrs(extra: dict) -> dict:
    return {**extra, **_SYN_ATTRS, "thawcast_version": __version__}


def era5_grid(cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres (ascending) of the synthetic ERA5-Land grid covering the study box."""
    res = cfg.synthetic.resolution_deg
    edges = cfg.study_area.band_edges
    lat0 = np.floor(edges[0] / res) * res
    lat = np.arange(lat0, edges[-1] + res, res)
    lon = np.arange(cfg.study_area.lon_min, cfg.study_area.lon_max + res / 2, res)
    return np.round(lat, 6), np.round(lon, 6)


# --------------------------------------------------------------------------- ERA5-Land
#: ERA5-Land fields that are accumulations (CDS step type "avgad"); the rest are "avgua".
_ACCUMULATED = frozenset({"tp", "sf", "strd", "ssrd", "slhf", "sshf"})

def simulate_era5land(cfg: Config, rng: np.random.Generator, end_state: list | None = None) -> xr.Dataset:
    """Synthetic ERA5-Land fields (canonical units) with soil temperatures, on land cells.

    ``end_state``: a list to which the soil columns' state at the end of the record is appended (where a
    pseudo-reality continues from, :func:`simulate_pseudo_reality`).
    """
    lat, lon = era5_grid(cfg)
    lon2, lat2 = np.meshgrid(lon, lat)
    land = BandGeometry.from_config(cfg.study_area).is_land(lon2, lat2)
    times = pd.date_range(f"{cfg.period.start_year}-01-01", f"{cfg.period.end_year}-12-01", freq="MS")
    log.info("synthetic ERA5-Land: %d x %d grid (%d land cells), %d months",
             lat.size, lon.size, int(land.sum()), len(times))
    fields = generate(lat2, lon2, times, rng, hist_rate=cfg.synthetic.warming_k_per_decade,
                      terrain=terrain(lat, lon, land))
    soil = soil_temperatures(fields, land, times, cfg.synthetic.spinup_years, cfg.synthetic.soil_dt_days)
    if end_state is not None:
        end_state.append(soil.state)
    return _land_dataset(fields, soil, land, times, lat, lon)


def _land_dataset(fields: dict, soil: SoilRecord, land: np.ndarray, times, lat, lon) -> xr.Dataset:
    """The ERA5-Land variables on land: the drivers, the soil model's layer temperatures and snow pack (of the
    model's fixed density, as ERA5-Land's ``rsn`` reports it)."""
    data = {}
    for i in range(4):
        fields[f"t_soil{i + 1}"] = soil.temps[i]
    fields["swe"] = soil.swe
    fields["snow_density"] = np.where(np.isnan(soil.swe), np.nan, SoilParams().snow_density)
    for name, arr in fields.items():
        if name == "w_top_cmip":
            continue
        data[name] = (("time", "lat", "lon"), np.where(land[None], arr, np.nan).astype(np.float32),
                      {"units": VARIABLES[name].unit})
    return xr.Dataset(data, coords={"time": times, "lat": lat, "lon": lon})


def write_soil_state(state: ColumnState, path: Path) -> Path:
    """Save the soil columns' state (land cells in row-major order) as NetCDF."""
    ds = xr.Dataset({"temp": (("column", "node"), state.temp, {"units": "degC", "long_name": "node temperature"}),
                     "swe": (("column",), state.swe, {"units": "mm", "long_name": "snow water equivalent"}),
                     "theta": (("column",), state.theta, {"units": "m3 m-3", "long_name": "water content"})},
                    attrs=_global_attrs({"title": "SYNTHETIC soil columns at the end of the record (land cells,"
                                                  " row-major)"}))
    ds.to_netcdf(path, engine="netcdf4")
    return path


def read_soil_state(path: Path) -> ColumnState:
    with xr.open_dataset(path, engine="netcdf4") as ds:
        return ColumnState(ds["temp"].values, ds["swe"].values, ds["theta"].values)


def pseudo_reality_cells(land: np.ndarray, stride: int) -> np.ndarray:
    """The land cells a pseudo-reality simulates: every ``stride``-th row and column of the grid."""
    keep = np.zeros_like(land, dtype=bool)
    keep[::stride, ::stride] = True
    return land & keep


def simulate_pseudo_reality(cfg: Config, rng: np.random.Generator, state, experiment: str) -> xr.Dataset:
    """The synthetic ERA5-Land world continued after ``period`` to ``synthetic.scenario_end_year`` under one RCP.

    The truth's warming continues from the level it reached at the end of the record along the RCP's path
    (:func:`thawcast.ingest.synthetic.climate.warming`); ``rng`` is the weather, independent of the synthetic
    GCM's. The soil columns continue from ``state`` (the end of :func:`simulate_era5land`), on the cells of
    :func:`pseudo_reality_cells` only (the others are left missing): that subsample keeps the heat model's
    cost within the pipeline's time budget; the README states how far its band means lie from the full grid's.
    """
    lat, lon = era5_grid(cfg)
    lon2, lat2 = np.meshgrid(lon, lat)
    land = BandGeometry.from_config(cfg.study_area).is_land(lon2, lat2)
    cells = pseudo_reality_cells(land, cfg.perfect_model.stride)
    first = cfg.period.end_year + 1
    times = pd.date_range(f"{first}-01-01", f"{cfg.synthetic.scenario_end_year}-12-01", freq="MS")
    log.info("pseudo-reality %s: %d of %d land cells, %d months", experiment, int(cells.sum()), int(land.sum()),
             len(times))
    # Only the simulated cells are generated (as a 1 x n "grid"), then put back on the grid.
    fields = generate(lat2[cells][None], lon2[cells][None], times, rng, hist_rate=cfg.synthetic.warming_k_per_decade,
                      scenario=experiment, since=float(first), terrain=terrain(lat, lon, land).at(cells))
    pick = np.isin(np.flatnonzero(land.ravel()), np.flatnonzero(cells.ravel()))
    start = type(state)(*(v[pick] for v in state))
    soil = soil_temperatures(fields, np.ones((1, int(cells.sum())), dtype=bool), times, 0,
                             cfg.synthetic.soil_dt_days, state=start)

    def on_grid(values: np.ndarray) -> np.ndarray:
        out = np.full(values.shape[:-2] + cells.shape, np.nan)
        out[..., cells] = values[..., 0, :]
        return out

    fields = {k: on_grid(v) for k, v in fields.items()}
    return _land_dataset(fields, SoilRecord(on_grid(soil.temps), on_grid(soil.swe), soil.state), cells, times,
                         lat, lon)


def soil_temperatures(
    fields: dict[str, np.ndarray], land: np.ndarray, times: pd.DatetimeIndex,
    spinup_years: int, dt_days: float, params: SoilParams | None = None,
    state: ColumnState | None = None, chunk_years: int = 10,
) -> SoilRecord:
    """Monthly mean temperature of the 4 ERA5-Land layers and snow water equivalent (NaN off land), and the end
    state.

    Monthly forcing is interpolated linearly to the model step (held at the first and last month's value
    before and after their mid-months); the soil surface sees the air temperature plus a summer radiative
    warming (snow-free ground only). Without ``state`` the first year's forcing is repeated
    ``spinup_years`` times before the record starts; with one (a previous run's end) the columns
    continue from it. The forcing is interpolated ``chunk_years`` at a time (bounded memory).
    """
    params = SoilParams() if params is None else params
    idx = np.flatnonzero(land.ravel())
    nt = len(times)
    col = {k: fields[k].reshape(nt, -1)[:, idx] for k in ("t_air", "p_snow", "r_solar", "w3")}
    spin = 0 if state is not None else spinup_years
    if spin:  # spin-up: repeat the first year
        col = {k: np.concatenate([np.tile(v[:12], (spin, 1)), v]) for k, v in col.items()}
    # The water content behind the latent heat is a property of the column: a continuation keeps it.
    theta = np.clip(col["w3"].mean(0), 0.05, 0.6) if state is None else state.theta
    n_months = nt + 12 * spin
    mid, step_t, month_of_step = model_steps(times[0] - pd.DateOffset(years=spin), n_months, dt_days)
    if state is None:
        state = ColumnState(np.repeat((col["t_air"][:12].mean(0) + 2.0)[:, None], node_grid(params)[0].size, 1),
                            np.zeros(idx.size), theta)
    log.info("soil heat model: %d columns x %d steps of %.1f days", idx.size, step_t.size, dt_days)
    observe = layer_matrix(node_grid(params)[0])
    out = np.full((5, nt) + land.shape, np.nan)  # the 4 layers, then the snow water equivalent
    flat = out.reshape(5, nt, -1)
    for m0 in range(0, n_months, 12 * chunk_years):
        m1 = min(m0 + 12 * chunk_years, n_months)
        sel = (month_of_step >= m0) & (month_of_step < m1)
        forcing = {k: np.stack([np.interp(step_t[sel], mid, v[:, j]) for j in range(v.shape[1])], 1)
                   for k, v in col.items() if k != "w3"}
        t_surf = forcing["t_air"] + 0.012 * forcing["r_solar"] * (forcing["t_air"] > 0)
        run = simulate(t_surf, forcing["p_snow"], forcing["t_air"], dt_days, theta, params, observe=observe,
                       state=state, periods=month_of_step[sel] - m0)
        state = run.state
        keep = np.arange(m0, m1) >= 12 * spin  # months of the record (not spin-up)
        if keep.any():
            first = max(m0, 12 * spin) - 12 * spin
            flat[:4, first:first + int(keep.sum()), idx] = np.moveaxis(run.temps[keep], -1, 0)
            flat[4][first:first + int(keep.sum()), idx] = run.snow_depth[keep] * params.snow_density
    return SoilRecord(out[:4], out[4], state)


def model_steps(start: pd.Timestamp, n_months: int, dt_days: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model steps of ``dt_days`` over ``n_months`` months from ``start``: the months' mid-points and the steps'
    centres (days since ``start``), and each step's month (what monthly forcing is interpolated between)."""
    month_starts = (pd.date_range(start, periods=n_months + 1, freq="MS") - start).days.to_numpy()
    step_t = np.arange(0.0, month_starts[-1], dt_days) + dt_days / 2
    return month_starts[:-1] + 15.2, step_t, np.searchsorted(month_starts, step_t, side="right") - 1


def gcm_snow(t_air: np.ndarray, p_snow: np.ndarray, times: pd.DatetimeIndex, dt_days: float) -> np.ndarray:
    """The synthetic GCM's snow water equivalent (mm) [time, lat, lon]: the soil model's snow pack on the GCM's
    own air temperature and snowfall, after a year's spin-up on the first year."""
    nt = len(times)
    cols = {k: np.concatenate([v[:12], v]).reshape(nt + 12, -1) for k, v in (("t", t_air), ("s", p_snow))}
    mid, step_t, month = model_steps(times[0] - pd.DateOffset(years=1), nt + 12, dt_days)
    step_t, month = step_t[month < nt + 12], month[month < nt + 12]  # a last step centred past the end
    forcing = {k: np.stack([np.interp(step_t, mid, v[:, j]) for j in range(v.shape[1])], 1) for k, v in cols.items()}
    swe, _ = snow_pack(forcing["s"], forcing["t"], dt_days, month)
    return swe[12:].reshape(t_air.shape)


class SoilRecord(NamedTuple):
    """What :func:`soil_temperatures` returns."""

    temps: np.ndarray  #: [4, time, lat, lon] monthly mean layer temperatures (degC), NaN off land
    swe: np.ndarray  #: [time, lat, lon] monthly mean snow water equivalent (mm), NaN off land
    state: ColumnState  #: the columns at the end


def write_era5land(ds: xr.Dataset, folder: Path, title: str = "SYNTHETIC reanalysis-era5-land-monthly-means"
                   " (thawcast embedded default)", years_per_file: int = 1, **attrs) -> list[Path]:
    """Write CDS-style files of ``years_per_file`` years each (variables in ERA5 names and CDS units, as one
    CDS request returns them); ``attrs`` join the global ones."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    years = ds["time"].dt.year.values
    for first in range(int(years[0]), int(years[-1]) + 1, years_per_file):
        part = ds.isel(time=(years >= first) & (years < first + years_per_file))
        last = int(part["time"].dt.year.values[-1])
        out = xr.Dataset(coords={
            "valid_time": ("valid_time", part["time"].values, {"long_name": "time", "standard_name": "time"}),
            "latitude": ("latitude", part["lat"].values[::-1],
                         {"units": "degrees_north", "standard_name": "latitude", "long_name": "latitude"}),
            "longitude": ("longitude", part["lon"].values,
                          {"units": "degrees_east", "standard_name": "longitude", "long_name": "longitude"}),
            "number": ((), 0, {"long_name": "ensemble member numerical id"}),
            "expver": ("valid_time", np.array(["0001"] * part.sizes["time"]), {"long_name": "experiment version"}),
        })
        for name in ds.data_vars:
            var = VARIABLES[name]
            values, unit = from_canonical(part[name].values[:, ::-1, :], "era5", var.era5)
            out[var.era5] = (("valid_time", "latitude", "longitude"), values.astype(np.float32), {
                "units": unit, "long_name": var.long_name, "GRIB_shortName": var.era5,
                "GRIB_units": unit, "GRIB_stepType": "avgad" if var.era5 in _ACCUMULATED else "avgua",
            })
        out.attrs = _global_attrs({
            "GRIB_centre": "ecmf", "Conventions": "CF-1.7",
            "institution": "European Centre for Medium-Range Weather Forecasts (format only)",
            "title": title, "history": f"written by thawcast {__version__} synthetic generator", **attrs,
        })
        shape = (min(12, part.sizes["time"]), part.sizes["lat"], part.sizes["lon"])  # a year per chunk, as read
        enc = {v: {"zlib": True, "complevel": 1, "_FillValue": np.float32(np.nan), "chunksizes": shape}
               for v in out.data_vars}
        enc["valid_time"] = {"units": "seconds since 1970-01-01", "dtype": "int64"}
        path = folder / (f"era5land_monthly_{first}.nc" if last == first else f"era5land_monthly_{first}-{last}.nc")
        out.to_netcdf(path, encoding=enc, engine="netcdf4")
        written.append(path)
    return written


def write_geopotential(cfg: Config, path: Path) -> Path:
    """ERA5-Land's invariant surface geopotential of the synthetic relief on the ERA5-Land grid, as ECMWF serves it
    (``z`` in m**2 s**-2 = height x g, one ``valid_time``, latitudes descending; land and sea)."""
    lat, lon = era5_grid(cfg)
    z = elevation(lat[::-1, None], lon[None, :]) * GRAVITY
    ds = xr.Dataset(
        {"z": (("valid_time", "latitude", "longitude"), z[None].astype(np.float32), {
            "units": "m**2 s**-2", "long_name": "Geopotential", "standard_name": "geopotential",
            "GRIB_shortName": "z", "GRIB_units": "m**2 s**-2", "GRIB_stepType": "instant"})},
        coords={"valid_time": ("valid_time", pd.DatetimeIndex([f"{cfg.period.start_year}-01-01"]).values,
                               {"long_name": "time", "standard_name": "time"}),
                "latitude": ("latitude", lat[::-1], {"units": "degrees_north", "standard_name": "latitude"}),
                "longitude": ("longitude", lon, {"units": "degrees_east", "standard_name": "longitude"})},
        attrs=_global_attrs({"GRIB_centre": "ecmf", "Conventions": "CF-1.7",
                             "title": "SYNTHETIC ERA5-Land invariant surface geopotential (thawcast embedded"
                                      " default): the synthetic relief, not a digital elevation model"}))
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path, encoding={"valid_time": {"units": "seconds since 1970-01-01", "dtype": "int64"}},
                 engine="netcdf4")
    return path


# ------------------------------------------------------------------------------- CMIP5
def cmip_grid(cfg: Config, margin_deg: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """The IPSL-CM5A-MR lat/lon (0..360) rows/columns covering the study box plus a margin."""
    e = cfg.study_area.band_edges
    lat = IPSL_LAT[(IPSL_LAT > e[0] - margin_deg) & (IPSL_LAT < e[-1] + margin_deg)]
    lo, hi = cfg.study_area.lon_min % 360, cfg.study_area.lon_max % 360
    lon = IPSL_LON[(IPSL_LON > lo - margin_deg) & (IPSL_LON < hi + margin_deg)]
    return lat, lon


def cmip_chunks(first: int, last: int, years_per_file: int) -> list[tuple[int, int]]:
    """Split ``first..last`` into file time chunks of ``years_per_file`` years."""
    return [(y, min(y + years_per_file - 1, last)) for y in range(first, last + 1, years_per_file)]


def write_cmip5(cfg: Config, folder: Path, rng: np.random.Generator, years_per_file: int = 50) -> list[Path]:
    """Write synthetic IPSL-CM5A-MR files for every configured experiment, ``years_per_file`` years each.

    All RCPs share one weather realisation (one seed drawn from ``rng``): they differ only
    by their forced warming, so the scenario spread in the synthetic data is the forced
    signal alone. The historical run has its own weather.
    """
    hist_seed, rcp_seed = rng.integers(0, 2**32, size=2)
    folder.mkdir(parents=True, exist_ok=True)
    lat, lon = cmip_grid(cfg)
    lon2, lat2 = np.meshgrid(wrap_lon(lon), lat)
    geom = BandGeometry.from_config(cfg.study_area)
    # Land-model variables (mrsos, snw, snd) exist on cells that overlap the study land.
    land = band_weights(lat, wrap_lon(lon), geom).sum("band").values > 0
    spans = {"historical": (cfg.synthetic.hist_start_year, 2005)}
    for exp in cfg.cmip5.experiments:
        if exp != "historical":
            spans[exp] = (RCP_START, cfg.synthetic.scenario_end_year)
    written = []
    for exp in cfg.cmip5.experiments:
        first, last = spans[exp]
        times = pd.date_range(f"{first}-01-01", f"{last}-12-01", freq="MS")
        exp_rng = np.random.default_rng(hist_seed if exp == "historical" else rcp_seed)
        fields = generate(lat2, lon2, times, exp_rng, hist_rate=cfg.synthetic.warming_k_per_decade,
                          scenario=None if exp == "historical" else exp, bias=IPSL_LIKE_BIAS)
        fields["swe"] = gcm_snow(fields["t_air"], fields["p_snow"], times, cfg.synthetic.soil_dt_days)
        fields["snow_depth"] = fields["swe"] / SoilParams().snow_density
        log.info("synthetic CMIP5 %s %s: %d months", cfg.cmip5.model, exp, len(times))
        for name, var in VARIABLES.items():
            if var.cmip5 is None:
                continue
            values, unit = from_canonical(fields[name], "cmip5", var.cmip5)
            if var.cmip5_table in _LAND_TABLES:
                values = np.where(land[None], values, np.nan)
            for y0, y1 in cmip_chunks(first, last, years_per_file):
                sel = (times.year >= y0) & (times.year <= y1)
                path = folder / cmip5_filename(var.cmip5, cfg.cmip5.model, exp, cfg.cmip5.ensemble,
                                               f"{y0}01", f"{y1}12")
                _write_cmor(path, var.cmip5, values[sel], unit, var, times[sel], lat, lon, exp, cfg)
                written.append(path)
    return written


#: CMIP5 tables of land-surface variables (written on land cells only) and their realms.
_LAND_TABLES = {"Lmon": "land", "LImon": "landIce land"}

_NOLEAP_CUM = np.cumsum([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30])
_NOLEAP_LEN = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _noleap_days(times: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """Mid-month times and bounds in days since 1850-01-01 (365_day calendar)."""
    start = (times.year.to_numpy() - 1850) * 365 + _NOLEAP_CUM[times.month.to_numpy() - 1]
    length = _NOLEAP_LEN[times.month.to_numpy() - 1]
    return start + length / 2.0, np.stack([start, start + length], 1).astype(float)


def _write_cmor(path: Path, name: str, values: np.ndarray, unit: str, var, times, lat, lon, exp, cfg) -> None:
    tmid, tb = _noleap_days(times)
    dlat = 180.0 / 142.0
    ds = xr.Dataset(
        {
            name: (("time", "lat", "lon"), values.astype(np.float32), {
                "standard_name": _STANDARD_NAMES[name], "long_name": var.long_name, "units": unit,
                "original_name": name.upper(), "cell_methods": "time: mean (interval: 30 minutes)",
                "cell_measures": "area: areacella",
            }),
            "time_bnds": (("time", "bnds"), tb),
            "lat_bnds": (("lat", "bnds"), np.stack([lat - dlat / 2, lat + dlat / 2], 1)),
            "lon_bnds": (("lon", "bnds"), np.stack([lon - 1.25, lon + 1.25], 1)),
        },
        coords={
            "time": ("time", tmid, {"bounds": "time_bnds", "units": "days since 1850-01-01 00:00:00",
                                    "calendar": "365_day", "axis": "T", "long_name": "time",
                                    "standard_name": "time"}),
            "lat": ("lat", lat, {"bounds": "lat_bnds", "units": "degrees_north", "axis": "Y",
                                 "long_name": "latitude", "standard_name": "latitude"}),
            "lon": ("lon", lon, {"bounds": "lon_bnds", "units": "degrees_east", "axis": "X",
                                 "long_name": "longitude", "standard_name": "longitude"}),
        },
    )
    ds.attrs = _global_attrs({
        "institution": "IPSL (Institut Pierre Simon Laplace, Paris, France) - format only",
        "institute_id": "IPSL", "model_id": cfg.cmip5.model, "experiment_id": exp,
        "parent_experiment_id": "historical" if exp != "historical" else "piControl",
        "frequency": "mon", "modeling_realm": _LAND_TABLES.get(var.cmip5_table, "atmos"),
        "table_id": f"Table {var.cmip5_table} (31 January 2011)", "project_id": "CMIP5",
        "product": "output", "realization": np.int32(1), "initialization_method": np.int32(1),
        "physics_version": np.int32(1), "Conventions": "CF-1.4",
        "title": f"SYNTHETIC {cfg.cmip5.model} model output prepared for CMIP5 {exp} (thawcast)",
        "region": "regional subset of the 144x143 IPSL-CM5A-MR grid around Alaska",
    })
    enc = {name: {"_FillValue": np.float32(1e20), "missing_value": np.float32(1e20), "zlib": True},
           "time": {"dtype": "float64"}, "time_bnds": {"_FillValue": None}, "lat_bnds": {"_FillValue": None},
           "lon_bnds": {"_FillValue": None}, "lat": {"_FillValue": None}, "lon": {"_FillValue": None}}
    ds.to_netcdf(path, encoding=enc, format="NETCDF4_CLASSIC", engine="netcdf4")


_STANDARD_NAMES = {
    "tas": "air_temperature", "ts": "surface_temperature", "pr": "precipitation_flux",
    "prsn": "snowfall_flux", "rlds": "surface_downwelling_longwave_flux_in_air",
    "rsds": "surface_downwelling_shortwave_flux_in_air", "hfls": "surface_upward_latent_heat_flux",
    "hfss": "surface_upward_sensible_heat_flux", "mrsos": "moisture_content_of_soil_layer",
    "snw": "surface_snow_amount", "snd": "surface_snow_thickness",
}


# --------------------------------------------------------------------------- lithology
def write_lithology(cfg: Config, path: Path, rng: np.random.Generator) -> Path:
    """A synthetic rasterised lithology map (class codes 0..8) on the ERA5-Land grid."""
    lat, lon = era5_grid(cfg)
    lon2, lat2 = np.meshgrid(lon, lat)
    land = BandGeometry.from_config(cfg.study_area).is_land(lon2, lat2)
    # Smooth random fields per class (sums of a few random plane waves) plus priors:
    # glaciers in the southern mountains, surficial deposits on the northern plain.
    scores = []
    for k in range(len(LITHOLOGY_CLASSES)):
        f = np.zeros_like(lat2)
        for _ in range(4):
            kx, ky, ph = rng.normal(0, 0.6), rng.normal(0, 1.2), rng.uniform(0, 2 * np.pi)
            f += np.cos(kx * lon2 + ky * lat2 + ph)
        scores.append(f)
    prior = np.array([-2.5, 0.8, -1.5, -0.8, -2.0, 0.0, 0.6, 0.3, -3.0])
    s = np.stack(scores) + prior[:, None, None]
    s[1] += 0.9 * (lat2 > 68.5)
    s[2] += 2.5 * (lat2 < 61.0) * (lon2 > -152)
    code = np.where(land, s.argmax(0), -1).astype(np.int8)
    ds = xr.Dataset(
        {"lithology": (("lat", "lon"), code, {
            "long_name": "lithology class", "flag_values": np.arange(9, dtype=np.int8),
            "flag_meanings": " ".join(LITHOLOGY_CLASSES), "_FillValue": np.int8(-1)})},
        coords={"lat": ("lat", lat, {"units": "degrees_north"}), "lon": ("lon", lon, {"units": "degrees_east"})},
    )
    ds.attrs = _global_attrs({"title": "SYNTHETIC rasterised lithology (9 classes of the USGS Geologic Map"
                                       " of Alaska aggregation); replace with a rasterised real map"})
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path, engine="netcdf4")
    return path


