"""`make repro`'s scheduler: make rules from `dvc dag --dot`, run by a real GNU make with a stand-in for dvc."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from repo_copy import cli_env
from thawcast.stage_rules import StageGraphError, main, parse_dot, priority, rules

DOT = textwrap.dedent("""\
    strict digraph {
    "raw";
    "side";
    "static";
    "bands";
    "tune";
    "report";
    "raw" -> "static";
    "raw" -> "bands";
    "bands" -> "tune";
    "static" -> "tune";
    "raw" -> "side";
    "tune" -> "report";
    "side" -> "report";
    }
    """)


def test_the_graph_is_read_with_each_stages_upstream_in_dvcs_order():
    assert parse_dot(DOT) == {"raw": [], "side": ["raw"], "static": ["raw"], "bands": ["raw"],
                              "tune": ["bands", "static"], "report": ["tune", "side"]}


def test_the_long_chain_comes_before_a_short_branch_and_every_stage_after_its_inputs():
    order = priority(parse_dot(DOT))
    # DVC lists side first, but it has 2 stages to the end and static and bands 3 (side and tune: a tie, DVC's order)
    assert order == ["raw", "static", "bands", "side", "tune", "report"]
    up = parse_dot(DOT)
    assert all(order.index(u) < order.index(s) for s in order for u in up[s])


@pytest.mark.parametrize("text, message", [
    ("", "DOT digraph"),
    ("stages:\n  raw:\n    cmd: x\n", "DOT digraph"),
    ("strict digraph {\n}\n", "no stages"),
    ('strict digraph {\n"a" -- "b";\n}\n', "not a stage or an edge"),
    ('strict digraph {\n"a: b";\n}\n', "cannot be a make target"),
    ('strict digraph {\n"train@x&y";\n}\n', "rename the stage or its foreach key"),
    ('strict digraph {\n"a" -> "b";\n"b" -> "a";\n}\n', "cycle"),
])
def test_what_is_not_dvcs_stage_graph_is_one_clear_error(text, message):
    with pytest.raises(StageGraphError, match=message):
        priority(parse_dot(text))


def test_the_command_line_writes_rules_or_says_what_is_wrong(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(DOT))
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "stage/tune: stage/static stage/bands\n\tdvc --wait-for-lock repro --single-item tune\n" in out
    monkeypatch.setattr(sys, "stdin", io.StringIO("nonsense"))
    assert main([]) == 1
    assert "thawcast.stage_rules: expected the DOT digraph" in capsys.readouterr().err
    assert main(["--bogus"]) == 2


needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")


def _fake_dvc(tmp_path: Path, fail: str = "", seconds: float = 0.2) -> Path:
    """A `dvc` stand-in that logs `start <stage>` and `end <stage>` around a sleep (and fails for ``fail``). static
    and bands each wait (up to 20 s) until the other has started, so they end only if make ran them side by side."""
    script = tmp_path / "fake-dvc"
    script.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        stage="$4"
        echo "start $stage" >> {tmp_path}/log
        touch "{tmp_path}/started-$stage"
        case "$stage" in static) other=bands ;; bands) other=static ;; *) other="" ;; esac
        if [ -n "$other" ]; then
            n=0
            while [ ! -e "{tmp_path}/started-$other" ]; do
                n=$((n + 1)); if [ $n -gt 200 ]; then echo "$stage ran alone" >&2; exit 4; fi; sleep 0.1
            done
        fi
        sleep {seconds}
        if [ "$stage" = "{fail}" ]; then echo "boom in $stage" >&2; exit 3; fi
        echo "end $stage" >> {tmp_path}/log
        """))
    script.chmod(0o755)
    return script


def _events(tmp_path: Path) -> list[tuple[str, str]]:
    return [tuple(ln.split()) for ln in (tmp_path / "log").read_text().splitlines()]


@needs_make
def test_make_runs_independent_stages_side_by_side_and_each_after_its_inputs(tmp_path: Path):
    (tmp_path / "stages.mk").write_text(rules(parse_dot(DOT), dvc=str(_fake_dvc(tmp_path))))
    subprocess.run(["make", "-s", "-j2", "-f", "stages.mk", "stages"], cwd=tmp_path, check=True, timeout=60,
                   env=cli_env())
    ev = _events(tmp_path)
    assert sorted(s for kind, s in ev if kind == "end") == sorted(parse_dot(DOT))
    up = parse_dot(DOT)
    for stage, ups in up.items():
        for u in ups:
            assert ev.index(("end", u)) < ev.index(("start", stage)), f"{stage} started before {u} ended"
    # static and bands both wait only for raw: with two jobs they overlap (each stand-in waits for the other)
    assert ev.index(("start", "bands")) < ev.index(("end", "static"))
    assert ev.index(("start", "static")) < ev.index(("end", "bands"))
    assert max(sum(1 for k, _ in ev[:i + 1] if k == "start") - sum(1 for k, _ in ev[:i + 1] if k == "end")
               for i in range(len(ev))) == 2


@needs_make
def test_a_failing_stage_stops_what_needs_it_and_make_fails(tmp_path: Path):
    (tmp_path / "stages.mk").write_text(rules(parse_dot(DOT), dvc=str(_fake_dvc(tmp_path, fail="bands"))))
    r = subprocess.run(["make", "-s", "-j2", "-f", "stages.mk", "stages"], cwd=tmp_path, capture_output=True,
                       check=False, text=True, timeout=60, env=cli_env())
    assert r.returncode != 0 and "boom in bands" in r.stderr
    started = {s for kind, s in _events(tmp_path) if kind == "start"}
    assert "tune" not in started and "report" not in started
