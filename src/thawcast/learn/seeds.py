"""Seed statistics: how much of a difference between two training runs is seed luck, and the settings choice.

The seed-spread stage trains every architecture with several seeds, with the ``params.yaml``
defaults and with its tuned settings; this module turns the scores into the table written to
``metrics/seed_spread.json`` (:func:`spread_row`, :func:`markdown`) and reads back the choice the
train stage follows (:func:`read_choice`). Test scores never enter the choice.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import fmean

import numpy as np

from thawcast.analysis.tables import markdown_table
from thawcast.errors import ConfigError, DataError
from thawcast.quality.provenance import read_output_json


def choose_by_validation(defaults_val_rmse: list[float], tuned_val_rmse: list[float]) -> str:
    """``"tuned"`` if the tuned settings' mean validation RMSE over seeds is lower than the defaults', else
    ``"defaults"`` (a tie keeps the defaults: tuning has to earn its place). Test scores never enter."""
    if not defaults_val_rmse or len(defaults_val_rmse) != len(tuned_val_rmse):
        raise ConfigError(f"need the same seeds for both settings, got {len(defaults_val_rmse)} and "
                          f"{len(tuned_val_rmse)} validation scores")
    return "tuned" if fmean(tuned_val_rmse) < fmean(defaults_val_rmse) else "defaults"


def describe(values: list[float]) -> dict:
    """Mean, sample std (0 for one value), min, max and the values themselves."""
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "values": [float(x) for x in v]}


def _effect(diff: float, se: float | None) -> dict:
    """A difference, its standard error (None: one run, no spread to measure) and whether it exceeds twice that
    (with a measured spread of exactly 0: whether it is not 0). Two standard errors is a rough rule with a few
    seeds: a t-test with 3 degrees of freedom (4 paired seeds) asks for 3.2."""
    beyond = False if se is None else bool(abs(diff) > 2 * se) if se > 0 else bool(diff != 0)
    return {"difference": diff, "standard_error": se, "beyond_two_standard_errors": beyond}


def difference(first: dict, second: dict) -> dict:
    """``second`` minus ``first`` mean of two independent sets of runs (:func:`describe` each), its standard error
    sqrt(s1^2/n1 + s2^2/n2) (None when either side is a single run), and whether it exceeds twice that."""
    n1, n2 = len(first["values"]), len(second["values"])
    se = math.sqrt(first["std"] ** 2 / n1 + second["std"] ** 2 / n2) if min(n1, n2) > 1 else None
    return _effect(second["mean"] - first["mean"], se)


def paired_difference(first: list[float], second: list[float]) -> dict:
    """Mean of ``second - first`` taken run by run (the same models scored twice), its standard error
    std / sqrt(n) (None for a single run) and whether it exceeds twice that: pairing removes what the runs
    share."""
    d = describe([b - a for a, b in zip(first, second, strict=True)])
    n = len(d["values"])
    return _effect(d["mean"], d["std"] / math.sqrt(n) if n > 1 else None)


def _stats(d: dict) -> str:
    """``mean +- std [min-max]`` of a :func:`describe` result, degC to 3 decimals."""
    return f"{d['mean']:.3f} +- {d['std']:.3f} [{d['min']:.3f}-{d['max']:.3f}]"


def _effect_text(difference: float, se: float | None, beyond: bool) -> str:
    """``+0.012 +- 0.004 *`` (* beyond two standard errors), or the difference alone for single runs."""
    if se is None:
        return f"{difference:+.3f} (one seed: no spread)"
    return f"{difference:+.3f} +- {se:.3f}" + (" *" if beyond else "")


def tuning_effect(defaults: dict, tuned: dict) -> dict:
    """Tuned minus defaults mean test RMSE, its standard error across seeds, and |diff| > 2 SE."""
    d = difference(defaults, tuned)
    return {"tuned_minus_defaults_test_rmse": d["difference"], "standard_error": d["standard_error"],
            "beyond_two_standard_errors": d["beyond_two_standard_errors"]}


def registered(row: dict, by_validation: bool) -> str:
    """Which of an architecture's settings the train stage registers: no study, the defaults; else the seed
    check's choice, or the tuned settings when the check is off."""
    if "tuned" not in row:
        return "defaults"
    return row["choice"]["settings"] if by_validation else "tuned"


def markdown(table: dict, seeds: tuple[int, ...]) -> str:
    lines = ["# Seed spread", "",
             (f"Each architecture trained with seeds {', '.join(map(str, seeds))} (the first is the registered"
              " run's), with the params.yaml defaults and with its tuned settings. RMSE in degC: mean +- std"
              " across seeds [min-max]. 'tuning effect' = tuned minus defaults mean test RMSE (negative: tuning"
              " helps) +- its standard error; * marks a difference beyond two standard errors. 'registered': the"
              " settings the train stage registers"
              + (", the tuned ones only where their mean validation RMSE over the seeds is lower than the"
                 " defaults' (the test years play no part in this choice)."
                 if table["choose_by_validation"] else ", the tuned ones wherever a study ran.")), ""]

    rows = []
    for arch, row in table["architectures"].items():
        for i, name in enumerate(k for k in ("defaults", "tuned") if k in row):
            effect = ""
            if i == 1 and "tuning_effect" in row:
                e = row["tuning_effect"]
                effect = _effect_text(e["tuned_minus_defaults_test_rmse"], e["standard_error"],
                                      e["beyond_two_standard_errors"])
            chosen = registered(row, table["choose_by_validation"])
            rows.append([arch if i == 0 else "", name, _stats(row[name]["val_rmse"]), _stats(row[name]["test_rmse"]),
                         effect, "yes" if name == chosen else ""])
    lines += markdown_table(["architecture", "settings", "validation RMSE", "test RMSE", "tuning effect on test",
                             "registered"], rows)
    s = table["summary"]
    lines += ["", (f"Median seed std of the test RMSE: {s['median_test_std']:.3f} degC; the largest is"
                   f" {s['max_test_std']:.3f} degC. Differences between two single runs smaller than about twice"
                   " the seed std are not evidence that one configuration is better.")]
    return "\n".join(lines) + "\n"


def spread_row(val: dict[str, list[float]], test: dict[str, list[float]], settings: dict[str, dict]) -> dict:
    """One architecture's row: per settings name (``defaults``[, ``tuned``]) the validation and test RMSE
    statistics over seeds and the settings record; with tuned settings also the tuning effect on the test
    years and the choice, made on validation alone."""
    row = {name: {"val_rmse": describe(val[name]), "test_rmse": describe(test[name]), "settings": settings[name]}
           for name in val}
    if "tuned" in row:
        row["tuning_effect"] = tuning_effect(row["defaults"]["test_rmse"], row["tuned"]["test_rmse"])
        row["choice"] = {"settings": choose_by_validation(val["defaults"], val["tuned"]),
                         "criterion": "mean validation RMSE over seeds",
                         "defaults_val_rmse": row["defaults"]["val_rmse"]["mean"],
                         "tuned_val_rmse": row["tuned"]["val_rmse"]["mean"]}
    return row


def summary(rows: dict[str, dict]) -> dict:
    """Median and largest seed std of the test RMSE over every architecture and settings."""
    stds = [r[k]["test_rmse"]["std"] for r in rows.values() for k in ("defaults", "tuned") if k in r]
    return {"median_test_std": float(np.median(stds)), "max_test_std": float(np.max(stds))}


def read_choice(path: Path, arch: str) -> tuple[dict, dict[str, dict], list[int]]:
    """``(choice, {"defaults": settings, "tuned": settings}, seeds)`` of ``arch`` from a seed-spread file.

    Raises
    ------
    ConfigError
        The file is unreadable or holds no choice for ``arch``.
    """
    try:
        spread = json.loads(Path(path).read_text())
        row, seeds = spread["architectures"][arch], spread["seeds"]
        return row["choice"], {name: row[name]["settings"] for name in ("defaults", "tuned")}, list(seeds)
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: no seed-spread choice for {arch} ({exc!r}); rerun `thawcast "
                          "seed-spread`") from None


# ---------------------------------------------------------------- cell models
#: Per-seed scores of a cell model (seed-spread-cells), RMSE in degC.
CELL_SCORES = ("val_rmse", "seen_test_rmse", "held_out_test_rmse", "bands_test_rmse")


def registered_band_rmse(path: Path, seeds: tuple[int, ...]) -> dict[str, dict]:
    """Per band architecture of a seed-spread file, the settings the train stage registers and their test RMSE over
    the seeds (``{"settings": ..., "test_rmse": describe(...)}``), checked to be over ``seeds``.

    Raises
    ------
    DataError
        The file is missing, unreadable, not a seed-spread table, or over other seeds.
    """
    table = read_output_json(path, "seed-spread")
    redo = "rerun the seed-spread stage (`dvc repro seed-spread`)"
    try:
        if list(table["seeds"]) != list(seeds):
            raise DataError(path, f"its seeds {table['seeds']} are not {list(seeds)}: {redo}")
        out = {}
        for arch, row in table["architectures"].items():
            chosen = registered(row, table["choose_by_validation"])
            stats = row[chosen]["test_rmse"]
            if len(stats["values"]) != len(seeds):
                raise DataError(path, f"{arch}: {len(stats['values'])} test scores for {len(seeds)} seeds: {redo}")
            out[arch] = {"settings": chosen, "test_rmse": stats}
        return out
    except (KeyError, TypeError, AttributeError) as exc:
        raise DataError(path, f"not a seed-spread table (no {exc}): {redo}") from None


def cell_spread_row(scored: dict[int, dict], registered_digest: str, registered_seed: int,
                    band_rmse: dict[str, dict] | None) -> dict:
    """One cell model's row from its per-seed scores (``{seed: {score: value, "weights_sha256": ...}}``): each
    score over seeds, the held-out minus seen gap (paired by seed), whether the run with the registered seed
    gave the registered weights, and, per band model of ``band_rmse`` (:func:`registered_band_rmse`), the cell
    model averaged up minus the band model on the band targets."""
    seeds = list(scored)
    row = {name: describe([scored[s][name] for s in seeds]) for name in CELL_SCORES}
    row["held_out_minus_seen"] = paired_difference([scored[s]["seen_test_rmse"] for s in seeds],
                                                   [scored[s]["held_out_test_rmse"] for s in seeds])
    row["reproduces_registered"] = scored[registered_seed]["weights_sha256"] == registered_digest
    row["against_band_models"] = {
        arch: {"settings": band["settings"], "band_test_rmse": band["test_rmse"],
               **difference(band["test_rmse"], row["bands_test_rmse"])}
        for arch, band in (band_rmse or {}).items()}
    return row


def cell_tuning_effect(defaults: dict[int, dict], row: dict) -> dict:
    """The ``params.yaml`` defaults of a cell model beside its registered (tuned) settings' ``row``
    (:func:`cell_spread_row`), over the same seeds: each score of the defaults, and tuned minus defaults with its
    standard error (independent runs: :func:`difference`)."""
    stats = {name: describe([defaults[s][name] for s in defaults]) for name in CELL_SCORES}
    return {"defaults": stats, "tuned_minus_defaults": {name: difference(stats[name], row[name])
                                                        for name in CELL_SCORES}}


def cell_markdown(table: dict) -> str:
    """The cell models' seed spread as Markdown: their scores over seeds, then averaged up against the band
    models over the same seeds."""
    seeds = table["seeds"]
    cell = _stats

    def effect(e: dict) -> str:
        return _effect_text(e["difference"], e["standard_error"], e["beyond_two_standard_errors"])

    rows = table["architectures"]
    lines = ["# Seed spread of the cell models", "",
             (f"Each cell model trained with seeds {', '.join(map(str, seeds))} (the first is the registered run's)"
              " and scored on the test years: every window of the seen and of the held-out cells, and averaged up"
              " to the bands on the band targets. RMSE in degC: mean +- std across seeds [min-max]. 'held out"
              " minus seen': the gap of the same model, seed by seed, +- its standard error; * marks a difference"
              " beyond two standard errors. 'registered run reproduced': the run with the registered seed gave"
              " the registered weights bit for bit."), "",
             *markdown_table(["cell model", "validation RMSE (seen)", "test RMSE seen cells",
                              "test RMSE held-out cells", "held out minus seen", "averaged up to the bands",
                              "registered run reproduced"],
                             ([arch, cell(r["val_rmse"]), cell(r["seen_test_rmse"]), cell(r["held_out_test_rmse"]),
                               effect(r["held_out_minus_seen"]), cell(r["bands_test_rmse"]),
                               "yes" if r["reproduces_registered"] else "NO"] for arch, r in rows.items()))]
    against = [[arch, band, r["against_band_models"][band]["settings"], cell(r["against_band_models"][band]
                                                                            ["band_test_rmse"]),
                effect(r["against_band_models"][band])]
               for arch, r in rows.items() for band in r["against_band_models"]]
    tuned = [(arch, r) for arch, r in rows.items() if "tuning" in r]
    if tuned:
        lines += ["", ("Tuned settings (stage tune-cells, the registered ones) against the params.yaml defaults,"
                       " over the same seeds: 'tuned minus defaults' +- its standard error (negative: tuning"
                       " helps); * beyond two standard errors."), "",
                  *markdown_table(["cell model", "settings", "validation RMSE (seen)", "test RMSE seen cells",
                                   "test RMSE held-out cells", "averaged up to the bands"],
                                  [row for arch, r in tuned for row in (
                                      [arch, "defaults", *(cell(r["tuning"]["defaults"][n]) for n in CELL_SCORES)],
                                      ["", "tuned", *(cell(r[n]) for n in CELL_SCORES)],
                                      ["", "tuned minus defaults",
                                       *(effect(r["tuning"]["tuned_minus_defaults"][n]) for n in CELL_SCORES)])])]
    if against:
        lines += ["", ("Averaged up to the bands, beside the band models over the same seeds (metrics/seed_spread.json,"
                       " the settings the train stage registers), on the same band targets and test months:"
                       " difference = cell model minus band model (negative: the cell model is better) +- its"
                       " standard error; * beyond two standard errors."), "",
                  *markdown_table(["cell model", "band model", "settings", "band model test RMSE",
                                   "cell model minus band model"], against)]
    return "\n".join(lines) + "\n"
