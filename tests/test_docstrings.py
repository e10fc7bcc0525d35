"""The public API's docstrings are in numpydoc form, so that help() and IDEs show a one-line
summary, then Parameters, Returns and Raises.

The public API: every function and class named in ``parpy.__all__`` and in the ``__all__`` of
each public module (no underscore in its dotted name; a public module without ``__all__``
gives the public names it defines), and the public methods of those classes that parpy
defines. Each docstring goes through numpydoc's validator, which fails on the codes in
``CHECKED``, and through a check of its own: every exception a function raises itself (a
``raise X(...)`` in its body; a class: in ``__init__`` and ``__post_init__``) is listed under
Raises.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import pydoc
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from numpydoc.docscrape import get_doc_object
from numpydoc.validate import validate

import parpy
from parpy import _core

# numpydoc's codes that fail the test. Left out: the style codes that are matters of taste
# (SS05 infinitive verb, PR08/PR09 and RT04/RT05 capital and period, GL01-GL03 blank lines)
# and the sections parpy does not require (ES01 extended summary, SA01 See Also, EX01
# Examples).
CHECKED = {
    "GL08": "no docstring",
    "GL06": "unknown section (a typo in a section title hides the section)",
    "GL07": "sections out of order",
    "SS01": "no summary",
    "SS03": "the summary does not end with a period",
    "SS06": "the summary is longer than one line",
    "PR01": "a parameter of the signature is not documented",
    "PR02": "a documented parameter is not in the signature",
    "PR03": "the parameters are documented in another order than the signature's",
    "PR04": "a parameter has no type",
    "PR07": "a parameter has no description",
    "PR10": "no space before the colon between a parameter and its type",
    "RT01": "a function that returns a value has no Returns section",
    "RT03": "a return value has no description",
    "YD01": "a generator has no Yields section",
}

# The public names defined in C (parpy._core) have their docstrings in csrc/, in the
# "name(sig)\n--\n\n" form that inspect.signature reads, and are checked like the rest, except:
# Kernel, whose instances' own __doc__ (each kernel's) hides the type's, and whose __module__ is
# a descriptor numpydoc cannot read; ShutDown, an exception class (queue.ShutDown on 3.13+).
C_DEFINED = {
    "Kernel",
    "ShutDown",
}


def public_modules() -> Iterator[Any]:
    """parpy, then every module of it with no underscore in its dotted name."""
    yield parpy
    for info in pkgutil.walk_packages(parpy.__path__, "parpy."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            yield importlib.import_module(info.name)


def public_names(module: Any) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is not None:
        return list(names)
    return [
        name
        for name, obj in vars(module).items()
        if not name.startswith("_") and getattr(obj, "__module__", None) == module.__name__
    ]


def is_c(obj: object) -> bool:
    return any(obj is value for value in vars(_core).values())


def from_parpy(obj: object) -> bool:
    """A function or class that parpy defines in Python."""
    if not (inspect.isfunction(obj) or inspect.isclass(obj)) or is_c(obj):
        return False
    module = getattr(obj, "__module__", None)
    return isinstance(module, str) and module.split(".")[0] == "parpy"


def methods(cls: type) -> Iterator[tuple[str, Callable[..., Any]]]:
    """The public methods of cls, its parpy base classes' included; not properties."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        if not (from_parpy(klass) or is_c(klass)):
            continue
        for name, attr in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            if isinstance(attr, (staticmethod, classmethod)):
                attr = attr.__func__
            if inspect.isfunction(attr) or inspect.ismethoddescriptor(attr):
                yield name, attr


def public_api() -> dict[str, object]:
    """Every checked object by its public name (the first name found: ``parpy.Pool.map``)."""
    api: dict[str, object] = {}
    ids = {id(getattr(parpy, name)) for name in C_DEFINED}  # left out

    def add(name: str, obj: object) -> None:
        if id(obj) not in ids:
            ids.add(id(obj))
            api[name] = obj

    for module in public_modules():
        for name in public_names(module):
            obj = getattr(module, name)
            qualified = f"{module.__name__}.{name}"
            if is_c(obj) and callable(obj) and not inspect.isclass(obj):
                add(qualified, obj)
            elif from_parpy(obj) or (is_c(obj) and inspect.isclass(obj)):
                add(qualified, obj)
                if inspect.isclass(obj):
                    for method_name, method in methods(obj):
                        add(f"{qualified}.{method_name}", method)
    return api


API = public_api()


def raised(func: Callable[..., Any]) -> set[str]:
    """The exceptions func raises itself, by class name (not those of nested functions)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(func))).body[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.Raise) and child.exc is not None:
                exc = child.exc.func if isinstance(child.exc, ast.Call) else child.exc
                name = exc.id if isinstance(exc, ast.Name) else getattr(exc, "attr", "")
                if name[:1].isupper():  # a class, not ``raise error`` of a variable
                    found.add(name)
            visit(child)

    visit(tree)
    return found


def documented_raises(obj: object) -> set[str]:
    """The exception classes under Raises, by class name (``a.b.Error`` is ``Error``)."""
    names: set[str] = set()
    for entry in get_doc_object(obj)["Raises"]:
        for kind in (entry.type or entry.name).split(","):
            names.add(kind.strip().rsplit(".", 1)[-1])
    return names


def errors(obj: object) -> list[str]:
    """What is wrong with obj's docstring: numpydoc's checked codes, then undocumented raises."""
    result = validate(get_doc_object(obj))
    found = [f"{code} {message}" for code, message in result["errors"] if code in CHECKED]
    if inspect.isclass(obj):
        bodies = [vars(obj)[m] for m in ("__init__", "__post_init__") if m in vars(obj)]
        bodies = [f for f in bodies if inspect.isfunction(f)]  # not a C type's slot wrapper
    else:
        bodies = [obj] if inspect.isfunction(obj) else []  # a C object: no Python source
    # not the __init__ that dataclasses and NamedTuple write, which has no source file
    bodies = [f for f in bodies if f.__code__.co_filename.endswith(".py")]
    missing = set().union(*map(raised, bodies)) - documented_raises(obj)
    if missing:
        found.append(f"raises {', '.join(sorted(missing))}, not listed under Raises")
    return found


@pytest.mark.parametrize("name", sorted(API))
def test_docstring_is_numpydoc(name):
    assert errors(API[name]) == []


def test_the_walk_finds_the_public_api():
    for name in [
        "parpy.Pool",
        "parpy.Pool.map",
        "parpy.Pool.imap",
        "parpy.ThreadPoolExecutor.submit",
        "parpy.Pipeline.imap",
        "parpy.Stage",
        "parpy.PipelineStats.as_dict",
        "parpy.Report.from_json",
        "parpy.CrawlResult.get",
        "parpy.map",
        "parpy.fib_batch",
        "parpy.compare",
        "parpy.crawl",
        "parpy.set_num_threads",
        "parpy.comparison.measure",
        "parpy.comparison.Workload.items",
        "parpy.crawler.Site",
        "parpy.crawler.normalize",
        "parpy.crawler.classic.crawl",
        "parpy.crawler.site.fetch",
        "parpy.lab.race",
        "parpy.lab.RaceReport.plot",
        "parpy.reference.fib",
        "parpy.reference.extract_links",
        "parpy.pool.AsyncResult.get",
    ]:
        assert name in API
    assert not any(name.split(".")[-1].startswith("_") for name in API)


def test_the_c_exclusions_are_c_objects():
    # The list names C objects only: it hides no Python docstring from the check.
    for name in C_DEFINED:
        assert name in parpy.__all__
        assert is_c(getattr(parpy, name))


def _documented(n, m):
    """Return n mod m.

    Parameters
    ----------
    n : int
        The dividend.

    Returns
    -------
    int
        The remainder.
    """
    if m == 0:
        raise ValueError("m must not be 0")
    return n % m


def test_the_check_fails_on_what_is_missing():
    assert errors(_documented) == [
        "PR01 Parameters {'m'} not documented",
        "raises ValueError, not listed under Raises",
    ]


@pytest.mark.parametrize("name", ["parpy.Pool.map", "parpy.compare", "parpy.Pipeline"])
def test_help_shows_the_sections(name):
    text = pydoc.render_doc(API[name], renderer=pydoc.plaintext)
    for section in ("Parameters\n", "Raises\n"):
        assert section in text
