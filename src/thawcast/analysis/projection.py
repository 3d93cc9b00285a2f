"""Projections: per-window predictions gathered onto months, the 12-month period check, the figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from thawcast.analysis.plots import band_layer_grid
from thawcast.analysis.thaw import dominant_period_months
from thawcast.config import YearRange
from thawcast.errors import DataError
from thawcast.prep.windows import WindowSet
from thawcast.variables import TARGETS


def projection_months(years: YearRange) -> pd.DatetimeIndex:
    """Month starts of every year in ``years``."""
    return pd.date_range(f"{years.start_year}-01-01", f"{years.end_year}-12-01", freq="MS")


def grid(ws: WindowSet, values: np.ndarray, months: pd.DatetimeIndex, source: str) -> np.ndarray:
    """``[band, month, layer]`` from per-window predictions; every (band, month) must be covered.

    Raises
    ------
    DataError
        Naming the bands and months the scenario windows do not cover.
    """
    out = ws.to_grid(values, months)
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


#: The paper's projection years: a projection reaching further also gets a figure of just these.
PAPER_YEARS = 7


def projection_figures(ds: xr.Dataset, band_names: list[str], out: Path) -> None:
    """Per architecture: the scenarios overlaid per band x layer (the paper's Figures 5-9); and the
    ensemble mean with its min-max range across architectures per scenario, over the whole projection
    and, when it is longer, over its first :data:`PAPER_YEARS` years (the paper's 2024-2030 view)."""
    times = pd.DatetimeIndex(ds["time"].values)
    first, last = times[0].year, times[-1].year

    def arr(da: xr.DataArray) -> np.ndarray:
        return da.transpose("band", "time", "layer").values

    for m in ds["model"].values:
        lines = {str(s): arr(ds["soil_temperature"].sel(scenario=s, model=m)) for s in ds["scenario"].values}
        band_layer_grid(times, lines, band_names, TARGETS, f"{m}: projected soil temperature {first}-{last}",
                        out / f"scenarios_{m}.png")
    lines = {str(s): arr(ds["ensemble_mean"].sel(scenario=s)) for s in ds["scenario"].values}
    spread = {str(s): (arr(ds["ensemble_min"].sel(scenario=s)), arr(ds["ensemble_max"].sel(scenario=s)))
              for s in ds["scenario"].values}
    band_layer_grid(times, lines, band_names, TARGETS, f"Ensemble mean (shading: range across architectures)"
                    f" {first}-{last}", out / "ensemble.png", spread=spread)
    if last - first + 1 > PAPER_YEARS:
        end = first + PAPER_YEARS - 1
        keep = np.asarray(times.year <= end)
        band_layer_grid(times[keep], {k: v[:, keep] for k, v in lines.items()}, band_names, TARGETS,
                        f"Ensemble mean (shading: range across architectures) {first}-{end}",
                        out / f"ensemble_{first}_{end}.png",
                        spread={k: (lo[:, keep], hi[:, keep]) for k, (lo, hi) in spread.items()})
