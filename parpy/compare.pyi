import argparse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, TypeVar

_T = TypeVar("_T")
_R = TypeVar("_R")

ALGORITHMS: Final[tuple[str, ...]]
DEFAULT_WORKLOADS: Final[dict[str, tuple[int, int, int]]]

class MismatchError(AssertionError): ...

def make_ns(
    count: int, n_min: int, n_max: int, distribution: str = "uniform", seed: int = 0
) -> list[int]: ...
def reference_twin(algorithm: str) -> Callable[[int], int]: ...
def thread_map(func: Callable[[_T], _R], items: Sequence[_T], workers: int) -> list[_R]: ...
def process_map(func: Callable[[_T], _R], items: Sequence[_T], workers: int) -> list[_R]: ...

class Backend(NamedTuple):
    run: Callable[[str, list[int], int], list[int]]
    parallel: bool
    def workers_for(self, workers: int) -> int: ...

BACKENDS: Final[dict[str, Backend]]

def runners(
    algorithm: str, ns: Sequence[int], workers: int, backends: Iterable[str] = ...
) -> dict[str, Callable[[], list[int]]]: ...
def measure(
    funcs: Mapping[str, Callable[[], object]], repeat: int, *, number: int = 1
) -> dict[str, list[float]]: ...

@dataclass(frozen=True)
class Row:
    backend: str
    workers: int
    seconds: float
    speedup: float
    times: list[float]

@dataclass(frozen=True)
class Report:
    algorithm: str
    count: int
    n_min: int
    n_max: int
    repeat: int
    baseline: str
    rows: list[Row]
    def to_dict(self) -> dict[str, Any]: ...

def compare(
    algorithm: str = "iterative",
    ns: Sequence[int] | None = None,
    backends: str | Sequence[str] | None = None,
    workers: int | None = None,
    repeat: int = 5,
) -> Report: ...
def add_arguments(parser: argparse.ArgumentParser) -> None: ...
def run_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int: ...
