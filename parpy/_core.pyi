from collections.abc import Callable, Iterable, Iterator
from inspect import Signature
from os import PathLike
from types import GenericAlias
from typing import (
    Any,
    Final,
    Generic,
    Literal,
    ParamSpec,
    Protocol,
    Self,
    SupportsIndex,
    TypeAlias,
    TypeVar,
    final,
    overload,
    type_check_only,
)

from typing_extensions import disjoint_base

__all__ = ["fib", "fib_iterative", "fib_recursive", "fib_mod", "to_decimal", "extract_links"]

_P = ParamSpec("_P")
_R = TypeVar("_R")
_T = TypeVar("_T")
# A kernel's call signature: one of the protocols below.
_F_co = TypeVar("_F_co", bound=Callable[..., object], covariant=True)
_Unary = TypeVar("_Unary", bound=Callable[[Any], object])

_LinksMode: TypeAlias = Literal["html", "regex"]

# The call signature of each kernel (tests/test_stubs.py checks them against
# inspect.signature). Kernel[F] is called as F is.
@type_check_only
class _Fib(Protocol):
    def __call__(self, n: SupportsIndex, /) -> int: ...

@type_check_only
class _FibSplit(Protocol):
    def __call__(self, n: SupportsIndex, /, *, workers: int | None = None) -> int: ...

@type_check_only
class _FibMod(Protocol):
    def __call__(self, n: SupportsIndex, m: SupportsIndex, /) -> int: ...

@type_check_only
class _ToDecimal(Protocol):
    def __call__(self, x: int, /, *, workers: int | None = None) -> str: ...

@type_check_only
class _ExtractLinks(Protocol):
    def __call__(
        self, html: str | bytes, /, base_url: str | None = None, mode: _LinksMode = "html"
    ) -> list[str]: ...

@type_check_only
class _ExtractLinksBound(Protocol):
    def __call__(self, html: str | bytes, /) -> list[str]: ...

@final
class Kernel(Generic[_F_co]):
    @property
    def __name__(self) -> str: ...
    @property
    def __qualname__(self) -> str: ...
    @property
    def __text_signature__(self) -> str | None: ...
    @property
    def __signature__(self) -> Signature: ...
    @property
    def min_args(self) -> int: ...
    @property
    def max_args(self) -> int: ...
    @property
    def input(self) -> str | None: ...
    @property
    def output(self) -> str | None: ...
    @property
    def bound(self) -> tuple[Any, ...] | None: ...
    @property
    def signature(self) -> str | None: ...
    @property
    def address(self) -> int | None: ...
    # A user's C function: its arguments and result are ints or floats, by its signature.
    @classmethod
    def from_cfunc(
        cls, fn: object, signature: str | None = None, *, name: str | None = None
    ) -> Kernel[Callable[..., Any]]: ...
    @classmethod
    def from_library(
        cls,
        path: str | bytes | PathLike[str] | PathLike[bytes],
        symbol: str,
        signature: str,
        *,
        name: str | None = None,
    ) -> Kernel[Callable[..., Any]]: ...
    def __call__(self: Kernel[Callable[_P, _R]], *args: _P.args, **kwargs: _P.kwargs) -> _R: ...
    # bind fixes the arguments after the first: the result takes one argument.
    @overload
    def bind(self: Kernel[_FibMod], m: SupportsIndex, /) -> Kernel[_Fib]: ...
    @overload
    def bind(
        self: Kernel[_ExtractLinks], base_url: str | None = None, mode: _LinksMode = "html", /
    ) -> Kernel[_ExtractLinksBound]: ...
    @overload
    def bind(self: Kernel[_Unary], /) -> Kernel[_Unary]: ...
    @overload
    def bind(self: Kernel[Callable[..., _R]], *args: Any) -> Kernel[Callable[[Any], _R]]: ...

class Cancelled(RuntimeError): ...

class StatusError(RuntimeError):
    status: int

fib: Final[Kernel[_FibSplit]]
fib_iterative: Final[Kernel[_Fib]]
fib_recursive: Final[Kernel[_Fib]]
fib_mod: Final[Kernel[_FibMod]]
to_decimal: Final[Kernel[_ToDecimal]]
extract_links: Final[Kernel[_ExtractLinks]]
gmp_version: Final[str]
openmp_version: Final[int]

class ShutDown(Exception): ...

@disjoint_base
class Queue(Generic[_T]):
    maxsize: int
    @property
    def unfinished_tasks(self) -> int: ...
    @property
    def is_shutdown(self) -> bool: ...
    def __init__(self, maxsize: int = 0) -> None: ...
    def __class_getitem__(cls, item: Any, /) -> GenericAlias: ...
    def put(self, item: _T, block: bool = True, timeout: float | None = None) -> None: ...
    def put_nowait(self, item: _T) -> None: ...
    def get(self, block: bool = True, timeout: float | None = None) -> _T: ...
    def get_nowait(self) -> _T: ...
    def task_done(self) -> None: ...
    def join(self) -> None: ...
    def qsize(self) -> int: ...
    def empty(self) -> bool: ...
    def full(self) -> bool: ...
    def shutdown(self, immediate: bool = False) -> None: ...

@final
class Control:
    @property
    def cancelled(self) -> bool: ...
    @property
    def done(self) -> int: ...
    def cancel(self) -> None: ...
    def add(self, n: int, /) -> None: ...

@final
class Batch:
    @property
    def tiny(self) -> bool: ...
    def __new__(
        cls,
        kernel: Kernel[Any],
        items: Iterable[Any],
        *,
        workers: int = 1,
        schedule: int = 0,
        chunksize: int = 0,
        control: Control | None = None,
        call: bool = False,
        outcomes: bool = False,
        start: int = 0,
    ) -> Self: ...
    def __len__(self) -> int: ...
    def run(self) -> Any: ...
    def costs(self) -> list[float]: ...

@final
class WorkQueue:
    @property
    def idle(self) -> int: ...
    @property
    def pending(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def run(self, max_tasks: int, /) -> bool: ...
    def submit(
        self,
        target: Any,
        index: int,
        fn: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        /,
    ) -> bool: ...
    def drain(self) -> list[Any]: ...
    def close(self) -> None: ...
    def stop(self) -> list[Any]: ...

@final
class PipelineRun:
    @property
    def done(self) -> int: ...
    @property
    def gives(self) -> tuple[bool, ...]: ...
    def __new__(
        cls, stages: tuple[tuple[Any, int, str], ...], maxsize: int, ordered: bool
    ) -> Self: ...
    def feed(self, iterator: Iterator[Any], total: int | None = None, /) -> None: ...
    def work(self, k: int, /) -> None: ...
    def next(self) -> list[Any] | None: ...
    def stop(self, error: BaseException | None = None, /) -> None: ...
    def close(self) -> None: ...
    def counters(
        self,
    ) -> tuple[float, bool, float, tuple[tuple[int, int, float, float, float], ...]]: ...

def call(
    kernel: Kernel[Any], args: tuple[Any, ...], control: Control | None = None, /
) -> Batch: ...
def map(  # noqa: A001
    kernel: Kernel[Callable[..., _R]],
    items: Iterable[Any],
    workers: int | None = None,
    schedule: str | None = None,
    chunksize: int | None = None,
    control: Control | None = None,
    started: Callable[[int], object] | None = None,
    out: Any = None,
    /,
) -> Any: ...
def _bind(kernel: Kernel[Any], args: tuple[Any, ...], /) -> Kernel[Any]: ...
def _from_library(path: str, symbol: str, signature: str, name: str | None, /) -> Kernel[Any]: ...
def chain(kernels: tuple[Kernel[Any], ...], args: tuple[Any, ...], /) -> Any: ...
def set_num_threads(n: int, /) -> None: ...
def get_num_threads() -> int: ...

# The concurrency lab (csrc/lab/lab.c), the engine of parpy.lab.
def _lab_race(
    mode: str, threads: int, increments: int, /
) -> tuple[int, tuple[tuple[float, float], ...]]: ...
def _lab_deadlock(
    mode: str, timeout: float, rounds: int, /
) -> tuple[
    float,
    float | None,
    int | None,
    tuple[
        tuple[int, int, float, int | None, int | None, float | None, float | None, float | None],
        ...,
    ],
]: ...
def _lab_starvation(
    policy: str, workers: int, seconds: float, /
) -> tuple[float, tuple[tuple[int, float, float], ...]]: ...
def _lab_reduce(
    method: str, threads: int, items: int, /
) -> tuple[int, float, tuple[float, ...]]: ...
