"""Build the synthetic Alaska and write it in the real file formats.

* ERA5-Land: one CDS-style NetCDF per year (``valid_time``, descending ``latitude``,
  CDS units and ``GRIB_*`` attributes), land cells only (ocean missing, as in ERA5-Land),
  soil temperature from :mod:`thawcast.ingest.synthetic.soil`.
* CMIP5: CMOR/DRS files for each variable and experiment on the IPSL-CM5A-MR grid
  (2.5 x 1.2676 degrees, 0..360 longitudes, ``365_day`` calendar), a regional subset
  of the global grid, split into time chunks.
* Lithology: a rasterised 9-class map (the classes of the paper's USGS aggregation).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from thawcast import __version__
from thawcast.catalogue import LITHOLOGY_CLASSES
from thawcast.config import Config
from thawcast.ingest.cmip5 import cmip5_filename
from thawcast.ingest.synthetic import SYNTHETIC_NOTE
from thawcast.ingest.synthetic.climate import IPSL_LIKE_BIAS, SCENARIO_WARMING, generate
from thawcast.ingest.synthetic.soil import SoilParams, layer_matrix, node_grid, simulate
from thawcast.prep.geometry import BandGeometry, band_weights, wrap_lon
from thawcast.variables import VARIABLES, from_canonical

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

def simulate_era5land(cfg: Config, rng: np.random.Generator) -> xr.Dataset:
    """Synthetic ERA5-Land fields (canonical units) with soil temperatures, on land cells."""
    lat, lon = era5_grid(cfg)
    lon2, lat2 = np.meshgrid(lon, lat)
    geom = BandGeometry.from_config(cfg.study_area)
    land = geom.is_land(lon2, lat2)
    times = pd.date_range(f"{cfg.period.start_year}-01-01", f"{cfg.period.end_year}-12-01", freq="MS")
    log.info("synthetic ERA5-Land: %d x %d grid (%d land cells), %d months",
             lat.size, lon.size, int(land.sum()), len(times))
    fields = generate(lat2, lon2, times, rng, hist_rate=cfg.synthetic.warming_k_per_decade)
    soil = soil_temperatures(fields, land, times, cfg.synthetic.spinup_years, cfg.synthetic.soil_dt_days)
    for i in range(4):
        fields[f"t_soil{i + 1}"] = soil[i]
    data = {}
    for name, arr in fields.items():
        if name == "w_top_cmip":
            continue
        arr = np.where(land[None], arr, np.nan)
        data[name] = (("time", "lat", "lon"), arr.astype(np.float32))
    return xr.Dataset(data, coords={"time": times, "lat": lat, "lon": lon})


def soil_temperatures(
    fields: dict[str, np.ndarray], land: np.ndarray, times: pd.DatetimeIndex,
    spinup_years: int, dt_days: float, params: SoilParams | None = None,
) -> np.ndarray:
    """Monthly mean temperature of the 4 ERA5-Land layers [4, time, lat, lon] (NaN off land).

    Monthly forcing is interpolated linearly to the model step; the soil surface sees the
    air temperature plus a summer radiative warming (snow-free ground only). The first
    year's forcing is repeated ``spinup_years`` times before the record starts.
    """
    params = SoilParams() if params is None else params
    idx = np.flatnonzero(land.ravel())
    nt = len(times)
    col = {k: fields[k].reshape(nt, -1)[:, idx] for k in ("t_air", "p_snow", "r_solar", "w3")}
    # Spin-up: repeat the first year.
    pre = {k: np.concatenate([np.tile(v[:12], (spinup_years, 1)), v]) for k, v in col.items()}
    n_months = nt + 12 * spinup_years
    start = times[0] - pd.DateOffset(years=spinup_years)
    mid = (pd.date_range(start, periods=n_months, freq="MS") - start).days.to_numpy() + 15.2
    total_days = (pd.date_range(start, periods=n_months + 1, freq="MS")[-1] - start).days
    step_t = np.arange(0.0, total_days, dt_days) + dt_days / 2
    interp = {k: np.stack([np.interp(step_t, mid, v[:, j]) for j in range(v.shape[1])], 1)
              for k, v in pre.items()}
    t_surf = interp["t_air"] + 0.012 * interp["r_solar"] * (interp["t_air"] > 0)
    theta = np.clip(pre["w3"].mean(0), 0.05, 0.6)
    mean_air = pre["t_air"][:12].mean(0)
    log.info("soil heat model: %d columns x %d steps of %.1f days", idx.size, step_t.size, dt_days)
    dz, _ = node_grid(params)
    layers, _, _ = simulate(t_surf, interp["p_snow"], interp["t_air"], dt_days, theta, params,
                            t_init=mean_air + 2.0, observe=layer_matrix(dz))  # [step, col, layer]
    month_of_step = np.searchsorted(mid - 15.2, step_t, side="right") - 1
    out = np.full((4, nt) + land.shape, np.nan)
    flat = out.reshape(4, nt, -1)
    for m in range(spinup_years * 12, n_months):
        sel = month_of_step == m
        flat[:, m - spinup_years * 12, idx] = layers[sel].mean(0).T
    return out


def write_era5land(ds: xr.Dataset, folder: Path) -> list[Path]:
    """Write one CDS-style file per year (variables in ERA5 names and CDS units)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for year, part in ds.groupby("time.year"):
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
            "title": "SYNTHETIC reanalysis-era5-land-monthly-means (thawcast embedded default)",
            "history": f"written by thawcast {__version__} synthetic generator",
        })
        enc = {v: {"zlib": True, "complevel": 1, "_FillValue": np.float32(np.nan)} for v in out.data_vars}
        enc["valid_time"] = {"units": "seconds since 1970-01-01", "dtype": "int64"}
        path = folder / f"era5land_monthly_{year}.nc"
        out.to_netcdf(path, encoding=enc, engine="netcdf4")
        written.append(path)
    return written


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


def write_cmip5(cfg: Config, folder: Path, rng: np.random.Generator) -> list[Path]:
    """Write synthetic IPSL-CM5A-MR files for every configured experiment.

    All RCPs share one weather realisation (one seed drawn from ``rng``): they differ only
    by their forced warming, so the scenario spread in the synthetic data is the forced
    signal alone. The historical run has its own weather.
    """
    hist_seed, rcp_seed = rng.integers(0, 2**32, size=2)
    folder.mkdir(parents=True, exist_ok=True)
    lat, lon = cmip_grid(cfg)
    lon2, lat2 = np.meshgrid(wrap_lon(lon), lat)
    geom = BandGeometry.from_config(cfg.study_area)
    # Land-model variables (mrsos) exist on cells that overlap the study land.
    land = band_weights(lat, wrap_lon(lon), geom).sum("band").values > 0
    spans = {"historical": (cfg.synthetic.hist_start_year, 2005)}
    for exp in cfg.cmip5.experiments:
        if exp != "historical":
            spans[exp] = (2006, cfg.synthetic.scenario_end_year)
    written = []
    for exp in cfg.cmip5.experiments:
        first, last = spans[exp]
        times = pd.date_range(f"{first}-01-01", f"{last}-12-01", freq="MS")
        exp_rng = np.random.default_rng(hist_seed if exp == "historical" else rcp_seed)
        fields = generate(lat2, lon2, times, exp_rng, hist_rate=cfg.synthetic.warming_k_per_decade,
                          scenario_rate=SCENARIO_WARMING[exp], bias=IPSL_LIKE_BIAS)
        log.info("synthetic CMIP5 %s %s: %d months", cfg.cmip5.model, exp, len(times))
        for name, var in VARIABLES.items():
            if var.cmip5 is None:
                continue
            values, unit = from_canonical(fields[name], "cmip5", var.cmip5)
            if var.cmip5_table == "Lmon":
                values = np.where(land[None], values, np.nan)
            for y0, y1 in cmip_chunks(first, last, 10):
                sel = (times.year >= y0) & (times.year <= y1)
                path = folder / cmip5_filename(var.cmip5, cfg.cmip5.model, exp, cfg.cmip5.ensemble,
                                               f"{y0}01", f"{y1}12")
                _write_cmor(path, var.cmip5, values[sel], unit, var, times[sel], lat, lon, exp, cfg)
                written.append(path)
    return written


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
        "frequency": "mon", "modeling_realm": "land" if var.cmip5_table == "Lmon" else "atmos",
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


