import pytest
from pydantic import ValidationError

from conftest import REPO
from thawcast.config import PAPER_BAND_EDGES, load_config, parse_config
from thawcast.errors import ConfigError


def test_repo_params_parse_and_use_table1_edges():
    cfg = load_config(REPO / "params.yaml")
    assert cfg.study_area.band_edges == PAPER_BAND_EDGES
    assert cfg.study_area.n_bands == 6
    assert cfg.period.n_months == 12 * 23


@pytest.mark.parametrize(
    "raw, where",
    [
        ({"sed": 1}, "sed: unknown key"),
        ({"period": {"start_year": 2001, "end_yr": 2020}}, "period.end_yr: unknown key"),
        ({"study_area": {"band_edges": [60, 59, 61]}}, "strictly increasing"),
        ({"period": {"start_year": 2010, "end_year": 2001}}, "before start_year"),
        ({"cmip5": {"experiments": ["historical", "rcp99"]}}, "rcp99"),
        ({"source": {"kind": "ftp"}}, "source.kind"),
        ({"synthetic": {"resolution_deg": -1}}, "synthetic.resolution_deg"),
        ({"bias_correction": {"method": "dqm"}}, "bias_correction.method: Value error, unknown bias-correction method"),
        ({"projection": {"start_year": 2024, "end_year": 2101}},
         "projection 2024-2101 runs past synthetic.scenario_end_year 2100"),
        ({"projection": {"start_year": 2020, "end_year": 2030}}, "projection 2020-2030 must start after period"),
    ],
)
def test_bad_params_name_the_key(raw, where):
    with pytest.raises(ConfigError, match=where.replace(".", r"\.").replace("(", r"\(")):
        parse_config(raw)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("period: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_config_is_frozen():
    cfg = parse_config({})
    with pytest.raises(ValidationError):
        cfg.seed = 3


def test_band_labels_and_architecture_guard():
    from thawcast.config import Config
    from thawcast.errors import ConfigError

    cfg = Config()
    assert cfg.study_area.band_labels[0] == "59.3-61.3N" and len(cfg.study_area.band_labels) == 6
    cfg.training.require("gru")
    with pytest.raises(ConfigError, match="'lstm' is not in training.architectures"):
        cfg.training.require("lstm")
