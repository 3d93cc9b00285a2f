"""Headless matplotlib figures (PNG) for the evaluation and the report."""

from __future__ import annotations

import itertools
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


def band_layer_grid(times: pd.DatetimeIndex, lines: Mapping[str, np.ndarray], band_names: Sequence[str],
                    layers: Sequence[str], title: str, path: Path,
                    spread: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                    reference: str | None = None) -> Path:
    """Bands x layers grid of monthly series, one line per label (the paper's Figures 4-9).

    Parameters
    ----------
    times
        ``[T]`` months shown.
    lines
        Label -> ``[band, T, layer]`` degC, drawn in order.
    spread
        Label -> (low, high) arrays like ``lines``, shaded under that label's line.
    reference
        The label drawn as a thick black line (observations).
    """
    n_b, n_l = len(band_names), len(layers)
    # the x axis in decimal years (mid-month), ticked at whole years: about 50x faster than matplotlib's date locators
    times = np.asarray(times.year + (times.month - 0.5) / 12.0)
    fig, axes = plt.subplots(n_b, n_l, figsize=(3.2 * n_l, 1.9 * n_b), sharex=True, squeeze=False)
    colours = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    style = {label: ({"color": "black", "lw": 1.6} if label == reference else {"color": next(colours), "lw": 1.1})
             for label in lines}
    for b in range(n_b):
        for i, lay in enumerate(layers):
            ax = axes[b, i]
            for label, values in lines.items():
                if spread and label in spread:
                    lo, hi = spread[label]
                    ax.fill_between(times, lo[b, :, i], hi[b, :, i], color=style[label]["color"], alpha=0.2, lw=0)
                ax.plot(times, values[b, :, i], label=label, **style[label])
            ax.axhline(0.0, color="0.7", lw=0.6)
            if b == 0:
                ax.set_title(LAYER_LABELS.get(lay, lay), fontsize=9)
            if i == 0:
                ax.set_ylabel(f"{band_names[b]}\ndegC", fontsize=8)
            ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5, integer=True))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    # title and legend in a fixed top margin: a regular grid needs neither tight_layout nor a tight bounding box,
    # each of which lays out every tick again (a third of the figure's time)
    top = 1.0 - 0.75 / fig.get_figheight()
    fig.suptitle(title, y=1.0 - 0.06 / fig.get_figheight(), va="top", fontsize=10)
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=8,
               bbox_to_anchor=(0.5, 1.0 - 0.26 / fig.get_figheight()))
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.04, top=top, wspace=0.2, hspace=0.15)
    return _save(fig, path, dpi=80, tight=False)


def observed_vs_predicted(times: pd.DatetimeIndex, obs: np.ndarray, pred: Mapping[str, np.ndarray],
                          band_names: Sequence[str], layers: Sequence[str], title: str, path: Path) -> Path:
    """Observed (black) and predicted monthly temperature per band x layer (the paper's Figure 4)."""
    return band_layer_grid(times, {"observed (ERA5-Land)": obs, **pred}, band_names, layers, title, path,
                           reference="observed (ERA5-Land)")


def yearly_panels(years_by_label: Mapping[str, np.ndarray], values: Mapping[str, np.ndarray],
                  band_names: Sequence[str], ylabel: str, title: str, path: Path,
                  spread: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                  reference: str | None = None) -> Path:
    """One panel per band: a yearly series per label (e.g. observed and each scenario), optional shading.

    ``values[label]`` is ``[band, n_years]`` for the years in ``years_by_label[label]``.
    """
    n = len(band_names)
    cols = 3
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False, sharex=True)
    colours = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    style = {label: ({"color": "black", "lw": 1.6} if label == reference else {"color": next(colours), "lw": 1.2})
             for label in values}
    for b in range(rows * cols):
        ax = axes.flat[b]
        if b >= n:
            ax.axis("off")
            continue
        for label, v in values.items():
            yrs = years_by_label[label]
            if spread and label in spread:
                lo, hi = spread[label]
                ax.fill_between(yrs, lo[b], hi[b], color=style[label]["color"], alpha=0.2, lw=0)
            ax.plot(yrs, v[b], marker="o", ms=2.5, label=label, **style[label])
        ax.set_title(band_names[b], fontsize=9)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=8, bbox_to_anchor=(0.5, 1.02))
    fig.suptitle(title, y=1.06, fontsize=10)
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


def decade_lines(values: Mapping[str, Mapping[str, Sequence[float]]], decades: Sequence[str],
                 start: Mapping[str, float], ylabel: str, path: Path) -> Path:
    """One panel per scenario: a line per model over the decades, its in-climate score at ``test``."""
    fig, axes = plt.subplots(1, len(values), figsize=(4.2 * len(values), 3.6), sharey=True, squeeze=False)
    x = np.arange(len(decades) + 1)
    for ax, (scenario, per_model) in zip(axes.flat, values.items(), strict=True):
        for name, series in per_model.items():
            style = "--" if name in ("climatology", "delta_change", "ridge", "seasonal_persistence") else "-"
            ax.plot(x, [start.get(name, np.nan), *series], style, marker="o", markersize=3, label=name)
        ax.set_xticks(x, ["test", *decades], rotation=60, fontsize=7)
        ax.set_title(scenario, fontsize=10)
        ax.grid(alpha=0.3)
    axes.flat[0].set_ylabel(ylabel, fontsize=8)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 6), fontsize=8, bbox_to_anchor=(0.5, 1.08))
    fig.tight_layout()
    return _save(fig, path)


def cell_maps(grid: tuple[np.ndarray, np.ndarray], index: tuple[np.ndarray, np.ndarray],
              panels: Mapping[str, np.ndarray], held_out: np.ndarray | None, band_edges: Sequence[float],
              lon_range: tuple[float, float], label: str, path: Path, cmap: str = "viridis",
              limits: tuple[float, float] | None = None) -> Path:
    """One map per panel (up to three a row) of a per-cell value on the grid (cells drawn as their grid boxes, the
    rest blank), the study area's outline, the band edges labelled by band, and (unless ``held_out`` is None) the
    held-out cells' blocks outlined in black.

    Parameters
    ----------
    grid, index
        The grid's (lat, lon) centres and each cell's (lat, lon) index on it.
    panels
        ``{title: value per cell}``; every panel shares one colour scale (``limits``, default the 2nd-98th
        percentiles of all values).
    """
    lat, lon = grid
    values = np.stack([np.asarray(v, float) for v in panels.values()])
    lo, hi = limits or tuple(np.nanpercentile(values, [2, 98]))
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.0 * ncols, 4.0 * nrows), squeeze=False,
                             gridspec_kw={"wspace": 0.4, "hspace": 0.35})
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (title, v) in zip(axes.flat, panels.items(), strict=False):
        field = np.full((lat.size, lon.size), np.nan)
        field[index] = v
        mesh = ax.pcolormesh(lon, lat, field, shading="nearest", cmap=cmap, vmin=lo, vmax=hi)
        if held_out is not None:
            box = np.zeros((lat.size, lon.size))
            box[index] = held_out.astype(float)
            ax.contour(lon, lat, box, levels=[0.5], colors="k", linewidths=0.8)
        ax.plot([lon_range[0], lon_range[1], lon_range[1], lon_range[0], lon_range[0]],
                [band_edges[0], band_edges[0], band_edges[-1], band_edges[-1], band_edges[0]], color="0.3", lw=1.0)
        for k, (a, b) in enumerate(itertools.pairwise(band_edges)):
            ax.axhline(b, color="0.5", lw=0.5, ls=":")
            ax.text(lon_range[1] + 0.4, (a + b) / 2, f"band {k}", fontsize=7, va="center", color="0.2", clip_on=False)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("longitude (deg E)", fontsize=8)
        ax.set_ylabel("latitude (deg N)", fontsize=8)
        ax.set_aspect(1.0 / np.cos(np.deg2rad(np.mean(band_edges))))
    fig.colorbar(mesh, ax=axes.ravel().tolist(), shrink=0.8, label=label, pad=0.06)
    note = "dotted: band edges" + ("; black outline: held-out cells (never seen in training)" if held_out is not None
                                   else "")
    fig.text(0.01, -0.04 / nrows, note, fontsize=7)
    return _save(fig, path)


def _save(fig, path: Path, dpi: int = 110, tight: bool = True) -> Path:
    """Write ``fig`` as PNG (cropped to what it draws unless ``tight`` is false) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight" if tight else None)
    plt.close(fig)
    return path
