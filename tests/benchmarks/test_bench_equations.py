"""Smoke test of benchmarks/bench_equations.py: --quick (tiny shapes, 2 repetitions) writes JSON with every
row the issue asks for, in both passes, each checked to compute the same numbers before it was timed, and
the compile row (the trace of a new cell in a fresh process; --quick leaves the C++ build out). The figures
of a --quick run mean nothing; the scans run on the Python loop here (the C++ one is tested elsewhere, and
the script's cells would need a library of their own built first)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from seqtorch.ops import dispatch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_equations  # noqa: E402

REQUIRED = {"peephole/lstm", "peephole/reference", "generated/lstm", "generated/gru",
            *(f"shipped/{cls.__name__}" for cls in bench_equations.seqtorch.equations.SHIPPED)}


def test_quick_run_has_every_row(tmp_path, monkeypatch):
    monkeypatch.setattr(dispatch, "USE_NATIVE", False)
    out, md = tmp_path / "eq.json", tmp_path / "eq.md"
    with torch.random.fork_rng():
        bench_equations.main(["--quick", "--out", str(out), "--markdown", str(md)])
    result = json.loads(out.read_text())
    assert result["complete"] is True and set(result["requested"]) == REQUIRED
    timed = [r for r in result["rows"] if r["id"] != "compile"]
    assert {(r["id"], r["pass"]) for r in timed} == {(row, p) for row in REQUIRED for p in ("inference", "fwd+bwd")}
    for record in timed:
        assert all(math.isfinite(p["ratio"]) and p["ratio"] > 0 for p in record["pairs"])
    (compiled,) = [r for r in result["rows"] if r["id"] == "compile"]
    assert compiled["trace_s"] > 0 and compiled["native"] is False
    assert "peephole/lstm" in md.read_text() and "<= 1.15x" in md.read_text()


def test_only_selects_groups_and_refuses_others():
    assert bench_equations.parse_args(["--only", "generated"]).only == ["generated"]
    with pytest.raises(SystemExit):
        bench_equations.parse_args(["--only", "nothing"])
