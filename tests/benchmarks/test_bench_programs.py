"""Smoke tests of the whole-program benchmarks: bench_programs.py (two real programs with the classes swapped)
and bench_memory.py (peak RSS of the sentiment program in processes of their own), each in its --quick mode.

They check that the scripts run, check their two versions compute the same numbers, and report every row;
not any speed or memory figure (a --quick run's figures mean nothing)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import bench_memory  # noqa: E402
import bench_programs  # noqa: E402


@pytest.fixture(autouse=True)
def _own_rng():
    with torch.random.fork_rng():
        yield


def test_bench_programs_quick_has_every_row(tmp_path):
    out = tmp_path / "programs.json"
    bench_programs.main(["--quick", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["complete"] is True
    ids = {r["id"] for r in result["rows"]}
    assert ids == {"time-sequence-prediction/closure", "time-sequence-prediction/predict", "pos-tagger/epoch",
                   "pos-tagger/tag"}
    for record in result["rows"]:
        (pair,) = record["pairs"]
        assert pair["candidate"] == "seqtorch" and pair["versus"] == "torch.nn"
        assert math.isfinite(pair["ratio"]) and pair["ratio"] > 0


def test_bench_programs_check_catches_other_numbers(monkeypatch):
    """The sameness check fails when seqtorch's cell computes something else (here: another forget gate)."""
    rows, check = bench_programs.time_sequence_jobs(quick=True)
    import seqtorch

    original = seqtorch.LSTMCell.forward

    def wrong(self, input, hx=None):
        h, c = original(self, input, hx)
        return h, c * 1.001

    monkeypatch.setattr(seqtorch.LSTMCell, "forward", wrong)
    with pytest.raises(RuntimeError, match="other numbers"):
        check()


@pytest.mark.skipif(not Path(bench_memory.TIME).exists(), reason="GNU time (/usr/bin/time) is not installed")
def test_bench_memory_quick_measures_both_programs(tmp_path):
    out = tmp_path / "memory.json"
    result = bench_memory.main(["--quick", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["median_mb"] == result["median_mb"]
    assert set(result["peak_rss_mb"]) == {"torch.nn", "seqtorch"}
    assert all(len(v) == 1 and v[0] > 50 for v in result["peak_rss_mb"].values())  # a Python with torch: > 50 MB
    with pytest.raises(SystemExit, match="exists"):
        bench_memory.main(["--quick", "--out", str(out)])
