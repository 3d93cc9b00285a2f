import numpy as np
import pytest
import xarray as xr

from thawcast.errors import DataError
from thawcast.variables import VARIABLES, from_canonical, to_canonical


def _da(values, units):
    return xr.DataArray(np.asarray(values, dtype=float), dims="x", attrs={"units": units})


@pytest.mark.parametrize(
    "source, name, raw, units, expected",
    [
        ("era5", "t2m", 273.15, "K", 0.0),
        ("era5", "tp", 0.002, "m", 2.0),  # 2 mm of water per day
        ("era5", "strd", 86400.0 * 250, "J m**-2", 250.0),  # J m-2 per day -> W m-2
        ("era5", "slhf", -86400.0 * 30, "J m**-2", -30.0),  # ECMWF: negative = upward
        ("cmip5", "pr", 1.0 / 86400.0, "kg m-2 s-1", 1.0),
        ("cmip5", "hfls", 30.0, "W m-2", -30.0),  # CMIP positive up -> ECMWF positive down
        ("cmip5", "mrsos", 30.0, "kg m-2", 0.30),  # 30 kg in the top 10 cm
        ("cmip5", "tas", 250.0, "K", -23.15),
    ],
)
def test_known_conversions(source, name, raw, units, expected):
    out = to_canonical(_da([raw], units), source, name)
    assert float(out[0]) == pytest.approx(expected, rel=1e-9, abs=1e-9)
    back, unit = from_canonical(out.values, source, name)
    assert back[0] == pytest.approx(raw)
    assert unit == units


def test_wrong_units_are_named():
    with pytest.raises(DataError, match=r"units 'degC'; expected 'K'"):
        to_canonical(_da([1.0], "degC"), "era5", "t2m", "x.nc")
    with pytest.raises(DataError, match="no 'units' attribute"):
        to_canonical(xr.DataArray([1.0]), "cmip5", "tas", "y.nc")


def test_every_variable_has_a_source_and_a_range():
    for v in VARIABLES.values():
        assert v.era5 or v.cmip5
        lo, hi = v.valid_range
        assert lo < hi
