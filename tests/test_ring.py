"""The plain-C bounded queue (csrc/runtime/ring.c) on its own, without Python.

tests/c/ring_check.c drives it from native threads: timeouts, blocking and
waking, four producers and four consumers, close, stop, drain, growth and a
changed maxsize. Built here with the system C compiler, plain and under
ThreadSanitizer and AddressSanitizer + UBSan, and run with a timeout.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from _util import REPO

FLAGS = {
    "plain": ["-O2"],
    "thread": ["-O1", "-g", "-fsanitize=thread"],
    "address": ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"],
}


def clean_env() -> dict[str, str]:
    """This environment without a preloaded sanitizer runtime (.ci/sanitize
    preloads one into Python): the compiler and the check run without it."""
    drop = {"LD_PRELOAD", "ASAN_OPTIONS", "LSAN_OPTIONS", "TSAN_OPTIONS", "UBSAN_OPTIONS"}
    return {k: v for k, v in os.environ.items() if k not in drop}


@pytest.mark.parametrize("build", list(FLAGS))
def test_ring(build, tmp_path):
    exe = tmp_path / f"ring_check_{build}"
    compile_cmd = [
        "cc",
        "-std=c11",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-pthread",
        *FLAGS[build],
        f"-I{REPO / 'csrc'}",
        str(REPO / "tests" / "c" / "ring_check.c"),
        str(REPO / "csrc" / "runtime" / "ring.c"),
        str(REPO / "csrc" / "runtime" / "fork.c"),
        "-o",
        str(exe),
    ]
    built = subprocess.run(
        compile_cmd, capture_output=True, text=True, timeout=120, env=clean_env()
    )
    assert built.returncode == 0, built.stderr
    env = clean_env() | {"TSAN_OPTIONS": "halt_on_error=1", "ASAN_OPTIONS": "detect_leaks=1"}
    ran = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120, env=env)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.split() == ["ring", "ok"]
