"""How parpy's reports render: one table (aligned text for ``str()``, HTML for Jupyter's
``_repr_html_``) with one style sheet, one palette for plots, and counted nouns.

compare()'s Report, PipelineStats, CrawlResult and the lab's reports all render through
:class:`Table`; each wraps its HTML in ``<div class="parpy-KIND">``, which the style sheet
selects as ``[class|="parpy"]``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

# A heading, or its top and bottom lines (a name over its unit): two lines in text, one in
# HTML ("median (s)").
Heading = str | tuple[str, str]

# Numbers right-aligned in tabular figures, the first column and the caption on the left; a cell
# aligned otherwise has the class "l" or "r".
STYLE = """<style>
[class|="parpy"] td, [class|="parpy"] th { text-align: right; font-variant-numeric: tabular-nums; }
[class|="parpy"] td:first-child, [class|="parpy"] th:first-child { text-align: left; }
[class|="parpy"] .l { text-align: left; }
[class|="parpy"] .r { text-align: right; }
[class|="parpy"] caption { text-align: left; }
</style>"""


@dataclass(frozen=True)
class Table:
    """Rows of text cells under headings, with a caption above and notes below."""

    kind: str  # the HTML's <div class="parpy-KIND">
    head: Sequence[Heading]
    rows: Sequence[Sequence[str]]
    caption: str = ""
    notes: Sequence[str] = ()
    align: str = ""  # "l" or "r" per column; by default the first "l", the others "r"

    def _left(self, column: int) -> bool:
        return (self.align or "l".ljust(len(self.head), "r"))[column] == "l"

    def text(self) -> str:
        """The caption, the aligned columns and the notes, one line each."""
        heads = [h if isinstance(h, tuple) else ("", h) for h in self.head]
        grid: list[Sequence[str]] = [[bottom for _, bottom in heads], *self.rows]
        if any(top for top, _ in heads):
            grid.insert(0, [top for top, _ in heads])
        widths = [max(len(row[c]) for row in grid) for c in range(len(heads))]
        lines = [
            "  ".join(
                cell.ljust(w) if self._left(c) else cell.rjust(w)
                for c, (cell, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
            for row in grid
        ]
        return "\n".join([*([self.caption] if self.caption else []), *lines, *self.notes])

    def html(self, *more: str) -> str:
        """The table as HTML with the style sheet, the notes as paragraphs, then ``more``."""
        esc = html.escape

        def cell(tag: str, c: int, text: str) -> str:
            # The style sheet's default: the first column on the left, the others on the right.
            side = "l" if self._left(c) else "r"
            attr = "" if (side == "l") == (c == 0) else f' class="{side}"'
            return f"<{tag}{attr}>{esc(text)}</{tag}>"

        heads = [f"{h[0]} ({h[1]})" if isinstance(h, tuple) and h[0] else h[-1] for h in self.head]
        head = "".join(cell("th", c, h) for c, h in enumerate(heads))
        body = "".join(
            "<tr>" + "".join(cell("td", c, text) for c, text in enumerate(row)) + "</tr>"
            for row in self.rows
        )
        caption = f"<caption>{esc(self.caption)}</caption>" if self.caption else ""
        return "\n".join(
            [
                f'<div class="parpy-{self.kind}">',
                STYLE,
                f"<table>{caption}",
                f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>",
                *(f"<p>{esc(note)}</p>" for note in self.notes),
                *more,
                "</div>",
            ]
        )


def plural(count: int, noun: str) -> str:
    """``1 worker``, ``2 workers``, ``1,000 items``."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def palette(n: int) -> list[str]:
    """``n`` colours from matplotlib's default cycle, repeated as needed (imports matplotlib)."""
    from matplotlib import rcParams

    cycle: list[str] = rcParams["axes.prop_cycle"].by_key()["color"]
    return [cycle[i % len(cycle)] for i in range(n)]
