"""Stage ``compare-explanations``: the top SHAP features of every architecture side by side.

Reads ``data/explain/<arch>/top_features.json`` and writes ``metrics/shap.json`` (for
``dvc metrics show``: mean |SHAP| in degC of each architecture's top features) and
``metrics/shap.md`` (ranks per architecture, and the features most often in a top five).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

from thawcast.analysis.tables import markdown_table
from thawcast.config import Config
from thawcast.errors import DataError
from thawcast.layout import Layout
from thawcast.quality.provenance import read_output_json

log = logging.getLogger(__name__)

RANKS = 5


def run(cfg: Config, paths: Layout | None = None) -> Path:
    paths = paths or Layout.at()
    tops = {}
    for arch in cfg.training.architectures:
        path = paths.top_features(arch)
        if not path.exists():
            raise DataError(path, f"no SHAP summary for {arch!r} (run `thawcast explain {arch}` or the explain stage)")
        tops[arch] = read_output_json(path, "explain")
    metrics = {arch: {"model": f"{t['registered_model']}#{t['weights_sha256'][:12]}",
                      "additivity_gap_degc": t["additivity_gap_degc"],
                      "top": {r["feature"]: r["mean_abs_shap_degc"] for r in t["top"][:RANKS]}}
               for arch, t in tops.items()}
    votes = Counter(f for m in metrics.values() for f in m["top"])
    lines = ["# SHAP: which drivers matter", "",
             (f"Mean |SHAP| (degC, summed over the window's months, averaged over test windows, bands and layers);"
             f" top {RANKS} per architecture."), "",
             *markdown_table(["architecture", "model", *(f"#{i + 1}" for i in range(RANKS)), "additivity gap"],
                             ([arch, m["model"], *(f"{f} ({v:.2f})" for f, v in m["top"].items()),
                               f"{m['additivity_gap_degc']:.3f}"] for arch, m in metrics.items()))]
    lines += ["", "In a top five of how many architectures: "
              + ", ".join(f"{f} {n}/{len(metrics)}" for f, n in votes.most_common()), ""]
    json_file = paths.metric("shap.json")
    json_file.parent.mkdir(parents=True, exist_ok=True)
    json_file.write_text(json.dumps(metrics, indent=2) + "\n")
    paths.metric("shap.md").write_text("\n".join(lines))
    log.info("features in most top fives: %s", votes.most_common(5))
    return json_file
