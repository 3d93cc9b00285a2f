"""Stage ``thaw``: permafrost thaw metrics for observations and projections alike.

Per band and year: active-layer thickness (ALT, from the annual maximum profile; four
layers bound its precision, see :mod:`thawcast.thaw`), and per layer the months above
0 degC, thawing degree-months and zero-curtain months. Observed: ERA5-Land over the
observed period. Projected: every scenario x architecture, with the ensemble spread of
each metric across architectures (mean, min, max, std of the members' metric, not the
metric of the mean series). Trends per decade per scenario and band.

Outputs: ``data/thaw/thaw_metrics.csv`` (long table), ``thaw_metrics.nc``,
``figures/alt_by_band.png``; ``metrics/thaw.json`` (``dvc metrics show``) and
``metrics/thaw.md``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from thawcast.config import Config
from thawcast.plots import yearly_panels
from thawcast.provenance import is_synthetic, provenance, staged_output
from thawcast.readers.common import open_netcdf, select_years
from thawcast.stages.bands import ERA5_FILE
from thawcast.stages.project import PROJECTIONS_FILE
from thawcast.stages.scenarios import open_band_table
from thawcast.thaw import trend_per_decade, yearly_metrics
from thawcast.variables import TARGETS

log = logging.getLogger(__name__)

CSV_FILE = "thaw_metrics.csv"
NC_FILE = "thaw_metrics.nc"
METRICS_FILE = "thaw.json"
TABLE_FILE = "thaw.md"


def observed_temperatures(cfg: Config, bands_dir: Path) -> xr.DataArray:
    """ERA5-Land soil temperature ``(band, layer, time)`` over the observed period, degC."""
    era = open_band_table(bands_dir / ERA5_FILE, TARGETS)
    era = select_years(era, cfg.period.start_year, cfg.period.end_year, "ERA5-Land bands")
    return xr.concat([era[t] for t in TARGETS], dim=pd.Index(list(TARGETS), name="layer")).transpose(
        "band", "layer", "time")


def long_table(ds: xr.Dataset, **labels) -> pd.DataFrame:
    """One row per (.., year[, layer], metric) with the given label columns."""
    rows = []
    for name in ("alt_cm", "months_above_zero", "thawing_degree_months", "zero_curtain_months"):
        df = ds[name].to_dataframe(name="value").reset_index()
        df["metric"] = name
        if "layer" not in df:
            df["layer"] = ""
        rows.append(df)
    out = pd.concat(rows, ignore_index=True)
    for k, v in labels.items():
        out[k] = v
    return out


def trends(alt: xr.DataArray) -> xr.DataArray:
    """ALT trend per decade along ``year`` for every other index of ``alt``."""
    return xr.apply_ufunc(lambda v: trend_per_decade(alt["year"].values, v), alt, input_core_dims=[["year"]],
                          vectorize=True)


def summarise(obs: xr.Dataset, ens: xr.Dataset, names: list[str]) -> dict:
    """ALT summary per scenario and band: mean, spread across models, trend per decade; and observed."""
    out = {"observed": {names[b]: {"alt_mean_cm": float(obs["alt_cm"].isel(band=b).mean()),
                                   "alt_trend_cm_per_decade": float(trends(obs["alt_cm"]).isel(band=b))}
                        for b in range(obs.sizes["band"])}}
    mean_trend = trends(ens["alt_cm_mean"])
    for s in ens["scenario"].values:
        out[str(s)] = {names[b]: {
            "alt_mean_cm": float(ens["alt_cm_mean"].sel(scenario=s).isel(band=b).mean()),
            "alt_model_min_cm": float(ens["alt_cm_min"].sel(scenario=s).isel(band=b).mean()),
            "alt_model_max_cm": float(ens["alt_cm_max"].sel(scenario=s).isel(band=b).mean()),
            "alt_trend_cm_per_decade": float(mean_trend.sel(scenario=s).isel(band=b)),
            "months_above_zero_layer1": float(ens["months_above_zero_mean"].sel(scenario=s, layer=TARGETS[0])
                                              .isel(band=b).mean()),
            "thawing_degree_months_layer1": float(ens["thawing_degree_months_mean"].sel(
                scenario=s, layer=TARGETS[0]).isel(band=b).mean()),
        } for b in range(ens.sizes["band"])}
    return out


def markdown(summary: dict, obs_years: str, proj_years: str) -> str:
    lines = ["# Active-layer thickness and thaw", "",
             (f"ALT in cm (annual-maximum profile, interpolated between the layer mid-depths 3.5, 17.5, 64 and"
             f" 194.5 cm; 194.5 means 'at least'). Observed: ERA5-Land {obs_years}. Projected: ensemble mean"
             f" over the architectures {proj_years}, [min-max of the members], trend per decade of the ensemble"
             " mean."), ""]
    scenarios = [k for k in summary if k != "observed"]
    lines += ["| band | observed ALT | " + " | ".join(f"{s} ALT [spread] (trend/decade)" for s in scenarios) + " |",
              "|" + "---|" * (len(scenarios) + 2)]
    for band, o in summary["observed"].items():
        cells = [f"{summary[s][band]['alt_mean_cm']:.1f} [{summary[s][band]['alt_model_min_cm']:.1f}-"
                 f"{summary[s][band]['alt_model_max_cm']:.1f}] ({summary[s][band]['alt_trend_cm_per_decade']:+.1f})"
                 for s in scenarios]
        lines.append(f"| {band} | {o['alt_mean_cm']:.1f} ({o['alt_trend_cm_per_decade']:+.1f}) | "
                     + " | ".join(cells) + " |")
    lines += ["", "Months above 0 degC and thawing degree-months (degC month) in layer 1, ensemble mean:", "",
              "| band | " + " | ".join(f"{s} months > 0 | {s} TDM" for s in scenarios) + " |",
              "|" + "---|" * (2 * len(scenarios) + 1)]
    for band in summary["observed"]:
        lines.append(f"| {band} | " + " | ".join(
            f"{summary[s][band]['months_above_zero_layer1']:.1f} | {summary[s][band]['thawing_degree_months_layer1']:.1f}"
            for s in scenarios) + " |")
    return "\n".join(lines) + "\n"


def run(cfg: Config, bands_dir: Path = Path("data/bands"), projections_dir: Path = Path("data/projections"),
        out_dir: Path = Path("data/thaw"), metrics_dir: Path = Path("metrics")) -> Path:
    obs_t = observed_temperatures(cfg, bands_dir)
    obs = yearly_metrics(obs_t)
    with open_netcdf(projections_dir / PROJECTIONS_FILE) as ds:
        proj_t = ds["soil_temperature"].load()
        synthetic = is_synthetic(ds.attrs)
    proj = yearly_metrics(proj_t)
    ens = xr.Dataset({f"{k}_{stat}": getattr(proj[k], stat)("model")
                      for k in ("alt_cm", "months_above_zero", "thawing_degree_months", "zero_curtain_months")
                      for stat in ("mean", "min", "max", "std")})
    names = cfg.study_area.band_labels[: obs.sizes["band"]]
    summary = summarise(obs, ens, names)
    table = pd.concat([long_table(obs, source="observed", scenario="historical", model="era5land"),
                       *[long_table(proj.sel(scenario=s), source="projected", scenario=str(s))
                         for s in proj["scenario"].values]], ignore_index=True)
    table["band_label"] = np.asarray(names)[table["band"].to_numpy()]
    table = table[["source", "scenario", "model", "band", "band_label", "year", "metric", "layer", "value"]]
    for s, per_band in summary.items():
        log.info("ALT %-10s %s", s, ", ".join(f"{b}: {v['alt_mean_cm']:.0f} cm" for b, v in per_band.items()))

    with staged_output(out_dir) as tmp:
        table.to_csv(tmp / CSV_FILE, index=False)
        merged = xr.merge([proj.rename({k: f"projected_{k}" for k in proj.data_vars}),
                           ens.rename({k: f"ensemble_{k}" for k in ens.data_vars}),
                           obs.rename({**{k: f"observed_{k}" for k in obs.data_vars}, "year": "observed_year"})])
        merged.attrs = provenance("thaw", "thaw metrics from observed and projected soil temperature",
                                  [str(bands_dir / ERA5_FILE), str(projections_dir / PROJECTIONS_FILE)],
                                  synthetic=synthetic)
        merged.to_netcdf(tmp / NC_FILE)
        years = {"observed (ERA5-Land)": obs["year"].values}
        values = {"observed (ERA5-Land)": obs["alt_cm"].values}
        spread = {}
        for s in ens["scenario"].values:
            years[str(s)] = ens["year"].values
            values[str(s)] = ens["alt_cm_mean"].sel(scenario=s).values
            spread[str(s)] = (ens["alt_cm_min"].sel(scenario=s).values, ens["alt_cm_max"].sel(scenario=s).values)
        yearly_panels(years, values, names, "ALT (cm)", "Active-layer thickness: observed and projected"
                      " (ensemble mean, shading = range across architectures)", tmp / "figures" / "alt_by_band.png",
                      spread=spread, reference="observed (ERA5-Land)")
    metrics_dir.mkdir(parents=True, exist_ok=True)
    (metrics_dir / METRICS_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    (metrics_dir / TABLE_FILE).write_text(markdown(summary, str(cfg.period), str(cfg.projection)))
    return out_dir
