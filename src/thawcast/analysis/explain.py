"""SHAP attributions of a packed model: which drivers move the predicted soil temperature.

``shap.GradientExplainer`` (expected gradients) needs a model that takes one float tensor
and whose inputs can be blended with the background; a band index cannot be blended. So
windows are explained band by band through :class:`BandFixed`, which appends the (fixed)
band channel, with a background drawn from that band's training windows.
(``DeepExplainer`` fails its additivity check on recurrent networks and is not used.)

Attributions are in degC (the packed model returns degC), ``[window, w, feature, layer]``
from SHAP, summed over the window's months to ``[window, feature, layer]``: the sum keeps
additivity, so each window's attributions add up to its prediction minus the background
expectation.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from thawcast.catalogue import CELL_ATTRIBUTES, feature
from thawcast.errors import DataError
from thawcast.models.packed import PackedModel
from thawcast.prep.windows import WindowSet

log = logging.getLogger(__name__)


def _shap():
    with warnings.catch_warnings():
        # shap 0.51 builds its colour maps with matplotlib calls that matplotlib plans to rename
        warnings.filterwarnings("ignore", category=PendingDeprecationWarning, message=".*will be deprecated.*")
        import shap
    return shap


class BandFixed(nn.Module):
    """``x [n, w, F]`` -> the packed model's degC output for one fixed band."""

    def __init__(self, packed: PackedModel, band: int) -> None:
        super().__init__()
        self.packed, self.band = packed, int(band)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ch = torch.full((*x.shape[:2], 1), float(self.band), dtype=x.dtype, device=x.device)
        return self.packed(torch.cat([x, ch], dim=-1))


def attributions(packed: PackedModel, background: np.ndarray, background_band: np.ndarray, x: np.ndarray,
                 band: np.ndarray, nsamples: int = 200, seed: int = 0) -> np.ndarray:
    """SHAP values summed over time: ``[n, F, n_targets]`` degC for windows ``x [n, w, F]``.

    Parameters
    ----------
    background, background_band
        ``[m, w, F]`` windows (training split) and their band indices.
    x, band
        Windows to explain and their bands; every band in ``band`` needs background windows.
    """
    shap = _shap()
    if x.ndim != 3 or background.ndim != 3 or x.shape[1:] != background.shape[1:]:
        raise DataError(None, f"windows {x.shape} and background {background.shape} must both be [n, w, F]")
    out = np.zeros((x.shape[0], x.shape[2], len(packed.target_names)))
    packed.eval()
    for b in np.unique(band):
        bg = background[background_band == b]
        if len(bg) == 0:
            raise DataError(None, f"no background windows for band {b}")
        sel = band == b
        with warnings.catch_warnings():
            # GradientExplainer wraps the model in train-mode checks that do not apply to an eval-mode net
            warnings.filterwarnings("ignore", message=".*unrecognized nn.Module.*")
            # all of a window's gradient samples in one pass (shap's default is 50 a pass): the draws do not depend
            # on the batch, and one backward pass per window and layer is 1.1-1.5x faster on one CPU thread
            explainer = shap.GradientExplainer(BandFixed(packed, int(b)), torch.as_tensor(bg, dtype=torch.float32),
                                               batch_size=max(1, int(nsamples)))
            sv = explainer.shap_values(torch.as_tensor(x[sel], dtype=torch.float32), nsamples=nsamples,
                                       rseed=seed + int(b))
        sv = np.asarray(sv)
        if sv.ndim == 3:  # a single-output model
            sv = sv[..., None]
        out[sel] = sv.sum(axis=1)
    return out


def importance(sv: np.ndarray, features: Sequence[str], layers: Sequence[str]) -> pd.DataFrame:
    """Mean |SHAP| (degC) per feature: over all windows and layers (``all``) and per layer, sorted."""
    mean_abs = np.abs(sv).mean(axis=0)  # [F, L]
    df = pd.DataFrame(mean_abs, index=list(features), columns=list(layers))
    df.insert(0, "all", np.abs(sv).mean(axis=(0, 2)))
    df.index.name = "feature"
    return df.sort_values("all", ascending=False)


def plots(sv: np.ndarray, values: np.ndarray, features: Sequence[str], imp: pd.DataFrame, title: str,
          out, top: int = 15) -> dict:
    """Bar chart of mean |SHAP| (top features) and a beeswarm (attribution summed over layers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shap = _shap()

    out.mkdir(parents=True, exist_ok=True)
    head = imp.head(top)[::-1]
    fig, ax = plt.subplots(figsize=(6.5, 0.32 * len(head) + 1.2))
    ax.barh(head.index, head["all"], color="tab:blue")
    ax.set_xlabel("mean |SHAP| (degC), all bands and layers")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "shap_bar.png", dpi=110)
    plt.close(fig)
    plt.figure()
    with warnings.catch_warnings():
        # shap 0.51 seeds NumPy's global RNG for the beeswarm jitter; only a notice about that API
        warnings.filterwarnings("ignore", message=".*NumPy global RNG was seeded.*", category=FutureWarning)
        shap.summary_plot(sv.mean(axis=2), values, feature_names=list(features), max_display=top, show=False)
    fig = plt.gcf()
    fig.suptitle(title, fontsize=10)
    fig.savefig(out / "shap_beeswarm.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return {"bar": out / "shap_bar.png", "beeswarm": out / "shap_beeswarm.png"}


#: Groups of model inputs whose attributions are added up (:func:`group_shares`).
FEATURE_GROUPS = ("weather", "soil", "lithology", "position", "elevation", "signal")
#: The group of each cell attribute (:data:`~thawcast.catalogue.CELL_ATTRIBUTES`).
CELL_GROUPS = {"lat": "position", "lon": "position", "elevation_m": "elevation"}


def feature_group(name: str) -> str:
    """Which of :data:`FEATURE_GROUPS` an input belongs to: the monthly drivers and the calendar are weather, the
    statics soil or lithology, a cell's latitude and longitude its position, its height its elevation, ``z`` the
    scenario signal."""
    if name in CELL_ATTRIBUTES:
        return CELL_GROUPS[name]
    kind = feature(name).kind
    if kind == "static":
        return "lithology" if name.startswith("lithology_") else "soil"
    return "signal" if kind == "signal" else "weather"


def group_shares(sv: np.ndarray, features: Sequence[str]) -> dict[str, float]:
    """Each group's share of the mean |SHAP| summed over the inputs (over windows and layers; the shares add up to
    1). Groups without inputs get 0."""
    per_feature = np.abs(sv).mean(axis=(0, 2))
    total = float(per_feature.sum())
    groups = np.array([feature_group(f) for f in features])
    return {g: float(per_feature[groups == g].sum() / total) if total > 0 else 0.0 for g in FEATURE_GROUPS}


def stratified(ws: WindowSet, n: int, rng: np.random.Generator) -> np.ndarray:
    """About ``n`` window indices spread evenly over the bands (sorted)."""
    bands = np.unique(ws.band)
    per = max(1, -(-n // len(bands)))
    picks = [rng.choice(np.flatnonzero(ws.band == b), min(per, int((ws.band == b).sum())), replace=False)
             for b in bands]
    return np.sort(np.concatenate(picks))


def additivity_gap(model, sv: np.ndarray, bg: np.ndarray, bg_band: np.ndarray, x: np.ndarray,
                   band: np.ndarray) -> float:
    """Mean |f(x) - E[f(background of its band)] - sum of attributions| (degC): how exact the SHAP sums are."""
    gaps = []
    with torch.no_grad():
        for b in np.unique(band):
            f = BandFixed(model, int(b))
            base = f(torch.as_tensor(bg[bg_band == b], dtype=torch.float32)).numpy().mean(axis=0)
            fx = f(torch.as_tensor(x[band == b], dtype=torch.float32)).numpy()
            gaps.append(np.abs(fx - base - sv[band == b].sum(axis=1)))
    return float(np.mean(np.concatenate(gaps)))
