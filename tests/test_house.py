"""The shape of the house: complete DVC deps, thin stages, one file layout, no heavy config import."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
import yaml

from stage_deps import (
    REPO,
    closure,
    code_deps,
    direct_imports,
    module_file,
    stage_module,
    suites_run,
    write_dvc_yaml,
)
from thawcast.catalogue import ARCHITECTURES
from thawcast.cli import STAGES
from thawcast.layout import METRIC_FILES, STAGE_OUTPUT, Layout

DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
LIBRARY = ("ingest", "prep", "quality", "learn", "analysis", "models")


def _stage(name: str, item: str = "gru") -> dict:
    """A stage's definition with a foreach ``${item}`` filled in."""
    st = DVC[name]
    if "foreach" not in st:
        return st
    return yaml.safe_load(yaml.safe_dump(st["do"]).replace("${item}", item))


def _paths(entries) -> list[str]:
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries or []]


def test_dvc_yaml_has_one_stage_per_cli_stage():
    assert set(DVC) == set(STAGES)


@pytest.mark.parametrize("stage", list(STAGES))
def test_each_stage_depends_on_every_module_it_can_run_and_no_other(stage):
    deps = _paths(_stage(stage)["deps"])
    listed = sorted(d for d in deps if d.startswith("src/"))
    expected = code_deps(stage)
    missing, extra = sorted(set(expected) - set(listed)), sorted(set(listed) - set(expected))
    assert not missing and not extra, (
        f"dvc.yaml stage {stage}: missing {missing}, not imported {extra}; run `python tests/stage_deps.py --write`")
    absent = [s for s in suites_run(stage) if s not in deps]
    assert not absent, f"dvc.yaml stage {stage} runs suites {absent} but does not depend on them"


def test_closure_follows_function_level_and_transitive_imports():
    # The stage raw imports the synthetic world inside a function; the world imports the soil model.
    mods = closure(stage_module("raw"))
    assert {"thawcast.ingest.synthetic.world", "thawcast.ingest.synthetic.soil", "thawcast.prep"} <= mods
    # Positive control of the checker itself: a dvc.yaml without one module fails the comparison.
    assert "src/thawcast/prep/windows.py" in code_deps("evaluate")


def test_window_code_changes_rerun_exactly_the_stages_that_use_windows():
    users = {name for name in DVC if "src/thawcast/prep/windows.py" in _paths(_stage(name)["deps"])}
    assert users == {"windows", "tune", "seed-spread", "feature-ablation", "train", "evaluate", "project", "explain",
                     "perfect-model", "tune-cells", "train-cells", "evaluate-cells", "project-cells",
                     "seed-spread-cells", "explain-cells"}


def test_the_writer_reproduces_the_committed_dvc_yaml(tmp_path):
    copy = tmp_path / "dvc.yaml"
    original = (REPO / "dvc.yaml").read_text()
    # Drop one module from one stage: the writer puts it back, byte for byte.
    copy.write_text(original.replace("      - src/thawcast/prep/windows.py\n", "", 1))
    assert copy.read_text() != original
    write_dvc_yaml(copy)
    assert copy.read_text() == original


@pytest.mark.parametrize("stage", list(STAGES))
def test_no_stage_imports_another_stage(stage):
    me = stage_module(stage)
    others = sorted(m for m in direct_imports(me) if m.startswith("thawcast.stages.") and m != me)
    assert not others, f"{me} imports {others}: move the shared code into a library package"


def _imports_anywhere(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", LIBRARY)
def test_library_code_knows_nothing_of_mlflow_dvc_the_cli_or_stages(package):
    bad = {}
    for path in sorted((REPO / "src" / "thawcast" / package).rglob("*.py")):
        hits = sorted(n for n in _imports_anywhere(path)
                      if n.split(".")[0] in ("mlflow", "dvc") or n.startswith(("thawcast.stages", "thawcast.cli",
                                                                                 "thawcast.tracking")))
        if hits:
            bad[str(path.relative_to(REPO))] = hits
    assert not bad


def test_the_tracking_package_talks_to_mlflow_and_one_module_reads_dvc_lock():
    """Besides the stages, only the store and registry and the tracked studies (which log a run per trial) import
    MLflow."""
    talk = {str(p.relative_to(REPO / "src")) for p in (REPO / "src").rglob("*.py")
            if any(n.split(".")[0] == "mlflow" for n in _imports_anywhere(p)) and "/stages/" not in str(p)}
    assert talk == {"thawcast/tracking/registry.py", "thawcast/tracking/studies.py"}
    readers = {str(p.relative_to(REPO / "src")) for p in (REPO / "src").rglob("*.py") if "dvc.lock" in p.read_text()
               and ("yaml.safe_load" in p.read_text() or "yaml.load(" in p.read_text())}
    assert readers == {"thawcast/tracking/dvclock.py"}


def test_stage_outputs_in_dvc_yaml_are_the_layout():
    paths = Layout.at(".")
    for stage, folder in STAGE_OUTPUT.items():
        archs = ARCHITECTURES if "foreach" in DVC[stage] else (None,)
        for arch in archs:
            st = _stage(stage, arch or "gru")
            outs = set(_paths(st.get("outs"))) | set(_paths(st.get("metrics")))
            expected = {str(paths.metric(f)) for f in METRIC_FILES.get(stage, ())}
            if folder is not None:
                d = getattr(paths, folder)
                expected.add(str(d / arch) if arch else str(d))
            assert outs == expected, f"{stage}: dvc.yaml outs {sorted(outs)} vs layout {sorted(expected)}"


def test_per_architecture_folders_agree_with_their_helpers():
    paths = Layout.at("/r")
    assert paths.study("gru") == paths.best_params("gru").parent == paths.tuning / "gru"
    assert paths.registration("tcn").parent == paths.model("tcn") == paths.models / "tcn"
    assert paths.top_features("bilstm").parent == paths.explanation("bilstm") == paths.explain / "bilstm"
    moved = paths.replace(windows="/elsewhere/w")
    assert moved.history.parent.as_posix() == "/elsewhere/w" and moved.bands == paths.bands


def test_parsing_params_imports_no_heavy_library():
    code = ("import sys; from thawcast.config import load_config; load_config('params.yaml');"
            "heavy = sorted(m for m in ('xarray', 'torch', 'matplotlib', 'pandas', 'mlflow') if m in sys.modules);"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_module_file_is_importable_by_name():
    for path in (REPO / "src" / "thawcast").rglob("*.py"):
        parts = path.relative_to(REPO / "src").with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        assert module_file(name) == path


def _top_level_imports(module: str) -> set[str]:
    """``thawcast`` modules ``module`` imports when it is loaded (module level, not inside functions)."""
    tree = ast.parse(module_file(module).read_text())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("thawcast"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names if module_file(f"{node.module}.{a.name}"))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("thawcast"))
    return {m for m in found if module_file(m) is not None and m != module}


def test_no_import_cycles_between_modules():
    modules = [".".join(p.relative_to(REPO / "src").with_suffix("").parts).removesuffix(".__init__")
               for p in (REPO / "src" / "thawcast").rglob("*.py")]
    graph = {m: {d for d in _top_level_imports(m) if not m.startswith(d + ".")} for m in modules}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                pytest.fail(f"import cycle: {' -> '.join([*path[path.index(d):], d])}")
            if d not in state:
                visit(d, [*path, d])
        state[m] = 2

    for m in sorted(modules):
        if m not in state:
            visit(m, [m])


def test_the_report_depends_on_every_output_it_lists():
    """The report's "Exact versions" table lists the hash of every stage output (from dvc.lock): each must be a
    dependency of the report, or a changed output would leave the report's table stale without rerunning it."""
    deps = _paths(DVC["report"]["deps"])
    for name in DVC:
        if name == "report":
            continue
        st = _stage(name)
        for out in _paths(st.get("outs")) + _paths(st.get("metrics")):
            assert any(out == d or out.startswith(d + "/") for d in deps), f"{out} ({name}) is not a report dep"


def _upstream(name: str) -> set[str]:
    """The stages whose outputs ``name`` reads (a dependency at, under or above one of their outputs)."""
    deps = [d for d in _paths(_stage(name).get("deps")) if not d.startswith("src/")]
    found = set()
    for other in DVC:
        outs = _paths(_stage(other).get("outs")) + _paths(_stage(other).get("metrics"))
        if other != name and any(d == o or d.startswith(o + "/") or o.startswith(d + "/") for d in deps for o in outs):
            found.add(other)
    return found


def test_make_repro_runs_every_stage_after_what_it_reads():
    """`make repro` schedules the stages with the rules that thawcast.stage_rules makes from `dvc dag --dot`: every
    stage of dvc.yaml has a target, and its prerequisites are exactly the stages whose outputs it reads (found here
    from the paths, apart from DVC), since --single-item checks nothing upstream."""
    from thawcast.stage_rules import parse_dot

    dot = subprocess.run([sys.executable, "-m", "dvc", "dag", "--dot"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    upstream = parse_dot(dot)
    items = {name: [f"{name}@{a}" for a in _foreach(name)] or [name] for name in DVC}
    assert sorted(upstream) == sorted(s for names in items.values() for s in names)
    for name, stages in items.items():
        want = {s for u in _upstream(name) for s in items[u]}
        for s in stages:
            assert set(upstream[s]) == want, f"{s}: make would start it after {sorted(upstream[s])}, it reads {want}"
    makefile = (REPO / "Makefile").read_text()
    assert "\t@$(MAKE) --no-print-directory pipeline" in makefile.split("\nrepro:", 1)[1].split("\n\n", 1)[0]
    recipe = makefile.split("\npipeline:", 1)[1].split("\n\n", 1)[0]
    assert "dvc dag --dot > $(STAGE_RULES).dot\n\tpython -m thawcast.stage_rules < $(STAGE_RULES).dot > $(STAGE_RULES)" in recipe
    assert "-f $(STAGE_RULES) stages" in recipe


def _foreach(name: str) -> list[str]:
    """The items a ``foreach`` stage expands to (none for a plain stage)."""
    st = DVC[name]
    if "foreach" not in st:
        return []
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    value = params
    for key in st["foreach"].strip("${}").split("."):
        value = value[key]
    return list(value)


def test_the_upstream_of_a_stage_is_found_from_its_paths():
    assert _upstream("train") == {"seed-spread", "tune", "windows"}
    assert _upstream("thaw") == {"bands", "project", "scenarios"}
    assert _upstream("raw") == set()
