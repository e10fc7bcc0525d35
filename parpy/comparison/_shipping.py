"""Functions as worker processes get them.

Picklable wrappers for what the Python backends run (a bound kernel's twin,
a kernel over tuples, a user's C function called through ctypes, a
pipeline's stages composed), each with its name for the report
(:func:`_label`); :class:`_Shipped`, a function sent as its pickle
that a worker which cannot load it turns into one raising
:class:`WorkerLoadError`; and :func:`_not_shippable`, which says before
anything starts why worker processes cannot get a function."""

from __future__ import annotations

import ctypes
import operator
import pickle
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any

from parpy._core import Kernel, StatusError
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
    if isinstance(func, (_Trailing, _Star, _CCall, _Composed)):
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


_CTYPES: dict[str, Any] = {
    "int64": ctypes.c_int64,
    "uint64": ctypes.c_uint64,
    "float64": ctypes.c_double,
}
_RANGES = {"int64": range(-(2**63), 2**63), "uint64": range(2**64)}


def _check_argument(name: str, position: int, arg: Any, kind: str) -> None:
    """Raise what a user function's kernel raises for ``arg`` as its
    argument ``position`` of type ``kind`` (ctypes would take a bool, and
    wrap an int out of range)."""
    if kind == "float64":
        if isinstance(arg, bool) or not isinstance(arg, (float, int)):
            raise TypeError(
                f"{name}() argument {position} must be a number, not {type(arg).__name__}"
            )
        float(arg)  # an int beyond float's range: OverflowError
        return
    if isinstance(arg, bool) or not hasattr(type(arg), "__index__"):
        raise TypeError(f"{name}() argument {position} must be an int, not {type(arg).__name__}")
    if operator.index(arg) not in _RANGES[kind]:
        raise OverflowError(
            f"{name}() argument {position} must be in the range of {kind}, not {arg!r}"
        )


class _CCall:
    """A user's C function kernel (Kernel.from_cfunc, from_library) called
    through ctypes, one item per call: ``fn(*x)`` over tuples for a kernel of
    several arguments, else ``fn(x, *bound)``. ctypes releases the GIL during
    each call. It pickles as its kernel (from_library's form: path, symbol,
    signature), and the process that loads it makes its own ctypes function."""

    __slots__ = ("args", "bound", "fn", "kernel", "result", "star")

    def __init__(self, kernel: Kernel) -> None:
        assert kernel.signature is not None and kernel.address is not None
        self.kernel = kernel  # keeps the function's library open
        self.bound = tuple(kernel.bound or ())
        self.star = kernel.bound is None and kernel.min_args > 1
        result, _, args = kernel.signature.rstrip(")").partition("(")
        self.args = args.split(", ")  # the argument types
        self.result = None  # the result's type, for a function with a status
        if result == "int":  # "int(a, ..., r*)"
            self.result = _CTYPES[self.args.pop().rstrip("*")]
            prototype = ctypes.CFUNCTYPE(
                ctypes.c_int, *(_CTYPES[a] for a in self.args), ctypes.POINTER(self.result)
            )
        else:
            prototype = ctypes.CFUNCTYPE(_CTYPES[result], *(_CTYPES[a] for a in self.args))
        self.fn = prototype(kernel.address)

    @property
    def __name__(self) -> str:  # for name_of: the kernel's name
        return name_of(self.kernel)

    def __call__(self, x: Any) -> Any:
        args = tuple(x) if self.star else (x, *self.bound)
        if self.result is None:
            return self.fn(*args)
        out = self.result()
        status = self.fn(*args, ctypes.byref(out))
        if status != 0:  # what the kernel raises
            exc = StatusError(f"{self.kernel.__name__}: returned status {status}")
            exc.status = status
            raise exc
        return out.value

    def check(self, items: Sequence[Any]) -> None:
        """Raise the kernel's TypeError or OverflowError for the first item it
        refuses, with the item's position in a note."""
        name = self.kernel.__name__
        kinds = self.args if self.star else self.args[:1]  # (the bound ones are checked)
        for i, item in enumerate(items):
            try:
                args = tuple(item) if self.star else (item,)
                if len(args) != len(kinds):
                    raise TypeError(f"{name}() takes {len(kinds)} arguments ({len(args)} given)")
                for position, (arg, kind) in enumerate(zip(args, kinds, strict=True), 1):
                    _check_argument(name, position, arg, kind)
            except (TypeError, OverflowError) as exc:
                exc.add_note(f"parpy.compare: items[{i}]")
                raise

    def __reduce__(self) -> Any:
        return (_CCall, (self.kernel,))

    def __repr__(self) -> str:
        call = "*x" if self.star else ", ".join(["x", *map(repr, self.bound)])
        return f"{self.kernel.__name__}({call}) through ctypes"


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
