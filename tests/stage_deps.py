"""The code each DVC stage can run, derived from the source, and the matching ``dvc.yaml`` deps.

A stage runs ``thawcast <stage>``: the CLI, then ``thawcast.stages.<stage>``, then every
``thawcast`` module those import, directly or not, at the top of a module or inside a
function (both can run). :func:`closure` follows the imports with :mod:`ast`, so nothing is
imported to find them. ``test_house.py`` fails when ``dvc.yaml`` misses one;

    .venv/bin/python tests/stage_deps.py --write

rewrites the ``src/thawcast`` deps of every stage in ``dvc.yaml`` from it (other deps kept).
"""

from __future__ import annotations

import ast
import re
import sys
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PACKAGE = "thawcast"


def module_file(module: str) -> Path | None:
    """The source file of a ``thawcast`` module (a package's ``__init__.py``), or None."""
    base = SRC / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


#: Modules of which only the top-level imports run for a stage: the CLI imports the stage module by
#: name (``importlib``) and its other commands' imports (``download``, ``expectations``) inside
#: functions that a stage command never calls.
TOP_LEVEL_ONLY = {f"{PACKAGE}.cli"}


@cache
def direct_imports(module: str) -> frozenset[str]:
    """``thawcast`` modules that ``module`` imports anywhere in its body (``from x import y`` where ``y``
    is a sub-module counts as importing ``x.y``)."""
    path = module_file(module)
    if path is None:
        return frozenset()
    found: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    for node in (tree.body if module in TOP_LEVEL_ONLY else ast.walk(tree)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == PACKAGE:
            found.add(node.module)
            for a in node.names:
                if module_file(f"{node.module}.{a.name}") is not None:
                    found.add(f"{node.module}.{a.name}")
    return frozenset(m for m in found if module_file(m) is not None)


def closure(*roots: str) -> set[str]:
    """Every ``thawcast`` module importing ``roots`` can load (packages' ``__init__`` included)."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        m = todo.pop()
        if m in seen or module_file(m) is None:
            continue
        seen.add(m)
        todo.extend(direct_imports(m))
        todo.extend(_parents(m))
    return seen


def stage_module(stage: str) -> str:
    return f"{PACKAGE}.stages.{stage.replace('-', '_')}"


def code_deps(stage: str) -> list[str]:
    """The source files ``dvc.yaml`` must list for ``stage``, relative to the repository root, sorted."""
    files = {module_file(m).relative_to(REPO).as_posix() for m in closure(f"{PACKAGE}.cli", stage_module(stage))}
    return sorted(files)


def suites_run(stage: str) -> list[str]:
    """Expectation suites the stage module validates with (``run_suite(frame, "<name>", ...)``)."""
    path = module_file(stage_module(stage))
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "run_suite" and len(node.args) >= 2 \
                and isinstance(node.args[1], ast.Constant):
            names.add(node.args[1].value)
    return sorted(f"expectations/{n}.json" for n in names)


def write_dvc_yaml(path: Path = REPO / "dvc.yaml") -> None:
    """Replace each stage's ``src/thawcast`` deps in ``dvc.yaml`` by :func:`code_deps` (text edit, comments kept)."""
    lines = path.read_text().splitlines()
    out: list[str] = []
    stage, in_deps, written = None, False, False
    for line in lines:
        m = re.match(r"^  ([a-z][a-z-]*):\s*$", line)
        if m:
            stage, in_deps = m.group(1), False
        if re.match(r"^\s+deps:\s*$", line):
            in_deps, written = True, False
            out.append(line)
            continue
        if in_deps:
            item = re.match(r"^(\s+)- (.*)$", line)
            if item:
                if item.group(2).startswith("src/"):
                    if not written:
                        out.extend(f"{item.group(1)}- {f}" for f in code_deps(stage))
                        written = True
                    continue
                out.append(line)
                continue
            in_deps = False
        out.append(line)
    path.write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write_dvc_yaml()
    else:
        for name in sys.argv[1:]:
            print("\n".join(code_deps(name)))
