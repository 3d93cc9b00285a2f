"""Skill of the cell models by kind of ground: cells under perennial snow (ERA5-Land's glaciers), other high
ground, and the rest, each split into seen and held-out cells.

Pooled scores over all cells hide where a model fails. On the embedded default the worst cells are the few that
keep their snow through the summer: their soil lies under metres of snow that cut it off from the air, and no
other cell behaves so. When those cells all fall on one side of the spatial hold-out, the seen-vs-held-out gap
measures which ground each side covers, not how well the model carries over; this table separates the two.

The classes are read from the cells' own data, never from the test years: a cell is under **perennial snow** when
its snow water equivalent exceeds :data:`PERENNIAL_SWE_MM` in the August (end of the melt season) of every
training year; **high ground** is any other cell at or above :data:`HIGH_GROUND_M`. A class needs its input: with
no ``swe`` in the cells (snow features off) or no ``elevation_m`` (no geopotential), it is left out, and the rest
take its cells.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from thawcast.analysis.metrics import scores
from thawcast.analysis.tables import markdown_table
from thawcast.errors import DataError

#: Snow water equivalent (mm) a cell keeps in every training-year August to count as under perennial snow.
PERENNIAL_SWE_MM = 1.0
#: Height (m) from which a cell without perennial snow counts as high ground.
HIGH_GROUND_M = 2000.0
#: The end of the melt season in Alaska: the month whose snow decides "perennial".
MELT_SEASON_END = 8


def ground_classes(swe: np.ndarray | None, times: pd.DatetimeIndex, years: tuple[int, int],
                   elevation_m: np.ndarray | None, n_cells: int) -> dict[str, np.ndarray]:
    """Boolean masks over the cells, one per class (mutually exclusive, together every cell), in display order.

    ``swe`` is ``[cell, time]`` mm w.e. on ``times`` (None: no perennial-snow class); ``years`` the training years
    (first, last) whose Augusts decide; ``elevation_m`` ``[cell]`` (None: no high-ground class).

    Raises
    ------
    DataError
        ``swe`` or ``elevation_m`` do not cover ``n_cells`` cells, or no August of ``years`` is in ``times``.
    """
    classes: dict[str, np.ndarray] = {}
    left = np.ones(n_cells, bool)
    if swe is not None:
        swe = np.asarray(swe, float)
        if swe.shape != (n_cells, len(times)):
            raise DataError(None, f"snow of shape {swe.shape} for {n_cells} cells x {len(times)} months")
        augusts = (times.month == MELT_SEASON_END) & (times.year >= years[0]) & (times.year <= years[1])
        if not augusts.any():
            raise DataError(None, f"no August in the training years {years[0]}-{years[1]} to tell perennial snow")
        # NaN snow (a gap) counts as no snow: a cell is perennial only on the evidence of every August
        kept = np.nan_to_num(swe[:, augusts], nan=0.0) > PERENNIAL_SWE_MM
        classes["perennial snow"] = kept.all(axis=1)
        left &= ~classes["perennial snow"]
    if elevation_m is not None:
        elevation_m = np.asarray(elevation_m, float)
        if elevation_m.shape != (n_cells,):
            raise DataError(None, f"{elevation_m.shape} heights for {n_cells} cells")
        classes[f"high ground (>= {HIGH_GROUND_M:.0f} m)"] = left & (elevation_m >= HIGH_GROUND_M)
        left &= elevation_m < HIGH_GROUND_M
    classes["the rest"] = left
    return classes


def ground_scores(obs: np.ndarray, preds: Mapping[str, np.ndarray], cell: np.ndarray, held_out_cell: np.ndarray,
                  classes: Mapping[str, np.ndarray]) -> dict:
    """Per class and side of the hold-out: its cell count and each model's pooled RMSE over its windows (None
    where the side has no cell of the class)."""
    held_out_cell = np.asarray(held_out_cell, bool)
    out: dict = {}
    for name, member in classes.items():
        entry: dict = {"cells": {}, "rmse": {}}
        for side, on_side in (("seen", ~held_out_cell), ("held_out", held_out_cell)):
            cells = member & on_side
            windows = cells[cell]
            entry["cells"][side] = int(cells.sum())
            entry["rmse"][side] = {m: (scores(obs[windows], p[windows])["rmse"] if windows.any() else None)
                                   for m, p in preds.items()}
        out[name] = entry
    return out


def ground_markdown(table: Mapping[str, dict], models: Sequence[str]) -> str:
    """The table of :func:`ground_scores`: a row per class and side, a column per model."""
    def num(v):
        return "" if v is None else f"{v:.3f}"

    rows = [[name, side.replace("_", "-"), entry["cells"][side], *(num(entry["rmse"][side][m]) for m in models)]
            for name, entry in table.items() for side in ("seen", "held_out") if entry["cells"][side]]
    text = (f"Test RMSE (degC) by kind of ground. Perennial snow: more than {PERENNIAL_SWE_MM:g} mm w.e. of snow in"
            " every August of the training years (ERA5-Land's glaciers); high ground: any other cell at or above"
            f" {HIGH_GROUND_M:.0f} m. The seen and held-out cells compare fairly only within a kind of ground.")
    return "\n".join([text, "", *markdown_table(["ground", "side", "cells", *models], rows), ""])
