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

from thawcast.catalogue import SIGNAL, SIGNAL_SOURCE
from thawcast.config import Config, WindowsConfig, YearRange
from thawcast.errors import DataError
from thawcast.ingest.common import open_netcdf, select_years
from thawcast.prep.features import monthly_matrix, monthly_names, scenario_signal
from thawcast.quality.provenance import read_output_json
from thawcast.variables import TARGETS

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


def scalers_json(scalers: dict[str, Scaler], meta: dict) -> str:
    """The scaler file's text: ``meta``, then each scaler by name."""
    return json.dumps({**meta, **{k: s.to_dict() for k, s in scalers.items()}}, indent=2) + "\n"


def save_scalers(path: Path, scalers: dict[str, Scaler], meta: dict) -> None:
    Path(path).write_text(scalers_json(scalers, meta))


def load_signal_reference(path: Path) -> tuple[float, float]:
    """Mean and std of the scenario signal's source over the training months (saved by the ``windows`` stage)."""
    ref = read_output_json(path, "windows").get("signal_reference", {})
    return float(ref.get("mean", "nan")), float(ref.get("std", "nan"))


def load_scalers(path: Path) -> dict[str, Scaler]:
    """The ``features``, ``targets`` and ``signal`` scalers saved by the ``windows`` stage."""
    raw = read_output_json(path, "windows")
    try:
        return {k: Scaler.from_dict(raw[k]) for k in ("features", "targets", "signal") if k in raw}
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(path, f"not a scaler file ({type(exc).__name__}: {exc}): rerun the windows stage"
                        " (`dvc repro windows`)") from None


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

    def __getstate__(self) -> dict:
        # The window view is made again on arrival: pickled, it would be a copy ``length`` times the size of x
        # (6.9 GB for the default grid cells, sent to every worker process).
        return {k: v for k, v in self.__dict__.items() if k != "_view"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._view = np.lib.stride_tricks.sliding_window_view(self.x, self.length, axis=1)

    def __len__(self) -> int:
        return len(self.band)

    def subset(self, idx) -> WindowSet:
        """The windows ``idx`` (indices, a mask or a slice) over the same arrays."""
        return WindowSet(x=self.x, band=self.band[idx], last=self.last[idx], length=self.length, times=self.times,
                         feature_names=self.feature_names, signal=self.signal, y=self.y)

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

    def to_grid(self, values: np.ndarray, times: pd.DatetimeIndex) -> np.ndarray:
        """Scatter per-window ``values [N, k]`` onto ``[band, len(times), k]`` by target month (NaN elsewhere).

        Windows whose target month is not in ``times`` are left out.
        """
        out = np.full((self.x.shape[0], len(times), values.shape[1]), np.nan)
        pos = times.get_indexer(self.target_times())
        keep = pos >= 0
        out[self.band[keep], pos[keep]] = values[keep]
        return out


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
    with open_netcdf(path) as ds:
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


# ---------------------------------------------------------------- building the window sets
@dataclass
class History:
    windows: WindowSet
    split: np.ndarray  # [N] index into SPLITS
    y_degc: np.ndarray
    scalers: dict[str, Scaler]
    signal_ref: tuple[float, float]  # mu, sigma of monthly R_thermal over the training months
    fit: np.ndarray  # [time] the months the scaler was fitted on

    def of_split(self, split: str) -> WindowSet:
        """The windows of one split (what :func:`open_windows` reads back from the stage's file)."""
        return self.windows.subset(self.split == SPLITS.index(split))


def _signal_source(dynamic: xr.Dataset, source: str, unit: str = "band") -> np.ndarray:
    """``[unit, time]`` monthly values of the scenario signal's source variable."""
    if SIGNAL_SOURCE not in dynamic:
        raise DataError(source, f"'{SIGNAL_SOURCE}' is needed for the scenario signal z but is missing")
    return dynamic[SIGNAL_SOURCE].transpose(unit, "time").values


def _signal_raw(dynamic: xr.Dataset, length: int, mu: float, sigma: float, source: str, unit: str = "band",
                ) -> np.ndarray:
    return scenario_signal(_signal_source(dynamic, source, unit), length, mu, sigma)


def build_history(cfg: Config, era: xr.Dataset, static: xr.Dataset) -> History:
    """Scaled ERA5-Land windows for the three splits; every statistic from the training split only."""
    names, w = cfg.feature_names, cfg.windows.length_months
    era = select_years(era, cfg.period.start_year, cfg.period.end_year, "ERA5-Land bands")
    times = pd.DatetimeIndex(era["time"].values)
    fit = fit_months(times, cfg.windows)
    x_raw = monthly_matrix(era, static, names, "ERA5-Land bands").values
    y_raw = np.stack([era[t].transpose("band", "time").values for t in TARGETS], axis=-1)
    feat_scaler = Scaler.fit(x_raw[:, fit], monthly_names(names))
    targ_scaler = Scaler.fit(y_raw[:, fit], TARGETS)
    n_bands = x_raw.shape[0]

    bands, lasts, codes = [], [], []
    for code, (first, last) in enumerate(target_years(cfg.windows).values()):
        b, k = window_index(times, n_bands, w, first, last)
        bands.append(b)
        lasts.append(k)
        codes.append(np.full(len(b), code))
    band, last, split = (np.concatenate(a) for a in (bands, lasts, codes))
    if not (split == 0).any():
        raise DataError("windows", f"no training windows: the training years {target_years(cfg.windows)['train']}"
                        f" leave no target month after the first {w} input months")

    scalers = {"features": feat_scaler, "targets": targ_scaler}
    signal, mu_sigma = None, (float("nan"), float("nan"))
    if SIGNAL in names:
        r_all = _signal_source(era, "ERA5-Land bands")
        mu_sigma = (float(r_all[:, fit].mean()), float(r_all[:, fit].std()))
        z_raw = scenario_signal(r_all, w, *mu_sigma)
        z_fit = z_raw[band[split == 0], last[split == 0]]
        scalers["signal"] = Scaler.fit(z_fit[:, None], (SIGNAL,))
        signal = scalers["signal"].transform(z_raw[..., None])[..., 0].astype(np.float32)
    ws = WindowSet(x=feat_scaler.transform(x_raw).astype(np.float32), band=band, last=last, length=w,
                   times=times, feature_names=names, signal=signal,
                   y=targ_scaler.transform(y_raw).astype(np.float32))
    return History(ws, split, y_raw.astype(np.float32), scalers, mu_sigma, fit)


def build_scenario(cfg: Config, scen: xr.Dataset, static: xr.Dataset, hist: History, source: str) -> WindowSet:
    """Windows of one corrected scenario: one per band for each projection month, history's scaling."""
    return forcing_windows(cfg.feature_names, cfg.windows.length_months, cfg.projection, scen, static,
                           hist.scalers, hist.signal_ref, source)


def forcing_windows(names: tuple[str, ...], w: int, years: YearRange, table: xr.Dataset, static: xr.Dataset,
                    scalers: dict[str, Scaler], signal_ref: tuple[float, float], source: str, unit: str = "band",
                    ) -> WindowSet:
    """Windows over a table of drivers: one per unit (band, or ``cell``) for each target month of ``years``, each
    unit's months together and in order, scaled with the history's ``scalers`` (the signal ``z`` against
    ``signal_ref``, the training mean/std of its source).

    Raises
    ------
    DataError
        If the table does not cover the ``w`` input months before ``years`` and every month of it.
    """
    times = pd.DatetimeIndex(table["time"].values)
    need_first = pd.Timestamp(years.start_year, 1, 1) - pd.DateOffset(months=w)
    need_last = pd.Timestamp(years.end_year, 12, 1)
    if times[0] > need_first or times[-1] < need_last:
        raise DataError(source, f"windows for the years {years} need months {need_first:%Y-%m}..{need_last:%Y-%m};"
                        f" the drivers cover {times[0]:%Y-%m}..{times[-1]:%Y-%m}")
    x = scalers["features"].transform(monthly_matrix(table, static, names, source, unit=unit).values)
    band, last = window_index(times, x.shape[0], w, years.start_year, years.end_year)
    signal = None
    if SIGNAL in names:
        z_raw = _signal_raw(table, w, *signal_ref, source, unit)
        signal = scalers["signal"].transform(z_raw[..., None])[..., 0].astype(np.float32)
    return WindowSet(x=x.astype(np.float32), band=band, last=last, length=w, times=times,
                     feature_names=names, signal=signal)


def window_frame(ws: WindowSet, split: str | np.ndarray, y: np.ndarray | None = None) -> pd.DataFrame:
    """One row per window: split, band, target month, lead, span and NaN counts (for the GX suite)."""
    n = len(ws)
    labels = np.asarray(SPLITS)[split] if isinstance(split, np.ndarray) else np.full(n, split)
    first = ws.last - ws.length + 1
    nan_in = nan_per_window(ws.x, ws.length, ws.last, ws.band)
    if ws.signal is not None:
        nan_in = nan_in + np.isnan(ws.signal[ws.band, ws.last])
    nan_t = np.isnan(y[ws.band, ws.last + 1]).sum(axis=-1) if y is not None else np.zeros(n, dtype=int)
    target = ws.target_times()
    month = ws.times.year * 12 + ws.times.month
    return pd.DataFrame({
        "split": labels, "kind": labels if isinstance(split, np.ndarray) else "scenario", "band": ws.band,
        "target": target.strftime("%Y-%m"), "target_year": target.year,
        "lead_months": target.year * 12 + target.month - month[ws.last],
        "span_months": month[ws.last] - month[first] + 1,
        "n_features": ws.n_features, "nan_inputs": nan_in, "nan_targets": nan_t,
    })


def scaling_frame(hist: History) -> pd.DataFrame:
    """Mean/std of every scaled column over the training split (months, or windows for z)."""
    ws, fit, rows = hist.windows, hist.fit, []
    constant = hist.scalers["features"].constant
    for name, col, c in zip(monthly_names(ws.feature_names), np.moveaxis(ws.x[:, fit], -1, 0), constant, strict=True):
        rows.append((name, col, c))
    for i, name in enumerate(TARGETS):
        rows.append((name, ws.y[:, fit, i], False))
    if ws.signal is not None:
        tr = hist.split == 0
        rows.append((SIGNAL, ws.signal[ws.band[tr], ws.last[tr]], False))
    return pd.DataFrame([{"column": n, "train_mean": float(np.mean(v, dtype=np.float64)),
                          "train_std": float(np.std(v, dtype=np.float64)), "constant": bool(c)}
                         for n, v, c in rows])
