"""Hold the synthetic Alaska to physics."""

import numpy as np
import pytest
import xarray as xr

from thawcast.ingest.synthetic.climate import monthly_insolation, toa_insolation
from thawcast.ingest.synthetic.soil import SoilParams, node_grid, simulate

UNIFORM = SoilParams(k_frozen=1.5, k_thawed=1.5, c_frozen=2.0e6, c_thawed=2.0e6, surface_resistance=1e-9)


def _periodic_run(params, years=10, dt=1.0, mean=-8.0, amp=10.0):
    steps = int(365 * years / dt)
    t = np.arange(steps) * dt
    ts = (mean + amp * np.sin(2 * np.pi * t / 365.0))[:, None]
    temps, _, z, _ = simulate(ts, np.zeros_like(ts), ts, dt, np.array([0.0]), params,
                              t_init=np.array([mean]), latent=False, snow=False)
    return t, temps[:, 0, :], z


def test_damping_and_lag_follow_exp_minus_z_over_d():
    """Periodic surface temperature: A(z) = A0 exp(-z/d), lag = z/d radians, d = sqrt(2 kappa / omega)."""
    t, temps, z = _periodic_run(UNIFORM)
    last = temps[-365 * 3:]
    tt = t[-365 * 3:]
    omega = 2 * np.pi / 365.0
    d = np.sqrt(2 * (1.5 / 2.0e6) / (omega / 86400.0))  # metres
    sel = (z > 0.1) & (z < 3.0)
    # amplitude and phase by projecting on the annual harmonic
    s, c = np.sin(omega * tt), np.cos(omega * tt)
    a = 2 * (last * s[:, None]).mean(0)
    b = 2 * (last * c[:, None]).mean(0)
    amp = np.hypot(a, b)[sel]
    phase = np.unwrap(np.arctan2(b, a))[sel]
    d_amp = -1.0 / np.polyfit(z[sel], np.log(amp), 1)[0]
    d_lag = 1.0 / np.polyfit(z[sel], -phase, 1)[0]
    assert d_amp == pytest.approx(d, rel=0.12)
    assert d_lag == pytest.approx(d, rel=0.12)


def test_zero_curtain_holds_soil_near_freezing():
    """With latent heat the 50 cm soil spends far longer within 0.5 K of 0 C."""
    steps = 365 * 6
    t = np.arange(steps, dtype=float)
    ts = (-2.0 + 12.0 * np.sin(2 * np.pi * t / 365.0))[:, None]
    params = SoilParams(surface_resistance=1e-9)
    _, z = node_grid(params)
    k = np.argmin(np.abs(z - 0.5))
    runs = {}
    for latent in (False, True):
        temps, *_ = simulate(ts, np.zeros_like(ts), ts, 1.0, np.array([0.35]), params,
                               t_init=np.array([-2.0]), latent=latent, snow=False)
        runs[latent] = np.mean(np.abs(temps[-365 * 2:, 0, k]) < 0.5)
    assert runs[True] > 2.5 * runs[False]
    assert runs[True] > 0.1


def test_snow_insulates():
    """Same air temperature; snowfall keeps the winter soil warmer, the more so the more snow falls (the
    default world's 1.5 mm/day gives about +17 K in the coldest months)."""
    steps = 365 * 6
    t = np.arange(steps, dtype=float)
    air = (-8.0 + 15.0 * np.sin(2 * np.pi * (t - 100) / 365.0))[:, None]
    winter = (np.sin(2 * np.pi * (t - 100) / 365.0) < -0.7)[-365 * 2:]

    def winter_soil(rate, snow=True):
        temps, *_ = simulate(air, np.where(air < 0, rate, 0.0), air, 1.0, np.array([0.3]), SoilParams(),
                                     t_init=np.array([-5.0]), snow=snow)
        return temps[-365 * 2:, 0, 2][winter].mean()

    bare = winter_soil(1.5, snow=False)
    effect = [winter_soil(rate) - bare for rate in (0.5, 1.5, 3.0)]
    assert 5.0 < effect[0] < effect[1] < effect[2] and effect[1] > 15.0, effect
    assert bare + effect[2] < 0.0  # insulated, still frozen: snow cannot carry the soil past the freezing point


def test_a_snow_pack_adds_its_resistance_depth_over_k_snow():
    """Steady state under constant cold air with a snow pack that neither grows nor melts: heat from below
    (the geothermal flux G) crosses the pack's resistance depth / k_snow, so every node is warmer by exactly
    G * depth / k_snow than without snow, with depth = SWE / snow density."""
    params = SoilParams()
    steps, dt = 4000, 30.0
    air = np.full((steps, 1), -10.0)
    snowfall = np.zeros((steps, 1))
    snowfall[0] = 200.0 / dt  # 200 mm w.e. on the first step, then none
    runs = {snow: simulate(air, snowfall, air, dt, np.array([0.0]), params, t_init=np.array([-10.0]),
                           latent=False, snow=snow) for snow in (False, True)}
    depth = 200.0 / params.snow_density
    assert runs[True][1][-1, 0] == pytest.approx(depth, rel=1e-6)
    assert runs[False][1][-1, 0] == 0.0
    warming = runs[True][0][-1, 0] - runs[False][0][-1, 0]
    np.testing.assert_allclose(warming, params.geothermal_flux * depth / params.k_snow, rtol=1e-4)


def test_insolation_known_values():
    # Polar night at 71 N in late December, midnight sun at 71 N in June.
    assert toa_insolation(np.array(71.0), np.array(355.0)) == pytest.approx(0.0, abs=1e-6)
    # Polar day (sun never sets): Q = S0 * dist * sin(lat) * sin(declination).
    decl = np.deg2rad(23.44) * np.sin(2 * np.pi * (284 + 172) / 365.0)
    polar_day = 1361.0 * (1 + 0.033 * np.cos(2 * np.pi * 172 / 365.0)) * np.sin(np.deg2rad(71.0)) * np.sin(decl)
    assert toa_insolation(np.array(71.0), np.array(172.0)) == pytest.approx(polar_day, rel=1e-9)
    # Equinox at the equator: S0/pi (1 + 0.033 cos(2 pi doy/365)) ~ 430-440 W m-2.
    assert 425 < float(toa_insolation(np.array(0.0), np.array(80.0))) < 445
    import pandas as pd

    m = monthly_insolation(np.array([60.0, 70.0]), pd.date_range("2001-01-01", periods=12, freq="MS"))
    assert m[0, 0] > m[0, 1]  # January: more sun at 60 N than at 70 N
    assert m[5].min() > 10 * m[11].max()


def test_synthetic_bands_are_physical(tiny_world):
    ds = xr.open_dataset(tiny_world / "bands" / "era5land_bands.nc")
    assert ds.attrs["thawcast_synthetic"] == "true" and "SYNTHETIC" in ds.attrs["comment"]
    soil1 = ds["t_soil1"].mean("time").values
    # Band ordering: colder to the north (layer-1 band means).
    assert np.all(np.diff(soil1) < 0)
    # Snow-covered winters: soil warmer than air in every band (DJF).
    djf = ds.time.dt.month.isin([12, 1, 2])
    assert np.all(ds["t_soil1"].sel(time=djf).mean("time") > ds["t_air"].sel(time=djf).mean("time") + 3)
    # Deep layers are damped: smaller seasonal range than layer 1.
    rng = ds.groupby("time.month").mean().max("month") - ds.groupby("time.month").mean().min("month")
    assert np.all(rng["t_soil4"] < 0.5 * rng["t_soil1"])


@pytest.mark.slow
def test_default_world_calibrated_to_the_paper(tmp_path):
    """Full default config: layer-1 band means about +3 C (band 0) to -2.3 C (band 5)."""
    from thawcast.config import parse_config
    from thawcast.ingest.synthetic.world import simulate_era5land
    from thawcast.prep.aggregate import band_means
    from thawcast.prep.geometry import BandGeometry

    cfg = parse_config({})
    ds = simulate_era5land(cfg, np.random.default_rng(np.random.SeedSequence(cfg.seed).spawn(3)[0]))
    m = band_means(ds[["t_soil1"]], BandGeometry.from_config(cfg.study_area))["t_soil1"].mean("time").values
    assert m[0] == pytest.approx(3.0, abs=1.0)
    assert m[5] == pytest.approx(-2.3, abs=1.0)


def test_the_tridiagonal_solver_matches_a_dense_solve():
    from thawcast.ingest.synthetic.soil import _solve_tridiagonal

    rng = np.random.default_rng(3)
    for _ in range(5):
        n = 36
        a, c = -rng.random(n), -rng.random(n)
        b = 2.5 + rng.random(n)  # diagonally dominant, like the heat equation's matrix
        d = rng.normal(size=n)
        x, cp, dp = np.empty(n), np.empty(n), np.empty(n)
        _solve_tridiagonal(a, b, c, d, cp, dp, x)
        dense = np.diag(b) + np.diag(a[1:], -1) + np.diag(c[:-1], 1)
        np.testing.assert_allclose(x, np.linalg.solve(dense, d), rtol=1e-12, atol=1e-12)


def test_the_soil_model_runs_on_numba_s_own_threads_beside_torch():
    """In a fresh interpreter with torch loaded first, as in a test run or a stage that trains: the compiled
    soil model picks numba's workqueue layer (no second OpenMP runtime beside torch's, see the soil module),
    and gives the same bits on 1 thread as on 2."""
    import os
    import subprocess
    import sys

    code = (
        "import torch, numpy as np, numba\n"
        "torch.ones(64, 64) @ torch.ones(64, 64)\n"
        "from thawcast.ingest.synthetic.soil import simulate\n"
        "ts = (-8 + 10 * np.sin(np.arange(730) * 2 * np.pi / 365))[:, None] * np.ones((1, 6))\n"
        "runs = []\n"
        "for n in (1, 2):\n"
        "    numba.set_num_threads(n)\n"
        "    runs.append(simulate(ts, np.full_like(ts, 0.5), ts, 1.0, np.full(6, 0.3))[0])\n"
        "print(numba.threading_layer(), bool(np.array_equal(runs[0], runs[1])))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600,
                         check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["workqueue", "True"]


def test_processes_compile_the_soil_kernels_one_at_a_time_and_never_again_after():
    """Processes that compiled the parallel kernels into numba's cache at the same time could leave a cache a
    later process crashed on (a pytest worker died so on a fresh clone). A process waits for the lock another
    holds before it compiles or loads them; the first call fixes the only argument types any call uses."""
    import subprocess
    import sys
    import time

    from filelock import FileLock

    from thawcast.ingest.synthetic.soil import compile_lock_path

    simulate(np.zeros((2, 1)), np.zeros((2, 1)), np.zeros((2, 1)), 1.0, 0.0)  # the cache is warm (~1 s to load)
    code = (
        "import sys, numpy as np\n"
        "from thawcast.ingest.synthetic import soil\n"
        "print('imported', flush=True)\n"
        "ts = (-8 + 10 * np.sin(np.arange(730) * 2 * np.pi / 365))[:, None] * np.ones((1, 3))\n"
        "p = soil.SoilParams()\n"
        "obs = soil.layer_matrix(soil.node_grid(p)[0])\n"
        "run = soil.simulate(ts, np.full_like(ts, 0.5), ts, 1.0, np.full(3, 0.3), p, t_init=np.zeros(3),\n"
        "                    observe=obs, periods=np.arange(730) // 30)\n"
        "soil.simulate(ts, ts, ts, 1.0, 0.2, p, latent=False, snow=False, state=run.state)\n"
        "soil.snow_pack(ts, ts, 1.0, np.arange(730) // 30, swe=np.ones(3))\n"
        "print(len(soil._run_columns.signatures), len(soil._run_snow.signatures))\n"
    )
    with FileLock(compile_lock_path()):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        assert proc.stdout.readline().strip() == "imported", proc.stderr.read()[-2000:]
        time.sleep(4)
        assert proc.poll() is None, "the process ran the soil model while another held the compile lock"
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert out.split() == ["1", "1"]  # every call above ran on the kernels compiled for the first
