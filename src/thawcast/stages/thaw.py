"""Stage ``thaw``: permafrost thaw metrics for observations and projections alike.

Per band and year: active-layer thickness (ALT, from the annual maximum profile; four
layers bound its precision, see :mod:`thawcast.analysis.thaw`), and per layer the months above
0 degC, thawing degree-months and zero-curtain months. Observed: ERA5-Land over the
observed period. Projected: every scenario x architecture, with the ensemble spread of
each metric across architectures (mean, min, max, std of the members' metric, not the
metric of the mean series). Trends per decade per scenario and band, beside the trend of the
air temperature that drove them (short projection periods follow their years' weather).

Per decade of the projection (:func:`thawcast.analysis.thaw.decadal_summary`): the same metrics with
their spread across architectures, the share of years at the ALT bound, near-surface permafrost, trends
with 95% intervals and the year the ALT first reaches each mid-depth.

Outputs: ``data/thaw/thaw_metrics.csv`` (long table), ``thaw_metrics.nc``,
``figures/alt_by_band.png``; ``metrics/thaw.json``, ``metrics/thaw_decades.json`` (``dvc metrics show``)
and ``metrics/thaw.md``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from thawcast.analysis.periods import decades
from thawcast.analysis.plots import yearly_panels
from thawcast.analysis.tables import rounded
from thawcast.analysis.thaw import (
    decadal_markdown,
    decadal_summary,
    long_table,
    markdown,
    summarise,
    trends,
    yearly_metrics,
)
from thawcast.config import Config
from thawcast.ingest.common import open_netcdf, select_years
from thawcast.layout import Layout
from thawcast.prep.scenarios import open_band_table
from thawcast.quality.provenance import is_synthetic, provenance, staged_output
from thawcast.variables import TARGETS

log = logging.getLogger(__name__)

CSV_FILE = "thaw_metrics.csv"
NC_FILE = "thaw_metrics.nc"


def observed_temperatures(cfg: Config, era5_bands: Path) -> xr.DataArray:
    """ERA5-Land soil temperature ``(band, layer, time)`` over the observed period, degC."""
    era = open_band_table(era5_bands, TARGETS)
    era = select_years(era, cfg.period.start_year, cfg.period.end_year, "ERA5-Land bands")
    return xr.concat([era[t] for t in TARGETS], dim=pd.Index(list(TARGETS), name="layer")).transpose(
        "band", "layer", "time")


def air_temperature_trends(cfg: Config, paths: Layout) -> dict[str, xr.DataArray]:
    """Trend per decade of annual-mean air temperature per band: the driver behind each ALT trend.

    ``observed``: ERA5-Land over the observed period; each RCP: its bias-corrected input over
    the projection period. Over a few years these follow the weather of the years, not only
    the forced warming, and the ALT trends follow them.
    """
    series = {"observed": select_years(open_band_table(paths.era5_bands, ("t_air",)), cfg.period.start_year,
                                       cfg.period.end_year, "ERA5-Land bands")["t_air"]}
    for rcp in cfg.rcp_experiments:
        ds = open_band_table(paths.scenario(rcp), ("t_air",))
        series[rcp] = select_years(ds, cfg.projection.start_year, cfg.projection.end_year,
                                   f"corrected {rcp} scenario")["t_air"]
    return {k: trends(v.groupby("time.year").mean()) for k, v in series.items()}


def run(cfg: Config, paths: Layout | None = None) -> Path:
    paths = paths or Layout.at()
    obs_t = observed_temperatures(cfg, paths.era5_bands)
    obs = yearly_metrics(obs_t)
    with open_netcdf(paths.projections_file) as ds:
        proj_t = ds["soil_temperature"].load()
        synthetic = is_synthetic(ds.attrs)
    proj = yearly_metrics(proj_t)
    ens = xr.Dataset({f"{k}_{stat}": getattr(proj[k], stat)("model")
                      for k in ("alt_cm", "months_above_zero", "thawing_degree_months", "zero_curtain_months")
                      for stat in ("mean", "min", "max", "std")})
    names = cfg.study_area.band_labels[: obs.sizes["band"]]
    summary = summarise(obs, ens, names, air_temperature_trends(cfg, paths))
    table = pd.concat([long_table(obs, source="observed", scenario="historical", model="era5land"),
                       *[long_table(proj.sel(scenario=s), source="projected", scenario=str(s))
                         for s in proj["scenario"].values]], ignore_index=True)
    table["band_label"] = np.asarray(names)[table["band"].to_numpy()]
    table = table[["source", "scenario", "model", "band", "band_label", "year", "metric", "layer", "value"]]
    for s, per_band in summary.items():
        log.info("ALT %-10s %s", s, ", ".join(f"{b}: {v['alt_mean_cm']:.0f} cm" for b, v in per_band.items()))

    with staged_output(paths.thaw) as tmp:
        table.to_csv(tmp / CSV_FILE, index=False)
        merged = xr.merge([proj.rename({k: f"projected_{k}" for k in proj.data_vars}),
                           ens.rename({k: f"ensemble_{k}" for k in ens.data_vars}),
                           obs.rename({**{k: f"observed_{k}" for k in obs.data_vars}, "year": "observed_year"})])
        merged.attrs = provenance("thaw", "thaw metrics from observed and projected soil temperature",
                                  [str(paths.era5_bands), str(paths.projections_file)],
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
    json_file = paths.metric("thaw.json")
    json_file.parent.mkdir(parents=True, exist_ok=True)
    json_file.write_text(json.dumps(summary, indent=2) + "\n")
    per_decade = rounded(decadal_summary(proj, names, decades(cfg.projection.start_year, cfg.projection.end_year)))
    paths.metric("thaw_decades.json").write_text(json.dumps(per_decade, indent=2) + "\n")
    paths.metric("thaw.md").write_text(markdown(summary, str(cfg.period), str(cfg.projection)) + "\n"
                                       + decadal_markdown(per_decade, cfg.projection.start_year))
    return paths.thaw
