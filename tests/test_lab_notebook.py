"""benchmarks/lab.ipynb, the concurrency lab's notebook: committed without outputs, and runs
top to bottom in a real Jupyter kernel, rendering every report and plot.

It is run as tests/test_notebook.py runs benchmarks/compare.ipynb, with that module's
kernelspec fixture (a kernel on this interpreter, nothing registered) and helpers: executed
in memory from ``benchmarks/``, never written back, every cell and the whole run under a
deadline.
"""

from __future__ import annotations

import base64

import nbformat
import pytest
from _util import REPO
from test_notebook import code_cells, outputs, run_notebook
from test_notebook import kernel_name as kernel_name  # the fixture, for the test below

NOTEBOOK = REPO / "benchmarks" / "lab.ipynb"
CELL_TIMEOUT = 60  # seconds, any one cell (the longest takes about 3 s on 2 cores)
RUN_TIMEOUT = 180  # seconds, the whole notebook (about 15 s on 2 idle cores)

pytestmark = pytest.mark.unsafe_under(
    "address",
    "thread",
    reason="the notebook lives in benchmarks/, which .ci/sanitize does not copy",
)


def test_the_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert code_cells(nb)
    for cell in code_cells(nb):
        assert cell.outputs == [] and cell.execution_count is None, cell.source
    assert "jupyter lab benchmarks/lab.ipynb" in nb.cells[0].source


@pytest.mark.timeout(RUN_TIMEOUT + 60)  # a backstop: the run's own deadline comes first
def test_the_notebook_runs_and_shows_each_problem(kernel_name, tmp_path):
    cells = run_notebook(
        NOTEBOOK, kernel_name, tmp_path, cell_timeout=CELL_TIMEOUT, run_timeout=RUN_TIMEOUT
    )

    # Every experiment renders as a lab report, every plot as a PNG.
    experiments = [cell for cell in cells if "lab." in cell.source and "import" not in cell.source]
    plots = [cell for cell in cells if cell.source.rstrip().endswith(".plot()")]
    assert len(experiments) >= 6 and len(plots) >= 5
    for cell in experiments:
        assert any('class="parpy-lab"' in h for h in outputs(cell, "text/html")), cell.source
    for cell in plots:
        (png,) = outputs(cell, "image/png")
        assert base64.b64decode(png).startswith(b"\x89PNG\r\n\x1a\n"), cell.source

    # Each problem, happening: the race (and its fixes), the deadlock and its recovery,
    # both locks' fairness, both reductions.
    html = "\n".join(h for cell in cells for h in outputs(cell, "text/html"))
    for mode in ("unsynchronized", "mutex", "atomic", "python"):
        assert f"<td>{mode}</td>" in html
    assert "the watchdog found it" in html and "the victim" in html
    assert html.count("no deadlock") == 2
    assert "starvation, unfair" in html and "starvation, fair" in html
    assert html.count("Jain&#x27;s fairness index") == 2
    assert "every total exact" in html
