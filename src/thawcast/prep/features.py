"""The model inputs: every feature a window can hold, with its unit, and how to build them.

Four kinds of feature, in the order of the paper (section 2.2.2):

* ``dynamic``: the 12 monthly ERA5-Land drivers (canonical units, :mod:`thawcast.variables`);
  for scenarios the bias-corrected CMIP5 equivalents;
* ``calendar``: the year and the sine/cosine of the month;
* ``static``: per-band soil and lithology values (:mod:`thawcast.prep.soil`), constant in time;
* ``signal``: the scenario signal ``z`` of equations (2.1)-(2.2), one value per window
  (see :func:`scenario_signal`).

Monthly features form a ``[band, time, feature]`` array; ``z`` depends on the whole window,
so it is kept as a ``[band, time]`` array indexed by the window's last input month and
joined to every step of the window as the last column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from thawcast.catalogue import feature
from thawcast.errors import DataError
from thawcast.variables import OPTIONAL_FEATURES, SNOW_DEPTH_FROM, VARIABLES


def monthly_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """The features stored per month (all but the window-level signal)."""
    return tuple(n for n in names if feature(n).kind != "signal")


def _file_variables(feature: str, source: str) -> list[str]:
    """The file variables (ERA5-Land or CMIP5 short names) an optional feature is read from."""
    var = VARIABLES[feature]
    if source == "cmip5":
        return [f"{var.cmip5} ({var.cmip5_table})"]
    return [VARIABLES[n].era5 for n in SNOW_DEPTH_FROM] if feature == "snow_depth" else [var.era5]


def require(requested: tuple[str, ...], have, source: str, where: str) -> None:
    """Every requested optional feature (snow) is among ``have``; else one :class:`DataError` that names the file
    variables it is read from and how to do without it.

    Parameters
    ----------
    requested
        The configured feature names (``features`` in params.yaml).
    have
        The variables a source provides (e.g. a band table's ``data_vars``).
    source
        ``era5`` or ``cmip5``: whose short names the message gives.
    where
        The files or experiment, for the message.
    """
    absent = [n for n in requested if n in OPTIONAL_FEATURES and n not in have]
    if absent:
        needs = sorted({v for n in absent for v in _file_variables(n, source)})
        raise DataError(where, f"feature(s) {absent} need the {'CMIP5' if source == 'cmip5' else 'ERA5-Land'}"
                        f" variable(s) {needs}, which these files lack: add them, or remove {absent} from"
                        " `features` in params.yaml (README \"Snow\")")


def calendar_features(times: pd.DatetimeIndex) -> dict[str, np.ndarray]:
    month = times.month.to_numpy()
    angle = 2.0 * np.pi * (month - 1) / 12.0
    return {"year": times.year.to_numpy().astype(float), "month_sin": np.sin(angle), "month_cos": np.cos(angle)}


def monthly_matrix(dynamic: xr.Dataset, static: xr.Dataset, names: tuple[str, ...],
                   source: str = "features", unit: str = "band") -> xr.DataArray:
    """``[unit, time, feature]`` float64 array of the monthly features ``names`` (unscaled); the units are the
    ``band`` (or ``cell``) dimension of both datasets.

    Raises
    ------
    DataError
        If a dynamic or static feature is missing from its dataset, or the unit sets differ.
    """
    times = pd.DatetimeIndex(dynamic["time"].values)
    bands = dynamic[unit].values
    if not np.array_equal(static[unit].values, bands):
        raise DataError(source, f"static {unit}s {_listed(static[unit].values)} differ from dynamic {unit}s"
                        f" {_listed(bands)}")
    cal = calendar_features(times)
    cols = []
    for n in monthly_names(names):
        kind = feature(n).kind
        if kind == "dynamic":
            require(names, dynamic, "era5", source)
            if n not in dynamic:
                raise DataError(source, f"dynamic feature '{n}' is missing (have {sorted(dynamic.data_vars)})")
            col = dynamic[n].transpose(unit, "time").values
        elif kind == "static":
            if n not in static:
                raise DataError(source, f"static feature '{n}' is missing (have {sorted(static.data_vars)})")
            col = np.broadcast_to(static[n].values[:, None], (len(bands), len(times)))
        else:
            col = np.broadcast_to(cal[n][None, :], (len(bands), len(times)))
        cols.append(np.asarray(col, dtype=float))
    data = np.stack(cols, axis=-1) if cols else np.zeros((len(bands), len(times), 0))
    return xr.DataArray(data, dims=(unit, "time", "feature"),
                        coords={unit: bands, "time": dynamic["time"].values, "feature": list(monthly_names(names))})


def _listed(values: np.ndarray, first: int = 8) -> str:
    """The first few of a long list of units, and how many there are."""
    v = list(values)
    return str(v) if len(v) <= first else f"[{', '.join(map(str, v[:first]))}, ...] ({len(v)})"


def scenario_signal(r_thermal: np.ndarray, length: int, mu: float, sigma: float) -> np.ndarray:
    """The paper's scenario signal per window, indexed by the window's last input month.

    For the window of ``length`` months ending at month ``t`` (inclusive),
    ``z~ = (mean(R_thermal[t-length+1 .. t]) - mu) / sigma`` (eq. 2.1) and
    ``z = |z~| z~`` (eq. 2.2). ``mu``/``sigma`` are the mean and std of monthly R_thermal
    over the training months. Months without a full window before them are NaN.

    Parameters
    ----------
    r_thermal
        ``[..., time]`` monthly downwelling longwave radiation (W m-2).
    """
    if sigma <= 0 or not np.isfinite(sigma):
        raise DataError(None, f"R_thermal has no spread over the training months (std {sigma}); z is undefined")
    r = np.asarray(r_thermal, dtype=float)
    out = np.full(r.shape, np.nan)
    if r.shape[-1] >= length:
        means = np.lib.stride_tricks.sliding_window_view(r, length, axis=-1).mean(axis=-1)
        zt = (means - mu) / sigma
        out[..., length - 1:] = np.abs(zt) * zt
    return out
