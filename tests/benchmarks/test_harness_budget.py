"""The benchmark harness's reading aids: the ratio legend in every output, the busy-machine warning from the
repetitions' spread, and ``--budget``, which bounds a whole run (benchmarks/harness.py).

Timing-free where possible: the spread and budget rules are checked on given numbers; the one timed run
is a --quick smoke run of two rows under a budget already spent.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_recurrent  # noqa: E402
import harness  # noqa: E402


@pytest.fixture(autouse=True)
def _own_rng():
    with torch.random.fork_rng():
        yield


def test_spread_flags_a_busy_machine():
    quiet = [10.0, 10.1, 10.2, 9.9, 10.0, 10.1]
    busy = [10.0, 14.0, 10.5, 19.0, 11.0, 16.0]
    summary = harness.summarize({"a": quiet, "b": busy})
    assert summary["spread"]["a"] < 0.05 and summary["spread"]["b"] > harness.BUSY_SPREAD
    assert harness.busy_note({"spread": {"a": summary["spread"]["a"]}}) == ""
    assert "busy machine" in harness.busy_note(summary)
    assert harness.summarize({"a": [1.0, 2.0]})["spread"]["a"] is None  # too few repetitions to judge


def test_the_budget_is_shared_among_the_measurements_left():
    deadline = harness.Deadline(10.0, measurements=4)
    first = deadline.share()
    assert 2.4 < first <= 2.5 and deadline.left == 3
    # The next share is ~10 s / 3 left = 3.3 s, capped at the row's own 3 s: 12 rounds of 0.25 s.
    assert harness.Budget(3.0, 5, 50, deadline).reps(round_s=0.25) == 12
    assert harness.Budget(1.0, 5, 50, deadline).reps(round_s=0.25) == 5  # a row's own 1 s: its minimum
    assert harness.Budget(3.0, 5, 50, harness.Deadline(0.0, 1)).reps(0.1) == 5  # spent: the minimum


def test_a_spent_budget_leaves_rows_untimed_and_says_so(tmp_path, capsys):
    out, md = tmp_path / "b.json", tmp_path / "b.md"
    bench_recurrent.main(["--quick", "--only", "steps/gru", "steps/lstm", "--budget", "1e-9",
                          "--out", str(out), "--markdown", str(md)])
    result = json.loads(out.read_text())
    timed = {r["id"] for r in result["rows"]}
    assert result["complete"] is False and result["untimed"] and not set(result["untimed"]) & timed
    assert set(result["untimed"]) | timed == set(result["requested"])
    text = md.read_text()
    assert harness.RATIO_LEGEND in text and "--budget" in text and "not timed" in text
    captured = capsys.readouterr()
    assert harness.RATIO_LEGEND in captured.out and "seqtorch's time / the other's (lower is better" in captured.out
    assert "not timed: " + ", ".join(result["untimed"]) in captured.err


def test_budget_must_be_positive(tmp_path):
    with pytest.raises(SystemExit, match="--budget must be a positive"):
        bench_recurrent.main(["--quick", "--only", "steps/gru", "--budget", "0"])
