from collections.abc import Iterable
from typing import Any, Final, Generic, TypeVar

R = TypeVar("R")

__all__ = ["fib", "fib_iterative", "fib_recursive", "fib_mod", "to_decimal", "extract_links"]

class Kernel(Generic[R]):
    __name__: str
    __qualname__: str
    __text_signature__: str
    min_args: int
    max_args: int
    input: str | None
    output: str | None
    bound: tuple[Any, ...] | None
    def __call__(self, *args: Any, **kwargs: Any) -> R: ...
    def bind(self, *args: Any) -> Kernel[R]: ...

class Cancelled(RuntimeError): ...

fib: Final[Kernel[int]]
fib_iterative: Final[Kernel[int]]
fib_recursive: Final[Kernel[int]]
fib_mod: Final[Kernel[int]]
to_decimal: Final[Kernel[str]]
extract_links: Final[Kernel[list[str]]]
gmp_version: Final[str]
openmp_version: Final[int]

class ShutDown(Exception): ...

_T = TypeVar("_T")

class Queue(Generic[_T]):
    maxsize: int
    unfinished_tasks: int
    is_shutdown: bool
    def __init__(self, maxsize: int = 0) -> None: ...
    def put(self, item: _T, block: bool = True, timeout: float | None = None) -> None: ...
    def put_nowait(self, item: _T, /) -> None: ...
    def get(self, block: bool = True, timeout: float | None = None) -> _T: ...
    def get_nowait(self) -> _T: ...
    def task_done(self) -> None: ...
    def join(self) -> None: ...
    def qsize(self) -> int: ...
    def empty(self) -> bool: ...
    def full(self) -> bool: ...
    def shutdown(self, immediate: bool = False) -> None: ...

class Control:
    cancelled: bool
    done: int
    def cancel(self) -> None: ...
    def add(self, n: int, /) -> None: ...

class Batch:
    cost: float
    tiny: bool
    threads: int
    def __init__(
        self,
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
    ) -> None: ...
    def __len__(self) -> int: ...
    def run(self) -> Any: ...

class WorkQueue:
    idle: int
    pending: int
    closed: bool
    def run(self, max_tasks: int, /) -> bool: ...
    def submit(
        self,
        target: Any,
        index: int,
        fn: Any,
        args: tuple[Any, ...] = ...,
        kwargs: dict[str, Any] | None = ...,
        /,
    ) -> bool: ...
    def drain(self) -> list[Any]: ...
    def close(self) -> None: ...
    def stop(self) -> list[Any]: ...

def call(
    kernel: Kernel[Any], args: tuple[Any, ...], control: Control | None = None, /
) -> Batch: ...
def _bind(kernel: Kernel[R], args: tuple[Any, ...], /) -> Kernel[R]: ...
def chain(kernels: tuple[Kernel[Any], ...], args: tuple[Any, ...], /) -> Any: ...
def set_num_threads(n: int, /) -> None: ...
def get_num_threads() -> int: ...
