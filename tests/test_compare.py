"""python -m parpy compare and parpy.compare.compare: every backend, the same results."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from _util import REPO, child_env

import parpy
from parpy import compare as cmp

SMALL = {
    "iterative": [0, 1, 2, 90, 95, 500, 1500],
    "doubling": [0, 93, 94, 5000, 20000],
    "recursive": [0, 1, 10, 15],
}


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "parpy", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(),
        cwd=REPO,
    )


@pytest.mark.parametrize("algorithm", sorted(SMALL))
def test_compare_runs_every_backend(algorithm):
    report = cmp.compare(algorithm, SMALL[algorithm], workers=2, repeat=2)
    assert [row.backend for row in report.rows] == list(cmp.BACKENDS)
    by_name = {row.backend: row for row in report.rows}
    assert by_name["serial"].speedup == 1.0
    assert by_name["parpy"].workers == 2 and by_name["parpy-serial"].workers == 1
    assert all(row.seconds > 0 and len(row.times) == 2 for row in report.rows)
    assert "parpy" in str(report) and json.dumps(report.to_dict())


def test_compare_detects_a_backend_that_differs(monkeypatch):
    wrong = cmp.Backend(lambda alg, ns, w: [parpy.fib(n) + (n == 7) for n in ns], True)
    monkeypatch.setitem(cmp.BACKENDS, "wrong", wrong)
    with pytest.raises(cmp.MismatchError, match=r"items\[1\], n=7"):
        cmp.compare("doubling", [5, 7, 9], backends="serial,wrong", repeat=1)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"algorithm": "bogus"}, ValueError),
        ({"backends": "serial,nope"}, ValueError),
        ({"ns": []}, ValueError),
        ({"workers": 0}, ValueError),
        ({"repeat": 0}, ValueError),
    ],
)
def test_compare_rejects_bad_arguments(kwargs, error):
    with pytest.raises(error):
        cmp.compare(**{"ns": [1, 2], **kwargs})


def test_cli_json_report():
    proc = run_cli(
        "compare",
        "--count",
        "12",
        "--n-min",
        "100",
        "--n-max",
        "3000",
        "--repeat",
        "1",
        "--workers",
        "2",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["count"] == 12 and report["algorithm"] == "iterative"
    assert [row["backend"] for row in report["rows"]] == list(cmp.BACKENDS)


def test_cli_table():
    proc = run_cli(
        "compare",
        "--algorithm",
        "doubling",
        "--count",
        "8",
        "--n-min",
        "10",
        "--n-max",
        "20000",
        "--repeat",
        "1",
        "--backends",
        "serial,parpy",
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[2].split() == ["backend", "workers", "seconds", "speedup"]
    assert [line.split()[0] for line in lines[3:]] == ["serial", "parpy"]


@pytest.mark.parametrize(
    "args",
    [[], ["frobnicate"], ["compare", "--count", "0"], ["compare", "--n-min", "5", "--n-max", "2"]],
)
def test_cli_usage_errors_exit_2(args):
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert "usage:" in proc.stderr


def test_import_leaves_the_environment_alone():
    proc = subprocess.run(
        [sys.executable, "-c", "import os, parpy; print('OMP_WAIT_POLICY' in os.environ)"],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        cwd=REPO,
    )
    assert proc.stdout.strip() == "False", proc.stderr
