from collections.abc import Iterable
from typing import Final

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

def run_batch(
    kernel: Kernel, items: Iterable[object], workers: int, schedule: int, chunksize: int, /
) -> list[int]: ...
def set_num_threads(n: int, /) -> None: ...
def get_num_threads() -> int: ...
