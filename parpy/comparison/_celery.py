"""The "celery" backend of parpy.compare: a Celery app on a Redis broker."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from parpy.comparison._work import Call, Opened, _Work


def open_celery(work: _Work, workers: int) -> Opened:
    raise NotImplementedError("the celery backend")


def call_celery(handle: Any, work: _Work, workers: int, options: Mapping[str, Any]) -> Call:
    raise NotImplementedError("the celery backend")
