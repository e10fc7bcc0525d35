"""The work as each backend runs it (:class:`_Work`): what :func:`_prepare`
makes of compare()'s ``work`` and items, checked before anything runs."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from parpy import reference
from parpy._core import Kernel
from parpy._support.dispatch import name_of
from parpy.comparison._shipping import _CCall, _Composed, _label, _Star, _Trailing
from parpy.comparison.report import GIL_RELEASED
from parpy.comparison.workloads import WORKLOADS, Variant
from parpy.pipeline import Pipeline, Stage

Opened = tuple[Any, Callable[[], None]]  # a backend's handle, and how to close it
Call = Callable[[], list[Any]]  # one run of a backend: its results


def _pool_chunksize(items: int, workers: int) -> int:
    """multiprocessing.Pool.map's default chunk size: about 4 chunks per worker."""
    return max(1, math.ceil(items / (4 * workers)))


@dataclass
class _Work:
    items: list[Any]
    description: str
    python: Callable[[Any], Any]  # what the Python backends run per item
    native: Callable[[Any], Any]  # what parpy-pool runs per item (a kernel where one is)
    kernel: Kernel | None = None  # what parpy.map runs
    star: bool = False  # a kernel of several arguments over tuples
    python_stages: tuple[Stage, ...] = ()
    native_stages: tuple[Stage, ...] = ()
    variants: tuple[Variant, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    client: Any = None  # the user's distributed.Client, for the Dask backends
    # pp: ppservers to start on 127.0.0.1 (an int), or the addresses of running
    # ones ("host:port"), and their secret; Celery: a running broker's URL.
    pp_servers: int | tuple[str, ...] = 0
    pp_secret: str | None = None
    celery_broker: str | None = None

    @property
    def pipeline(self) -> bool:
        return bool(self.native_stages)


def _twin(kernel: Kernel) -> Callable[[Any], Any] | None:
    """What the Python backends run for a kernel: a user's C function through
    ctypes, else its pure-Python twin (with its bound arguments); None if it
    has none."""
    if kernel.signature is not None:
        return _CCall(kernel)
    ref: Callable[..., Any] | None = getattr(reference, kernel.__name__, None)
    if ref is None:
        return None
    if kernel.bound:
        return _Trailing(ref, tuple(kernel.bound))
    return ref


def _python_of(func: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """What the Python backends run for a stage function: a kernel's twin (or ctypes call)."""
    if isinstance(func, Kernel):
        return _twin(func) or func
    return func


def _describe_items(items: Sequence[Any]) -> str:
    if items and all(type(x) is int for x in items):
        return f"{len(items)} n in [{min(items)}, {max(items)}]"
    return f"{len(items)} items"


def _prepare(work: object, items: list[Any]) -> _Work:
    """The work as each backend runs it (validated; nothing runs yet)."""
    if isinstance(work, Pipeline):
        work = work.stages
    if isinstance(work, Kernel):
        label = name_of(work)
        twin = _twin(work)
        star = work.bound is None and work.min_args > 1
        python: Callable[[Any], Any] = work if twin is None else twin
        if star and not isinstance(python, _CCall):  # (which takes tuples itself)
            python = _Star(python)
        job = _Work(
            items,
            f"{label} over {_describe_items(items)}",
            python,
            work,
            work,
            star,
            meta={
                "python_runs": "the kernel (it has no twin)" if twin is None else _label(python),
                "parpy_runs": f"parpy.map({label}), "
                f"parpy.Pool.{'starmap' if star else 'map'}({label})",
            },
        )
        if isinstance(python, _CCall):
            python.check(items)  # as the kernel would: ctypes takes more
            job.meta[GIL_RELEASED] = f"by ctypes during each call of {work.__name__}"
        return job
    if isinstance(work, (list, tuple)):
        if not work:
            raise ValueError("a pipeline needs at least one stage")
        stages = tuple(s if isinstance(s, Stage) else Stage(s) for s in work)
        python_funcs = [_python_of(s.func) for s in stages]
        return _Work(
            items,
            f"pipeline {' -> '.join(s.name for s in stages)} over {_describe_items(items)}",
            _Composed(python_funcs),
            _Composed([s.func for s in stages]),
            python_stages=tuple(
                Stage(f, s.workers, s.name) for f, s in zip(python_funcs, stages, strict=True)
            ),
            native_stages=stages,
            meta={
                "python_runs": " -> ".join(map(_label, python_funcs)),
                "parpy_runs": "parpy.Pipeline (native), parpy.Pool.map of the stages composed",
                "pipeline_workers": "every stage on the swept worker count",
            },
        )
    if callable(work):
        name = name_of(work)
        return _Work(
            items,
            f"{name} over {_describe_items(items)}",
            work,
            work,
            meta={"python_runs": _label(work), "parpy_runs": f"parpy.Pool.map({name})"},
        )
    raise TypeError(
        "work must be a parpy kernel, a Python callable, a list of parpy.Stage or the name of "
        f"a built-in workload ({', '.join(WORKLOADS)}), not {type(work).__name__}"
    )
