"""Perfect-model scores: predictions of the pseudo-reality's soil temperature against its truth, decade by decade.

Every predictor maps drivers to ``[band, month, layer]`` soil temperature (degC) over the months of the
pseudo-reality; its error against the truth is summarised per decade (RMSE and mean bias), overall, per
layer and per band. Besides the networks and their ensemble mean, the references are:

* **climatology**: the training months' mean of that band, layer and calendar month (no warming at all);
* **delta_change**: that climatology shifted by the window's air-temperature anomaly, the mean of
  ``t_air`` over the 12 months before the target minus its training mean (soil warms as much as the air:
  a physical reference that extrapolates by construction);
* **ridge**: the linear model of the test-period evaluation (it extrapolates linearly);
* **seasonal_persistence**: the truth 12 months before the target. It reads the pseudo-truth itself, which
  no projection has: the bar a forecast with observations in hand would clear.

The *whole chain* (bias-corrected GCM -> windows -> networks) cannot be scored month by month: the GCM's
weather is not the pseudo-reality's. :func:`climate_scores` compares climate statistics instead: the
decadal mean per band x layer x calendar month (:func:`decadal_climatology`), and :func:`decadal_thaw` the
decadal active-layer thickness and thaw months of the ensemble members.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from thawcast.analysis.periods import decades, label
from thawcast.analysis.tables import markdown_table
from thawcast.errors import DataError
from thawcast.variables import TARGETS


def decade_scores(truth: np.ndarray, pred: np.ndarray, times: pd.DatetimeIndex, bins: list[tuple[int, int]],
                  band_names: list[str]) -> dict:
    """RMSE and mean bias (prediction - truth, degC) per decade: overall, per layer and per band.

    ``truth`` and ``pred`` are ``[band, time, layer]``; months where either is NaN are left out.
    """
    if truth.shape != pred.shape:
        raise DataError(None, f"truth {truth.shape} and predictions {pred.shape} differ in shape")
    years = np.asarray(times.year)
    out = {}
    for a, b in bins:
        sel = (years >= a) & (years <= b)
        err = pred[:, sel] - truth[:, sel]
        out[label((a, b))] = {
            **_summary(err),
            "per_layer": {lay: _summary(err[..., i]) for i, lay in enumerate(TARGETS)},
            "per_band": {name: _summary(err[i]) for i, name in enumerate(band_names)},
        }
    return out


def change(values: np.ndarray, times: pd.DatetimeIndex, first: tuple[int, int], last: tuple[int, int]) -> float:
    """Mean of ``values [band, time, layer]`` over the years ``last`` minus its mean over ``first`` (degC)."""
    years = np.asarray(times.year)

    def mean(span: tuple[int, int]) -> float:
        sel = (years >= span[0]) & (years <= span[1])
        if not sel.any():
            raise DataError(None, f"no month in {label(span)}")
        return float(np.mean(values[:, sel]))

    return mean(last) - mean(first)


def decadal_climatology(values: np.ndarray, times: pd.DatetimeIndex, bins: list[tuple[int, int]]) -> np.ndarray:
    """``[decade, band, 12, ...]``: the mean of ``values [band, time, ...]`` per calendar month over each
    decade's years (every calendar month must occur in every decade)."""
    years = np.asarray(times.year)
    return np.stack([monthly_climatology(values, times, (years >= a) & (years <= b)) for a, b in bins])


def climate_scores(truth: np.ndarray, pred: np.ndarray, times: pd.DatetimeIndex, bins: list[tuple[int, int]],
                   layers: tuple[str, ...] = TARGETS) -> dict:
    """Per decade: RMSE and mean bias (degC) of the decadal monthly climatology of ``pred`` against that of
    ``truth`` (both ``[band, time, layer]``, the last axis named by ``layers``), over bands x calendar
    months x layers, and the RMSE per layer."""
    if truth.shape != pred.shape or truth.shape[-1] != len(layers):
        raise DataError(None, f"truth {truth.shape} and predictions {pred.shape} must match, with {len(layers)} layers")
    err = decadal_climatology(pred, times, bins) - decadal_climatology(truth, times, bins)
    return {label(b): {**_summary(e), "per_layer": {lay: _summary(e[..., i])["rmse"] for i, lay in enumerate(layers)}}
            for b, e in zip(bins, err, strict=True)}


def decadal_thaw(members: np.ndarray, times: pd.DatetimeIndex, bins: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    """Decadal thaw metrics of ``members [member, band, time, layer]`` (degC), each the mean over members
    of the member's metric (as the thaw stage does):

    * ``alt_cm [decade, band]``: mean active-layer thickness;
    * ``alt_share_at_bound [decade, band]``: share of member-years whose ALT sits at the deepest mid-depth;
    * ``months_above_zero [decade, band, layer]``: months per year above 0 degC.
    """
    import xarray as xr

    from thawcast.analysis.thaw import LAYER_MID_CM, yearly_metrics

    da = xr.DataArray(np.asarray(members, float), dims=("member", "band", "time", "layer"),
                      coords={"time": times, "layer": list(TARGETS)})
    ym = yearly_metrics(da)
    years = ym["year"].values
    out = {"alt_cm": [], "alt_share_at_bound": [], "months_above_zero": []}
    for a, b in bins:
        sel = (years >= a) & (years <= b)
        alt = ym["alt_cm"].values[..., sel]  # [member, band, year]
        out["alt_cm"].append(alt.mean(axis=(0, 2)))
        out["alt_share_at_bound"].append((alt >= LAYER_MID_CM[-1] - 1e-6).mean(axis=(0, 2)))
        out["months_above_zero"].append(ym["months_above_zero"].values[..., sel].mean(axis=(0, 3)))
    return {k: np.stack(v) for k, v in out.items()}


def annual_trends(values: np.ndarray, times: pd.DatetimeIndex) -> np.ndarray:
    """``[band, layer]`` least-squares trend per decade of the annual means of ``values [band, time, layer]``."""
    from thawcast.analysis.thaw import trend_per_decade

    years = np.asarray(times.year)
    uniq = np.unique(years)
    annual = np.stack([values[:, years == y].mean(axis=1) for y in uniq], axis=1)  # [band, year, layer]
    return np.array([[trend_per_decade(uniq, annual[b, :, k]) for k in range(annual.shape[2])]
                     for b in range(annual.shape[0])])


def whole_chain(truth: np.ndarray, members: np.ndarray, alone: np.ndarray, air_true: np.ndarray,
                air_gcm: np.ndarray, times: pd.DatetimeIndex) -> dict:
    """The projections (bias-corrected GCM -> networks) against the pseudo-truth on climate statistics,
    beside the networks driven by the pseudo-reality's own drivers: what the GCM and its bias correction
    add to the error.

    ``truth [band, time, layer]``, ``members``/``alone [member, band, time, layer]`` (the projection's
    members, the networks alone), ``air_true``/``air_gcm [band, time]`` (the pseudo-reality's and the
    corrected GCM's air temperature), all over ``times``. Per decade: climate RMSE/bias
    (:func:`climate_scores`) of both ensemble means and of the corrected air, the mean absolute error of
    the decadal ALT and months above 0 degC (:func:`decadal_thaw`), the last decade's ALT per band with
    its share at the bound; over all years: the trends of annual means (:func:`annual_trends`).
    """
    bins = decades(times[0].year, times[-1].year)
    thaw = {k: decadal_thaw(v, times, bins) for k, v in
            {"truth": truth[None], "chain": members, "networks_alone": alone}.items()}

    def thaw_errors(key: str) -> dict:
        return {label(b): {k: float(np.mean(np.abs(thaw[key][k][i] - thaw["truth"][k][i])))
                           for k in ("alt_cm", "months_above_zero")} for i, b in enumerate(bins)}

    trends = {k: annual_trends(v, times) for k, v in
              {"truth": truth, "chain": members.mean(0), "networks_alone": alone.mean(0)}.items()}
    return {
        "years": f"{times[0].year}-{times[-1].year}",
        "climate": {"chain": climate_scores(truth, members.mean(0), times, bins),
                    "networks_alone": climate_scores(truth, alone.mean(0), times, bins)},
        "t_air_climate": climate_scores(air_true[..., None], air_gcm[..., None], times, bins, layers=("t_air",)),
        "thaw_abs_error": {"chain": thaw_errors("chain"), "networks_alone": thaw_errors("networks_alone")},
        "alt_last_decade_cm": {k: v["alt_cm"][-1].tolist() for k, v in thaw.items()},
        "alt_last_decade_share_at_bound": {k: v["alt_share_at_bound"][-1].tolist() for k, v in thaw.items()},
        "trend_per_decade": {k: {lay: float(v[:, i].mean()) for i, lay in enumerate(TARGETS)} for k, v in trends.items()},
        "trend_rmse": {k: float(np.sqrt(np.mean((trends[k] - trends["truth"]) ** 2)))
                       for k in ("chain", "networks_alone")},
    }


def _summary(err: np.ndarray) -> dict[str, float]:
    e = err[np.isfinite(err)]
    if e.size == 0:
        return {"rmse": float("nan"), "bias": float("nan"), "n": 0}
    return {"rmse": float(np.sqrt(np.mean(e**2))), "bias": float(np.mean(e)), "n": int(e.size)}


def monthly_climatology(values: np.ndarray, times: pd.DatetimeIndex, fit: np.ndarray) -> np.ndarray:
    """``[band, 12, ...]`` mean of ``values [band, time, ...]`` over the ``fit`` months, per calendar month."""
    months = np.asarray(times.month)
    out = []
    for m in range(1, 13):
        sel = fit & (months == m)
        if not sel.any():
            raise DataError(None, f"no fitting month for calendar month {m}: climatology undefined")
        out.append(values[:, sel].mean(axis=1))
    return np.stack(out, axis=1)


def climatology_forecast(clim: np.ndarray, times: pd.DatetimeIndex) -> np.ndarray:
    """``[band, time, layer]``: the climatology of each month's calendar month."""
    return clim[:, np.asarray(times.month) - 1]


def delta_change_forecast(clim: np.ndarray, t_air: np.ndarray, train_mean_air: np.ndarray,
                          record_times: pd.DatetimeIndex, times: pd.DatetimeIndex) -> np.ndarray:
    """Climatology plus the air-temperature anomaly of the 12 months before each target month.

    ``t_air [band, record month]`` over ``record_times`` (contiguous months, reaching 12 months before
    ``times[0]``); ``train_mean_air [band]`` its mean over the training months.
    """
    pos = record_times.get_indexer(times)
    if (pos < 12).any():
        raise DataError(None, "delta-change needs the 12 months of air temperature before every target month")
    csum = np.concatenate([np.zeros((t_air.shape[0], 1)), np.cumsum(t_air, axis=1)], axis=1)
    anomaly = (csum[:, pos] - csum[:, pos - 12]) / 12.0 - train_mean_air[:, None]
    return climatology_forecast(clim, times) + anomaly[..., None]


def seasonal_persistence_forecast(truth: np.ndarray, record_times: pd.DatetimeIndex,
                                  times: pd.DatetimeIndex) -> np.ndarray:
    """The truth 12 months before each target month (``truth [band, record month, layer]``)."""
    pos = record_times.get_indexer(times)
    if (pos < 12).any():
        raise DataError(None, "seasonal persistence needs the truth 12 months before every target month")
    return truth[:, pos - 12]


def markdown(metrics: dict, networks: list[str], band_names: list[str]) -> str:
    """RMSE per decade of every predictor under each scenario, with the in-climate test score beside it."""
    lines = ["# Perfect model: scores against the pseudo-reality", "",
             ("The synthetic world continued to the end of the century under each RCP is the truth; every"
              " registered network and every reference is driven by that world's own drivers (no GCM, no bias"
              " correction) and scored month by month. RMSE in degC over all bands and layers; 'test' is the"
              " observed test years of the same cells (inside the training climate)."), ""]
    lines.append(f"Truth's sampling error (band means of the simulated cells vs all cells, observed period):"
                 f" {', '.join(f'{k} {v:.2f}' for k, v in metrics['truth_sampling_rmse'].items())} degC RMSE.")
    for rcp, per_model in metrics["scores"].items():
        decs = list(next(iter(per_model.values())))
        order = sorted(per_model, key=lambda n: (n not in networks and n != "ensemble", per_model[n][decs[-1]]["rmse"]))
        rows = [[name, f"{metrics['test_rmse'].get(name, float('nan')):.2f}",
                 *(f"{per_model[name][d]['rmse']:.2f}" for d in decs),
                 f"{per_model[name][decs[-1]]['bias']:+.2f}"] for name in order]
        lines += ["", f"## {rcp}", "", *markdown_table(["model", "test", *decs, f"bias {decs[-1]}"], rows)]
    lines += ["", "## Last decade per layer (RMSE, degC)", ""]
    last = {rcp: list(next(iter(pm.values())))[-1] for rcp, pm in metrics["scores"].items()}
    head = ["model", *(f"{rcp} {lay}" for rcp in metrics["scores"] for lay in TARGETS)]
    names = list(next(iter(metrics["scores"].values())))
    rows = [[n, *(f"{metrics['scores'][rcp][n][last[rcp]]['per_layer'][lay]:.2f}"
                  for rcp in metrics["scores"] for lay in TARGETS)] for n in names]
    lines += markdown_table(head, rows)
    w = metrics["warming"]
    first, last = metrics["decades"][0], metrics["decades"][-1]
    lines += ["", f"Soil warming {first} to {last} (all bands and layers, degC): truth and what each predictor gives:", "",
              *markdown_table(["scenario", "truth", *(n for n in names if n != "seasonal_persistence")],
                              ([rcp, f"{v['truth']:+.2f}", *(f"{v[n]:+.2f}" for n in names if n != "seasonal_persistence")]
                               for rcp, v in w.items()))]
    lines += ["", metrics["verdict"], ""]
    lines += _chain_markdown(metrics["whole_chain"], band_names)
    lines += _extrapolation_markdown(metrics["extrapolation"])
    return "\n".join(lines)


def _chain_markdown(chain: dict, band_names: list[str]) -> list[str]:
    """The whole chain (bias-corrected GCM -> networks) against the pseudo-truth on climate statistics."""
    lines = ["## Whole chain: the projections against the pseudo-truth's climate", "",
             ("The projection stage's ensemble (bias-corrected GCM inputs, its own weather) against the pseudo-truth"
              " on climate statistics: RMSE of the decadal mean per band x layer x calendar month (degC), and the"
              " mean absolute error of the decadal active-layer thickness (cm, ensemble mean of the members' ALT)."
              " 'alone': the same networks driven by the pseudo-reality's own drivers; the difference is what the"
              " GCM and its bias correction add. 't_air': the same climate RMSE of the corrected GCM air"
              " temperature against the pseudo-reality's."), ""]
    rows = []
    for rcp, c in chain.items():
        for d in c["climate"]["chain"]:
            rows.append([rcp, d, f"{c['climate']['chain'][d]['rmse']:.2f} ({c['climate']['chain'][d]['bias']:+.2f})",
                         f"{c['climate']['networks_alone'][d]['rmse']:.2f} ({c['climate']['networks_alone'][d]['bias']:+.2f})",
                         f"{c['t_air_climate'][d]['rmse']:.2f} ({c['t_air_climate'][d]['bias']:+.2f})",
                         f"{c['thaw_abs_error']['chain'][d]['alt_cm']:.1f}",
                         f"{c['thaw_abs_error']['networks_alone'][d]['alt_cm']:.1f}"])
    lines += markdown_table(["scenario", "decade", "chain climate RMSE (bias)", "alone climate RMSE (bias)",
                             "t_air climate RMSE (bias)", "chain ALT error (cm)", "alone ALT error (cm)"], rows)
    lines += ["", "Soil-temperature trend per decade over the whole period (annual means, mean over bands, degC):", ""]
    lines += markdown_table(["scenario", *(f"{lay} truth / chain / alone" for lay in TARGETS), "trend RMSE chain / alone"],
                            ([rcp, *(" / ".join(f"{c['trend_per_decade'][k][lay]:+.2f}"
                                                for k in ("truth", "chain", "networks_alone")) for lay in TARGETS),
                              f"{c['trend_rmse']['chain']:.2f} / {c['trend_rmse']['networks_alone']:.2f}"]
                             for rcp, c in chain.items()))
    lines += ["", ("ALT in the last decade per band (cm; 'bound x%': share of years at the 194.5 cm bound, a lower"
              " bound): truth / chain / alone"), ""]
    lines += markdown_table(["band", *chain], ([band, *(" / ".join(
        f"{c['alt_last_decade_cm'][k][b]:.0f}{_bound(c['alt_last_decade_share_at_bound'][k][b])}"
        for k in ("truth", "chain", "networks_alone")) for c in chain.values())] for b, band in enumerate(band_names)))
    return [*lines, ""]


def _num(x: float | None) -> str:
    return "n/a (fewer than 3 scenario x decades)" if x is None else f"{x:.2f}"


def _bound(share: float) -> str:
    return f" (bound {share:.0%})" if share else ""


def _extrapolation_markdown(ext: dict) -> list[str]:
    """The extrapolation diagnostic (computed without the truth) against the ensemble's error."""
    t = ext["test_years"]
    lines = ["## Does the extrapolation diagnostic warn where the networks fail?", "",
             ("Each window's distance from the training windows (the project stage's diagnostic, no truth needed)"
              " against the ensemble's error there (RMS over the layers, degC), pooled over scenarios and decades."
              f" Rank correlation per window {ext['rank_correlation_windows']:.2f}, per scenario x decade"
              f" {_num(ext['rank_correlation_decades'])}. Test years (observed): mean distance"
              f" {t['distance_mean']:.2f}, {t['share_extrapolating']:.0%} of windows beyond 1, RMSE {t['rmse']:.2f}."), ""]
    rows = [[f"{b['distance_from']:g}-{b['distance_to']:g}" if b["distance_to"] else f"{b['distance_from']:g}+", b["n"],
             "n/a" if b["rmse"] is None else f"{b['rmse']:.2f}"] for b in ext["bins"]]
    lines += markdown_table(["distance", "windows", "ensemble RMSE"], rows)
    return [*lines, ""]
