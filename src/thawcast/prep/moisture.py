"""Split CMIP5's one top-layer soil moisture into the four ERA5-Land layers.

CMIP5 ``mrsos`` is the water in the upper 10 cm; ERA5-Land has four layers (0-7, 7-28,
28-100, 100-289 cm). The split is learned from ERA5-Land itself over the calibration years:
for each band, calendar month and layer ``i``

    ratio_i = mean(w_i) / mean(w_top10),   w_top10 = (0.07 w1 + 0.03 w2) / 0.10

(``w_top10`` is ERA5-Land's own upper-10 cm water, the quantity ``mrsos`` measures), and a
CMIP month gets ``w_i = ratio_i[band, month] * w_top_cmip``. The layer values are then
bias-corrected like every other feature. This keeps the observed vertical structure and
its seasonal cycle (e.g. a wetter deep layer under a dry summer surface) while the CMIP
series carries the scenario's change in wetness.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from thawcast.errors import DataError
from thawcast.variables import ERA5_LAYERS_M

LAYERS = ("w1", "w2", "w3", "w4")
TOP_DEPTH_M = 0.10


def top10(era: xr.Dataset) -> xr.DataArray:
    """ERA5-Land water content of the upper 10 cm (depth-weighted mean of layers 1-2)."""
    top, bottom = ERA5_LAYERS_M[0]
    th1 = bottom - top  # layer 1 (0-7 cm) lies wholly in the upper 10 cm; layer 2 fills the rest
    return (th1 * era["w1"] + (TOP_DEPTH_M - th1) * era["w2"]) / TOP_DEPTH_M


def layer_ratios(era: xr.Dataset) -> xr.DataArray:
    """``ratio[layer, band, month]`` learned from ERA5-Land over the months given."""
    missing = [n for n in LAYERS if n not in era]
    if missing:
        raise DataError(None, f"ERA5-Land soil water layers {missing} are missing; cannot learn the moisture split")
    top = top10(era).groupby("time.month").mean("time")
    ratios = xr.concat([era[n].groupby("time.month").mean("time") / top for n in LAYERS],
                       dim=xr.DataArray(list(LAYERS), dims="layer", name="layer"))
    if not bool(np.isfinite(ratios).all()):
        raise DataError(None, "ERA5-Land upper-10 cm water is zero in some band/month; the split is undefined")
    ratios.name = "moisture_ratio"
    ratios.attrs = {"units": "1", "long_name": "ERA5-Land layer water / upper-10 cm water (calibration mean)"}
    return ratios


def split(w_top: xr.DataArray, ratios: xr.DataArray) -> dict[str, xr.DataArray]:
    """Layer water ``w1..w4`` from a top-10 cm series (dims ``band, time``)."""
    month = w_top["time"].dt.month
    out = {}
    for n in LAYERS:
        da = (w_top * ratios.sel(layer=n, drop=True).sel(month=month)).drop_vars("month")
        da.name = n
        da.attrs = {"units": "m3 m-3", "long_name": f"volumetric soil water, ERA5-Land layer {n[1]}",
                    "derived_from": "CMIP5 mrsos x ERA5-Land layer ratio (thawcast.prep.moisture)"}
        out[n] = da
    return out
