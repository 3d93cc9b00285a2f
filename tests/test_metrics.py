"""Skill scores: known answers, NaN masking, grouping, bad input."""

import numpy as np
import pytest

from thawcast.analysis.metrics import fractional_reduction, mae, r2, rmse, scores, skill_table
from thawcast.errors import DataError


def test_known_answers():
    obs, sim = np.array([0.0, 0.0, 0.0, 0.0]), np.array([3.0, -4.0, 3.0, -4.0])
    assert rmse(obs, sim) == pytest.approx(np.sqrt(12.5))
    assert mae(obs, sim) == pytest.approx(3.5)
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert r2(y, y) == 1.0
    assert r2(y, np.full(4, y.mean())) == pytest.approx(0.0)  # the observed mean scores 0
    assert r2(y, y[::-1]) == pytest.approx(1 - 20 / 5)  # worse than the mean: negative
    assert np.isnan(r2(np.ones(3), np.arange(3.0)))  # constant observations


def test_nan_pairs_are_ignored_and_all_nan_is_an_error():
    obs, sim = np.array([1.0, np.nan, 3.0]), np.array([2.0, 100.0, np.nan])
    assert rmse(obs, sim) == pytest.approx(1.0)
    with pytest.raises(DataError, match="no finite"):
        rmse(np.array([np.nan]), np.array([1.0]))
    with pytest.raises(DataError, match="shapes differ"):
        mae(np.zeros(3), np.zeros(4))


def test_fractional_reduction():
    assert fractional_reduction(0.5, 1.0) == pytest.approx(0.5)
    assert fractional_reduction(2.0, 1.0) == pytest.approx(-1.0)
    with pytest.raises(DataError):
        fractional_reduction(1.0, 0.0)


def test_skill_table_groups_by_band_and_layer(rng):
    n = 40
    band = np.repeat([0, 1], n // 2)
    obs = rng.normal(size=(n, 2))
    err = np.zeros((n, 2))
    err[band == 1, 1] = 2.0  # only band 1, layer b is off, by exactly 2
    t = skill_table(obs, obs + err, band, ("a", "b"), ["north", "south"])
    assert t["per_band_layer"]["north"]["b"]["rmse"] == 0.0
    assert t["per_band_layer"]["south"]["b"]["rmse"] == pytest.approx(2.0)
    assert t["per_band_layer"]["south"]["a"]["mae"] == 0.0
    assert t["per_layer"]["b"]["rmse"] == pytest.approx(np.sqrt(2.0))
    assert t["per_band"]["south"]["rmse"] == pytest.approx(np.sqrt(2.0))
    assert t["overall"] == scores(obs, obs + err)
    with pytest.raises(DataError, match="expected"):
        skill_table(obs, obs, band, ("a", "b", "c"))
    with pytest.raises(DataError, match="band index"):
        skill_table(obs, obs, band[:-1], ("a", "b"))
