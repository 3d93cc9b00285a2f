"""The README's tables of results are the committed metrics: a quoted number that drifts from ``metrics/*.json``
fails here (at the precision the README prints). Tables measured in separate experiments say so in the README.
"""

from __future__ import annotations

import json

import pytest

from conftest import REPO
from thawcast.variables import TARGETS

README = (REPO / "README.md").read_text()
METRICS = REPO / "metrics"
#: README row names of the baselines -> their keys in ``metrics/evaluation.json``.
NAMES = {"seasonal persistence": "seasonal_persistence", "ridge (flat window)": "ridge"}


def table(header: str) -> list[list[str]]:
    """The body rows of the README table whose header row starts with ``header`` (cells stripped)."""
    lines = README.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(header)]
    assert len(starts) == 1, f"README has {len(starts)} tables headed {header!r}"
    rows = []
    for line in lines[starts[0] + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    assert rows, f"README table {header!r} has no rows"
    return rows


def metrics(name: str) -> dict:
    return json.loads((METRICS / name).read_text())


def pm(stats: dict) -> str:
    return f"{stats['mean']:.3f} +- {stats['std']:.3f}"


def test_the_evaluation_table_is_the_committed_evaluation():
    ev = metrics("evaluation.json")
    rows = table("| model | test RMSE (degC) |")
    assert sorted(NAMES.get(r[0], r[0]) for r in rows) == sorted(ev["models"])
    rmses = []
    for row in rows:
        name = NAMES.get(row[0], row[0])
        overall = ev["models"][name]["overall"]
        assert row[1:4] == [f"{overall[k]:.3f}" for k in ("rmse", "mae", "r2")], name
        reduction = ev["rmse_reduction"].get(name)
        expected = ["", ""] if reduction is None else [f"{reduction[b]:+.0%}" for b in ("climatology",
                                                                                        "seasonal_persistence")]
        assert row[4:6] == expected, name
        rmses.append((name in ev["rmse_reduction"], overall["rmse"]))
    # networks first, each group from best to worst, as the README says
    assert rmses == sorted(rmses, key=lambda t: (not t[0], t[1]))


def test_the_tuning_table_is_the_committed_studies_and_seed_42_runs():
    tuning, spread = metrics("tuning.json"), metrics("seed_spread.json")
    rows = table("| architecture | validation RMSE, defaults -> tuned |")
    assert [r[0] for r in rows] == list(tuning)
    first = spread["seeds"].index(42)
    for arch, val, test, trials in rows:
        study, runs = tuning[arch], spread["architectures"][arch]
        assert val == f"{study['default_value']:.3f} -> {study['best_value']:.3f}", arch
        assert test == (f"{runs['defaults']['test_rmse']['values'][first]:.3f} ->"
                        f" {runs['tuned']['test_rmse']['values'][first]:.3f}"), arch
        assert trials == f"{study['trials_complete']} / {study['trials_pruned']}", arch


def test_the_seed_spread_table_is_the_committed_seed_spread():
    spread = metrics("seed_spread.json")
    rows = table("| architecture | defaults | tuned | tuned - defaults (+- SE) |")
    assert [r[0] for r in rows] == list(spread["architectures"])
    for arch, defaults, tuned, effect in rows:
        runs = spread["architectures"][arch]
        assert defaults == pm(runs["defaults"]["test_rmse"]) and tuned == pm(runs["tuned"]["test_rmse"]), arch
        e = runs["tuning_effect"]
        text = f"{e['tuned_minus_defaults_test_rmse']:+.3f} +- {e['standard_error']:.3f}"
        assert effect == (f"**{text}**" if e["beyond_two_standard_errors"] else text), arch


def _std_range(s: dict) -> tuple[float, float]:
    stds = [r[k]["test_rmse"]["std"] for r in s["architectures"].values() for k in ("defaults", "tuned")]
    return min(stds), max(stds)


@pytest.mark.parametrize("phrase, values", [
    ("median seed std of one configuration's test RMSE is {:.3f} degC (largest: {:.3f})",
     lambda s: (s["summary"]["median_test_std"], s["summary"]["max_test_std"])),
    ("the test RMSE of one configuration moves by {:.2f}-{:.2f} degC (std)", _std_range),
])
def test_seed_spread_numbers_in_the_prose(phrase, values):
    assert phrase.format(*values(metrics("seed_spread.json"))) in " ".join(README.split())


def test_the_tuning_prose_is_the_committed_studies():
    tuning, spread = metrics("tuning.json"), metrics("seed_spread.json")
    gains = [1 - s["best_value"] / s["default_value"] for s in tuning.values()]
    first = spread["seeds"].index(42)
    worse = [a for a, r in spread["architectures"].items()
             if r["tuned"]["test_rmse"]["values"][first] > r["defaults"]["test_rmse"]["values"][first]]
    words = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}
    text = " ".join(README.split())
    assert all(g > 0 for g in gains) and f"(by {min(gains):.0%}-{max(gains):.0%})".replace("%-", "-") in text
    assert f"got worse for {words.get(len(worse), 'none')} of five" in text


def _quoted(text: str, value: float) -> bool:
    """Whether ``text`` (e.g. ``-0.160``, ``89%``) is ``value`` rounded to the precision it is printed with."""
    if text.endswith("%"):
        return round(value * 100) == int(text[:-1])
    decimals = len(text.split(".")[1]) if "." in text else 0
    return abs(float(text) - value) <= 0.5 * 10 ** -decimals + 1e-12


def test_the_bias_correction_spread_table_and_its_summary_are_the_committed_metrics():
    spread = metrics("scenario_spread.json")["spread"]
    rows = table("| variable | raw GCM | after EQM | after QDM |")
    for name, *cells in rows:
        s = spread[name.split()[0]]
        for text, key in zip(cells, ("raw", "eqm", "qdm", "eqm_retained", "qdm_retained"), strict=True):
            assert _quoted(text, s[key]), (name, key, text, s[key])
    kept = {m: [spread[v][f"{m}_retained"] for v in ("t_air", "t_surface", "r_thermal")] for m in ("qdm", "eqm")}
    said = {m: (f"{round(100 * min(k))}%" if round(100 * min(k)) == round(100 * max(k))
                else f"{round(100 * min(k))}-{round(100 * max(k))}%") for m, k in kept.items()}
    assert (f"QDM keeps {said['qdm']} of the temperature and longwave spread; EQM keeps {said['eqm']} of it"
            in " ".join(README.split()))


def test_the_12_month_check_numbers_are_the_committed_projection_periods():
    period = metrics("projection_period.json")
    members, mean = period["members"], period["ensemble_mean"]
    assert members["all_series_12_months"] and mean["all_series_12_months"]
    text = " ".join(README.split())
    assert (f"all {members['n_series']} member series (4 scenarios x 5 models x 6 bands x 4 layers; periods"
            f" {members['period_min_months']:.1f}-{members['period_max_months']:.1f} months) and all"
            f" {mean['n_series']} ensemble-mean series have a 12-month period") in text
    assert members["n_series"] == 4 * 5 * 6 * 4


def test_the_thaw_numbers_in_the_prose_are_the_committed_thaw_metrics():
    thaw = metrics("thaw.json")
    rcps, north = ("rcp26", "rcp45", "rcp60", "rcp85"), "69.3-71.3N"
    band = {s: thaw[s][north] for s in rcps}
    obs = thaw["observed"][north]
    spans = [b["alt_model_max_cm"] - b["alt_model_min_cm"] for b in band.values()]
    text = " ".join(README.split())
    levels = " / ".join(f"{band[s]['alt_mean_cm']:.0f}" for s in rcps)
    assert (f"in 69.3-71.3 N, ALT averages {obs['alt_mean_cm']:.0f} cm observed (2001-2023,"
            f" {obs['alt_trend_cm_per_decade']:+.1f} cm per decade) and {levels} cm under RCP2.6 / 4.5 / 6.0 / 8.5"
            f" (2024-2100), with a range across architectures of {min(spans):.0f}-{max(spans):.0f} cm; under RCP8.5"
            f" {band['rcp85']['alt_share_years_at_bound']:.0%} of the projected years there reach the bound, so no"
            " RCP8.5 trend is given") in text
    assert band["rcp85"]["alt_trend_cm_per_decade"] is None
    tdm = " / ".join(f"{band[s]['thawing_degree_months_layer1_trend_per_decade']:+.2f}" for s in rcps)
    air = " / ".join(f"{band[s]['t_air_trend_degC_per_decade']:+.2f}" for s in rcps)
    assert (f"they rise by {tdm} degC month per decade in that band under RCP2.6 / 4.5 / 6.0 / 8.5 (observed:"
            f" {obs['thawing_degree_months_layer1_trend_per_decade']:+.2f}), in forcing order, driven by"
            f" air-temperature trends of {air} degC per decade") in text
    trend = [band[s]["thawing_degree_months_layer1_trend_per_decade"] for s in rcps]
    assert trend == sorted(trend)
    south = [thaw[s][b]["alt_share_years_at_bound"] for s in ("observed", *rcps)
             for b in ("59.3-61.3N", "61.3-63.3N", "63.3-65.3N")]
    assert south == [1.0] * len(south)  # "the three southern bands are at the bound in every year"
    assert f"65.3-67.3 N already in {thaw['observed']['65.3-67.3N']['alt_share_years_at_bound']:.0%} of the" in text


def test_the_shap_summary_is_the_committed_shap_metrics():
    shap = metrics("shap.json")
    tops = {arch: row["top"] for arch, row in shap.items()}
    in_all = {f for f in ("t_air", "t_surface", "r_thermal") if all(f in t for t in tops.values())}
    assert in_all == {"t_air", "t_surface"}
    assert [sum(f in t for t in tops.values()) for f in ("month_sin", "w1", "r_thermal")] == [4, 3, 3]
    largest = sorted(((v, f, a) for a, t in tops.items() for f, v in t.items()), reverse=True)[:2]
    assert [(f, a) for _, f, a in largest] == [("month_sin", "conv_lstm"), ("w1", "transformer")]
    gaps = [row["additivity_gap_degc"] for row in shap.values()]
    text = " ".join(README.split())
    assert (f"the season in the Conv1D-LSTM ({largest[0][0]:.2f} degC) and top-layer soil water in the Transformer"
            f" ({largest[1][0]:.2f} degC). The additivity gap is {min(gaps):.2f}-{max(gaps):.2f} degC") in text


def test_the_calibration_band_means_are_the_bands_stage_s():
    """README, synthetic Alaska: the layer-1 band means over the period, as the bands stage measured them."""
    calib = metrics("bands.json")
    layer1 = list(calib["soil_temperature_band_means"]["t_soil1"].values())
    assert len(layer1) == 6 and calib["synthetic"] is True
    quoted = ", ".join(f"{v:+.2f}" for v in layer1)
    text = " ".join(README.split())  # the sentence is wrapped
    assert f"layer-1 band means {calib['period']} on the default settings are {quoted} C for bands 0-5" in text
    # the paper's figures the README compares them with: about +3 in band 0 to -2.3 C in band 5
    assert layer1[0] == pytest.approx(3.0, abs=0.5) and layer1[-1] == pytest.approx(-2.3, abs=0.1)


def test_the_perfect_model_table_is_the_committed_perfect_model_metrics():
    m = metrics("perfect_model.json")
    rows = table("| model | test 2019-2023 |")
    header = next(line for line in README.splitlines() if line.startswith("| model | test 2019-2023 |"))
    columns = [c.strip() for c in header.strip().strip("|").split("|")][2:-1]
    assert {r[0] for r in rows} == set(m["test_rmse"])
    for name, test, *cells, bias in rows:
        assert test == f"{m['test_rmse'][name]:.2f}", name
        for text, col in zip(cells, columns, strict=True):
            rcp, decade = col.split()
            assert text == f"{m['scores'][rcp.lower().replace('.', '')][name][decade]['rmse']:.2f}", (name, col)
        assert bias == f"{m['scores']['rcp85'][name]['2090-2100']['bias']:+.2f}", name
    w = {r: m["warming"][r] for r in ("rcp26", "rcp85")}
    text = " ".join(README.split())
    assert (f"warms by {w['rcp85']['truth']:.2f} degC under RCP8.5 and the ensemble by {w['rcp85']['ensemble']:.2f}"
            f" ({w['rcp26']['truth']:.2f} and {w['rcp26']['ensemble']:.2f} under RCP2.6), a mean bias of"
            f" {m['scores']['rcp85']['ensemble']['2090-2100']['bias']:.2f} degC by the end") in text
    ens = {r: m["scores"][r]["ensemble"] for r in ("rcp26", "rcp85")}
    ratio = {r: e["2090-2100"]["rmse"] / e["2024-2029"]["rmse"] for r, e in ens.items()}
    assert (f"RMSE is {ratio['rcp26']:.1f}x its 2024-2029 value under RCP2.6 and {ratio['rcp85']:.1f}x under RCP8.5"
            f" ({ens['rcp85']['2090-2100']['rmse']:.2f} degC)") in text
    sampling = m["truth_sampling_rmse"]
    assert (f"lie {min(sampling.values()):.2f}-{max(sampling.values()):.2f} degC RMSE from the full grid's"
            in " ".join(README.split()))


def test_the_extrapolation_table_is_the_committed_extrapolation_metrics():
    m = metrics("extrapolation.json")
    for name, share, dist, outside, top in table("| scenario decade | windows extrapolating |"):
        s = m["test_years"] if name == "test years (observed)" else m["scenarios"][name.split()[0]][name.split()[1]]
        assert share == f"{s['share_extrapolating']:.0%}" and dist == f"{s['distance_mean']:.2f}", name
        assert outside == f"{s['outside_share_mean']:.0%}", name
        assert top == (", ".join(f"{k} {v:.0%}" for k, v in s["top_features_outside"].items()) or "none"), name


def test_the_whole_chain_table_and_diagnostic_check_are_the_committed_perfect_model_metrics():
    m = metrics("perfect_model.json")
    chain = m["whole_chain"]

    def cell(s: dict) -> str:
        return f"{s['rmse']:.2f} ({s['bias']:+.2f})"

    rows = table("| scenario | chain 2024-2029 |")
    assert [r[0] for r in rows] == ["RCP2.6", "RCP4.5", "RCP6.0", "RCP8.5"]
    for name, c1, a1, c2, a2, air, trend in rows:
        c = chain[name.lower().replace(".", "")]
        assert [c1, a1] == [cell(c["climate"][k]["2024-2029"]) for k in ("chain", "networks_alone")], name
        assert [c2, a2] == [cell(c["climate"][k]["2090-2100"]) for k in ("chain", "networks_alone")], name
        assert air == cell(c["t_air_climate"]["2090-2100"]), name
        assert trend == f"{c['trend_rmse']['chain']:.2f} / {c['trend_rmse']['networks_alone']:.2f}", name
    for (span, n, rmse), b in zip(table("| distance | windows | ensemble RMSE (degC) |"), m["extrapolation"]["bins"],
                                  strict=True):
        assert int(n) == b["n"] and rmse == f"{b['rmse']:.2f}", span
    ext, text = m["extrapolation"], " ".join(README.split())
    assert f"rank correlation between mean distance and RMSE is {ext['rank_correlation_decades']:.2f}" in text
    assert f"Per window it is {ext['rank_correlation_windows']:.2f}" in text
    assert f"against {ext['test_years']['rmse']:.2f} on the test years" in text


def test_the_per_decade_thaw_numbers_in_the_prose_are_the_committed_thaw_metrics():
    dec = metrics("thaw_decades.json")
    rcps = ("rcp26", "rcp45", "rcp60", "rcp85")
    north = {r: dec[r]["69.3-71.3N"] for r in rcps}
    text = " ".join(README.split())
    share = " / ".join(f"{north[r]['decades']['2090-2100']['near_surface_permafrost_share']:.0%}" for r in rcps)
    assert f"near-surface permafrost remains in {share} of the member-years of 2090-2100" in text
    reached = {r: north[r]["alt_first_reaches_cm"]["194.5"] for r in rcps}
    assert reached["rcp85"] and reached["rcp60"] and not any(reached[r] for r in rcps[:2])
    assert (f"first reaches the 194.5 cm mid-depth in {reached['rcp85']} under RCP8.5 and {reached['rcp60']} under"
            " RCP6.0, and not by 2100 under the others") in text
    tdm = " / ".join(f"{north[r]['tdm_layer1_trend_per_decade']:+.2f} ± {north[r]['tdm_layer1_trend_ci95']:.2f}"
                     for r in rcps)
    assert f"thawing degree-months rise by {tdm} degC month per decade" in text


def test_the_snow_ablation_tables_are_the_committed_feature_ablation():
    ab = metrics("feature_ablation.json")

    def diff(d: dict) -> str:
        return f"{d['mean']:+.3f} +- {d['standard_error']:.3f}" + (" *" if d["beyond_two_standard_errors"] else "")

    rows = table("| | validation RMSE without |")
    assert rows[0] == ["all five", f"{ab['validation_rmse']['without']['mean']:.3f}",
                       f"{ab['validation_rmse']['with']['mean']:.3f}", diff(ab["difference"])]
    assert rows[1:] == [[a, f"{r['without']:.3f}", f"{r['with']:.3f}", diff(r["difference"])]
                        for a, r in ab["by_architecture"].items()]
    seasons = table("| season | t_soil1 | t_soil2 | t_soil3 | t_soil4 |")
    assert seasons == [[s] + [diff(c["difference"]) for c in by.values()] for s, by in ab["by_season_layer"].items()]
    assert f"The decision is **{ab['decision']}**" in README
    td = ab["test_difference"]
    assert f"on the test years {td['mean']:+.3f} +- {td['standard_error']:.3f} degC" in README
    # the default inputs follow the decision
    assert ab["in_default"] == (ab["decision"] == "add")


def test_the_cell_tables_and_prose_are_the_committed_cell_metrics():
    cells = metrics("cells.json")
    models, bands = cells["summary"]["models"], cells["bands"]
    names = {"GRU cell model": "gru", "ridge (pooled, no one-hot)": "ridge", "seasonal persistence":
             "seasonal_persistence", "climatology (per cell)": "climatology", "persistence": "persistence"}
    for row in table("| model | seen cells | held-out cells |"):
        m = models[names[row[0]]]
        assert row[1:] == [f"{m['seen']['overall']['rmse']:.3f}", f"**{m['held_out']['overall']['rmse']:.3f}**"
                           if row[0].startswith("GRU") else f"{m['held_out']['overall']['rmse']:.3f}",
                           f"{m['held_out']['per_layer']['t_soil1']['rmse']:.3f}",
                           f"{m['held_out']['per_layer']['t_soil4']['rmse']:.3f}"], row[0]
    ev = metrics("evaluation.json")
    evaluation = ev["models"]
    up = {"GRU cell model, averaged up": bands["cell_models"]["gru"],
          "conv_lstm band model (best band network)": bands["band_models"]["conv_lstm"],
          "transformer band model": bands["band_models"]["transformer"], "GRU band model": bands["band_models"]["gru"],
          "observed cells averaged up (the aggregation gap)": bands["aggregation_gap"]}
    for row in table("| model | RMSE | layer 1 | layer 2 | layer 3 | layer 4 |"):
        t = up[row[0]]
        assert [c.strip("*") for c in row[1:]] == [f"{t['overall']['rmse']:.3f}",
                                                   *(f"{t['per_layer'][k]['rmse']:.3f}" for k in TARGETS)], row[0]
    for arch in ("conv_lstm", "transformer", "gru"):  # the band models' scores are the evaluate stage's
        assert bands["band_models"][arch]["overall"]["rmse"] == pytest.approx(evaluation[arch]["overall"]["rmse"])
    assert min(ev["rmse_reduction"], key=lambda n: bands["band_models"][n]["overall"]["rmse"]) == "conv_lstm"
    red = cells["summary"]["rmse_reduction_held_out"]["gru"]
    gain = 1 - bands["cell_models"]["gru"]["overall"]["rmse"] / bands["band_models"]["gru"]["overall"]["rmse"]
    for phrase in (f"{red['climatology']:.1%} below the cells' own climatology",
                   f"{red['seasonal_persistence']:.1%} below\nseasonal persistence", f"by {gain:.0%}",
                   f"{cells['cells']['held_out']} of the {cells['cells']['seen'] + cells['cells']['held_out']:,} cells"):
        assert phrase in README, phrase


    ground = cells["ground"]
    kinds = {"perennial snow": "perennial snow", "other ground >= 2,000 m": "high ground (>= 2000 m)",
             "the rest": "the rest"}
    rows = table("| ground | side | cells | GRU |")
    assert len(rows) == sum(1 for g in ground.values() for side in ("seen", "held_out") if g["cells"][side])
    for row in rows:
        g = ground[kinds[row[0]]]
        side = "seen" if row[1].startswith("seen") else "held_out"
        r = g["rmse"][side]
        assert row[2:] == [f"{g['cells'][side]:,}", *(f"{r[m]:.3f}" for m in (
            "gru", "climatology", "seasonal_persistence", "persistence"))], row
    assert ground["perennial snow"]["cells"]["held_out"] == 0  # "none held out", "no glacier fell into a block"
    rest = ground["the rest"]["rmse"]
    assert (f"the held-out blocks score {rest['held_out']['gru']:.3f} against {rest['seen']['gru']:.3f}"
            in README.replace("\n  ", " "))
def test_the_cell_projection_tables_are_the_committed_cell_projections():
    cp = metrics("cell_projections.json")
    gru = cp["models"]["gru"]
    rcps = {"RCP2.6": "rcp26", "RCP4.5": "rcp45", "RCP6.0": "rcp60", "RCP8.5": "rcp85"}
    for row in table("| run | 2014-2023 | 2024-2033 | 2046-2055 | 2091-2100 |"):
        if row[0] == "observed (truth)":
            assert row[1] == f"{100 * cp['observed']['extent']['share_all']:.1f}%"
        elif row[0] == "GRU from the observed drivers":
            assert row[1] == f"{100 * gru['reference']['extent']['share_all']:.1f}%"
        else:
            per = gru["scenarios"][rcps[row[0]]]
            assert row[2:] == [f"{100 * per[p]['share_all']:.1f}%" for p in ("2024-2033", "2046-2055", "2091-2100")]
    pm = cp["perfect_model"]["gru"]
    for row in table("| RCP, period | true extent | projected (chain) |"):
        rcp, period = row[0].split()
        e = pm[rcps[rcp]][period]
        assert row[1:] == [f"{100 * e['true_extent']:.1f}%", f"{100 * e['projected_extent']:.1f}%",
                           f"{100 * e['true_drivers_extent']:.1f}%", f"{100 * e['permafrost_agreement']:.0f}%"], row
    cells = next(iter(next(iter(pm.values())).values()))["cells"]
    assert f"on the {cells} projected cells it simulates" in " ".join(README.split())


def _spread(stats: dict, ranged: bool = True) -> str:
    return pm(stats) + (f" [{stats['min']:.3f}-{stats['max']:.3f}]" if ranged else "")


def _effect(e: dict) -> str:
    return f"{e['difference']:+.3f} +- {e['standard_error']:.3f}"


def test_the_cell_seed_spread_tables_and_prose_are_the_committed_metrics():
    row = metrics("cell_seed_spread.json")["architectures"]["gru"]
    assert row["reproduces_registered"] is True
    body = {r[0]: r[1] for r in table("| | GRU cell model |")}
    assert body == {"test RMSE, seen cells": _spread(row["seen_test_rmse"]),
                    "test RMSE, held-out cells": _spread(row["held_out_test_rmse"]),
                    "held out minus seen, paired by seed": f"{_effect(row['held_out_minus_seen'])} (standard error)",
                    "averaged up to the bands": f"**{pm(row['bands_test_rmse'])}** [{row['bands_test_rmse']['min']:.3f}"
                                                f"-{row['bands_test_rmse']['max']:.3f}]"}
    rows = table("| band model (registered settings) |")
    assert [r[0].split()[0] for r in rows] == list(row["against_band_models"])
    for name, band, diff in rows:
        against = row["against_band_models"][name.split()[0]]
        assert name == f"{name.split()[0]} ({against['settings']})" and band == pm(against["band_test_rmse"])
        beyond = against["beyond_two_standard_errors"]
        assert diff == (f"**{_effect(against)}**" if beyond else _effect(against)), name  # bold: beyond 2 SE
    gap = row["held_out_minus_seen"]
    assert (f"The held-out blocks score better than the seen cells**, by {-gap['difference']:.3f} +-"
            f" {gap['standard_error']:.3f} degC, beyond two") in " ".join(README.split())
    assert gap["difference"] < 0 and gap["beyond_two_standard_errors"]
    beaten = [b for b, a in row["against_band_models"].items() if a["beyond_two_standard_errors"] and a["difference"] < 0]
    assert len(beaten) == 5  # "beats all five band networks by more than two standard errors"
    tuning = {k: f"{e['difference']:+.3f} +- {e['standard_error']:.3f}" for k, e in row["tuning"]["tuned_minus_defaults"].items()}
    body = table("| GRU cell model, tuned minus defaults (+- SE) |")
    defaults = row["tuning"]["defaults"]
    assert body[0][1:] == [pm(defaults[k]) for k in ("val_rmse", "seen_test_rmse", "held_out_test_rmse", "bands_test_rmse")]
    beyond = {k: e["beyond_two_standard_errors"] for k, e in row["tuning"]["tuned_minus_defaults"].items()}
    assert body[1][1:] == [f"**{tuning[k]}**" if beyond[k] else tuning[k]
                           for k in ("val_rmse", "seen_test_rmse", "held_out_test_rmse", "bands_test_rmse")]


def test_the_cell_shap_prose_is_the_committed_metrics():
    row = metrics("cell_shap.json")["models"]["gru"]
    shares = {g: {k: round(100 * v) for k, v in row[g]["shares"].items()} for g in ("seen", "held_out")}
    text = " ".join(README.split())

    def said(group: str) -> str:
        values = sorted({shares[g][group] for g in shares})
        return f"{group} {values[0]}%" if len(values) == 1 else f"{group} {values[0]}-{values[-1]}%"

    assert ("the same shares on seen and on held-out cells: " + ", ".join(
        said(g) for g in ("weather", "soil", "lithology", "position", "elevation", "signal"))) in text
    place = {g: sum(row[g]["shares"][k] for k in ("soil", "lithology", "position", "elevation"))
             for g in ("seen", "held_out")}
    assert (f"together ({place['seen']:.0%} of the attribution on seen cells, {place['held_out']:.0%} on held-out"
            " ones)") in text
    gaps = sorted(row[g]["additivity_gap_degc"] for g in ("seen", "held_out"))
    assert f"additivity gap is {gaps[0]:.2f}-{gaps[1]:.2f} degC" in text
    top = [t["feature"] for t in row["seen"]["top"]]
    lat = row["seen"]["top"][top.index("lat")]["mean_abs_shap_degc"]
    assert top.index("lat") == 4 and f"latitude is fifth on the seen cells ({lat:.2f} degC)" in text
