"""Skill by kind of ground (analysis/cell_ground.py): which cells count as perennial snow and high ground, pooled
RMSE per class and side of the hold-out, and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from thawcast.analysis.cell_ground import (
    HIGH_GROUND_M,
    PERENNIAL_SWE_MM,
    ground_classes,
    ground_scores,
)
from thawcast.errors import DataError

TIMES = pd.date_range("2001-01-01", "2004-12-01", freq="MS")
AUGUST = TIMES.month == 8
HIGH = "high ground (>= 2000 m)"


def _snow(n: int) -> np.ndarray:
    """Snow on every cell in winter, none in August."""
    swe = np.where(TIMES.month.isin([11, 12, 1, 2, 3, 4]), 200.0, 0.0)
    return np.tile(swe, (n, 1))


def test_perennial_snow_needs_every_training_august_and_high_ground_takes_the_rest_above_2000_m():
    swe = _snow(5)
    swe[0, AUGUST] = 5000.0  # a glacier
    swe[1, AUGUST & (TIMES.year < 2003)] = 5000.0  # lost its summer snow in 2003
    swe[2, AUGUST] = PERENNIAL_SWE_MM  # at the threshold: not above it
    swe[3, AUGUST & (TIMES.year > 2002)] = 50.0  # snow only in the Augusts after the training years
    height = np.array([2500.0, 2100.0, HIGH_GROUND_M, 1999.0, 100.0])
    classes = ground_classes(swe, TIMES, (2001, 2003), height, 5)
    assert list(classes) == ["perennial snow", HIGH, "the rest"]
    assert np.flatnonzero(classes["perennial snow"]).tolist() == [0]
    assert np.flatnonzero(classes[HIGH]).tolist() == [1, 2]
    assert np.flatnonzero(classes["the rest"]).tolist() == [3, 4]
    # training years 2001-2002 only: cell 1 kept its snow in both, cell 3 never did
    early = ground_classes(swe, TIMES, (2001, 2002), height, 5)
    assert np.flatnonzero(early["perennial snow"]).tolist() == [0, 1]
    # a gap in one August is no evidence of snow
    swe[0, np.flatnonzero(AUGUST)[1]] = np.nan
    assert not ground_classes(swe, TIMES, (2001, 2003), height, 5)["perennial snow"][0]


def test_a_class_without_its_input_is_left_out_and_the_rest_take_its_cells():
    swe = _snow(3)
    swe[0, AUGUST] = 5000.0
    height = np.array([3000.0, 2500.0, 10.0])
    no_height = ground_classes(swe, TIMES, (2001, 2004), None, 3)
    assert list(no_height) == ["perennial snow", "the rest"]
    assert no_height["the rest"].tolist() == [False, True, True]
    no_snow = ground_classes(None, TIMES, (2001, 2004), height, 3)
    assert list(no_snow) == [HIGH, "the rest"]
    assert no_snow[HIGH].tolist() == [True, True, False]
    assert ground_classes(None, TIMES, (2001, 2004), None, 3)["the rest"].all()


def test_pooled_rmse_per_class_and_side():
    # four cells, two windows each, two layers; cell 1 and 3 held out
    cell = np.repeat(np.arange(4), 2)
    obs = np.zeros((8, 2))
    pred = np.zeros((8, 2))
    pred[cell == 0] = 1.0  # errors of 1 on cell 0
    pred[cell == 1] = 3.0  # 3 on cell 1
    pred[cell == 2] = np.array([[0.0, 2.0], [0.0, 2.0]])  # 2 in one layer of cell 2
    classes = {"snow": np.array([True, True, False, False]), "the rest": np.array([False, False, True, True])}
    held = np.array([False, True, False, True])
    table = ground_scores(obs, {"net": pred, "zero": obs}, cell, held, classes)
    assert table["snow"]["cells"] == {"seen": 1, "held_out": 1}
    assert table["snow"]["rmse"]["seen"]["net"] == pytest.approx(1.0)
    assert table["snow"]["rmse"]["held_out"]["net"] == pytest.approx(3.0)
    assert table["the rest"]["rmse"]["seen"]["net"] == pytest.approx(np.sqrt(2.0))  # (0 + 4) / 2 values
    assert table["the rest"]["rmse"]["held_out"]["net"] == pytest.approx(0.0)
    assert table["snow"]["rmse"]["seen"]["zero"] == 0.0
    # a side without a cell of the class has no score
    empty = ground_scores(obs, {"net": pred}, cell, np.zeros(4, bool), classes)
    assert empty["snow"]["cells"]["held_out"] == 0 and empty["snow"]["rmse"]["held_out"]["net"] is None


def test_snow_or_heights_for_other_cells_and_training_years_without_august_are_refused():
    with pytest.raises(DataError, match="snow of shape"):
        ground_classes(_snow(3), TIMES, (2001, 2004), None, 4)
    with pytest.raises(DataError, match="heights for 4 cells"):
        ground_classes(None, TIMES, (2001, 2004), np.zeros(3), 4)
    with pytest.raises(DataError, match="no August in the training years 2010-2012"):
        ground_classes(_snow(3), TIMES, (2010, 2012), None, 3)
