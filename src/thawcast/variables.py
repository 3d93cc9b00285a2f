"""The one canonical variable table: every unit conversion in thawcast goes through it.

Canonical units are the ones a soil scientist reads: degrees Celsius, mm/day of water,
daily-mean fluxes in W m-2 with ECMWF's sign convention (positive = into the surface),
volumetric soil water in m3 m-3.

ERA5-Land monthly means (CDS ``reanalysis-era5-land-monthly-means``) store
accumulations as amounts *per day*: precipitation in metres of water per day,
radiation and turbulent fluxes in J m-2 per day (so divide by 86400 s for W m-2).
CMIP5 (CMOR) stores fluxes in SI rates: kg m-2 s-1 for precipitation (x 86400 for
mm/day) and W m-2 with turbulent fluxes ``hfls``/``hfss`` positive *upward* (so the
sign flips to match ECMWF).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from thawcast.errors import DataError

if TYPE_CHECKING:  # the table is pure data: importing it (as the config does) loads no xarray
    import xarray as xr

SECONDS_PER_DAY = 86400.0
KELVIN = 273.15
#: Standard gravity (m s-2): ERA5's geopotential divided by it is the surface height.
GRAVITY = 9.80665


@dataclass(frozen=True)
class Conversion:
    """``canonical = raw * scale + offset``, valid for raw data in any of ``units``."""

    units: tuple[str, ...]
    scale: float = 1.0
    offset: float = 0.0

    def apply(self, values):
        return values * self.scale + self.offset if (self.scale, self.offset) != (1.0, 0.0) else values


@dataclass(frozen=True)
class Variable:
    """One physical quantity and how to get it from each source.

    Attributes
    ----------
    name
        Canonical name used in every derived table.
    long_name, unit
        Human name and canonical unit.
    valid_range
        Physically possible (min, max) in the canonical unit; values outside are errors.
    era5, cmip5
        Source short names (``None`` when the source lacks it).
    from_era5, from_cmip5
        Conversions from each source's units.
    role
        ``feature``, ``target``, ``cmip_only`` (a CMIP quantity with no direct ERA5 twin) or ``aux`` (read
        to derive a feature, then dropped: ERA5-Land snow density gives the snow depth).
    optional
        A source may lack it (snow: many CMIP5 models publish no ``snd``, ERA5-Land downloads often
        leave snow out). Readers then return the other variables; a stage that is asked for an absent
        optional feature says which file variables it needs (:func:`thawcast.prep.features.require`).
    bc_kind
        How bias correction treats it: ``+`` additive (temperatures, radiation, fluxes) or
        ``*`` multiplicative (precipitation, snowfall, soil water: positive amounts).
    """

    name: str
    long_name: str
    unit: str
    valid_range: tuple[float, float]
    role: str
    era5: str | None = None
    from_era5: Conversion | None = None
    cmip5: str | None = None
    from_cmip5: Conversion | None = None
    cmip5_table: str = "Amon"
    bc_kind: str = "+"
    optional: bool = False


_K = ("K", "kelvin", "Kelvin")
_ERA_M = ("m", "m of water equivalent", "m w.e.", "m day**-1", "m/day")
_ERA_J = ("J m**-2", "J m-2", "J/m2", "J m**-2 day**-1")
_W = ("W m-2", "W m**-2", "W/m2", "W m^-2")
_FLUX = ("kg m-2 s-1", "kg m**-2 s**-1", "kg/m2/s")
_VOL = ("m**3 m**-3", "m3 m-3", "m3/m3", "1")

_TEMP_ERA = Conversion(_K, 1.0, -KELVIN)
_TEMP_CMIP = Conversion(_K, 1.0, -KELVIN)
_PREC_ERA = Conversion(_ERA_M, 1000.0)
_PREC_CMIP = Conversion(_FLUX, SECONDS_PER_DAY)
_RAD_ERA = Conversion(_ERA_J, 1.0 / SECONDS_PER_DAY)
_RAD_CMIP = Conversion(_W)
_TURB_CMIP = Conversion(_W, -1.0)  # CMIP positive up -> ECMWF positive down
_KG_M2 = ("kg m-2", "kg m**-2", "kg/m2")

VARIABLES: dict[str, Variable] = {
    v.name: v
    for v in [
        Variable("t_air", "2 m air temperature", "degC", (-75.0, 45.0), "feature",
                 "t2m", _TEMP_ERA, "tas", _TEMP_CMIP),
        Variable("t_surface", "skin (surface) temperature", "degC", (-80.0, 60.0), "feature",
                 "skt", _TEMP_ERA, "ts", _TEMP_CMIP),
        Variable("p_total", "total precipitation", "mm day-1", (0.0, 250.0), "feature",
                 "tp", _PREC_ERA, "pr", _PREC_CMIP, bc_kind="*"),
        Variable("p_snow", "snowfall (water equivalent)", "mm day-1", (0.0, 250.0), "feature",
                 "sf", _PREC_ERA, "prsn", _PREC_CMIP, bc_kind="*"),
        Variable("r_thermal", "surface downwelling longwave radiation", "W m-2", (40.0, 550.0),
                 "feature", "strd", _RAD_ERA, "rlds", _RAD_CMIP),
        Variable("r_solar", "surface downwelling shortwave radiation", "W m-2", (0.0, 500.0),
                 "feature", "ssrd", _RAD_ERA, "rsds", _RAD_CMIP),
        Variable("q_latent", "surface latent heat flux (positive downward)", "W m-2",
                 (-400.0, 200.0), "feature", "slhf", _RAD_ERA, "hfls", _TURB_CMIP),
        Variable("q_sensible", "surface sensible heat flux (positive downward)", "W m-2",
                 (-400.0, 400.0), "feature", "sshf", _RAD_ERA, "hfss", _TURB_CMIP),
        *[
            Variable(f"w{i}", f"volumetric soil water, ERA5-Land layer {i}", "m3 m-3",
                     (0.0, 0.8), "feature", f"swvl{i}", Conversion(_VOL), bc_kind="*")
            for i in range(1, 5)
        ],
        # CMIP5 mrsos is the water mass in the upper 10 cm: kg m-2 / (1000 kg m-3 * 0.1 m).
        Variable("w_top_cmip", "volumetric soil water in the upper 10 cm (CMIP mrsos)", "m3 m-3",
                 (0.0, 0.8), "cmip_only", cmip5="mrsos",
                 from_cmip5=Conversion(_KG_M2, 0.01), cmip5_table="Lmon"),
        # Snow (optional). ERA5-Land ``sd`` is the snow depth in metres of water equivalent (a monthly mean
        # state, not a per-day accumulation); CMIP5 ``snw`` (LImon) the snow amount in kg m-2 = mm w.e.
        # Corrected additively (then floored at 0): at melt-out a month's calibration quantiles are near 0 in
        # one source and not in the other, and QDM's ratios of near-zero quantiles ran to infinity.
        Variable("swe", "snow water equivalent", "mm", (0.0, 10000.0), "feature",
                 "sd", Conversion(("m of water equivalent", "m w.e.", "m"), 1000.0),
                 "snw", Conversion(_KG_M2), cmip5_table="LImon", optional=True),
        # The physical depth insulates the ground. ERA5-Land has no depth variable: the reader derives it per
        # cell as sd / rsn (see SNOW_DEPTH_FROM); CMIP5 ``snd`` (LImon) is the depth itself.
        Variable("snow_depth", "snow depth", "m", (0.0, 40.0), "feature",
                 cmip5="snd", from_cmip5=Conversion(("m",)), cmip5_table="LImon", optional=True),
        Variable("snow_density", "snow density", "kg m-3", (50.0, 700.0), "aux",
                 "rsn", Conversion(("kg m**-3", "kg m-3", "kg/m3")), optional=True),
        *[
            Variable(f"t_soil{i}", f"soil temperature, ERA5-Land layer {i}", "degC",
                     (-65.0, 45.0), "target", f"stl{i}", _TEMP_ERA)
            for i in range(1, 5)
        ],
    ]
}

#: ERA5-Land's invariant fields, which ECMWF serves in a file of their own (one time step, land and sea) beside the
#: monthly means; not among :data:`VARIABLES`, which the monthly readers read.
INVARIANTS: dict[str, Variable] = {
    v.name: v
    for v in [
        Variable("elevation_m", "surface height above sea level (ERA5-Land geopotential / g)", "m", (-450.0, 9000.0),
                 "invariant", "z", Conversion(("m**2 s**-2", "m2 s-2", "m^2 s^-2", "m2/s2"), 1.0 / GRAVITY)),
    ]
}

#: ERA5-Land soil layers: (top, bottom) in metres, and the mid-depths used for profiles.
ERA5_LAYERS_M: tuple[tuple[float, float], ...] = ((0.0, 0.07), (0.07, 0.28), (0.28, 1.0), (1.0, 2.89))
ERA5_LAYER_MID_M: tuple[float, ...] = tuple((a + b) / 2 for a, b in ERA5_LAYERS_M)

ERA5_FEATURES = tuple(v.name for v in VARIABLES.values() if v.role == "feature")
#: The features a source may lack (snow); every other feature is required.
OPTIONAL_FEATURES = tuple(n for n in ERA5_FEATURES if VARIABLES[n].optional)
#: ERA5-Land's snow depth (m) = ``swe`` (mm w.e. = kg m-2) / ``snow_density`` (kg m-3), per cell and month.
SNOW_DEPTH_FROM = ("swe", "snow_density")
TARGETS = tuple(v.name for v in VARIABLES.values() if v.role == "target")
ERA5_NAMES = {v.era5: v.name for v in VARIABLES.values() if v.era5}
CMIP5_NAMES = {v.cmip5: v.name for v in VARIABLES.values() if v.cmip5}


def by_source_name(source: str, short_name: str) -> Variable:
    """Look up the canonical variable for an ``era5`` or ``cmip5`` short name."""
    if source == "era5":
        invariant = {v.era5: v for v in INVARIANTS.values()}
        if short_name in invariant:
            return invariant[short_name]
    table = ERA5_NAMES if source == "era5" else CMIP5_NAMES
    if short_name not in table:
        raise KeyError(f"no {source} variable '{short_name}'; known: {sorted(table)}")
    return VARIABLES[table[short_name]]


def _normalise_unit(u: str) -> str:
    return " ".join(str(u).replace("**", "^").split()).lower()


def to_canonical(da: xr.DataArray, source: str, short_name: str, path=None) -> xr.DataArray:
    """Convert a source variable to its canonical unit, checking its ``units`` attribute.

    Raises
    ------
    DataError
        If the units attribute is missing or not one the source is known to use
        (e.g. ``degC`` where ERA5 delivers ``K``).
    """
    var = by_source_name(source, short_name)
    conv = var.from_era5 if source == "era5" else var.from_cmip5
    units = da.attrs.get("units")
    if units is None:
        raise DataError(path, f"variable '{short_name}' has no 'units' attribute; expected {conv.units[0]!r}")
    accepted = {_normalise_unit(u) for u in conv.units}
    if _normalise_unit(units) not in accepted:
        raise DataError(
            path,
            f"variable '{short_name}' has units {units!r}; expected {conv.units[0]!r}"
            f" ({source} convention for {var.long_name})",
        )
    out = conv.apply(da)
    out.name = var.name
    out.attrs = {"units": var.unit, "long_name": var.long_name, f"{source}_name": short_name}
    return out


def from_canonical(values, source: str, short_name: str):
    """Inverse of :func:`to_canonical` on plain arrays: canonical unit -> the source's unit.

    Returns the converted values and the source's unit string.
    """
    var = by_source_name(source, short_name)
    conv = var.from_era5 if source == "era5" else var.from_cmip5
    return (values - conv.offset) / conv.scale, conv.units[0]
