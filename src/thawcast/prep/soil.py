"""Static per-band features: lithology fractions, topsoil texture, and organic carbon and
bulk density per ERA5-Land layer.

Per-layer values derive from HWSD's topsoil (0-30 cm) organic carbon with two documented
assumptions (both configurable in ``params.yaml``, section ``static``):

* organic carbon declines exponentially with depth, ``C(z) = C0 exp(-z / e)``, with ``C0``
  set so that the 0-30 cm mean equals HWSD's topsoil value; each layer gets the mean of
  ``C(z)`` over its depth range;
* bulk density from the Adams (1973) pedotransfer function
  ``BD = 100 / (OM / BD_om + (100 - OM) / BD_min)`` with organic matter ``OM = 1.724 OC``
  (percent), ``BD_om = 224 kg m-3`` and the mineral bulk density ``BD_min`` (param).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from thawcast.catalogue import LITHOLOGY_CLASSES, TEXTURE
from thawcast.config import StaticConfig
from thawcast.prep.aggregate import band_means
from thawcast.prep.geometry import BandGeometry, band_weights
from thawcast.variables import ERA5_LAYERS_M

TOPSOIL_DEPTH_M = 0.30
BD_ORGANIC_KG_M3 = 224.0
OM_PER_OC = 1.724


def layer_mean_factor(top: float, bottom: float, efold: float) -> float:
    """Mean of exp(-z/e) over [top, bottom] divided by its mean over the topsoil 0-0.3 m."""
    def mean(a: float, b: float) -> float:
        return efold * (np.exp(-a / efold) - np.exp(-b / efold)) / (b - a)

    return mean(top, bottom) / mean(0.0, TOPSOIL_DEPTH_M)


def adams_bulk_density(oc_pct: np.ndarray, mineral_bd: float) -> np.ndarray:
    """Adams (1973) bulk density (kg m-3) from organic carbon (percent by weight)."""
    om = np.clip(OM_PER_OC * np.asarray(oc_pct, dtype=float), 0.0, 100.0)
    return 100.0 / (om / BD_ORGANIC_KG_M3 + (100.0 - om) / mineral_bd)


def lithology_fractions(codes: xr.DataArray, geometry: BandGeometry, source=None) -> pd.DataFrame:
    """Area-weighted share of each lithology class per band (rows sum to 1)."""
    w = band_weights(codes["lat"].values, codes["lon"].values, geometry, source=source)
    valid = codes.notnull().values
    w = w.where(valid[None])
    total = w.sum(("lat", "lon"))
    out = {}
    for k, name in enumerate(LITHOLOGY_CLASSES):
        out[f"lithology_{name}"] = ((w * (codes == k)).sum(("lat", "lon")) / total).values
    return pd.DataFrame(out, index=pd.RangeIndex(geometry.n_bands, name="band"))


def static_band_table(hwsd: xr.Dataset, codes: xr.DataArray, geometry: BandGeometry, cfg: StaticConfig,
                      hwsd_source: str = "HWSD", lithology_source: str = "lithology") -> pd.DataFrame:
    """One row per band: texture (%), OC (g/kg) and bulk density (kg m-3) per layer, lithology shares."""
    means = band_means(hwsd, geometry, source=hwsd_source).compute()
    table = pd.DataFrame({c: means[c].values for c in TEXTURE},
                         index=pd.RangeIndex(geometry.n_bands, name="band"))
    oc_top = means["oc_top_pct"].values
    for i, (a, b) in enumerate(ERA5_LAYERS_M, start=1):
        oc = oc_top * layer_mean_factor(a, b, cfg.oc_efold_depth_m)
        table[f"oc_l{i}_g_kg"] = oc * 10.0
        table[f"bulk_density_l{i}_kg_m3"] = adams_bulk_density(oc, cfg.mineral_bulk_density_kg_m3)
    table = table.join(lithology_fractions(codes, geometry, source=lithology_source))
    return table
