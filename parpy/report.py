"""parpy.report: the report of a comparison. It lives in
:mod:`parpy.comparison.report`, with the rest of compare(); this name stays."""

from parpy.comparison.report import (
    Fit,
    Report,
    Row,
    Skip,
    Timing,
    amdahl_fit,
    karp_flatt,
)

__all__ = ["Fit", "Report", "Row", "Skip", "Timing", "amdahl_fit", "karp_flatt"]
