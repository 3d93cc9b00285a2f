"""Scenario inputs: CMIP5 band series turned into ERA5-Land's dynamic features, spliced and bias-corrected.

1. the CMIP5 band series (canonical units, ECMWF sign conventions, :mod:`thawcast.variables`)
   get four soil-water layers from ``mrsos`` (:mod:`thawcast.prep.moisture`, ratios learned from
   ERA5-Land over the calibration years);
2. ``hist`` = CMIP5 ``historical`` spliced with ``bias_correction.splice_experiment`` over the
   calibration years (the same for every scenario); ``sim`` = ``historical`` spliced with the
   RCP, from the calibration start to the RCP's end;
3. every dynamic feature (snow where both sides have it) is corrected against ERA5-Land with ``xsdba`` by both EQM and QDM
   (:mod:`thawcast.prep.bias`); both feed the spread diagnostics.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import xarray as xr

from thawcast.catalogue import BIAS_METHODS
from thawcast.config import Config, YearRange
from thawcast.errors import DataError
from thawcast.ingest.common import check_months, open_netcdf, select_years
from thawcast.prep import bias
from thawcast.prep.bias import mean_change, retained, spread
from thawcast.prep.moisture import layer_ratios, split
from thawcast.variables import ERA5_FEATURES, OPTIONAL_FEATURES

log = logging.getLogger(__name__)

DIRECT = tuple(v for v in ERA5_FEATURES if not v.startswith("w"))
#: What every CMIP5 band table must hold; the optional features (snow) are corrected where both sides have them.
CMIP_NEEDS = (*(v for v in DIRECT if v not in OPTIONAL_FEATURES), "w_top_cmip")


def _years(rng: YearRange) -> slice:
    return slice(pd.Timestamp(rng.start_year, 1, 1), pd.Timestamp(rng.end_year, 12, 1))


def check_band_table(ds: xr.Dataset, variables: tuple[str, ...], source: str) -> xr.Dataset:
    """A band table has the variables, month-start datetimes and no gaps; else a :class:`DataError`."""
    missing = [v for v in variables if v not in ds]
    if missing:
        raise DataError(source, f"missing variable(s) {missing} (have {sorted(ds.data_vars)})")
    if not np.issubdtype(ds["time"].dtype, np.datetime64):
        raise DataError(source, f"time has dtype {ds['time'].dtype} (a non-standard calendar?); expected"
                        " month-start datetimes aligned with ERA5-Land (re-run the bands stage)")
    times = pd.DatetimeIndex(ds["time"].values)
    off = times[(times.day != 1) | (times.hour != 0)]
    if len(off):
        raise DataError(source, f"time stamps are not month starts (e.g. {off[0]:%Y-%m-%d %H:%M}): calendars do"
                        " not align with ERA5-Land's monthly means")
    check_months(times, source, "time axis")
    return ds


def open_band_table(path: Path, variables: tuple[str, ...]) -> xr.Dataset:
    """Load a band table and check it with :func:`check_band_table`."""
    with open_netcdf(path) as ds:
        return check_band_table(ds.load(), variables, str(path))


def splice(first: xr.Dataset, then: xr.Dataset, source: str) -> xr.Dataset:
    """``first`` up to the month before ``then`` starts, followed by ``then``; gaps are errors."""
    start = then["time"].values[0]
    out = xr.concat([first.sel(time=first["time"] < start), then], dim="time", data_vars="all",
                    coords="minimal", compat="override", join="override")
    check_months(pd.DatetimeIndex(out["time"].values), source, "spliced series")
    return out


def cmip_features(ds: xr.Dataset, ratios: xr.DataArray, names: tuple[str, ...] = ERA5_FEATURES) -> xr.Dataset:
    """ERA5-Land's dynamic features ``names`` from a CMIP band table (layered soil water from mrsos)."""
    out = xr.Dataset({v: ds[v] for v in DIRECT if v in names})
    out.update(split(ds["w_top_cmip"], ratios))
    return out[list(names)]


def corrected_features(era: xr.Dataset, cmip: dict[str, xr.Dataset]) -> tuple[str, ...]:
    """The dynamic features to correct: the required ones, and each optional one (snow) that ERA5-Land and every
    experiment have (the bands stage refused a requested one that is absent)."""
    return tuple(v for v in ERA5_FEATURES if v not in OPTIONAL_FEATURES
                 or (v in era and all(v in ds for ds in cmip.values())))


def spread_diagnostics(raw: xr.Dataset, corrected: dict[str, xr.Dataset], rcps: list[str], cal: YearRange,
                 proj: YearRange) -> dict:
    order = sorted(rcps)
    high, low = order[-1], order[0]
    out = {"pair": f"{high} minus {low}", "calibration": str(cal), "projection": str(proj),
           "definition": "difference between the two scenarios' mean change (projection minus calibration"
                         " years, all bands and months pooled), canonical units", "spread": {}}
    for v in raw.data_vars:
        row = {"raw": spread(mean_change(raw[v], _years(cal), _years(proj)), high, low)}
        for m in BIAS_METHODS:
            row[m] = spread(mean_change(corrected[m][v], _years(cal), _years(proj)), high, low)
        for m in BIAS_METHODS:
            row[f"{m}_retained"] = retained(row[m], row["raw"])
        out["spread"][v] = row
    return out


class Correction(NamedTuple):
    """What :func:`correct_scenarios` produces."""

    corrected: dict[str, xr.Dataset]  #: per method, the corrected features with a ``scenario`` dimension
    ratios: xr.DataArray  #: ERA5-Land soil-water layer ratios (band, month, layer)
    diagnostics: dict  #: scenario spread in the raw GCM and after each method (empty for one RCP)
    adjustments: dict[str, dict]  #: per method and variable, the fitted xsdba adjustment (``.ds`` to save)


def correct_scenarios(cfg: Config, era: xr.Dataset, cmip: dict[str, xr.Dataset]) -> Correction:
    """Corrected scenarios for both methods, the moisture ratios, the spread diagnostics and the fitted
    adjustments (trained once per method and variable on the calibration years, applied to every RCP)."""
    bc, rcps = cfg.bias_correction, list(cfg.rcp_experiments)
    cal = bc.calibration
    ref = select_years(era, cal.start_year, cal.end_year, "ERA5-Land bands (calibration)")
    ratios = layer_ratios(ref)
    names = corrected_features(era, cmip)
    feats = {e: cmip_features(ds, ratios, names) for e, ds in cmip.items()}
    hist = select_years(splice(feats["historical"], feats[bc.splice_experiment], "historical+splice"),
                        cal.start_year, cal.end_year, f"CMIP5 historical+{bc.splice_experiment} (calibration)")
    sims = {}
    for rcp in rcps:
        s = splice(feats["historical"], feats[rcp], f"historical+{rcp}")
        end = pd.Timestamp(s["time"].values[-1])
        if end < pd.Timestamp(cfg.projection.end_year, 12, 1):
            raise DataError(f"CMIP5 {rcp}", f"data end {end:%Y-%m}, before the projection end"
                            f" {cfg.projection.end_year}-12")
        sims[rcp] = select_years(s, cal.start_year, end.year, f"CMIP5 historical+{rcp}")
    last = min(pd.Timestamp(s["time"].values[-1]) for s in sims.values())
    raw = xr.concat([s.sel(time=slice(None, last)) for s in sims.values()],
                    dim=pd.Index(rcps, name="scenario"), data_vars="all", join="exact")
    corrected, adjustments = {}, {}
    for m in BIAS_METHODS:
        log.info("bias correction %s: %d variables x %d scenarios", m.upper(), len(names), len(rcps))
        adjustments[m] = {v: bias.train(ref[v], hist[v], variable=v, method=m, nquantiles=bc.nquantiles,
                                        seed=cfg.seed) for v in names}
        corrected[m] = xr.Dataset({v: bias.apply(adjustments[m][v], raw[v], period_years=bc.period_years)
                                   for v in names})
    diag = spread_diagnostics(raw, corrected, rcps, cal, cfg.projection) if len(rcps) > 1 else {}
    return Correction(corrected, ratios, diag, adjustments)


