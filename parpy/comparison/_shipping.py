"""Functions as worker processes get them.

Picklable wrappers for what the Python backends run (a bound kernel's twin,
a kernel over tuples, a pipeline's stages composed), each with its name for
the report (:func:`_label`); :class:`_Shipped`, a function sent as its pickle
that a worker which cannot load it turns into one raising
:class:`WorkerLoadError`; and :func:`_not_shippable`, which says before
anything starts why worker processes cannot get a function."""

from __future__ import annotations

import pickle
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any

from parpy._support.dispatch import name_of

__all__ = ["WorkerLoadError"]


class WorkerLoadError(RuntimeError):
    """A worker process could not load the function it was sent."""


# ---- picklable pieces: what Python backends run ------------------------------


class _Trailing:
    """``func(x, *args)``: a bound kernel's twin (picklable, unlike a closure)."""

    __slots__ = ("args", "func")

    def __init__(self, func: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.func = func
        self.args = args

    def __call__(self, x: Any) -> Any:
        return self.func(x, *self.args)

    def __reduce__(self) -> Any:
        return (_Trailing, (self.func, self.args))

    def __repr__(self) -> str:
        return f"{_label(self.func)}(x, {', '.join(map(repr, self.args))})"


def _label(func: Callable[..., Any]) -> str:
    """A function's name for the report: parpy.reference.fib, fib_mod.bind(7), ..."""
    if isinstance(func, types.FunctionType) and func.__module__ != "__main__":
        return f"{func.__module__}.{func.__qualname__}"
    if isinstance(func, (_Trailing, _Star, _Composed)):
        return repr(func)
    return name_of(func)


class _Star:
    """``func(*x)``: a kernel of several arguments, over tuples."""

    __slots__ = ("func",)

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func

    def __call__(self, x: Any) -> Any:
        return self.func(*x)

    def __reduce__(self) -> Any:
        return (_Star, (self.func,))

    def __repr__(self) -> str:
        return f"{_label(self.func)}(*x)"


class _Composed:
    """The stage functions applied in turn: one item through a whole pipeline."""

    __slots__ = ("funcs",)

    def __init__(self, funcs: Sequence[Callable[[Any], Any]]) -> None:
        self.funcs = tuple(funcs)

    def __call__(self, x: Any) -> Any:
        for func in self.funcs:
            x = func(x)
        return x

    def __reduce__(self) -> Any:
        return (_Composed, (self.funcs,))

    def __repr__(self) -> str:
        return " -> ".join(map(_label, self.funcs))


class _Shipped:
    """``func``, sent to worker processes as its pickle and loaded when the
    task is: a worker that cannot load it gets a function that raises
    :class:`WorkerLoadError` instead (a multiprocessing.Pool worker that fails
    to unpickle its task dies, and the map then waits forever)."""

    __slots__ = ("blob", "func")

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self.blob = pickle.dumps(func, pickle.HIGHEST_PROTOCOL)

    def __call__(self, *args: Any) -> Any:
        return self.func(*args)

    def __reduce__(self) -> Any:
        return (_load, (self.blob,))


def _load(blob: bytes) -> Callable[..., Any]:
    try:
        func: Callable[..., Any] = pickle.loads(blob)
    except Exception as exc:
        return _Unloadable(f"{type(exc).__name__}: {exc}")
    return func


class _Unloadable:
    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __call__(self, *args: Any) -> Any:
        raise WorkerLoadError(f"a worker process could not load the function: {self.reason}")


def _ready(i: int) -> int:
    """A trivial task: a worker process is up and has imported parpy."""
    return i


class _MainFinder(pickle.Pickler):
    """Pickles to nowhere, noting functions and classes of ``__main__``."""

    def __init__(self) -> None:
        super().__init__(_Discard(), pickle.HIGHEST_PROTOCOL)
        self.found: str | None = None

    def persistent_id(self, obj: Any) -> None:
        if (
            self.found is None
            and isinstance(obj, (types.FunctionType, type))
            and getattr(obj, "__module__", None) == "__main__"
        ):
            self.found = obj.__qualname__
        return None


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)


def _not_shippable(func: Callable[..., Any]) -> str | None:
    """Why worker processes cannot get ``func``; None when they can."""
    finder = _MainFinder()
    try:
        finder.dump(func)
    except Exception as exc:  # a lambda, a local function, an object with a lock...
        return f"{name_of(func)} does not pickle ({exc}), so no worker process can get it"
    main = sys.modules.get("__main__")
    if finder.found is not None and not getattr(main, "__file__", None):
        return (
            f"{finder.found} is defined in __main__ of a notebook or an interactive session, "
            f"which worker processes cannot import: define it in a module"
        )
    return None
