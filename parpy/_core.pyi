from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any, Final

class Kernel:
    __name__: str
    __qualname__: str
    __text_signature__: str
    arity: int
    def __call__(self, *args: int) -> int: ...

fib: Final[Kernel]
fib_iterative: Final[Kernel]
fib_recursive: Final[Kernel]
fib_mod: Final[Kernel]
gmp_version: Final[str]
openmp_version: Final[int]

class Control:
    cancelled: bool
    done: int
    def cancel(self) -> None: ...
    def add(self, n: int, /) -> None: ...

class WorkQueue:
    idle: int
    pending: int
    closed: bool
    def run(self, max_tasks: int, /) -> bool: ...
    def submit(
        self,
        future: Future[Any] | None,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        /,
    ) -> bool: ...
    def drain(self) -> list[Future[Any]]: ...
    def close(self) -> None: ...
    def stop(self) -> list[Future[Any]]: ...

def run_batch(
    kernel: Kernel,
    items: Iterable[object],
    workers: int,
    schedule: int,
    chunksize: int,
    control: Control | None = None,
    /,
) -> list[int]: ...
def call(kernel: Kernel, args: tuple[Any, ...], control: Control, /) -> int: ...
def set_num_threads(n: int, /) -> None: ...
def get_num_threads() -> int: ...
