"""Baselines every network is compared with (the paper reports none).

All predict the four soil temperatures (degC) of each window's target month, from
information available at the end of the window:

* **climatology**: the mean of that band, layer and calendar month over the training months;
* **persistence**: the last observed month (the window's last input month);
* **seasonal persistence**: the same month one year before the target;
* **ridge**: a linear model on the flattened window plus a one-hot band (grid cells: no one-hot, their
  attributes are in the window): the "flat feature vector" approach the paper argues against. Its regularisation strength is chosen
  on the validation split, never on the test split.

Persistence and seasonal persistence read *observed* soil temperature, which the networks
do not see (they get only the drivers); they set the bar a forecast with observations in
hand would clear.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from thawcast.errors import DataError
from thawcast.prep.windows import WindowSet


def climatology_table(y_degc: np.ndarray, months: np.ndarray, fit: np.ndarray) -> np.ndarray:
    """``[band, 12, target]`` mean over the ``fit`` months for each calendar month (1..12 -> 0..11).

    Raises
    ------
    DataError
        If a calendar month has no fitting month (e.g. less than a year of training data).
    """
    table = np.full((y_degc.shape[0], 12, y_degc.shape[2]), np.nan)
    for m in range(12):
        sel = fit & (months == m + 1)
        if not sel.any():
            raise DataError(None, f"no training month for calendar month {m + 1}: climatology undefined")
        table[:, m] = y_degc[:, sel].mean(axis=1)
    return table


def predict_climatology(table: np.ndarray, ws: WindowSet) -> np.ndarray:
    return table[ws.band, ws.target_times().month.to_numpy() - 1]


def predict_persistence(y_degc: np.ndarray, ws: WindowSet) -> np.ndarray:
    return y_degc[ws.band, ws.last]


def predict_seasonal_persistence(y_degc: np.ndarray, ws: WindowSet) -> np.ndarray:
    k = ws.last + 1 - 12
    if (k < 0).any():
        raise DataError(None, "seasonal persistence needs the target month one year earlier; some windows start"
                        " less than 12 months into the record")
    return y_degc[ws.band, k]


#: Windows the ridge baseline flattens at once when predicting.
RIDGE_CHUNK = 20000


def _design(ws: WindowSet, n_bands: int) -> np.ndarray:
    """Flattened windows, then a one-hot of the unit (none when ``n_bands`` is 0)."""
    flat = ws.inputs().reshape(len(ws), -1)
    if n_bands == 0:
        return flat
    onehot = np.eye(n_bands, dtype=flat.dtype)[ws.band]
    return np.concatenate([flat, onehot], axis=1)


@dataclass
class RidgeBaseline:
    """Ridge regression on flattened windows (scaled inputs -> scaled targets)."""

    alphas: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0)
    alpha: float | None = None
    model: object = None
    n_bands: int = 0
    unit_onehot: bool = True  # False for grid cells: they are told apart by their attributes, as the networks do

    def fit(self, train: WindowSet, val: WindowSet) -> RidgeBaseline:
        """Fit on ``train``; pick ``alpha`` by validation RMSE (the test split is never passed in)."""
        from sklearn.linear_model import Ridge

        self.n_bands = train.x.shape[0] if self.unit_onehot else 0
        xt, yt = _design(train, self.n_bands), train.targets()
        xv, yv = _design(val, self.n_bands), val.targets()
        best = None
        for a in self.alphas:
            m = Ridge(alpha=a).fit(xt, yt)
            rmse = float(np.sqrt(np.mean((m.predict(xv) - yv) ** 2)))
            if best is None or rmse < best[0]:
                best = (rmse, a, m)
        _, self.alpha, self.model = best
        return self

    def predict(self, ws: WindowSet) -> np.ndarray:
        """Scaled predictions ``[N, 4]``."""
        if self.model is None:
            raise DataError(None, "ridge baseline used before fit")
        if len(ws) <= RIDGE_CHUNK:
            return self.model.predict(_design(ws, self.n_bands))
        # hundreds of thousands of cell windows: a chunk of flattened windows at a time (the full design is GBs)
        return np.concatenate([self.model.predict(_design(ws.subset(slice(i, i + RIDGE_CHUNK)), self.n_bands))
                               for i in range(0, len(ws), RIDGE_CHUNK)])
