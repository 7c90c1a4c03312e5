"""The C++ loops' exp, sigmoid and tanh (``recurrent_cells/cpu_math.h``) stay within the errors that
docs/benchmarks.md states: ``benchmarks/math_accuracy.py`` on every 997th float32 in [-90, 90] (2.2
million inputs, the whole run takes every one), compiled with the library's flags, against libm in double."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "math_accuracy.py"
# the bounds stated in docs/benchmarks.md, in ulps of the exact value (tanh: where |tanh| >= 2^-6), and
# sigmoid's and tanh's absolute errors over every input
MAX_ULP = {"exp (x <= 88)": 1.0, "sigmoid": 2.5, "tanh": 3.0}
MAX_ABS = {"sigmoid": 1e-7, "tanh": 2e-7}


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs a C++ compiler (g++)")
def test_exp_sigmoid_and_tanh_within_their_stated_ulps():
    done = subprocess.run([sys.executable, str(SCRIPT), "--stride", "997"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    found = dict(re.findall(r"^(exp \(x <= 88\)|sigmoid|tanh)\s+max ([0-9.]+) ulp", done.stdout, re.M))
    assert found.keys() == MAX_ULP.keys(), done.stdout
    for name, bound in MAX_ULP.items():
        assert float(found[name]) <= bound, f"{name}: {found[name]} ulp > {bound}\n{done.stdout}"
    found = dict(re.findall(r"^(sigmoid|tanh)\s.*max abs error ([0-9.e+-]+)$", done.stdout, re.M))
    assert found.keys() == MAX_ABS.keys(), done.stdout
    for name, bound in MAX_ABS.items():
        assert float(found[name]) <= bound, f"{name}: absolute error {found[name]} > {bound}\n{done.stdout}"


def test_the_stride_must_be_positive():
    done = subprocess.run([sys.executable, str(SCRIPT), "--stride", "0"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "--stride must be 1 or more, got 0" in done.stderr
