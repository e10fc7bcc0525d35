"""The package's layout: parpy's modules import each other without cycles, and no feature
imports another feature's private names.

A feature is a folder or module right under parpy/ (parpy.pipeline, parpy.crawler, parpy.lab,
...); its private names are those with a leading underscore anywhere below the feature's own
name (parpy.pipeline._stages, parpy.crawler.site._private). Everyone may use parpy._core (the
extension), parpy._support (what the features share) and parpy._version, but not their own
underscored names. The layers themselves (which feature may import which) are the
import-linter contract in pyproject.toml, checked by lint-imports in .ci/run.

And what moved keeps working for users: every public name imports from where it did before
the split into features, and pickles made before it load (tests/data/before-layout.*).
"""

from __future__ import annotations

import ast
import importlib
import json
import pickle
from pathlib import Path

import pytest
from _util import REPO

import parpy

PACKAGE = REPO / "parpy"
SHARED = ("_core", "_support", "_version")
DATA = REPO / "tests" / "data"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
KNOWN = set(MODULES) | {"parpy._core"}


class Import:
    """One name imported from parpy: the module it comes from, the name, where, and how."""

    def __init__(self, module: str, name: str | None, line: int, runtime: bool) -> None:
        self.module, self.name, self.line, self.runtime = module, name, line, runtime

    @property
    def target(self) -> str:
        """The parpy module this import loads: parpy.a.b for `from parpy.a import b`."""
        if self.name is not None and f"{self.module}.{self.name}" in KNOWN:
            return f"{self.module}.{self.name}"
        return self.module

    @property
    def path(self) -> str:
        return self.module if self.name is None else f"{self.module}.{self.name}"


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(source: str, module: str) -> list[Import]:
    """Every import of a parpy module or name in ``source``, lazy ones included; those under
    ``if TYPE_CHECKING:`` are marked as not run."""
    found: list[Import] = []
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST, runtime: bool) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.body:
                visit(child, False)
            for child in node.orelse:
                visit(child, runtime)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "parpy":
                    found.append(Import(alias.name, None, node.lineno, runtime))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] == "parpy":
                for alias in node.names:
                    found.append(Import(base, alias.name, node.lineno, runtime))
        for child in ast.iter_child_nodes(node):
            visit(child, runtime)

    visit(ast.parse(source), True)
    return found


IMPORTS = {name: imports_of(path.read_text(), name) for name, path in MODULES.items()}


def feature_of(module: str) -> str | None:
    """``pipeline`` for parpy.pipeline._stages; None for the root package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_use(importer: str, imp: Import) -> str | None:
    """Why this import reaches into another feature's private names, or None."""
    parts = imp.path.split(".")
    feature = parts[1] if len(parts) > 1 else None
    if feature is None or feature == feature_of(importer):
        return None
    if importer in ("parpy", "parpy.__main__") and feature == "_core":
        return None
    inner = parts[2:] if feature in SHARED else parts[1:]
    if any(_private(part) for part in inner) or (feature not in SHARED and feature.startswith("_")):
        return f"{importer}:{imp.line} imports {imp.path}"
    return None


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles in ``edges``: each strongly connected group of two or more modules
    (or one that imports itself), as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1 or v in edges.get(v, ()):
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return found


def runtime_edges(imports: dict[str, list[Import]]) -> dict[str, set[str]]:
    return {
        name: {imp.target for imp in found if imp.runtime and imp.target != name}
        for name, found in imports.items()
    }


def test_the_walk_sees_the_package():
    assert {"parpy", "parpy.pipeline", "parpy.pipeline._stages", "parpy.crawler"} <= set(MODULES)
    stages = {imp.target for imp in IMPORTS["parpy.pipeline"]}
    assert "parpy.pipeline._stages" in stages and "parpy._support.fork" in stages


def test_no_import_cycle_between_parpy_modules():
    found = cycles(runtime_edges(IMPORTS))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_feature_imports_another_features_private_names():
    found = [
        why for name, imps in IMPORTS.items() for imp in imps if (why := private_use(name, imp))
    ]
    assert not found, "\n".join(found)


def test_only_the_top_imports_the_root_package():
    # Below the root, `from parpy import X` may only reach the shared internals: the root
    # imports every feature, so anything else would be an import upwards.
    top = ("parpy", "parpy.__main__")
    found = [
        f"{name}:{imp.line} imports {imp.path}"
        for name, imps in IMPORTS.items()
        if name not in top
        for imp in imps
        if imp.target == "parpy"
    ]
    assert not found, "\n".join(found)


# The checks themselves, on made-up modules: each must be able to fail.


def test_a_cycle_is_found_also_through_a_lazy_import():
    source = {
        "parpy.pipeline": "from parpy.pipeline import _threads\n",
        "parpy.pipeline._threads": "def f():\n    from parpy.pipeline import Pipeline\n",
        "parpy.pipeline._stages": "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from parpy.pipeline import Pipeline\n",
    }
    imports = {name: imports_of(text, name) for name, text in source.items()}
    assert cycles(runtime_edges(imports)) == [["parpy.pipeline", "parpy.pipeline._threads"]]


@pytest.mark.parametrize(
    ("importer", "source", "bad"),
    [
        ("parpy.crawler._crawl", "from parpy.pipeline._stages import Stage", True),
        ("parpy.crawler._crawl", "from parpy.pipeline import _stages", True),
        ("parpy.crawler._crawl", "from parpy.pipeline import Stage", False),
        ("parpy.crawler._crawl", "from parpy.pipeline import _name", True),
        ("parpy.crawler._crawl", "from parpy.crawler._fetch import x", False),
        ("parpy.crawler.classic", "from . import _crawl", False),
        ("parpy.lab", "from parpy._support.render import Table", False),
        ("parpy.lab", "from parpy._support.render import _cell", True),
        ("parpy.lab", "from parpy import _core", False),
        ("parpy.comparison._compare", "from parpy._version import __version__", False),
        ("parpy.lab", "import parpy.comparison._compare", True),
    ],
)
def test_private_names_of_another_feature_are_found(importer, source, bad):
    MODULES.setdefault("parpy.crawler._crawl", PACKAGE / "crawler" / "_crawl.py")
    (imp,) = imports_of(source, importer)
    assert (private_use(importer, imp) is not None) == bad


# ---- what users import and pickle keeps working -------------------------------------

# The public modules and their __all__ before the package was split into features (parpy
# 0.1.0, commit 8977a86): each name still imports from where it did.
PUBLIC_BEFORE = {
    "parpy": "CrawlResult Kernel MismatchError Pipeline PipelineStats Pool Queue Report ShutDown "
    "Stage ThreadPoolExecutor compare crawl extract_links fib fib_batch fib_iterative fib_mod "
    "fib_recursive get_num_threads lab map reference set_num_threads to_decimal",
    "parpy.pool": "AsyncResult Pool TimeoutError",
    "parpy.pipeline": "Pipeline PipelineStats Stage StageStats",
    "parpy.report": "Fit Report Row Skip Timing amdahl_fit karp_flatt",
    "parpy.lab": "DEADLOCK_MODES DeadlockReport MAX_THREADS MessagesReport POLICIES RACE_MODES "
    "RaceReport StarvationReport deadlock jain_index race shared_vs_messages starvation",
    "parpy.reference": "extract_links fib fib_iterative fib_mod fib_recursive to_decimal",
    "parpy.executor": "ThreadPoolExecutor",
}


@pytest.mark.parametrize("module", sorted(PUBLIC_BEFORE))
def test_every_public_name_imports_from_where_it_did(module):
    names = PUBLIC_BEFORE[module].split()
    code = f"from {module} import {', '.join(names)}"
    exec(compile(code, module, "exec"), {})
    assert set(names) <= set(importlib.import_module(module).__all__)


def test_pickles_made_before_the_layout_load():
    # A Report and one of its Timings, a pipeline's stats, a lab report and a bound kernel,
    # pickled by the code of commit 8977a86, before the split; the JSON holds what they gave.
    objects = pickle.loads((DATA / "before-layout.pickle").read_bytes())
    expected = json.loads((DATA / "before-layout.json").read_text())
    report, stats = objects["report"], objects["stats"]
    assert type(report) is parpy.Report and type(stats) is parpy.PipelineStats
    assert objects["timing"] == report.timings[0]
    assert json.loads(report.to_json()) == expected["report"]
    assert stats.as_dict() == expected["stats"] and objects["race"].as_dict() == expected["race"]
    assert [objects["kernel"](n) for n in range(20)] == expected["kernel"]
    # The one table renderer draws them as before.
    assert str(report) == expected["str"]["report"] and str(stats) == expected["str"]["stats"]
