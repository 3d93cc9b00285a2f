"""Windows over grid cells (issue "Every grid cell"): every land cell is a unit with its drivers, its statics and its
position, so one network learns across thousands of cells and applies to cells it never saw.

The cells stage's ``[cell, time, variable]`` store and static table become one ``[cell, time, feature]`` array
(float32, scaled), and windows are index arrays over it (:class:`~thawcast.prep.windows.WindowSet`, the bands'
own machinery: a window is gathered only when a batch asks for it). Memory grows with cells x months x features;
``[N, 24, F]`` windows are never built.

Leakage: every statistic (feature and target scalers, the scenario signal's reference) comes from the *seen*
cells' training years only; the spatial hold-out's cells (``held_out``, drawn by the cells stage) never reach a
fit, and :meth:`CellHistory.windows` gives training and validation windows of the seen cells alone.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from thawcast.catalogue import CELL_ATTRIBUTES, POSITION, SIGNAL, SIGNAL_SOURCE, feature
from thawcast.config import Config, YearRange
from thawcast.errors import DataError
from thawcast.ingest.common import open_netcdf, select_years
from thawcast.prep.features import monthly_matrix, monthly_names, scenario_signal
from thawcast.prep.windows import (
    SPLITS,
    Scaler,
    WindowSet,
    fit_months,
    scalers_json,
    target_years,
    window_index,
)
from thawcast.variables import TARGETS

#: The two groups of cells skill is reported for.
GROUPS = ("seen", "held_out")


def cell_feature_names(names: tuple[str, ...], given: Collection[str] = POSITION) -> tuple[str, ...]:
    """A cell model's inputs: the monthly ``features`` of params.yaml, then the cell attributes
    (:data:`~thawcast.catalogue.CELL_ATTRIBUTES`) among ``given`` (the static table's variables: the position always,
    the height where the cells stage had ERA5-Land's geopotential), then the signal ``z`` when it is one of
    ``names`` (always last)."""
    monthly = monthly_names(names)
    attributes = (a for a in CELL_ATTRIBUTES if a not in monthly and (a in POSITION or a in given))
    return (*monthly, *attributes, *((SIGNAL,) if SIGNAL in names else ()))


@dataclass(frozen=True)
class CellData:
    """What the cells stage wrote: ``dynamic`` (one ``[cell, time]`` variable per driver and soil temperature),
    ``static`` (one ``[cell]`` variable per static feature, ``lat``/``lon``/``band`` coordinates), the cells'
    ``held_out`` flags and areas."""

    dynamic: xr.Dataset
    static: xr.Dataset
    held_out: np.ndarray
    area_km2: np.ndarray

    @property
    def band(self) -> np.ndarray:
        return self.static["band"].values

    def __len__(self) -> int:
        return len(self.held_out)


def open_cells(store: Path, static: Path) -> CellData:
    """Read the cells stage's ``cells.nc`` and ``static_cells.nc`` (both loaded: float32, a few hundred MB for the
    0.1-degree grid).

    Raises
    ------
    DataError
        A file is missing, has no ``held_out`` flags, or the two describe different cells (another grid, or the
        stage's outputs from two different runs).
    """
    for path in (store, static):
        if not Path(path).exists():
            raise DataError(path, "not found: run the cells stage (`dvc repro cells`)")
    with open_netcdf(store) as ds:
        values = ds["values"].load()
        area = ds["area_km2"].values
    with open_netcdf(static) as ds:
        table = ds.load()
    if "held_out" not in table:
        raise DataError(static, "no held_out flags: rerun the cells stage (`dvc repro cells`)")
    same = (values.sizes["cell"] == table.sizes["cell"]
            and all(np.allclose(values[c].values, table[c].values) for c in ("lat", "lon")))
    if not same:
        raise DataError(static, f"its {table.sizes['cell']} cells are not the {values.sizes['cell']} cells of"
                        f" {Path(store).name} (another grid, or outputs of two different runs): rerun the cells"
                        " stage (`dvc repro cells`)")
    dynamic = values.to_dataset("variable").drop_vars(["lat", "lon", "band", "area_km2"], errors="ignore")
    return CellData(dynamic, table.drop_vars("held_out"), table["held_out"].values.astype(bool), area)


@dataclass
class CellHistory:
    """Every cell's scaled monthly features and targets over the observed period, fitted on the seen cells'
    training years. ``x``/``y`` are ``[cell, time, ...]``; ``y_degc`` the targets in degC."""

    x: np.ndarray
    y: np.ndarray
    y_degc: np.ndarray
    signal: np.ndarray | None
    times: pd.DatetimeIndex
    feature_names: tuple[str, ...]
    length: int
    held_out: np.ndarray
    scalers: dict[str, Scaler]
    signal_ref: tuple[float, float]
    fit: np.ndarray
    split_years: dict[str, tuple[int, int]]

    def windows_in(self, years: YearRange, cells: np.ndarray) -> WindowSet:
        """The windows of the given ``cells`` (indices, in that order) whose target month is in ``years``: each
        cell's months together, in time order."""
        ws = self._all(years.start_year, years.end_year)
        order = np.full(self.x.shape[0], -1)
        order[cells] = np.arange(len(cells))
        pick = np.flatnonzero(order[ws.band] >= 0)
        return ws.subset(pick[np.argsort(order[ws.band[pick]], kind="stable")])

    def _all(self, first: int, last: int) -> WindowSet:
        """Every cell's windows whose target year is in ``first..last``."""
        cell, end = window_index(self.times, self.x.shape[0], self.length, first, last)
        return WindowSet(x=self.x, band=cell, last=end, length=self.length, times=self.times,
                         feature_names=self.feature_names, signal=self.signal, y=self.y)

    def windows(self, split: str, group: str = "seen") -> WindowSet:
        """The windows of one split (target year) and group of cells (``seen``, ``held_out`` or ``all``)."""
        if split not in SPLITS:
            raise DataError(None, f"unknown split {split!r}; valid: {list(SPLITS)}")
        if group not in (*GROUPS, "all"):
            raise DataError(None, f"unknown group of cells {group!r}; valid: {[*GROUPS, 'all']}")
        ws = self._all(*self.split_years[split])
        return ws if group == "all" else ws.subset(self.held_out[ws.band] == (group == "held_out"))


def build_cell_history(cfg: Config, data: CellData) -> CellHistory:
    """Scale every cell's features and targets with statistics of the seen cells' training months only.

    Raises
    ------
    DataError
        No cell is seen (nothing to train on), a feature is missing, or a value is NaN where the scaler is fitted.
    """
    seen = ~data.held_out
    if not seen.any():
        raise DataError("cells", f"all {len(data)} cells are held out: nothing to train on (cells.holdout_share)")
    names, w = cell_feature_names(cfg.feature_names, set(map(str, data.static.variables))), cfg.windows.length_months
    dyn = select_years(data.dynamic, cfg.period.start_year, cfg.period.end_year, "cells")
    times = pd.DatetimeIndex(dyn["time"].values)
    fit = fit_months(times, cfg.windows)
    x_raw = monthly_matrix(dyn, data.static, names, "cells", unit="cell").values
    absent = [t for t in TARGETS if t not in dyn]
    if absent:
        raise DataError("cells", f"soil temperatures {absent} are not in the cell store")
    y_raw = np.stack([dyn[t].transpose("cell", "time").values for t in TARGETS], axis=-1)
    rows = np.ix_(seen, fit)
    scalers = {"features": Scaler.fit(x_raw[rows], monthly_names(names)), "targets": Scaler.fit(y_raw[rows], TARGETS)}
    years = target_years(cfg.windows)
    signal, ref = None, (float("nan"), float("nan"))
    if SIGNAL in names:
        if SIGNAL_SOURCE not in dyn:
            raise DataError("cells", f"'{SIGNAL_SOURCE}' is needed for the scenario signal z but is missing")
        r = dyn[SIGNAL_SOURCE].transpose("cell", "time").values
        ref = (float(r[rows].mean()), float(r[rows].std()))
        z_raw = scenario_signal(r, w, *ref)
        train_last = np.unique(window_index(times, 1, w, *years["train"])[1])
        scalers["signal"] = Scaler.fit(z_raw[np.ix_(seen, train_last)].reshape(-1, 1), (SIGNAL,))
        signal = scalers["signal"].transform(z_raw[..., None])[..., 0].astype(np.float32)
    return CellHistory(
        x=scalers["features"].transform(x_raw).astype(np.float32), y=scalers["targets"].transform(y_raw).astype(np.float32),
        y_degc=y_raw.astype(np.float32), signal=signal, times=times, feature_names=names, length=w,
        held_out=data.held_out, scalers=scalers, signal_ref=ref, fit=fit, split_years=years)


def subsample(ws: WindowSet, n: int | None, seed: int) -> WindowSet:
    """At most ``n`` of the windows of ``ws``, drawn without replacement with ``seed``, in their original order
    (``None``: all of them)."""
    if n is None or n >= len(ws):
        return ws
    return ws.subset(np.sort(np.random.default_rng(seed).choice(len(ws), size=n, replace=False)))


def cell_scaler_text(hist: CellHistory) -> str:
    """The ``scaler.json`` of a cell model: its scalers, what they were fitted on, the features and their units."""
    first, last = hist.split_years["train"]
    return scalers_json(hist.scalers, {
        "fit_on": f"the {int((~hist.held_out).sum())} seen cells' training months {first}-{last}",
        "feature_order": list(hist.feature_names),
        "feature_units": {n: feature(n).unit for n in hist.feature_names},
        "signal_reference": {"mean": hist.signal_ref[0], "std": hist.signal_ref[1]}})


def check_scaler(hist: CellHistory, path: Path, arch: str) -> None:
    """Raise unless the cell model ``arch``'s ``scaler.json`` (``path``) is what these cells give.

    Raises
    ------
    DataError
        Naming the stage to rerun: the model was trained on other cells, another hold-out or other features.
    """
    path = Path(path)
    if not path.exists() or json.loads(path.read_text()) != json.loads(cell_scaler_text(hist)):
        raise DataError(path, f"cells-{arch} was trained with other scalers than these cells give (other cells,"
                        f" hold-out or features): rerun `dvc repro train-cells@{arch}`")


def _grid_steps(values: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Each of ``values``' index on the regular ``axis`` (its first centre, its smallest step between centres)."""
    axis = np.unique(np.asarray(axis, float))
    step = np.min(np.diff(axis)) if axis.size > 1 else 1.0
    return np.rint((np.asarray(values, float) - axis[0]) / step).astype(np.int64)


def cell_grid(lat: np.ndarray, lon: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The regular grid the cells' centres lie on (from the first centre at the smallest step between centres)
    and each cell's (row, column) on it."""
    grid, index = [], []
    for v in (np.asarray(lat, float), np.asarray(lon, float)):
        k = _grid_steps(v, v)
        u = np.unique(v)
        step = np.min(np.diff(u)) if u.size > 1 else 1.0
        grid.append(u[0] + step * np.arange(k.max() + 1))
        index.append(k)
    return (grid[0], grid[1]), (index[0], index[1])


def grid_sample(lat: np.ndarray, lon: np.ndarray, grid: tuple[np.ndarray, np.ndarray], stride: int) -> np.ndarray:
    """Which cells lie on every ``stride``-th row and column of the ERA5-Land ``grid`` (its latitudes and longitudes),
    counted from its south-west corner (where the synthetic world's pseudo-reality counts its own stride from)."""
    return (_grid_steps(lat, grid[0]) % stride == 0) & (_grid_steps(lon, grid[1]) % stride == 0)


def at_cells(ds: xr.Dataset, lat: np.ndarray, lon: np.ndarray) -> xr.Dataset:
    """The ``[cell, time]`` series of a gridded dataset at the cells' centres (exact grid points)."""
    out = ds.sel(lat=xr.DataArray(lat, dims="cell"), lon=xr.DataArray(lon, dims="cell"), method="nearest",
                 tolerance=1e-6)
    return out.drop_vars(["lat", "lon"]).assign_coords(cell=np.arange(len(lat)))
