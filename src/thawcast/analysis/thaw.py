"""Permafrost thaw metrics from monthly soil temperature at the four ERA5-Land layers.

All functions take temperatures in degC with the calendar months of one year on an axis
and are pure (arrays in, arrays out). With only four layers (mid-depths 3.5, 17.5, 64 and
194.5 cm) the active-layer thickness is bounded by the layer spacing: between two
mid-depths it is a linear interpolation of the zero crossing, and it cannot be resolved
below the deepest mid-depth (a profile above 0 degC at 194.5 cm reports 194.5 cm, a
lower bound, flagged by :func:`alt_is_lower_bound`).

The summaries at the end (:func:`summarise`, :func:`markdown`) turn yearly metrics of observed
and projected series into the per-band table of ``metrics/thaw.{json,md}``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from thawcast.analysis.periods import label
from thawcast.analysis.tables import markdown_table, rounded
from thawcast.errors import DataError
from thawcast.variables import ERA5_LAYER_MID_M, TARGETS

#: Mid-depths of the ERA5-Land layers (cm): where the layer temperatures apply.
LAYER_MID_CM: tuple[float, ...] = tuple(round(z * 100, 2) for z in ERA5_LAYER_MID_M)


def active_layer_thickness(annual_max: np.ndarray, depths_cm=LAYER_MID_CM) -> np.ndarray:
    """Deepest depth (cm) at which the annual maximum temperature is above 0 degC.

    Parameters
    ----------
    annual_max
        ``[..., layer]`` annual maximum temperature per layer (degC), layers shallow to deep.
    depths_cm
        Mid-depth of each layer.

    Returns
    -------
    ndarray
        ``[...]`` thickness in cm: 0 when even the top layer stays at or below 0 degC; the
        linearly interpolated zero crossing below the deepest layer that thaws; the deepest
        mid-depth when every layer thaws (a lower bound). NaN where the profile has NaN.
    """
    t = np.asarray(annual_max, dtype=float)
    z = np.asarray(depths_cm, dtype=float)
    if t.shape[-1] != len(z):
        raise DataError(None, f"profile has {t.shape[-1]} layers, depths give {len(z)}")
    if np.any(np.diff(z) <= 0):
        raise DataError(None, "layer depths must increase")
    above = t > 0
    # index of the deepest layer above 0 degC (-1 when none)
    deepest = np.where(above.any(axis=-1), len(z) - 1 - np.argmax(above[..., ::-1], axis=-1), -1)
    nxt = np.clip(deepest + 1, 0, len(z) - 1)
    t_k = np.take_along_axis(t, np.clip(deepest, 0, None)[..., None], axis=-1)[..., 0]
    t_n = np.take_along_axis(t, nxt[..., None], axis=-1)[..., 0]
    z_k, z_n = z[np.clip(deepest, 0, None)], z[nxt]
    with np.errstate(invalid="ignore", divide="ignore"):
        crossing = z_k + (z_n - z_k) * t_k / (t_k - t_n)
    alt = np.where(deepest < 0, 0.0, np.where(deepest == len(z) - 1, z[-1], crossing))
    return np.where(np.isnan(t).any(axis=-1), np.nan, alt)


def alt_is_lower_bound(annual_max: np.ndarray) -> np.ndarray:
    """True where every layer thaws: the active layer reaches below the deepest mid-depth."""
    return (np.asarray(annual_max) > 0).all(axis=-1)


def months_above_zero(monthly: np.ndarray, axis: int = -1) -> np.ndarray:
    """Months with mean temperature above 0 degC (count along ``axis``)."""
    return (np.asarray(monthly) > 0).sum(axis=axis)


def thawing_degree_months(monthly: np.ndarray, axis: int = -1) -> np.ndarray:
    """Sum of the positive monthly means, degC month (the monthly analogue of thawing degree-days)."""
    return np.clip(np.asarray(monthly, dtype=float), 0.0, None).sum(axis=axis)


def zero_curtain_months(monthly: np.ndarray, band_c: float = 0.5, max_change_c: float = 0.5,
                        axis: int = -1) -> np.ndarray:
    """Months held near 0 degC by latent heat: ``|T| <= band_c`` and ``|T - T_previous| <= max_change_c``.

    The first month along ``axis`` has no predecessor and is judged on ``|T|`` alone.
    """
    t = np.moveaxis(np.asarray(monthly, dtype=float), axis, -1)
    change = np.abs(np.diff(t, axis=-1, prepend=t[..., :1]))
    return ((np.abs(t) <= band_c) & (change <= max_change_c)).sum(axis=-1)


def trend_per_decade(years: np.ndarray, values: np.ndarray) -> float:
    """Least-squares slope of ``values`` against ``years``, times 10 (NaN-tolerant; NaN if < 2 points).

    Computed from centred sums, so a constant series gives exactly 0 (not rounding noise).
    """
    x, y = np.asarray(years, dtype=float), np.asarray(values, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2 or np.ptp(x[ok]) == 0:
        return float("nan")
    dx, dy = x[ok] - x[ok].mean(), y[ok] - y[ok].mean()
    return float((dx * dy).sum() / (dx * dx).sum() * 10.0)


def trend_with_uncertainty(years: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Least-squares trend per decade and the half-width of its 95% confidence interval.

    The standard error of the slope is inflated for lag-1 autocorrelation of the residuals with the
    effective sample size ``n (1 - r1) / (1 + r1)`` (Santer et al. 2000, JGR 105): consecutive years of
    soil temperature are not independent, and the plain OLS interval would be too narrow. NaN-tolerant;
    (NaN, NaN) with fewer than 4 points or an effective size of 2 or less.
    """
    from scipy.stats import t as student

    x, y = np.asarray(years, dtype=float), np.asarray(values, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 4 or np.ptp(x) == 0:
        return float("nan"), float("nan")
    dx = x - x.mean()
    slope = float((dx * (y - y.mean())).sum() / (dx * dx).sum())
    resid = y - y.mean() - slope * dx
    denom = float((resid * resid).sum())
    r1 = float((resid[1:] * resid[:-1]).sum() / denom) if denom > 0 else 0.0
    n_eff = len(x) * (1 - r1) / (1 + r1) if r1 > 0 else float(len(x))
    if n_eff <= 2:
        return slope * 10.0, float("nan")
    se = np.sqrt(denom / (n_eff - 2) / (dx * dx).sum())
    return slope * 10.0, float(student.ppf(0.975, n_eff - 2) * se * 10.0)


def first_crossing_year(years: np.ndarray, values: np.ndarray, depth: float, smooth: int = 5) -> int | None:
    """First year whose ``smooth``-year centred running mean of ``values`` reaches ``depth`` (None if none).

    The running mean keeps one warm year from counting as the crossing; the first and last
    ``smooth // 2`` years have no centred mean and cannot be the crossing, so a series already past
    ``depth`` gives the first year that has one.
    """
    v = np.asarray(values, dtype=float)
    if len(v) < smooth:
        raise DataError(None, f"need at least {smooth} years for a {smooth}-year running mean, got {len(v)}")
    run = np.convolve(v, np.ones(smooth) / smooth, mode="valid")
    hit = np.flatnonzero(run >= depth - 1e-6)
    return None if not len(hit) else int(np.asarray(years)[hit[0] + smooth // 2])


def dominant_period_months(series: np.ndarray) -> float:
    """Period (months) of the strongest non-zero frequency in the periodogram of a monthly series.

    A least-squares cubic is removed first (a warming trend over decades would otherwise own the lowest
    frequency: deep layers over 77 years did, and a line is not enough where the warming accelerates; a
    cubic over years cannot absorb a 24-month cycle) and the series zero-padded to 8x its length, so periods that
    do not divide the record length (a 24-month cycle in 84 months) are still located to
    within a few percent. Needs at least 24 months so that a 12-month cycle is resolved by
    two full periods.
    """
    y = np.asarray(series, dtype=float)
    if y.ndim != 1 or len(y) < 24 or not np.isfinite(y).all():
        raise DataError(None, f"need a finite 1-D monthly series of at least 24 months, got shape {y.shape}")
    n = 8 * len(y)
    t = np.arange(len(y), dtype=float)
    power = np.abs(np.fft.rfft(y - np.polyval(np.polyfit(t / len(y), y, 3), t / len(y)), n=n)) ** 2
    freq = np.fft.rfftfreq(n, d=1.0)
    k = 1 + int(np.argmax(power[1:]))
    return float(1.0 / freq[k])


def yearly_metrics(temps, zero_band_c: float = 0.5, zero_max_change_c: float = 0.5):
    """Thaw metrics per calendar year of monthly soil temperature.

    Parameters
    ----------
    temps
        :class:`xarray.DataArray` of degC with dims ``(..., layer, time)``; ``time`` holds
        whole calendar years of monthly values, ``layer`` the four ERA5-Land layers.

    Returns
    -------
    xarray.Dataset
        Dims ``(..., year)``: ``alt_cm``, ``alt_lower_bound``, ``near_surface_permafrost`` (the deepest
        layer, 194.5 cm, never above 0 degC that year); and ``(..., layer, year)``:
        ``months_above_zero``, ``thawing_degree_months``, ``zero_curtain_months``.
    """
    import pandas as pd
    import xarray as xr

    times = pd.DatetimeIndex(temps["time"].values)
    if len(times) % 12 or (times.month[::12] != 1).any():
        raise DataError(None, f"need whole calendar years of months, got {times[0]:%Y-%m}..{times[-1]:%Y-%m}")
    years = times.year[::12].to_numpy()
    t = temps.transpose(..., "layer", "time")
    lead = t.dims[:-2]
    v = t.values.reshape(*t.shape[:-1], len(years), 12)  # [..., layer, year, month]
    ann_max = np.moveaxis(v.max(axis=-1), -2, -1)  # [..., year, layer]
    coords = {d: t[d].values for d in lead}
    layer_year = (*lead, "layer", "year")
    return xr.Dataset(
        {"alt_cm": ((*lead, "year"), active_layer_thickness(ann_max),
                    {"units": "cm", "long_name": "active-layer thickness (annual max profile zero crossing)"}),
         "alt_lower_bound": ((*lead, "year"), alt_is_lower_bound(ann_max),
                             {"long_name": "every layer thaws: ALT is at least the deepest mid-depth"}),
         "months_above_zero": (layer_year, months_above_zero(v), {"units": "months"}),
         "thawing_degree_months": (layer_year, thawing_degree_months(v), {"units": "degC month"}),
         "zero_curtain_months": (layer_year, zero_curtain_months(v, zero_band_c, zero_max_change_c),
                                 {"units": "months"}),
         "near_surface_permafrost": ((*lead, "year"), ann_max[..., -1] <= 0.0,
                                     {"long_name": "the deepest layer's annual maximum is at or below 0 degC"})},
        coords={**coords, "layer": t["layer"].values, "year": years},
    )


# ---------------------------------------------------------------- summaries
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


def _num(x: float | None, fmt: str) -> str:
    return "n/a" if x is None else format(x, fmt)


def _layer1(da: xr.DataArray) -> xr.DataArray:
    return da.sel(layer=TARGETS[0])


def summarise(obs: xr.Dataset, ens: xr.Dataset, names: list[str], t_air_trend: dict[str, xr.DataArray]) -> dict:
    """Per source (observed, each scenario) and band: the means over the years and the trends per decade.

    ALT (cm) with, for projections, the members' range, and the share of years at the ALT bound (every
    layer thaws: the deepest mid-depth is a lower bound); months above 0 degC and thawing degree-months
    of layer 1; trends per decade of ALT (none where any year sits at the bound: a trend of a capped
    series reads as the opposite of the truth), layer-1 thawing degree-months and the air temperature
    that drove them. Projected values are the ensemble mean over architectures.
    """
    def per_band(alt, months, tdm, driver, spread=None) -> dict:
        at_bound = (alt >= LAYER_MID_CM[-1] - 1e-6).mean("year")
        cols = {"alt_mean_cm": alt.mean("year"), "alt_share_years_at_bound": at_bound}
        if spread is not None:
            cols.update(alt_model_min_cm=spread[0].mean("year"), alt_model_max_cm=spread[1].mean("year"))
        cols.update({"alt_trend_cm_per_decade": trends(alt).where(at_bound == 0),
                     "months_above_zero_layer1": _layer1(months).mean("year"),
                     "thawing_degree_months_layer1": _layer1(tdm).mean("year"),
                     "thawing_degree_months_layer1_trend_per_decade": trends(_layer1(tdm)),
                     "t_air_trend_degC_per_decade": driver})
        return {names[b]: {k: rounded(float(v.isel(band=b)), 3) for k, v in cols.items()} for b in range(alt.sizes["band"])}

    out = {"observed": per_band(obs["alt_cm"], obs["months_above_zero"], obs["thawing_degree_months"],
                                t_air_trend["observed"])}
    for s in ens["scenario"].values:
        e = ens.sel(scenario=s)
        out[str(s)] = per_band(e["alt_cm_mean"], e["months_above_zero_mean"], e["thawing_degree_months_mean"],
                               t_air_trend[str(s)], spread=(e["alt_cm_min"], e["alt_cm_max"]))
    return out


def decadal_summary(proj: xr.Dataset, names: list[str], bins: list[tuple[int, int]]) -> dict:
    """Per scenario and band: thaw metrics per decade with their spread across architectures, the trends
    over the whole projection with 95% intervals, and the year the ALT first reaches each mid-depth.

    ``proj`` holds :func:`yearly_metrics` of the projected members, dims ``(scenario, model, band[, layer],
    year)``. Per decade: ALT (mean of the members' decadal means, their min and max) and its share of
    member-years at the 194.5 cm bound; layer-1 months above 0 degC and thawing degree-months (mean, min,
    max); zero-curtain months per layer; the share of member-years with near-surface permafrost (the
    deepest layer never above 0 degC). Trends (:func:`trend_with_uncertainty`) are of the ensemble-mean
    series; the ALT trend is None where any member-year sits at the bound. Crossing years
    (:func:`first_crossing_year`) are of the ensemble-mean ALT.
    """
    years = proj["year"].values
    bound = LAYER_MID_CM[-1] - 1e-6
    out = {}
    for s in proj["scenario"].values:
        per_band = {}
        for b, name in enumerate(names):
            m = proj.sel(scenario=s).isel(band=b)
            alt = m["alt_cm"].transpose("model", "year").values
            tdm1 = _layer1(m["thawing_degree_months"]).transpose("model", "year").values
            mon1 = _layer1(m["months_above_zero"]).transpose("model", "year").values
            zc = m["zero_curtain_months"].transpose("model", "layer", "year").values
            pf = m["near_surface_permafrost"].transpose("model", "year").values
            per_decade = {}
            for a, z in bins:
                sel = (years >= a) & (years <= z)

                def stats(v, sel=sel):
                    member = v[:, sel].mean(axis=1)
                    return float(member.mean()), float(member.min()), float(member.max())

                alt_m, tdm_m, mon_m = stats(alt), stats(tdm1), stats(mon1)
                per_decade[label((a, z))] = {
                    "alt_cm": alt_m[0], "alt_min_cm": alt_m[1], "alt_max_cm": alt_m[2],
                    "alt_share_at_bound": float((alt[:, sel] >= bound).mean()),
                    "months_above_zero_layer1": mon_m[0], "months_above_zero_layer1_min": mon_m[1],
                    "months_above_zero_layer1_max": mon_m[2],
                    "thawing_degree_months_layer1": tdm_m[0], "thawing_degree_months_layer1_min": tdm_m[1],
                    "thawing_degree_months_layer1_max": tdm_m[2],
                    "zero_curtain_months": {lay: float(zc[:, k][:, sel].mean()) for k, lay in enumerate(TARGETS)},
                    "near_surface_permafrost_share": float(pf[:, sel].mean()),
                }
            ens_alt = alt.mean(axis=0)
            alt_trend = trend_with_uncertainty(years, ens_alt) if (alt < bound).all() else (None, None)
            tdm_trend = trend_with_uncertainty(years, tdm1.mean(axis=0))
            per_band[name] = {
                "decades": per_decade,
                "alt_trend_cm_per_decade": alt_trend[0], "alt_trend_cm_ci95": alt_trend[1],
                "tdm_layer1_trend_per_decade": tdm_trend[0], "tdm_layer1_trend_ci95": tdm_trend[1],
                "alt_first_reaches_cm": {f"{d:g}": first_crossing_year(years, ens_alt, d) for d in LAYER_MID_CM},
            }
        out[str(s)] = per_band
    return out


def decadal_markdown(dec: dict, first_year: int) -> str:
    """Tables of :func:`decadal_summary`: ALT per decade with its spread, permafrost share, crossing years."""
    lines = ["## Per decade, to the end of the projection", "",
             ("ALT per decade (cm): ensemble mean [min-max of the architectures' decadal means], 'b x%' where"
              " member-years sit at the 194.5 cm bound (the value is then a lower bound). Then the share of"
              " member-years with near-surface permafrost (the 194.5 cm layer never above 0 degC)."), ""]
    for rcp, per_band in dec.items():
        decs = list(next(iter(per_band.values()))["decades"])
        rows = [[band, *(f"{v['decades'][d]['alt_cm']:.0f} [{v['decades'][d]['alt_min_cm']:.0f}-"
                         f"{v['decades'][d]['alt_max_cm']:.0f}]"
                         + (f" b {v['decades'][d]['alt_share_at_bound']:.0%}"
                            if v["decades"][d]["alt_share_at_bound"] else "") for d in decs)]
                for band, v in per_band.items()]
        lines += [f"### {rcp}: ALT", "", *markdown_table(["band", *decs], rows), ""]
        rows = [[band, *(f"{v['decades'][d]['near_surface_permafrost_share']:.0%}" for d in decs)]
                for band, v in per_band.items()]
        lines += [f"### {rcp}: near-surface permafrost (share of member-years)", "",
                  *markdown_table(["band", *decs], rows), ""]
    lines += [("Trends over the whole projection, ensemble mean, with the 95% interval (lag-1 autocorrelation"
               " taken into account): ALT (cm/decade; n/a where a year sits at the bound) and layer-1 thawing"
               " degree-months (degC month/decade); and the year the ensemble-mean ALT (5-year running mean)"
               f" first reaches the 64 and 194.5 cm mid-depths ('{first_year + 2}' or earlier: already there;"
               " 'no': not by the end)."), ""]
    scen = list(dec)

    def trend(v: dict, key: str, fmt: str) -> str:
        ci = v[key.replace("per_decade", "ci95")]
        return "n/a" if v[key] is None else f"{v[key]:{fmt}}" + ("" if ci is None else f" ± {ci:.1f}")

    rows = [[band, *(f"{trend(dec[s][band], 'alt_trend_cm_per_decade', '+.1f')}; "
                     f"{trend(dec[s][band], 'tdm_layer1_trend_per_decade', '+.1f')}; "
                     + " / ".join(str(dec[s][band]["alt_first_reaches_cm"][d] or "no") for d in ("64", "194.5"))
                     for s in scen)] for band in dec[scen[0]]]
    lines += markdown_table(["band", *(f"{s}: ALT trend; TDM trend; reaches 64 / 194.5 cm" for s in scen)], rows)
    return "\n".join(lines) + "\n"


def _bound(row: dict) -> str:
    share = row["alt_share_years_at_bound"]
    return f"; bound {share:.0%}" if share else ""


def markdown(summary: dict, obs_years: str, proj_years: str) -> str:
    lines = ["# Active-layer thickness and thaw", "",
             (f"ALT in cm (annual-maximum profile, interpolated between the layer mid-depths 3.5, 17.5, 64 and"
             f" 194.5 cm; 194.5 means 'at least'). Observed: ERA5-Land {obs_years}. Projected: ensemble mean"
             f" over the architectures {proj_years}, [min-max of the members], trend per decade of the ensemble"
             " mean; 'bound x%': share of years at the 194.5 cm bound, where no trend is given (n/a)."), ""]
    scenarios = [k for k in summary if k != "observed"]
    lines += markdown_table(
        ["band", "observed ALT", *(f"{s} ALT [spread] (trend/decade)" for s in scenarios)],
        ([band, f"{o['alt_mean_cm']:.1f} ({_num(o['alt_trend_cm_per_decade'], '+.1f')}{_bound(o)})",
          *(f"{summary[s][band]['alt_mean_cm']:.1f} [{summary[s][band]['alt_model_min_cm']:.1f}-"
            f"{summary[s][band]['alt_model_max_cm']:.1f}] ({_num(summary[s][band]['alt_trend_cm_per_decade'], '+.1f')}"
            f"{_bound(summary[s][band])})" for s in scenarios)] for band, o in summary["observed"].items()))
    sources = ["observed", *scenarios]
    lines += ["", ("Layer 1: months above 0 degC and thawing degree-months (TDM, degC month) per year; observed"
              " and ensemble mean:"), "",
              *markdown_table(["band", *(c for s in sources for c in (f"{s} months > 0", f"{s} TDM"))],
                              ([band, *(f"{summary[s][band][k]:.1f}" for s in sources
                                        for k in ("months_above_zero_layer1", "thawing_degree_months_layer1"))]
                               for band in summary["observed"]))]
    lines += ["", ("Trends per decade over each period: ALT (cm; n/a where years sit at the bound) / layer-1 TDM"
              " (degC month) / air temperature driving them (degC). A short period's trends follow the weather of"
              " its years as much as the forced warming:"), "",
              *markdown_table(["band", *sources], ([band, *(
                  f"{_num(summary[s][band]['alt_trend_cm_per_decade'], '+.1f')} / "
                  f"{summary[s][band]['thawing_degree_months_layer1_trend_per_decade']:+.1f} / "
                  f"{summary[s][band]['t_air_trend_degC_per_decade']:+.2f}" for s in sources)]
                  for band in summary["observed"]))]
    return "\n".join(lines) + "\n"
