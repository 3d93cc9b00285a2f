"""Stage ``thaw``: permafrost thaw metrics for observations and projections alike.

Per band and year: active-layer thickness (ALT, from the annual maximum profile; four
layers bound its precision, see :mod:`thawcast.thaw`), and per layer the months above
0 degC, thawing degree-months and zero-curtain months. Observed: ERA5-Land over the
observed period. Projected: every scenario x architecture, with the ensemble spread of
each metric across architectures (mean, min, max, std of the members' metric, not the
metric of the mean series). Trends per decade per scenario and band, beside the trend of the
air temperature that drove them (short projection periods follow their years' weather).

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
from thawcast.stages.scenarios import open_band_table, scenario_file
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


def trends(values: xr.DataArray) -> xr.DataArray:
    """Trend per decade along ``year`` for every other index of ``values``."""
    return xr.apply_ufunc(lambda v: trend_per_decade(values["year"].values, v), values,
                          input_core_dims=[["year"]], vectorize=True)


def air_temperature_trends(cfg: Config, bands_dir: Path, scenarios_dir: Path) -> dict[str, xr.DataArray]:
    """Trend per decade of annual-mean air temperature per band: the driver behind each ALT trend.

    ``observed``: ERA5-Land over the observed period; each RCP: its bias-corrected input over
    the projection period. Over a few years these follow the weather of the years, not only
    the forced warming, and the ALT trends follow them.
    """
    series = {"observed": select_years(open_band_table(bands_dir / ERA5_FILE, ("t_air",)), cfg.period.start_year,
                                       cfg.period.end_year, "ERA5-Land bands")["t_air"]}
    for rcp in cfg.rcp_experiments:
        ds = open_band_table(scenarios_dir / scenario_file(rcp), ("t_air",))
        series[rcp] = select_years(ds, cfg.projection.start_year, cfg.projection.end_year,
                                   f"corrected {rcp} scenario")["t_air"]
    return {k: trends(v.groupby("time.year").mean()) for k, v in series.items()}


def _r(x) -> float:
    return round(float(x), 3)


def _layer1(da: xr.DataArray) -> xr.DataArray:
    return da.sel(layer=TARGETS[0])


def summarise(obs: xr.Dataset, ens: xr.Dataset, names: list[str], t_air_trend: dict[str, xr.DataArray]) -> dict:
    """Per source (observed, each scenario) and band: the means over the years and the trends per decade.

    ALT (cm) with, for projections, the members' range; months above 0 degC and thawing
    degree-months of layer 1; trends per decade of ALT, layer-1 thawing degree-months and the
    air temperature that drove them. Projected values are the ensemble mean over architectures.
    """
    def per_band(alt, months, tdm, driver, spread=None) -> dict:
        cols = {"alt_mean_cm": alt.mean("year")}
        if spread is not None:
            cols.update(alt_model_min_cm=spread[0].mean("year"), alt_model_max_cm=spread[1].mean("year"))
        cols.update({"alt_trend_cm_per_decade": trends(alt),
                     "months_above_zero_layer1": _layer1(months).mean("year"),
                     "thawing_degree_months_layer1": _layer1(tdm).mean("year"),
                     "thawing_degree_months_layer1_trend_per_decade": trends(_layer1(tdm)),
                     "t_air_trend_degC_per_decade": driver})
        return {names[b]: {k: _r(v.isel(band=b)) for k, v in cols.items()} for b in range(alt.sizes["band"])}

    out = {"observed": per_band(obs["alt_cm"], obs["months_above_zero"], obs["thawing_degree_months"],
                                t_air_trend["observed"])}
    for s in ens["scenario"].values:
        e = ens.sel(scenario=s)
        out[str(s)] = per_band(e["alt_cm_mean"], e["months_above_zero_mean"], e["thawing_degree_months_mean"],
                               t_air_trend[str(s)], spread=(e["alt_cm_min"], e["alt_cm_max"]))
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
    sources = ["observed", *scenarios]
    lines += ["", ("Layer 1: months above 0 degC and thawing degree-months (TDM, degC month) per year; observed"
              " and ensemble mean:"), "",
              "| band | " + " | ".join(f"{s} months > 0 | {s} TDM" for s in sources) + " |",
              "|" + "---|" * (2 * len(sources) + 1)]
    for band in summary["observed"]:
        lines.append(f"| {band} | " + " | ".join(
            f"{summary[s][band]['months_above_zero_layer1']:.1f} | {summary[s][band]['thawing_degree_months_layer1']:.1f}"
            for s in sources) + " |")
    lines += ["", ("Trends per decade over each period: ALT (cm) / layer-1 TDM (degC month) / air temperature"
              " driving them (degC). Over the few projection years they follow the weather of those years as"
              " much as the forced warming:"), "",
              "| band | " + " | ".join(sources) + " |", "|" + "---|" * (len(sources) + 1)]
    for band in summary["observed"]:
        lines.append(f"| {band} | " + " | ".join(
            f"{summary[s][band]['alt_trend_cm_per_decade']:+.1f} / "
            f"{summary[s][band]['thawing_degree_months_layer1_trend_per_decade']:+.1f} / "
            f"{summary[s][band]['t_air_trend_degC_per_decade']:+.2f}" for s in sources) + " |")
    return "\n".join(lines) + "\n"


def run(cfg: Config, bands_dir: Path = Path("data/bands"), projections_dir: Path = Path("data/projections"),
        out_dir: Path = Path("data/thaw"), metrics_dir: Path = Path("metrics"),
        scenarios_dir: Path = Path("data/scenarios")) -> Path:
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
    summary = summarise(obs, ens, names, air_temperature_trends(cfg, bands_dir, scenarios_dir))
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
