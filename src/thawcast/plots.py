"""Headless matplotlib figures (PNG) for the evaluation and the report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from thawcast.variables import ERA5_LAYERS_M, TARGETS

#: "t_soil1" -> "layer 1 (0-7 cm)", ...
LAYER_LABELS = {t: f"layer {i + 1} ({a * 100:.0f}-{b * 100:.0f} cm)"
                for i, (t, (a, b)) in enumerate(zip(TARGETS, ERA5_LAYERS_M, strict=True))}


def observed_vs_predicted(times: pd.DatetimeIndex, obs: np.ndarray, pred: Mapping[str, np.ndarray],
                          band_names: Sequence[str], layers: Sequence[str], title: str, path: Path) -> Path:
    """Bands x layers grid of monthly observed and predicted temperature (the paper's Figure 4).

    Parameters
    ----------
    times
        ``[T]`` months shown.
    obs
        ``[band, T, layer]`` observed degC.
    pred
        Label -> ``[band, T, layer]`` predicted degC (one line each).
    """
    n_b, n_l = len(band_names), len(layers)
    fig, axes = plt.subplots(n_b, n_l, figsize=(3.2 * n_l, 1.9 * n_b), sharex=True, squeeze=False)
    for b in range(n_b):
        for i, lay in enumerate(layers):
            ax = axes[b, i]
            ax.plot(times, obs[b, :, i], color="black", lw=1.6, label="observed (ERA5-Land)")
            for k, (label, p) in enumerate(pred.items()):
                ax.plot(times, p[b, :, i], lw=1.2, ls="-" if k == 0 else "--", label=label)
            ax.axhline(0.0, color="0.7", lw=0.6)
            if b == 0:
                ax.set_title(LAYER_LABELS.get(lay, lay), fontsize=9)
            if i == 0:
                ax.set_ylabel(f"{band_names[b]}\ndegC", fontsize=8)
            ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.xaxis.set_major_formatter(matplotlib.dates.DateFormatter("%b"))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=8, bbox_to_anchor=(0.5, 1.0))
    fig.suptitle(title, y=1.02, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def rmse_bars(rmse: Mapping[str, float], kinds: Mapping[str, str], title: str, path: Path) -> Path:
    """Horizontal bars of overall test RMSE, networks and baselines in two colours, best at the top."""
    names = sorted(rmse, key=rmse.get, reverse=True)
    colours = ["tab:blue" if kinds[n] == "network" else "tab:gray" for n in names]
    fig, ax = plt.subplots(figsize=(6.0, 0.42 * len(names) + 1.2))
    bars = ax.barh(names, [rmse[n] for n in names], color=colours)
    ax.bar_label(bars, fmt="%.2f", fontsize=8, padding=2)
    ax.set_xlabel("test RMSE (degC), all bands and layers")
    ax.set_title(title, fontsize=10)
    ax.legend(handles=[matplotlib.patches.Patch(color="tab:blue", label="network"),
                       matplotlib.patches.Patch(color="tab:gray", label="baseline")], fontsize=8, loc="lower right")
    ax.set_xlim(0, max(rmse.values()) * 1.15)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
