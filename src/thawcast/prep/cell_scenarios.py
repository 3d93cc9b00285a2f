"""Scenario drivers for every grid cell: the bias-corrected band scenario, disaggregated to the cells.

The scenarios stage corrects CMIP5 at the bands' scale (the model grid is coarser than a band). A cell's scenario is
that band series moved onto the cell's own observed climate, calendar month by calendar month, over the calibration
years (the spatial disaggregation step of BCSD, Wood et al. 2004, Climatic Change 62):

* amounts (precipitation, snowfall, snow water, snow depth: :data:`RATIO`):
  ``cell(t) = band_scenario(t) x clim_cell(m) / clim_band(m)``, the ratio capped at :data:`MAX_RATIO`; the cell's
  climatology itself where the band's is 0;
* everything else: ``cell(t) = band_scenario(t) + clim_cell(m) - clim_band(m)``; soil moisture floored at 0.

So each cell keeps its observed mean seasonal cycle and the band's corrected change, spread and sequence.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from thawcast.analysis.perfect_model import monthly_climatology
from thawcast.config import YearRange
from thawcast.errors import DataError

#: Drivers that are non-negative amounts: changed by a ratio, never below 0.
RATIO: tuple[str, ...] = ("p_total", "p_snow", "swe", "snow_depth")
#: The largest ratio of a cell's to its band's climatology applied to an amount: a band climatology near 0 (snowfall
#: in a shoulder month) would otherwise scale the band's scenario without bound.
MAX_RATIO = 5.0
#: Drivers changed by a difference but physically non-negative (volumetric soil water).
FLOORED: tuple[str, ...] = ("w1", "w2", "w3", "w4")


def _climatology(values: np.ndarray, times: pd.DatetimeIndex, years: YearRange) -> np.ndarray:
    """``[unit, 12]`` mean of ``values [unit, time]`` per calendar month over ``years``."""
    return monthly_climatology(values, times, np.asarray((times.year >= years.start_year)
                                                         & (times.year <= years.end_year)))


def disaggregate(band_scenario: xr.Dataset, band_observed: xr.Dataset, cell_observed: xr.Dataset,
                 band_of_cell: np.ndarray, years: YearRange, names: Sequence[str]) -> xr.Dataset:
    """``[cell, time]`` scenario drivers ``names`` over ``band_scenario``'s months (see the module text).

    ``band_observed`` and ``cell_observed`` are the ERA5-Land band table and cell store whose calibration-year
    climatologies map the band onto each cell.

    Raises
    ------
    DataError
        A driver is missing from one of the three, or a calendar month has no month in the calibration years.
    """
    times = pd.DatetimeIndex(band_scenario["time"].values)
    month = times.month.to_numpy() - 1
    out = {}
    for v in names:
        absent = [what for what, ds in (("band scenario", band_scenario), ("band observations", band_observed),
                                        ("cell store", cell_observed)) if v not in ds]
        if absent:
            raise DataError("cells", f"driver '{v}' is missing from the {', '.join(absent)}")
        cc = _climatology(cell_observed[v].transpose("cell", "time").values,
                                 pd.DatetimeIndex(cell_observed["time"].values), years)
        bc = _climatology(band_observed[v].transpose("band", "time").values,
                                 pd.DatetimeIndex(band_observed["time"].values), years)[band_of_cell]
        s = band_scenario[v].transpose("band", "time").values[band_of_cell]
        if v in RATIO:
            with np.errstate(invalid="ignore", divide="ignore"):
                factor = np.where(bc > 0, np.minimum(cc / bc, MAX_RATIO), np.nan)[:, month]
            x = np.where(np.isfinite(factor), s * factor, cc[:, month])
        else:
            x = s + (cc - bc)[:, month]
        if v in RATIO or v in FLOORED:
            x = np.maximum(x, 0.0)
        out[v] = (("cell", "time"), x)
    return xr.Dataset(out, coords={"cell": cell_observed["cell"].values, "time": band_scenario["time"].values})
