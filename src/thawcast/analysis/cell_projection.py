"""Per-cell thaw products of a period of monthly soil temperatures: active-layer thickness, a near-surface
permafrost indicator, and the permafrost extent of each band (issue "Every grid cell", products).

* **ALT** per cell and year from the annual maximum of each layer (:func:`thawcast.analysis.thaw.active_layer_thickness`:
  bounded by the deepest mid-depth, 194.5 cm), then averaged over the period's years;
* **near-surface permafrost**: the deepest layer (100-289 cm, mid-depth 194.5 cm) at or below 0 degC all year in at
  least two consecutive years of the period (permafrost is ground frozen for two years or more);
* **extent**: the area of the cells with near-surface permafrost, as a share of each band's cells and in km2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from thawcast.analysis.tables import markdown_table
from thawcast.analysis.thaw import active_layer_thickness, alt_is_lower_bound
from thawcast.errors import DataError


def annual_max(monthly: np.ndarray) -> np.ndarray:
    """``[cell, year, layer]`` annual maximum of ``monthly [cell, 12 x years, layer]`` (January-first years).

    Raises
    ------
    DataError
        The months are not whole years.
    """
    n_cell, n_month, n_layer = monthly.shape
    if n_month % 12:
        raise DataError(None, f"{n_month} months are not whole years")
    return monthly.reshape(n_cell, n_month // 12, 12, n_layer).max(axis=2)


def near_surface_permafrost(deepest_annual_max: np.ndarray, years: int = 2) -> np.ndarray:
    """Whether each cell's deepest layer stays at or below 0 degC all year in at least ``years`` consecutive years
    (``deepest_annual_max [cell, year]``); NaN rows are False."""
    frozen = np.asarray(deepest_annual_max) <= 0.0
    run = np.zeros(frozen.shape[0], dtype=int)
    best = np.zeros(frozen.shape[0], dtype=int)
    for k in range(frozen.shape[1]):
        run = np.where(frozen[:, k], run + 1, 0)
        best = np.maximum(best, run)
    return best >= years


def period_products(monthly: np.ndarray) -> dict[str, np.ndarray]:
    """Per cell, over one period of whole years: mean temperature per layer, mean ALT (cm), the share of years whose
    ALT is only a lower bound, and the near-surface permafrost indicator."""
    amax = annual_max(monthly)
    return {"t_soil": monthly.mean(axis=1), "alt": active_layer_thickness(amax).mean(axis=1),
            "alt_lower_bound_share": alt_is_lower_bound(amax).mean(axis=1),
            "permafrost": near_surface_permafrost(amax[..., -1])}


def extent(permafrost: np.ndarray, area_km2: np.ndarray, band: np.ndarray, n_bands: int,
           band_area_km2: np.ndarray | None = None) -> dict[str, list[float]]:
    """Near-surface permafrost per band: the area share of the cells given (area-weighted), and that share of
    ``band_area_km2`` (the area of all the band's cells, when the cells given are a sample of them; default: theirs);
    None for a band without cells. Over all bands: the sum of those km2 and its share of the bands' area."""
    area = np.asarray(area_km2, float)
    total = np.bincount(band, area, minlength=n_bands)
    frozen = np.bincount(band, area * np.asarray(permafrost, bool), minlength=n_bands)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, frozen / total, np.nan)
    whole = total if band_area_km2 is None else np.asarray(band_area_km2, float)
    km2 = share * whole
    all_km2 = float(np.nansum(km2))

    def listed(values: np.ndarray) -> list[float | None]:
        return [None if np.isnan(v) else float(v) for v in values]

    return {"share": listed(share), "km2": listed(km2), "share_all": all_km2 / float(whole[total > 0].sum()),
            "km2_all": all_km2}


def extent_markdown(table: Mapping[str, Mapping[str, Mapping[str, dict]]], observed: dict, reference: dict,
                    band_names: Sequence[str], model: str) -> str:
    """Near-surface permafrost extent (% of the band's area) per band: observed and modelled over the reference
    decade, then each scenario and period."""
    head = ["scenario", "period", *band_names, "all bands", "all bands (1000 km2)"]

    def row(label: str, period: str, e: dict) -> list[str]:
        return [label, period, *("n/a" if s is None else f"{100 * s:.0f}%" for s in e["share"]),
                f"{100 * e['share_all']:.1f}%", f"{e['km2_all'] / 1000:.0f}"]

    rows = [row("observed (ERA5-Land)", observed["period"], observed["extent"]),
            row(f"{model} from ERA5-Land drivers", reference["period"], reference["extent"])]
    rows += [row(rcp, period, e) for rcp, periods in table.items() for period, e in periods.items()]
    return "\n".join(markdown_table(head, rows))
