"""Stage ``project``: soil temperature under every RCP from every registered model, and the ensemble.

Each architecture is loaded from the MLflow registry as ``models:/thawcast-<arch>@champion``
(never from a file path) and predicts every month of the projection period for every band
from the bias-corrected scenario windows (``data/windows/<rcp>.nc``).

Outputs:

* ``data/projections/projections.nc``: ``soil_temperature(scenario, model, band, layer,
  time)`` and the ensemble across models (mean, std, min, max), degC, CF-style, with the
  registered model versions and run ids and the bias-correction method in its attributes;
* ``metrics/projection_period.json``: the dominant period (months) of every projected
  series from its periodogram. The paper's projections drifted to a two-year cycle; ours
  must show the 12-month one.

The registered versions used are logged to a ``project`` run in the training experiment.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from thawcast.config import Config
from thawcast.errors import DataError
from thawcast.plots import band_layer_grid
from thawcast.provenance import git_commit, is_synthetic, provenance, staged_output
from thawcast.readers.common import open_netcdf
from thawcast.stages.scenarios import scenario_file
from thawcast.thaw import LAYER_MID_CM, dominant_period_months
from thawcast.tracking import load_registered, registered_name, use_store
from thawcast.variables import TARGETS
from thawcast.windows import WindowSet, open_windows

log = logging.getLogger(__name__)

PROJECTIONS_FILE = "projections.nc"
PERIOD_METRICS_FILE = "projection_period.json"


def projection_months(cfg: Config) -> pd.DatetimeIndex:
    return pd.date_range(f"{cfg.projection.start_year}-01-01", f"{cfg.projection.end_year}-12-01", freq="MS")


def grid(ws: WindowSet, values: np.ndarray, months: pd.DatetimeIndex, source: str) -> np.ndarray:
    """``[band, month, layer]`` from per-window predictions; every (band, month) must be covered.

    Raises
    ------
    DataError
        Naming the bands and months the scenario windows do not cover.
    """
    out = np.full((ws.x.shape[0], len(months), values.shape[1]), np.nan)
    pos = months.get_indexer(ws.target_times())
    keep = pos >= 0
    out[ws.band[keep], pos[keep]] = values[keep]
    missing = np.isnan(out).any(axis=-1)
    if missing.any():
        b, m = np.nonzero(missing)
        months_missing = sorted({months[i].strftime("%Y-%m") for i in m})
        raise DataError(source, f"the scenario windows do not cover the projection period {months[0]:%Y-%m}.."
                        f"{months[-1]:%Y-%m}: bands {sorted(set(b.tolist()))} lack {len(months_missing)} month(s),"
                        f" e.g. {months_missing[:3]} (rebuild the windows with this projection period)")
    return out


def period_diagnostic(temps: xr.DataArray) -> dict:
    """Dominant period of every series of ``temps`` (any dims plus ``time``), and which are not 12 months."""
    per = xr.apply_ufunc(dominant_period_months, temps, input_core_dims=[["time"]], vectorize=True)
    vals = per.values.ravel()
    ok = np.isclose(vals, 12.0, rtol=0.02)
    off = per.where(~np.isclose(per, 12.0, rtol=0.02)).to_series().dropna()
    return {"all_series_12_months": bool(ok.all()), "fraction_12_months": float(ok.mean()),
            "n_series": int(vals.size), "period_min_months": float(vals.min()),
            "period_max_months": float(vals.max()),
            "not_12_months": [{**dict(zip(off.index.names, map(str, key if isinstance(key, tuple) else (key,)),
                                               strict=True)), "period_months": float(v)}
                              for key, v in off.items()]}


def figures(ds: xr.Dataset, band_names: list[str], out: Path) -> None:
    """Per architecture: the scenarios overlaid per band x layer (the paper's Figures 5-9); and the
    ensemble mean with its min-max range across architectures per scenario."""
    times = pd.DatetimeIndex(ds["time"].values)
    first, last = times[0].year, times[-1].year

    def arr(da: xr.DataArray) -> np.ndarray:
        return da.transpose("band", "time", "layer").values

    for m in ds["model"].values:
        lines = {str(s): arr(ds["soil_temperature"].sel(scenario=s, model=m)) for s in ds["scenario"].values}
        band_layer_grid(times, lines, band_names, TARGETS, f"{m}: projected soil temperature {first}-{last}",
                        out / f"scenarios_{m}.png", date_format="%Y")
    lines = {str(s): arr(ds["ensemble_mean"].sel(scenario=s)) for s in ds["scenario"].values}
    spread = {str(s): (arr(ds["ensemble_min"].sel(scenario=s)), arr(ds["ensemble_max"].sel(scenario=s)))
              for s in ds["scenario"].values}
    band_layer_grid(times, lines, band_names, TARGETS, f"Ensemble mean (shading: range across architectures)"
                    f" {first}-{last}", out / "ensemble.png", spread=spread, date_format="%Y")


def run(cfg: Config, windows_dir: Path = Path("data/windows"), out_dir: Path = Path("data/projections"),
        metrics_dir: Path = Path("metrics")) -> Path:
    import mlflow

    use_store(cfg.mlflow)
    months = projection_months(cfg)
    models, versions = {}, {}
    for arch in cfg.training.architectures:
        name = registered_name(cfg.mlflow, arch)
        models[arch], mv = load_registered(name, alias=cfg.mlflow.alias)
        versions[arch] = {"registered_model": name, "version": str(mv.version), "run_id": mv.run_id,
                          "uri": f"models:/{name}@{cfg.mlflow.alias}"}
        log.info("%s: %s@%s is version %s", arch, name, cfg.mlflow.alias, mv.version)

    temps, synthetic = [], False
    for rcp in cfg.rcp_experiments:
        path = windows_dir / scenario_file(rcp)
        ws = open_windows(path)
        with open_netcdf(path) as ds:
            synthetic = synthetic or is_synthetic(ds.attrs)
        per_model = []
        for arch, model in models.items():
            model.check_windows(ws, f"{versions[arch]['registered_model']} v{versions[arch]['version']}")
            per_model.append(grid(ws, model.predict_windows(ws), months, str(path)))
        temps.append(np.stack(per_model))
        log.info("%s: projected %d bands x %d months with %d models", rcp, ws.x.shape[0], len(months), len(models))
    n_bands = temps[0].shape[1]
    da = xr.DataArray(np.stack(temps), dims=("scenario", "model", "band", "time", "layer"),
                      coords={"scenario": list(cfg.rcp_experiments), "model": list(models),
                              "band": np.arange(n_bands), "time": months, "layer": list(TARGETS)})
    da = da.transpose("scenario", "model", "band", "layer", "time")
    edges = cfg.study_area.band_edges
    ds = xr.Dataset(
        {"soil_temperature": da.assign_attrs(units="degC", long_name="projected monthly soil temperature",
                                             standard_name="soil_temperature"),
         "ensemble_mean": da.mean("model").assign_attrs(units="degC", long_name="mean across architectures"),
         "ensemble_std": da.std("model").assign_attrs(units="degC", long_name="std across architectures"),
         "ensemble_min": da.min("model").assign_attrs(units="degC", long_name="min across architectures"),
         "ensemble_max": da.max("model").assign_attrs(units="degC", long_name="max across architectures")},
        coords={"depth": ("layer", list(LAYER_MID_CM), {"units": "cm", "long_name": "layer mid-depth"}),
                "lat_lower": ("band", list(edges[:n_bands]), {"units": "degrees_north"}),
                "lat_upper": ("band", list(edges[1:n_bands + 1]), {"units": "degrees_north"})},
        attrs=provenance("project", "registered sequence models driven by bias-corrected CMIP5 scenario windows",
                         [str(windows_dir / scenario_file(r)) for r in cfg.rcp_experiments], synthetic=synthetic,
                         registered_models=json.dumps(versions), bias_correction_method=cfg.bias_correction.method,
                         bias_correction_calibration=str(cfg.bias_correction.calibration),
                         projection_period=str(cfg.projection), cmip5_model=cfg.cmip5.model))
    diag = {"members": period_diagnostic(ds["soil_temperature"]),
            "ensemble_mean": period_diagnostic(ds["ensemble_mean"])}
    for what, d in diag.items():
        log.info("dominant period of the %s: %.1f..%.1f months, %d of %d series at 12 months%s", what,
                 d["period_min_months"], d["period_max_months"], round(d["fraction_12_months"] * d["n_series"]),
                 d["n_series"], "" if d["all_series_12_months"] else f"; not 12: {d['not_12_months']}")
    with staged_output(out_dir) as tmp:
        ds.to_netcdf(tmp / PROJECTIONS_FILE)
        figures(ds, cfg.study_area.band_labels[:n_bands], tmp / "figures")
    metrics_dir.mkdir(parents=True, exist_ok=True)
    (metrics_dir / PERIOD_METRICS_FILE).write_text(json.dumps(diag, indent=2) + "\n")
    with mlflow.start_run(run_name="project", tags={"thawcast.stage": "project", "git_commit": git_commit(),
                                                   "bias_correction": cfg.bias_correction.method}):
        mlflow.log_params({f"model.{a}": f"{v['registered_model']}/{v['version']}" for a, v in versions.items()})
        mlflow.log_params({f"run.{a}": v["run_id"] for a, v in versions.items()})
        mlflow.log_params({"projection": str(cfg.projection), "scenarios": ",".join(cfg.rcp_experiments)})
        mlflow.log_metrics({f"{what}_fraction_12_months": d["fraction_12_months"] for what, d in diag.items()})
        mlflow.log_dict(diag, "projection_period.json")
    return out_dir
