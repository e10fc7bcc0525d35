"""Dask's distributed Client as parpy's features take it: checked, and its
threads counted."""

from __future__ import annotations

from typing import Any

__all__ = ["require", "threads"]


def require(client: object) -> Any:
    """Return the ``distributed`` module, checking that ``client`` is its Client
    and is not closed.

    Raises ImportError, naming the extra to install, when Dask's distributed
    scheduler is not installed; ValueError for a closed (or closing) client.
    """
    try:
        import distributed
    except ImportError:
        raise ImportError(
            "client= needs Dask's distributed scheduler: pip install 'parpy[dask]'"
        ) from None
    if not isinstance(client, distributed.Client):
        raise TypeError(f"client must be a distributed.Client, not {type(client).__name__}")
    if client.status in ("closing", "closed"):
        raise ValueError(
            f"the Dask client {client.id} is {client.status}: give an open distributed.Client"
        )
    return distributed


def threads(client: Any) -> int:
    """The threads of the Dask workers behind ``client`` (at least 1)."""
    return max(1, sum(client.nthreads().values()))
