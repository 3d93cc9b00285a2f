"""Monthly surface climate of the synthetic Alaska, in canonical units.

The same generator serves as "truth" for ERA5-Land and, with its own weather noise,
model biases and scenario-dependent warming, as a CMIP5-like model. Ingredients:

* air temperature: a latitudinal/continental mean and seasonal amplitude (colder and
  more seasonal to the north and in the interior), a warming trend amplified in winter,
  and large-scale monthly and interannual anomalies; where a relief is given, a lapse rate
  with the height above the row's mean (:mod:`thawcast.ingest.synthetic.relief`) that is the
  free atmosphere's in July and none in January (winter inversions);
* shortwave: daily top-of-atmosphere insolation from latitude and day of year (averaged
  over each month) times a cloud transmissivity;
* longwave: ``eps * sigma * T^4`` with a cloud-dependent emissivity;
* precipitation: wet south coast to dry North Slope, late-summer maximum, more on ranges
  (orographic), gamma noise; snowfall as the part falling below about 0 C;
* turbulent fluxes (ECMWF sign: positive downward) driven by radiation and thaw state;
* volumetric soil water in the four ERA5-Land layers with a snow-melt pulse that lags
  with depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from thawcast.ingest.synthetic.relief import Terrain

SOLAR_CONSTANT = 1361.0  # W m-2
STEFAN_BOLTZMANN = 5.670374e-8


@dataclass(frozen=True)
class ModelBias:
    """Systematic differences of a climate model from the truth (zero = truth)."""

    t_offset: float = 0.0  # K
    t_amplitude_factor: float = 1.0
    skin_offset: float = 0.0
    precip_factor: float = 1.0
    lw_offset: float = 0.0  # W m-2
    sw_factor: float = 1.0
    latent_factor: float = 1.0
    sensible_offset: float = 0.0
    moisture_factor: float = 1.0


#: Biases of the synthetic IPSL-CM5A-MR: cold and too seasonal, too wet, too little
#: longwave / too much shortwave - the kinds of errors CMIP5 models show over Alaska.
IPSL_LIKE_BIAS = ModelBias(
    t_offset=-1.8, t_amplitude_factor=1.15, skin_offset=-0.6, precip_factor=1.35, lw_offset=-12.0,
    sw_factor=1.08, latent_factor=1.2, sensible_offset=3.0, moisture_factor=1.1,
)

#: Global-mean surface warming (K, relative to 1986-2005) that the synthetic scenarios follow, at the
#: middle years of IPCC AR5 WG1 periods: 0.0 for 1986-2005 (the reference), 0.17 observed for 2003-2012
#: (AR5 SPM), 0.5 for 2016-2035 (the middle of AR5's likely 0.3-0.7, where the RCPs barely differ), and the
#: mean projections of AR5 SPM Table SPM.2 for 2046-2065 and 2081-2100. Between them a monotone cubic
#: (PCHIP), after 2090.5 its end slope: RCP2.6 levels off by mid-century, RCP8.5 accelerates.
GLOBAL_WARMING_YEARS = (1995.5, 2007.5, 2025.5, 2055.5, 2090.5)
GLOBAL_WARMING = {
    "rcp26": (0.0, 0.17, 0.5, 1.0, 1.0),
    "rcp45": (0.0, 0.17, 0.5, 1.4, 1.8),
    "rcp60": (0.0, 0.17, 0.5, 1.3, 2.2),
    "rcp85": (0.0, 0.17, 0.5, 2.0, 3.7),
}
#: Alaska warms about twice as fast as the global mean (Arctic amplification): an assumption of the
#: synthetic world, applied to the annual mean (winter warms more, see :func:`generate`).
ARCTIC_AMPLIFICATION = 2.0
#: First year of the CMIP5 RCP experiments.
RCP_START = 2006
#: Lapse rate (K per km of height) in mid-July, the free atmosphere's, and in mid-January: none, the surface
#: inversions of Alaska's winters offsetting it; a cosine of the season between (an assumption of the world).
LAPSE_K_PER_KM = {"july": 6.5, "january": 0.0}


def global_warming(dec_year: np.ndarray, scenario: str) -> np.ndarray:
    """Global-mean warming (K, relative to 1986-2005) of ``scenario`` at decimal years (see GLOBAL_WARMING)."""
    from scipy.interpolate import PchipInterpolator

    if scenario not in GLOBAL_WARMING:
        raise ValueError(f"no warming path for {scenario!r}; known: {sorted(GLOBAL_WARMING)}")
    x = np.asarray(dec_year, dtype=float)
    years = np.array(GLOBAL_WARMING_YEARS)
    path = PchipInterpolator(years, np.array(GLOBAL_WARMING[scenario]), extrapolate=False)
    slope = path.derivative()
    out = path(np.clip(x, years[0], years[-1]))
    out = np.where(x > years[-1], out + slope(years[-1]) * (x - years[-1]), out)
    return np.where(x < years[0], out + slope(years[0]) * (x - years[0]), out)


def month_table(times: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """Mid-month day of year and decimal year for month-start timestamps."""
    doy = (times.day_of_year + times.days_in_month / 2.0).to_numpy(dtype=float)
    dec = times.year.to_numpy(dtype=float) + (doy / 365.25)
    return doy, dec


def toa_insolation(lat_deg: np.ndarray, doy: np.ndarray) -> np.ndarray:
    """Daily-mean top-of-atmosphere insolation (W m-2); ``doy`` broadcasts against ``lat``."""
    phi = np.deg2rad(lat_deg)
    decl = np.deg2rad(23.44) * np.sin(2 * np.pi * (284 + doy) / 365.0)
    cos_h0 = np.clip(-np.tan(phi) * np.tan(decl), -1.0, 1.0)
    h0 = np.arccos(cos_h0)
    dist = 1 + 0.033 * np.cos(2 * np.pi * doy / 365.0)
    return SOLAR_CONSTANT / np.pi * dist * (h0 * np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.sin(h0))


def monthly_insolation(lat_deg: np.ndarray, times: pd.DatetimeIndex) -> np.ndarray:
    """Month-mean TOA insolation [time, *lat.shape] from daily values."""
    lat = np.asarray(lat_deg, dtype=float)
    out = np.empty((len(times),) + lat.shape)
    for i, t in enumerate(times):
        days = (t.day_of_year + np.arange(t.days_in_month)).reshape((-1,) + (1,) * lat.ndim)
        out[i] = toa_insolation(lat[None], days).mean(0)
    return out


def warming(dec_year: np.ndarray, hist_rate: float, scenario: str | None = None,
            since: float = RCP_START) -> np.ndarray:
    """Regional trend anomaly (K, relative to 2000), annual mean.

    ``hist_rate`` K per decade until ``since``; a ``scenario`` then follows its global path times
    :data:`ARCTIC_AMPLIFICATION`, continuing from the value reached at ``since``.
    """
    dec = np.asarray(dec_year, dtype=float)
    base = hist_rate * (dec - 2000.0) / 10.0
    if scenario is None:
        return base
    after = (hist_rate * (since - 2000.0) / 10.0
             + ARCTIC_AMPLIFICATION * (global_warming(dec, scenario) - global_warming(np.array(since), scenario)))
    return np.where(dec < since, base, after)


def generate(
    lat2d: np.ndarray,
    lon2d: np.ndarray,
    times: pd.DatetimeIndex,
    rng: np.random.Generator,
    hist_rate: float = 0.5,
    scenario: str | None = None,
    since: float = RCP_START,
    bias: ModelBias = ModelBias(),
    terrain: Terrain | None = None,
) -> dict[str, np.ndarray]:
    """Monthly fields [time, lat, lon] in canonical units (see :mod:`thawcast.variables`).

    Parameters
    ----------
    lat2d, lon2d
        Cell-centre coordinates (degrees north / east, -180..180).
    times
        Month starts.
    rng
        Random generator: the weather noise (a climate model gets its own stream).
    hist_rate, scenario, since
        Warming (K/decade) until ``since`` and, for a scenario (an RCP), its path after (:func:`warming`).
    bias
        Systematic model errors (zero for the truth).
    terrain
        What the relief does at each cell (:class:`~thawcast.ingest.synthetic.relief.Terrain`, shaped like
        ``lat2d``): its height above the height the smooth fields stand for, on which the lapse rate acts, and its
        orographic precipitation factor. ``None``: no relief, as a GCM's coarse grid sees it. The weather noise is
        the same with or without it.
    """
    nt = len(times)
    shape = (nt,) + lat2d.shape
    doy, dec = month_table(times)
    doy3 = doy[:, None, None]
    dlat = lat2d - 59.26
    interior = np.exp(-(((lon2d + 149.0) / 9.0) ** 2)) * np.exp(-(((lat2d - 64.5) / 3.5) ** 2))
    coast_south = np.exp(-np.clip(dlat, 0.0, None) / 1.2)

    season = np.cos(2 * np.pi * (doy3 - 200.0) / 365.0)  # +1 in mid July
    t_mean = 0.0 - 0.68 * dlat - 1.5 * interior
    amp = (9.5 + 0.35 * dlat + 5.0 * interior) * bias.t_amplitude_factor

    # Large-scale anomalies: a regional monthly anomaly with interannual memory, plus a
    # north-south gradient anomaly; bigger in winter.
    years = times.year.to_numpy()
    uy, yi = np.unique(years, return_inverse=True)
    annual = np.zeros(uy.size)
    for k in range(uy.size):
        annual[k] = (0.5 * annual[k - 1] if k else 0.0) + rng.normal(0.0, 0.7)
    winter = 1.0 - 0.5 * (season[:, 0, 0] + 1.0) / 2.0 * 1.2
    regional = annual[yi] + rng.normal(0.0, 1.6, nt) * winter
    gradient = rng.normal(0.0, 0.5, nt) * winter
    anom = regional[:, None, None] + gradient[:, None, None] * (lat2d - 65.0)[None] / 6.0
    trend = warming(dec, hist_rate, scenario, since)[:, None, None] * (1.0 + 0.4 * (-season))
    height = np.zeros(lat2d.shape) if terrain is None else np.asarray(terrain.height_km, dtype=float)
    july, january = LAPSE_K_PER_KM["july"], LAPSE_K_PER_KM["january"]
    lapse = (july + january) / 2 + (july - january) / 2 * season
    t_air = (t_mean + amp * season + anom + trend + bias.t_offset - lapse * height
             + rng.normal(0.0, 0.25, shape))

    t_skin = t_air + 0.25 + 1.25 * season + bias.skin_offset + rng.normal(0.0, 0.3, shape)

    cloud = np.clip(0.55 + 0.15 * coast_south + 0.08 * season + rng.normal(0.0, 0.06, shape), 0.1, 0.95)
    transmissivity = 0.75 - 0.45 * cloud
    r_solar = monthly_insolation(lat2d, times) * transmissivity * bias.sw_factor
    t_k = t_air + 273.15
    emissivity = 0.70 + 0.22 * cloud
    r_thermal = emissivity * STEFAN_BOLTZMANN * t_k**4 + bias.lw_offset

    p_mean = (0.55 + 2.6 * coast_south + 0.4 * interior) * (1.0 if terrain is None else terrain.wetness)
    wet = (1.0 + 0.55 * np.cos(2 * np.pi * (doy3 - 235.0) / 365.0)) * (1.0 + 0.06 * np.clip(trend, 0, None))
    p_total = p_mean * wet * rng.gamma(4.0, 0.25, shape) * bias.precip_factor
    snow_frac = 1.0 / (1.0 + np.exp((t_air - 0.5) / 1.5))
    p_snow = p_total * snow_frac

    thawed = 1.0 / (1.0 + np.exp(-t_air / 2.5))
    q_latent = -(2.0 + 0.22 * r_solar * thawed) * bias.latent_factor + rng.normal(0.0, 2.0, shape)
    q_sensible = -0.12 * r_solar + 6.0 * (1 - thawed) + bias.sensible_offset + rng.normal(0.0, 2.0, shape)

    theta0 = 0.27 + 0.05 * np.sin(lon2d / 3.0) * np.cos(lat2d / 2.0) + 0.04 * (1 - coast_south)
    fields = {
        "t_air": t_air, "t_surface": t_skin, "p_total": p_total, "p_snow": p_snow,
        "r_thermal": r_thermal, "r_solar": r_solar, "q_latent": q_latent, "q_sensible": q_sensible,
    }
    noise_w = rng.normal(0.0, 0.012, shape)
    for i in range(1, 5):
        pulse = np.exp(-(((doy3 - (140.0 + 25.0 * i)) / (35.0 + 10.0 * i)) ** 2))
        w = theta0 + 0.02 * i + (0.09 / i) * pulse - 0.03 / i + noise_w / i
        fields[f"w{i}"] = np.clip(w * bias.moisture_factor, 0.05, 0.6)
    fields["w_top_cmip"] = fields["w1"]
    return {k: np.asarray(v, dtype=np.float64) for k, v in fields.items()}
