"""Which calls run natively: the one place that decides; and what to call a
callable in errors and reports.

A call runs natively, as a batch computed in C without the GIL, when its
function is a parpy kernel and its arguments fit the kernel: as many
positional arguments as the kernel takes, and no keyword arguments. Every
executor (parpy.map, Pool, ThreadPoolExecutor) asks here; anything else runs
as a Python call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from parpy._core import Kernel

__all__ = ["kernel_for", "name_of"]


def kernel_for(func: object, nargs: int, kwargs: dict[str, Any] | None = None) -> Kernel | None:
    """The kernel that computes ``func(*args, **kwargs)`` natively, when
    ``args`` has ``nargs`` items; else None."""
    if isinstance(func, Kernel) and not kwargs and func.min_args <= nargs <= func.max_args:
        return func
    return None


def name_of(func: Callable[..., Any]) -> str:
    """What to call func in errors and reports: its name, a kernel's with its
    bound arguments (``fib_mod.bind(7)``)."""
    while isinstance(func, functools.partial):
        func = func.func
    if isinstance(func, Kernel):
        if func.bound is None:
            return func.__name__
        return f"{func.__name__}.bind({', '.join(map(repr, func.bound))})"
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    return name if isinstance(name, str) else type(func).__name__
