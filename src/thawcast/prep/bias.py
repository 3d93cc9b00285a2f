"""Bias correction of CMIP5 scenario inputs with ``xsdba`` (quantile mapping, grouped by month).

Two methods, chosen in ``params.yaml`` (``bias_correction.method``):

* ``eqm``: empirical quantile mapping, the paper's method (Noel et al. 2021). A future value
  is replaced by the observed value at the same quantile of the *calibration* distribution,
  so warming beyond the calibration range is clamped and scenarios converge.
* ``qdm``: quantile delta mapping (Cannon et al. 2015). The model's own change at each
  quantile (an added delta, or a ratio for precipitation) is kept and only the calibration
  bias at that quantile is removed, so the scenarios' trends and spread survive.

Both are trained on ``ref`` (ERA5-Land band series) against ``hist`` (CMIP5 over the same
calibration months), per calendar month and per band, additive (``+``) or multiplicative
(``*``) per variable (:attr:`thawcast.variables.Variable.bc_kind`).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from thawcast.catalogue import BIAS_METHODS
from thawcast.errors import DataError
from thawcast.variables import VARIABLES

log = logging.getLogger(__name__)

#: Multiplicative variables: amounts below this (in the variable's unit) count as zero. Before
#: training they are jittered to tiny random positive values (xsdba ``jitter_under_thresh``),
#: so dry months do not make ratios 0/0 or x/0; after adjustment they are set back to 0.
ZERO_THRESHOLD = {"mm day-1": 0.01, "m3 m-3": 0.001}


@contextlib.contextmanager
def _seeded(seed: int):
    """xsdba's jitter draws from NumPy's global generator: seed it, then restore its state."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _adjuster(method: str):
    import xsdba

    if method == "qdm":
        return xsdba.QuantileDeltaMapping
    if method == "eqm":
        return xsdba.EmpiricalQuantileMapping
    raise ValueError(f"unknown bias-correction method {method!r}; valid: {list(BIAS_METHODS)}")


def _with_units(da: xr.DataArray, unit: str) -> xr.DataArray:
    da = da.copy()
    da.attrs = {**da.attrs, "units": unit}
    return da


#: Attributes of a saved adjustment dataset that thawcast adds to xsdba's own.
_ATTR_VARIABLE, _ATTR_METHOD, _ATTR_NQ = "thawcast_variable", "thawcast_method", "thawcast_nquantiles"
_ATTR_SEED, _ATTR_DRAWS = "thawcast_jitter_seed", "thawcast_jitter_draws_before_sim"


@contextlib.contextmanager
def _quiet_jsonpickle():
    """xsdba serialises its training parameters with jsonpickle, which announces a future default."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="keys will default to True in jsonpickle",
                                category=DeprecationWarning)
        yield


def train(ref: xr.DataArray, hist: xr.DataArray, *, variable: str, method: str, nquantiles: int, seed: int = 0):
    """Fit the adjustment of one canonical variable: ``ref`` (observed) against ``hist`` (model), per month.

    Parameters
    ----------
    ref, hist
        Observed and modelled series over the same calibration months (dims ``[band,] time``).
    variable
        Canonical variable name: gives the unit and additive/multiplicative kind.
    method
        ``qdm`` or ``eqm``.
    seed
        Seed of the jitter of near-zero amounts (multiplicative variables), for reproducibility.

    Returns
    -------
    The fitted xsdba adjustment object. Its ``.ds`` (quantiles and adjustment factors, plus
    the calibration months' mean of ``ref`` and ``hist`` per calendar month, and how to
    replay the jitter) is all :func:`apply` needs: save it with :func:`save` and reload it
    with :func:`load`.
    """
    var = VARIABLES[variable]
    ref_t, hist_t = ref["time"].values, hist["time"].values
    if len(ref_t) != len(hist_t) or (ref_t != hist_t).any():
        raise DataError(None, f"{variable}: ref and hist must cover the same calibration months"
                        f" ({len(ref_t)} vs {len(hist_t)} months)")
    for name, da in (("ref", ref), ("hist", hist)):
        if bool(da.isnull().any()):
            raise DataError(None, f"{variable}: {name} has missing values; quantile mapping needs complete series")
    cls = _adjuster(method)
    ref, hist = (_with_units(d, var.unit) for d in (ref, hist))
    thresh = _threshold(variable)
    with _quiet_jsonpickle():
        with _seeded(seed):
            if thresh is not None:
                from xsdba.processing import jitter_under_thresh

                ref, hist = (jitter_under_thresh(d, thresh=f"{thresh} {var.unit}") for d in (ref, hist))
            trained = cls.train(ref, hist, nquantiles=nquantiles, group="time.month", kind=var.bc_kind)
        ds = trained.ds
        ds["ref_monthly_mean"] = ref.groupby("time.month").mean("time")
        ds["hist_monthly_mean"] = hist.groupby("time.month").mean("time")
        ds.attrs.update({_ATTR_VARIABLE: variable, _ATTR_METHOD: method, _ATTR_SEED: seed, _ATTR_NQ: nquantiles,
                         _ATTR_DRAWS: int(ref.size + hist.size) if thresh is not None else 0})
    return trained


def apply(trained, sim: xr.DataArray, *, period_years: int = 0) -> xr.DataArray:
    """Bias-correct ``sim`` with an adjustment fitted by :func:`train` (or reloaded by :func:`load`).

    Parameters
    ----------
    trained
        The fitted adjustment.
    sim
        The series to correct (extra dims such as ``scenario`` are broadcast).
    period_years
        QDM only: rank each value within its own block of this many years rather than
        within the whole ``sim`` series, so a warming inside a long series is kept as change
        instead of being absorbed into the ranks. 0 = whole series.

    Returns
    -------
    The corrected ``sim`` with the dimension order of ``sim``; non-negative variables are
    floored at 0; xsdba's ``bias_adjustment`` attribute says which adjustment made it.
    """
    ds = trained.ds
    variable, method = str(ds.attrs[_ATTR_VARIABLE]), str(ds.attrs[_ATTR_METHOD])
    var = VARIABLES[variable]
    if bool(sim.isnull().any()):
        raise DataError(None, f"{variable}: sim has missing values; quantile mapping needs complete series")
    sim_u = _with_units(sim, var.unit)
    thresh = _threshold(variable)
    with _quiet_jsonpickle(), _seeded(int(ds.attrs[_ATTR_SEED])):
        if thresh is not None:
            from xsdba.processing import jitter_under_thresh

            # The jitter of ref and hist came first in this seed's stream; sim continues it.
            np.random.random_sample(int(ds.attrs[_ATTR_DRAWS]))
            sim_u = jitter_under_thresh(sim_u, thresh=f"{thresh} {var.unit}")
        if method == "qdm" and period_years:
            out = _adjust_by_period(trained, sim_u, period_years)
        else:
            out = trained.adjust(sim_u)
    provenance = out.attrs.get("bias_adjustment", f"{trained!s}.adjust(sim)")
    out = out.transpose(*sim.dims)
    degenerate = out.isnull()
    if bool(degenerate.any()):
        # A calendar month whose values are all identical (e.g. no sunlight in a polar-night
        # December) has no quantiles: xsdba returns NaN there. Fall back to the mean bias of
        # that month (additive delta or ratio), which is exact for such constant groups.
        out = out.where(~degenerate, _mean_bias_fallback(ds["ref_monthly_mean"], ds["hist_monthly_mean"], sim,
                                                         var.bc_kind))
        log.debug("%s: %d degenerate values corrected by the monthly mean bias", variable, int(degenerate.sum()))
    if thresh is not None:
        out = out.where((out >= thresh) | out.isnull(), 0.0)
    if var.valid_range[0] >= 0.0:
        out = out.clip(min=0.0)
    out.name = variable
    nq = int(ds.attrs[_ATTR_NQ])
    out.attrs = {"units": var.unit, "long_name": var.long_name,
                 "bias_correction": f"{method} ({'additive' if var.bc_kind == '+' else 'multiplicative'},"
                                    f" {nq} quantiles, grouped by calendar month)",
                 "bias_adjustment": provenance}
    return out


def adjust(ref: xr.DataArray, hist: xr.DataArray, sim: xr.DataArray, *, variable: str, method: str,
           nquantiles: int, seed: int = 0, period_years: int = 0) -> xr.DataArray:
    """:func:`train` on ``ref``/``hist``, then :func:`apply` to ``sim`` (see both)."""
    trained = train(ref, hist, variable=variable, method=method, nquantiles=nquantiles, seed=seed)
    return apply(trained, sim, period_years=period_years)


def save(trained, path: Path) -> Path:
    """Write a fitted adjustment's dataset (xsdba's ``.ds`` with its serialised parameters) to NetCDF."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = trained.ds.copy()
    for da in ds.data_vars.values():
        # xsdba stamps each processing step with the clock ("[2026-11-22 02:05:30] p_total: jitter(...)"), and
        # whether a derived array keeps a ``history`` at all depends on it: the reference's and the model's
        # stamps merge when they fall in the same second and drop as a conflict when not (a fresh clone's
        # qdm_p_total.nc differed from the committed one by that attribute alone). The method and its
        # parameters stay in the dataset's ``adj_params``; the corrected series carry ``bias_adjustment``.
        da.attrs.pop("history", None)
    ds.to_netcdf(path)
    return path


def load(path: Path):
    """Reload an adjustment written by :func:`save`; :func:`apply` with it reproduces the original exactly.

    Raises
    ------
    DataError
        The file is not a saved thawcast adjustment.
    """
    from thawcast.ingest.common import open_netcdf

    with open_netcdf(path) as f:
        ds = f.load()
    if _ATTR_METHOD not in ds.attrs or _ATTR_VARIABLE not in ds.attrs:
        raise DataError(path, "not a saved thawcast bias adjustment (no thawcast_method/thawcast_variable attrs)")
    with _quiet_jsonpickle():
        return _adjuster(str(ds.attrs[_ATTR_METHOD])).from_dataset(ds)


def _threshold(variable: str) -> float | None:
    var = VARIABLES[variable]
    return ZERO_THRESHOLD.get(var.unit) if var.bc_kind == "*" else None


def _adjust_by_period(trained, sim: xr.DataArray, years: int) -> xr.DataArray:
    """Adjust consecutive blocks of ``years`` years separately (ranks taken within each block).

    (xsdba's ``stack_periods``/``unstack_periods`` would do this, but rebuild monthly time
    stamps on a placeholder calendar that drifts across leap years on a standard calendar.)
    """
    year = sim["time"].dt.year
    first = int(year.min())
    blocks = [trained.adjust(sim.where((year - first) // years == k, drop=True))
              for k in range((int(year.max()) - first) // years + 1)]
    return xr.concat(blocks, dim="time")


def _mean_bias_fallback(r: xr.DataArray, h: xr.DataArray, sim: xr.DataArray, kind: str) -> xr.DataArray:
    """``sim`` shifted (``+``) or scaled (``*``) by the calibration bias of its calendar month (``r``, ``h``:
    monthly means of ref and hist, dim ``month``)."""
    month = sim["time"].dt.month
    if kind == "+":
        fix = sim + (r - h).sel(month=month)
    else:
        ratio = xr.where(h > 0, r / h.where(h > 0), 1.0)
        fix = sim * ratio.sel(month=month)
    return fix.drop_vars("month").transpose(*sim.dims)


def mean_change(da: xr.DataArray, calibration: slice, projection: slice) -> xr.DataArray:
    """Mean over ``projection`` minus mean over ``calibration`` (all other dims but ``scenario`` pooled)."""
    keep = [d for d in da.dims if d == "scenario"]
    pooled = [d for d in da.dims if d not in keep]
    return da.sel(time=projection).mean(pooled) - da.sel(time=calibration).mean(pooled)


def spread(change: xr.DataArray, high: str, low: str) -> float:
    """Difference in mean change between two scenarios (e.g. RCP8.5 minus RCP2.6)."""
    return float(change.sel(scenario=high) - change.sel(scenario=low))


def retained(after: float, raw: float) -> float | None:
    """Share of the raw model's scenario spread left after correction (None when raw is ~0)."""
    return float(after / raw) if abs(raw) > 1e-12 and np.isfinite(raw) else None
