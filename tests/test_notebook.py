"""benchmarks/compare.ipynb: committed without outputs, and runs top to bottom
in a real Jupyter kernel, rendering every report and plot.

The kernel is this interpreter (a kernelspec for ``sys.executable`` in a
temporary directory put on JUPYTER_PATH, so a fresh CI virtual environment
needs nothing registered), started from ``benchmarks/`` as Jupyter would; the
notebook is executed in memory and never written back. Every cell has a timeout, and so
does the whole run: a cell may take at most what is left of ``RUN_TIMEOUT``.
"""

from __future__ import annotations

import base64
import sys
import time

import nbformat
import pytest
from _util import REPO, child_env
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

NOTEBOOK = REPO / "benchmarks" / "compare.ipynb"
KERNEL = "parpy-notebook-test"
CELL_TIMEOUT = 120  # seconds, any one cell (the longest takes about 10 s on 2 cores)
RUN_TIMEOUT = 300  # seconds, the whole notebook (about 30 s on 2 idle cores)

# The sanitizer jobs copy csrc/, parpy/ and tests/ only, and a Jupyter kernel
# started under a preloaded sanitizer runtime is a different test; the plain
# run (the README's test command) runs the notebook.
pytestmark = pytest.mark.unsafe_under(
    "address",
    "thread",
    reason="the notebook lives in benchmarks/, which .ci/sanitize does not copy",
)


def code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_the_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert code_cells(nb)
    for cell in code_cells(nb):
        assert cell.outputs == [] and cell.execution_count is None, cell.source
    assert "jupyter lab benchmarks/compare.ipynb" in nb.cells[0].source


@pytest.fixture
def kernel_name(tmp_path, monkeypatch):
    """The name of a kernelspec, first on JUPYTER_PATH, whose kernel runs sys.executable."""
    data = tmp_path / "jupyter"
    write_kernel_spec(data / "kernels" / KERNEL)  # argv: sys.executable -m ipykernel_launcher
    monkeypatch.setenv("JUPYTER_PATH", str(data))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))  # connection files
    assert KernelSpecManager().get_kernel_spec(KERNEL).argv[0] == sys.executable
    return KERNEL


def outputs(cell, mime):
    return [out["data"][mime] for out in cell.outputs if mime in out.get("data", {})]


def run_notebook(notebook, kernel_name, tmp_path, *, cell_timeout, run_timeout):
    """Execute ``notebook`` in memory (from its folder, never written back) in a
    kernel of ``kernel_name``; return its code cells, checked to have all run
    with no error and no traceback on stderr. Every cell's timeout is at most
    what is left of ``run_timeout``."""
    committed = notebook.read_bytes()
    nb = nbformat.reads(committed.decode("utf-8"), as_version=4)
    deadline = time.monotonic() + run_timeout

    def timeout(cell):
        return max(1.0, min(cell_timeout, deadline - time.monotonic()))

    # The client owns its kernel (an AsyncKernelManager, whose cell timeouts work) and
    # shuts it down at the end, whatever happened.
    client = NotebookClient(
        nb,
        kernel_name=kernel_name,
        timeout_func=timeout,
        startup_timeout=60,
        resources={"metadata": {"path": str(notebook.parent)}},
    )
    # Raises CellExecutionError on the first error, CellTimeoutError on a timeout.
    client.execute(env=child_env(IPYTHONDIR=str(tmp_path / "ipython")))
    assert notebook.read_bytes() == committed  # executed in memory only

    cells = code_cells(nb)
    assert all(cell.execution_count is not None for cell in cells)
    for cell in cells:
        for out in cell.outputs:
            assert out.output_type != "error", cell.source
            if out.output_type == "stream" and out.name == "stderr":
                assert "Traceback" not in out.text, cell.source
    return cells


@pytest.mark.timeout(RUN_TIMEOUT + 60)  # a backstop: the run's own deadline comes first
def test_the_notebook_runs_and_renders_its_reports_and_plots(kernel_name, tmp_path):
    cells = run_notebook(
        NOTEBOOK, kernel_name, tmp_path, cell_timeout=CELL_TIMEOUT, run_timeout=RUN_TIMEOUT
    )

    # Every comparison renders as the Report's HTML, every plot as a PNG.
    compares = [cell for cell in cells if "parpy.compare(" in cell.source]
    plots = [cell for cell in cells if cell.source.rstrip().endswith(".plot()")]
    assert len(compares) >= 6 and len(plots) >= 5
    for cell in compares:
        assert any('class="parpy-report"' in h for h in outputs(cell, "text/html")), cell.source
    for cell in plots:
        (png,) = outputs(cell, "image/png")
        assert base64.b64decode(png).startswith(b"\x89PNG\r\n\x1a\n"), cell.source

    html = "\n".join(h for cell in cells for h in outputs(cell, "text/html"))
    # The deliberate skip, with its reason; the GIL's verdict; pipeline statistics.
    assert "which worker processes cannot import" in html
    assert "no gain" in html and "the GIL" in html
    assert html.count("bottleneck:") >= 5
    # The user's own C function: ctypes releases the GIL during each call on the Python backends.
    assert "the GIL is released by ctypes during each call of work" in html
    for backend in ("native", "threading", "multiprocessing"):
        assert f"{backend} pipeline, finished: 2000 items out" in html
    # Divide and conquer: one F(n) and its digits split over threads, with work and span.
    assert "divide and conquer: F(10,000,000)" in html and "Amdahl&#x27;s serial part" in html
