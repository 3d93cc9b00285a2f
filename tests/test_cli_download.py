import json
import re
import subprocess
import sys

import pytest
import yaml

from conftest import REPO
from thawcast.cli import STAGES, main
from thawcast.config import parse_config
from thawcast.ingest.download import CDS_VARIABLE_NAMES, ERA5LAND_DATASET, era5land_request
from thawcast.ingest.era5land import ERA5_SHORT_NAMES


def test_help_lists_every_stage_the_pipeline_runs():
    """Every ``thawcast <stage>`` command in dvc.yaml is listed by ``thawcast --help`` with its description."""
    out = subprocess.run([sys.executable, "-m", "thawcast.cli", "--help"], capture_output=True, text=True, check=True)
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    commands = {st["do"]["cmd"] if "do" in st else st["cmd"] for st in stages.values()}
    names = {c.split()[1] for c in commands}
    assert len(names) >= 14, names
    for name in names:
        assert re.search(rf"^\s+{re.escape(name)}\s+\S", out.stdout, re.MULTILINE), f"{name} missing from --help"
        assert " ".join(STAGES[name].split()) in " ".join(out.stdout.split()), name  # its whole description


def test_bad_params_exit_nonzero_with_message(tmp_path, capsys):
    bad = tmp_path / "params.yaml"
    bad.write_text("period:\n  start_yaer: 2001\n")
    assert main(["--params", str(bad), "raw"]) == 2
    assert "period.start_yaer: unknown key" in capsys.readouterr().err


def test_era5_request_covers_study_box_and_variables():
    cfg = parse_config({})
    req = era5land_request(cfg, 2005)
    north, west, south, east = req["area"]
    assert north >= 71.336926 and south <= 59.2632802 and west <= -168 and east >= -141
    assert len(req["variable"]) == 18 and set(req["variable"]) == set(CDS_VARIABLE_NAMES.values())
    assert set(CDS_VARIABLE_NAMES) == set(ERA5_SHORT_NAMES)  # every variable the reader reads, snow included
    assert req["product_type"] == ["monthly_averaged_reanalysis"]
    assert req["year"] == ["2005"] and len(req["month"]) == 12
    assert ERA5LAND_DATASET == "reanalysis-era5-land-monthly-means"


def test_download_dry_run_prints_one_request_per_year(capsys, tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("{}\n")
    assert main(["--params", str(p), "download", "era5", "--years", "2019-2021", "--dry-run"]) == 0
    reqs = json.loads(capsys.readouterr().out)
    assert [r["year"] for r in reqs] == [2019, 2020, 2021]


@pytest.mark.parametrize("years", ["2021-2019", "abc"])
def test_download_bad_years(years, tmp_path, capsys):
    p = tmp_path / "params.yaml"
    p.write_text("{}\n")
    assert main(["--params", str(p), "download", "era5", "--years", years, "--dry-run"]) == 2
    assert "--years" in capsys.readouterr().err
