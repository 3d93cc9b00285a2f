"""Baselines: known answers on constructed series, and no test-period fitting."""

import numpy as np
import pandas as pd
import pytest

from thawcast.analysis.baselines import (
    RidgeBaseline,
    climatology_table,
    predict_climatology,
    predict_persistence,
    predict_seasonal_persistence,
)
from thawcast.errors import DataError
from thawcast.prep.windows import WindowSet, window_index

TIMES = pd.date_range("2001-01-01", "2006-12-01", freq="MS")
N_BANDS = 3


def _periodic():
    """[band, time, 4]: an exact 12-month cycle per band and layer (amplitude shrinking with depth)."""
    m = np.arange(len(TIMES)) % 12
    cycle = np.sin(2 * np.pi * m / 12)
    band = np.arange(N_BANDS)[:, None, None]
    layer = np.arange(4)[None, None, :]
    return 3.0 - 2.0 * band + cycle[None, :, None] * (10.0 / (1 + layer))


def _windows(first, last, x=None, length=6, y=None):
    band, k = window_index(TIMES, N_BANDS, length, first, last)
    x = np.zeros((N_BANDS, len(TIMES), 2), dtype=np.float32) if x is None else x
    return WindowSet(x=x, band=band, last=k, length=length, times=TIMES, feature_names=("a", "b"), y=y)


def test_climatology_of_an_exact_cycle_is_exact():
    y = _periodic()
    fit = np.asarray(TIMES.year <= 2003)
    table = climatology_table(y, TIMES.month.to_numpy(), fit)
    ws = _windows(2005, 2006)
    np.testing.assert_allclose(predict_climatology(table, ws), y[ws.band, ws.last + 1])


def test_climatology_sees_training_months_only():
    y = _periodic()
    fit = np.asarray(TIMES.year <= 2003)
    poisoned = y.copy()
    poisoned[:, ~fit] += 100.0
    np.testing.assert_array_equal(climatology_table(poisoned, TIMES.month.to_numpy(), fit),
                                  climatology_table(y, TIMES.month.to_numpy(), fit))
    with pytest.raises(DataError, match="calendar month"):
        climatology_table(y, TIMES.month.to_numpy(), np.asarray(TIMES < "2001-06-01"))


def test_persistence_and_seasonal_persistence():
    """On a 0.5 degC/month trend, persistence (last observed month) is 0.5 degC behind every target and
    seasonal persistence (the target month a year earlier) 6 degC behind; on an exact yearly cycle seasonal
    persistence is perfect."""
    k = np.arange(len(TIMES))
    trend = 10.0 * np.arange(N_BANDS)[:, None, None] + 0.5 * k[None, :, None] + np.arange(4)[None, None, :]
    ws = _windows(2003, 2006)
    target = trend[ws.band, ws.last + 1]
    np.testing.assert_allclose(target - predict_persistence(trend, ws), 0.5)
    np.testing.assert_allclose(target - predict_seasonal_persistence(trend, ws), 6.0)
    # the window whose target is January 2004 in band 2, layer 3: December 2003 and January 2003
    i = np.flatnonzero((ws.band == 2) & (TIMES[ws.last + 1] == pd.Timestamp("2004-01-01")))
    assert len(i) == 1
    dec, jan = TIMES.get_loc(pd.Timestamp("2003-12-01")), TIMES.get_loc(pd.Timestamp("2003-01-01"))
    assert predict_persistence(trend, ws)[i[0], 3] == 20.0 + 0.5 * dec + 3
    assert predict_seasonal_persistence(trend, ws)[i[0], 3] == 20.0 + 0.5 * jan + 3
    y = _periodic()
    np.testing.assert_allclose(predict_seasonal_persistence(y, ws), y[ws.band, ws.last + 1])
    with pytest.raises(DataError, match="one year earlier"):
        predict_seasonal_persistence(y, _windows(2001, 2001))


def test_ridge_recovers_a_linear_target_and_picks_alpha_on_validation(rng):
    x = rng.normal(size=(N_BANDS, len(TIMES), 2)).astype(np.float32)
    coef = np.array([[1.0, -2.0, 0.5, 0.0], [0.3, 0.0, -1.0, 2.0]])
    y = np.zeros((N_BANDS, len(TIMES), 4), dtype=np.float32)
    y[:, 1:] = x[:, :-1] @ coef  # target = linear in the window's last step
    train, val, test = (_windows(a, b, x, y=y) for a, b in ((2001, 2004), (2005, 2005), (2006, 2006)))
    ridge = RidgeBaseline(alphas=(1e-3, 1e3)).fit(train, val)
    assert ridge.alpha == 1e-3  # the heavily shrunk model loses on validation
    pred = ridge.predict(test)
    r2 = 1 - ((pred - test.targets()) ** 2).sum() / ((test.targets() - test.targets().mean(0)) ** 2).sum()
    assert r2 > 0.99
    with pytest.raises(DataError, match="before fit"):
        RidgeBaseline().predict(test)


def test_ridge_picks_the_strong_shrinkage_when_the_inputs_say_nothing(rng):
    """A target of pure noise: the weakly shrunk model fits the noise of the training windows and loses on
    validation, so the last of the alphas wins (a choice that kept the first alpha, or compared the RMSE with
    anything but the best RMSE so far, would not get there)."""
    x = rng.normal(size=(N_BANDS, len(TIMES), 2)).astype(np.float32)
    y = rng.normal(size=(N_BANDS, len(TIMES), 4)).astype(np.float32)
    train, val = (_windows(a, b, x, y=y) for a, b in ((2001, 2004), (2005, 2006)))
    assert RidgeBaseline(alphas=(1e-3, 1e3)).fit(train, val).alpha == 1e3
    with pytest.raises(DataError, match=r"^ridge baseline used before fit$"):
        RidgeBaseline().predict(val)


def test_climatology_table_shape_and_the_month_it_lacks():
    y = _periodic()
    table = climatology_table(y, TIMES.month.to_numpy(), np.asarray(TIMES.year <= 2003))
    assert table.shape == (N_BANDS, 12, 4)
    with pytest.raises(DataError, match=r"^no training month for calendar month 6: climatology undefined$"):
        climatology_table(y, TIMES.month.to_numpy(), np.asarray(TIMES < "2001-06-01"))


def test_seasonal_persistence_from_the_first_month_of_the_record():
    """The first target a year after the record starts reads month 0: allowed, and exact on a yearly cycle."""
    y = _periodic()
    ws = _windows(2002, 2002)
    assert (ws.last + 1 - 12).min() == 0
    np.testing.assert_allclose(predict_seasonal_persistence(y, ws), y[ws.band, ws.last + 1])
    with pytest.raises(DataError, match=r"^seasonal persistence needs the target month one year earlier; some"
                                        r" windows start less than 12 months into the record$"):
        predict_seasonal_persistence(y, _windows(2001, 2001))


def test_ridge_scores_alphas_by_squared_error_when_validation_is_warmer_than_training(rng):
    """Pure-noise targets as above, but the validation years 3 (scaled) units warmer than the training years:
    every alpha under-predicts them, so the errors are nearly all negative. RMSE is sqrt(9 + variance) for each
    alpha and still picks the strong shrinkage; a score of the signed (or cubed) errors would be the root of a
    negative number and keep the first alpha. Six inputs, so that the weakly shrunk model has noise enough to fit:
    its validation RMSE is 2.6% above the strong shrinkage's."""
    x = rng.normal(size=(N_BANDS, len(TIMES), 6)).astype(np.float32)
    y = rng.normal(size=(N_BANDS, len(TIMES), 4)).astype(np.float32)
    y[:, np.asarray(TIMES.year >= 2005)] += 3.0
    train, val = (_windows(a, b, x, y=y) for a, b in ((2001, 2004), (2005, 2006)))
    assert RidgeBaseline(alphas=(1e-3, 1e3)).fit(train, val).alpha == 1e3
