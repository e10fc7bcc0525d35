"""The "pp" backend of parpy.compare: Parallel Python's job server."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from parpy.comparison._work import Call, Opened, _Work


def open_pp(work: _Work, workers: int) -> Opened:
    raise NotImplementedError("the pp backend")


def call_pp(handle: Any, work: _Work, workers: int, options: Mapping[str, Any]) -> Call:
    raise NotImplementedError("the pp backend")
