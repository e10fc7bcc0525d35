"""Which calls run natively: the one place that decides.

A call runs natively, as a batch computed in C without the GIL, when its
function is a parpy kernel and its arguments fit the kernel: as many
positional arguments as the kernel takes, and no keyword arguments. Every
executor (parpy.map, Pool, ThreadPoolExecutor) asks here; anything else runs
as a Python call.
"""

from __future__ import annotations

from typing import Any

from parpy._core import Kernel

__all__ = ["kernel_for"]


def kernel_for(func: object, nargs: int, kwargs: dict[str, Any] | None = None) -> Kernel | None:
    """The kernel that computes ``func(*args, **kwargs)`` natively, when
    ``args`` has ``nargs`` items; else None."""
    if isinstance(func, Kernel) and not kwargs and func.min_args <= nargs <= func.max_args:
        return func
    return None
