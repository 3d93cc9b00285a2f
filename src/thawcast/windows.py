"""Sliding windows over contiguous monthly arrays, chronological splits and z-score scaling.

A window ``j`` of band ``b`` is ``w`` consecutive months of features ending at month ``t``
(its *last input month*); its target is the four soil temperatures of month ``t + 1``
(paper eqs. 2.3-2.5). Windows are never materialised as ``[N, w, F]`` copies: a
:class:`WindowSet` keeps the monthly ``[band, time, feature]`` array once plus two integer
index arrays (band, last input month), and gathers a batch on request through a strided
view (:func:`numpy.lib.stride_tricks.sliding_window_view`). Memory grows with
months x features, not with windows x w x features.

Splits are by the target month: a window belongs to ``train`` / ``validation`` / ``test``
when its target month falls in that split's years, so no target month is in two splits.
The :class:`Scaler` is fitted on the months of the training split only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from thawcast.config import WindowsConfig
from thawcast.errors import DataError

SPLITS = ("train", "validation", "test")


# ---------------------------------------------------------------- scaling
@dataclass(frozen=True)
class Scaler:
    """Per-column z-score: ``(x - mean) / std``. Constant columns get ``std = 1`` (scaled to 0)."""

    names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    constant: np.ndarray = field(repr=False)

    @classmethod
    def fit(cls, values: np.ndarray, names: tuple[str, ...]) -> Scaler:
        """Fit on ``values`` ``[..., len(names)]`` (every leading axis pooled); NaN is an error."""
        flat = np.asarray(values, dtype=float).reshape(-1, len(names))
        if flat.shape[0] == 0:
            raise DataError(None, "no training rows to fit the scaler on")
        bad = [n for n, ok in zip(names, np.isfinite(flat).all(axis=0), strict=True) if not ok]
        if bad:
            raise DataError(None, f"training values of {bad} contain NaN or inf; cannot fit the scaler")
        mean, std = flat.mean(axis=0), flat.std(axis=0)
        constant = std <= 1e-12 * np.maximum(1.0, np.abs(mean))
        return cls(tuple(names), mean, np.where(constant, 1.0, std), constant)

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (np.asarray(values, dtype=float) - self.mean) / self.std

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=float) * self.std + self.mean

    def to_dict(self) -> dict:
        return {n: {"mean": float(m), "std": float(s), "constant": bool(c)}
                for n, m, s, c in zip(self.names, self.mean, self.std, self.constant, strict=True)}

    @classmethod
    def from_dict(cls, d: dict) -> Scaler:
        names = tuple(d)
        return cls(names, np.array([d[n]["mean"] for n in names]), np.array([d[n]["std"] for n in names]),
                   np.array([d[n]["constant"] for n in names]))


def save_scalers(path: Path, scalers: dict[str, Scaler], meta: dict) -> None:
    Path(path).write_text(json.dumps({**meta, **{k: s.to_dict() for k, s in scalers.items()}}, indent=2) + "\n")


def load_scalers(path: Path) -> dict[str, Scaler]:
    """The ``features``, ``targets`` and ``signal`` scalers saved by the ``windows`` stage."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "scaler file not found (run the windows stage)")
    raw = json.loads(path.read_text())
    return {k: Scaler.from_dict(raw[k]) for k in ("features", "targets", "signal") if k in raw}


# ---------------------------------------------------------------- split bookkeeping
def target_years(cfg: WindowsConfig) -> dict[str, tuple[int, int]]:
    """Inclusive target-year range of each split (train = training span minus validation)."""
    return {
        "train": (cfg.train.start_year, cfg.validation.start_year - 1),
        "validation": (cfg.validation.start_year, cfg.validation.end_year),
        "test": (cfg.test.start_year, cfg.test.end_year),
    }


def fit_months(times: pd.DatetimeIndex, cfg: WindowsConfig) -> np.ndarray:
    """Boolean mask of the months the scaler may see: the training split's years only."""
    first, last = target_years(cfg)["train"]
    return np.asarray((times.year >= first) & (times.year <= last))


def window_index(times: pd.DatetimeIndex, n_bands: int, length: int, first_target: int, last_target: int,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Band and last-input-month index of every window whose target year is in the range.

    A target at month index ``k`` needs inputs ``k - length .. k - 1``, so ``k >= length``.
    """
    years = np.asarray(times.year)
    k = np.flatnonzero((years >= first_target) & (years <= last_target))
    k = k[k >= length]
    band = np.repeat(np.arange(n_bands), len(k))
    last = np.tile(k - 1, n_bands)
    return band.astype(np.int64), last.astype(np.int64)


# ---------------------------------------------------------------- windows
@dataclass
class WindowSet:
    """Windows as index arrays over contiguous monthly arrays.

    Attributes
    ----------
    x
        ``[band, time, feature]`` scaled monthly features (float32).
    band, last
        ``[N]`` band index and last-input-month index of each window.
    length
        Window length ``w`` in months.
    signal
        ``[band, time]`` scaled scenario signal of the window ending at each month, or None.
    y
        ``[band, time, target]`` scaled targets, or None (scenarios have no targets).
    """

    x: np.ndarray
    band: np.ndarray
    last: np.ndarray
    length: int
    times: pd.DatetimeIndex
    feature_names: tuple[str, ...]
    signal: np.ndarray | None = None
    y: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.x.ndim != 3:
            raise DataError(None, f"features must be [band, time, feature], got shape {self.x.shape}")
        if len(self.band) != len(self.last):
            raise DataError(None, "band and last index arrays differ in length")
        if len(self.last) and (self.last.min() < self.length - 1 or self.last.max() >= self.x.shape[1]):
            raise DataError(None, f"window index out of range for {self.x.shape[1]} months and w={self.length}")
        if len(self.band) and (self.band.min() < 0 or self.band.max() >= self.x.shape[0]):
            raise DataError(None, f"band index outside 0..{self.x.shape[0] - 1}")
        self._view = np.lib.stride_tricks.sliding_window_view(self.x, self.length, axis=1)

    def __len__(self) -> int:
        return len(self.band)

    @property
    def n_features(self) -> int:
        """Features per time step, the signal included."""
        return self.x.shape[2] + (self.signal is not None)

    def inputs(self, idx=slice(None)) -> np.ndarray:
        """``[n, w, F]`` inputs of the selected windows (a fresh array of just that batch)."""
        b, last = self.band[idx], self.last[idx]
        win = self._view[b, last - self.length + 1]  # [n, F, w]
        win = np.moveaxis(win, -1, 1)
        if self.signal is None:
            return np.ascontiguousarray(win)
        z = np.broadcast_to(self.signal[b, last][:, None, None], (*win.shape[:2], 1))
        return np.concatenate([win, z.astype(win.dtype)], axis=-1)

    def targets(self, idx=slice(None)) -> np.ndarray:
        """``[n, 4]`` scaled targets (month after the window)."""
        if self.y is None:
            raise DataError(None, "these windows have no targets (scenario windows)")
        return self.y[self.band[idx], self.last[idx] + 1]

    def target_times(self, idx=slice(None)) -> pd.DatetimeIndex:
        """Month of each window's target."""
        return self.times[self.last[idx] + 1]


def nan_per_window(x: np.ndarray, length: int, last: np.ndarray, band: np.ndarray) -> np.ndarray:
    """NaN count in each window's inputs, without materialising the windows (rolling sum)."""
    per_month = np.isnan(x).sum(axis=-1) if x.ndim == 3 else np.isnan(x).astype(int)
    csum = np.concatenate([np.zeros((per_month.shape[0], 1), dtype=np.int64), np.cumsum(per_month, axis=1)], axis=1)
    return csum[band, last + 1] - csum[band, last + 1 - length]


def to_dataset(ws: WindowSet, split_codes: np.ndarray | None, y_degc: np.ndarray | None,
               target_names: tuple[str, ...], attrs: dict) -> xr.Dataset:
    """NetCDF layout of a window set (see the ``windows`` stage)."""
    coords = {"band": np.arange(ws.x.shape[0]), "time": ws.times.values,
              "feature": list(ws.feature_names[: ws.x.shape[2]])}
    data = {
        "x": (("band", "time", "feature"), ws.x, {"long_name": "scaled monthly features (z-score, training fit)"}),
        "window_band": (("window",), ws.band, {"long_name": "band index of the window"}),
        "window_last": (("window",), ws.last, {"long_name": "time index of the window's last input month"}),
    }
    if ws.signal is not None:
        data["z"] = (("band", "time"), ws.signal,
                     {"long_name": "scaled scenario signal of the window ending at this month (eqs. 2.1-2.2)"})
    if ws.y is not None:
        coords["target"] = list(target_names)
        data["y"] = (("band", "time", "target"), ws.y, {"long_name": "scaled soil temperature targets"})
        data["y_degc"] = (("band", "time", "target"), y_degc, {"units": "degC", "long_name": "soil temperature"})
    if split_codes is not None:
        data["window_split"] = (("window",), split_codes.astype(np.int8),
                                {"flag_values": np.arange(len(SPLITS), dtype=np.int8),
                                 "flag_meanings": " ".join(SPLITS)})
    ds = xr.Dataset(data, coords=coords, attrs={**attrs, "window_length_months": ws.length,
                                                "feature_order": " ".join(ws.feature_names)})
    return ds


def open_windows(path: Path, split: str | None = None) -> WindowSet:
    """Load a window file written by the ``windows`` stage, optionally one split of it.

    Raises
    ------
    DataError
        If the file is missing, or ``split`` is unknown / not in this file.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, "window file not found (run the windows stage)")
    with xr.open_dataset(path) as ds:
        ds = ds.load()
    band, last = ds["window_band"].values.astype(np.int64), ds["window_last"].values.astype(np.int64)
    if split is not None:
        if split not in SPLITS:
            raise DataError(path, f"unknown split {split!r}; valid: {list(SPLITS)}")
        if "window_split" not in ds:
            raise DataError(path, "this file has no splits (scenario windows)")
        keep = ds["window_split"].values == SPLITS.index(split)
        band, last = band[keep], last[keep]
    names = tuple(ds.attrs["feature_order"].split())
    return WindowSet(
        x=ds["x"].values, band=band, last=last, length=int(ds.attrs["window_length_months"]),
        times=pd.DatetimeIndex(ds["time"].values), feature_names=names,
        signal=ds["z"].values if "z" in ds else None, y=ds["y"].values if "y" in ds else None,
    )
