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


def test_missing_values_given_as_none_are_skipped():
    """Scores from JSON or pandas object columns: ``None`` is a missing value, like NaN, on either side."""
    assert rmse([1.0, None, 3.0], [2.0, 5.0, 3.0]) == pytest.approx(np.sqrt(0.5))
    assert mae([1.0, 2.0, 3.0], [2.0, None, 5.0]) == pytest.approx(1.5)


def test_error_messages_say_what_is_wrong():
    with pytest.raises(DataError, match=r"^no finite observed/simulated pairs to score$"):
        rmse(np.array([np.nan]), np.array([1.0]))
    with pytest.raises(DataError, match=r"^baseline RMSE must be positive, got 0.0$"):
        fractional_reduction(1.0, 0.0)
    with pytest.raises(DataError, match=r"^band index shape \(39,\) does not match 40 windows$"):
        skill_table(np.zeros((40, 2)), np.zeros((40, 2)), np.zeros(39, int), ("a", "b"))


def test_fractional_reduction_against_a_baseline_other_than_one():
    assert fractional_reduction(1.0, 4.0) == pytest.approx(0.75)  # a quarter of the baseline's error is left
    assert scores([0.0, 1.0], [0.0, 1.0]).keys() == {"rmse", "mae", "r2"}


def test_skill_table_default_band_names_follow_the_band_index():
    """Without names, band ``b`` is ``band<b>``, also when a band in between has no windows."""
    band = np.array([0, 0, 2, 2])
    obs = np.zeros((4, 1))
    sim = np.array([[1.0], [1.0], [3.0], [3.0]])
    t = skill_table(obs, sim, band, ("a",))
    assert list(t["per_band"]) == ["band0", "band2"]
    assert t["per_band"]["band2"]["rmse"] == 3.0 and t["per_band_layer"]["band0"]["a"]["mae"] == 1.0
