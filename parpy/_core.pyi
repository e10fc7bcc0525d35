from collections.abc import Callable, Iterable, Iterator
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
    tiny: bool
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
    def costs(self) -> list[float]: ...

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

class PipelineRun:
    done: int
    gives: tuple[bool, ...]
    def __init__(
        self, stages: tuple[tuple[Any, int, str], ...], maxsize: int, ordered: bool
    ) -> None: ...
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
    kernel: Kernel[R],
    items: Iterable[Any],
    workers: int | None = None,
    schedule: str | None = None,
    chunksize: int | None = None,
    control: Control | None = None,
    started: Callable[[int], object] | None = None,
    /,
) -> list[R]: ...
def _bind(kernel: Kernel[R], args: tuple[Any, ...], /) -> Kernel[R]: ...
def chain(kernels: tuple[Kernel[Any], ...], args: tuple[Any, ...], /) -> Any: ...
def set_num_threads(n: int, /) -> None: ...
def get_num_threads() -> int: ...

# The concurrency lab (csrc/lab.c), the engine of parpy.lab.
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
