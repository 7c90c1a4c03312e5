"""Smoke tests of the benchmark scripts: each entry point in --quick mode (tiny shapes, 2 repetitions)
writes JSON with every requested row and pass, each with finite positive times and ratios.

They check the scripts run and report what they say they do, not any speed: the figures of a --quick
run mean nothing. bench_recurrent.py and bench_transforms.py run in this process (their imports are
the slow part); gpu_check.sh, a shell script, in a subprocess on its CPU path.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import bench_recurrent  # noqa: E402
import bench_transforms  # noqa: E402

# The rows the issues ask for (issue 12's table and the existing grid; issue 11's new cells), each with
# the passes it must be timed in.
LAYER_PASSES = {"inference", "fwd+bwd"}
REQUIRED_CPU = {
    **{f"layers/{shape}/{cell}": LAYER_PASSES for shape, cell in [
        ("book", "lstm"), ("book", "gru"), ("book", "rnn"), ("word-lm-small", "lstm"),
        ("word-lm-medium", "lstm"), ("small-batch", "lstm"), ("small-batch", "gru"), ("small-batch", "rnn"),
        ("jena", "gru")]},
    **{f"steps/{cell}cell-b{B}/{cell}": {"inference", "forward", "fwd+bwd"} for cell in ("lstm", "gru") for B in (1, 32)},
    **{f"new-cells/{name}": LAYER_PASSES for name in ("layernorm-lstm", "indrnn", "zoneout-lstm", "lstm-proj")},
}
REQUIRED_GPU_EXTRA = {f"layers/{shape}/{cell}": LAYER_PASSES for shape in
                      ["fastrnns", "h32", "h128", "h256", "h512", "h1024"] for cell in ("lstm", "gru")}


@pytest.fixture(autouse=True)
def _own_rng():
    """The benchmarks seed torch's generator; the tests after them keep theirs."""
    with torch.random.fork_rng():
        yield


def positive(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def assert_rows(result: dict, required: dict[str, set[str]]) -> None:
    assert result["complete"] is True
    assert set(result["requested"]) >= set(required)
    passes: dict[str, set[str]] = {}
    for record in result["rows"]:
        passes.setdefault(record["id"], set()).add(record["pass"])
        assert record["reps"] >= 2
        assert record["pairs"], f"{record['id']} {record['pass']}: no seqtorch candidate was timed"
        for name, ms in record["median_ms"].items():
            assert positive(ms) and positive(record["min_ms"][name]), (record["id"], name, ms)
            assert len(record["times_ms"][name]) == record["reps"]
        for p in record["pairs"]:
            assert all(positive(p[k]) for k in ("candidate_ms", "versus_ms", "ratio", "ratio_of_min")), p
    missing = {row: want - passes.get(row, set()) for row, want in required.items() if want - passes.get(row, set())}
    assert not missing, f"rows or passes missing from the JSON: {missing}"
    assert set(passes) == set(result["requested"])


def test_bench_recurrent_quick_has_every_row(tmp_path):
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    bench_recurrent.main(["--quick", "--out", str(out), "--markdown", str(md)])
    result = json.loads(out.read_text())
    assert_rows(result, REQUIRED_CPU)
    # The backend column says what auto resolved to; training passes have the recurrent-dropout pair.
    book = [r for r in result["rows"] if r["id"] == "layers/book/lstm"]
    assert {p["backend"] for r in book for p in r["pairs"]} >= {"auto->cpu_fused", "auto->cpu_fused + recdrop"}
    assert all("recdrop" not in p["backend"] for r in book if r["pass"] == "inference" for p in r["pairs"])
    # The markdown table has one line per (row, pass, seqtorch candidate).
    lines = [line for line in md.read_text().splitlines() if line.startswith("| ") and "---" not in line]
    assert len(lines) - 1 == sum(len(r["pairs"]) for r in result["rows"])


def test_bench_recurrent_selects_rows_and_refuses_to_overwrite(tmp_path):
    args = bench_recurrent.parse_args(["--only", "word-lm", "steps/grucell-b1"])
    args.grid = "cpu"
    assert [bench_recurrent.row_id(*r) for r in bench_recurrent.selected_rows(args)] == [
        "layers/word-lm-small/lstm", "layers/word-lm-medium/lstm", "steps/grucell-b1/gru"]
    args.only = ["no-such-row"]
    with pytest.raises(SystemExit, match="matches no row"):
        bench_recurrent.selected_rows(args)
    out = tmp_path / "previous.json"
    out.write_text("{}")
    with pytest.raises(SystemExit, match="exists"):
        bench_recurrent.main(["--quick", "--only", "steps/grucell-b1", "--out", str(out)])
    assert out.read_text() == "{}"


def test_bench_transforms_quick_has_every_transform(tmp_path):
    out = tmp_path / "transforms.json"
    bench_transforms.main(["--quick", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["complete"] is True
    want = {f"{cell}/{t}" for cell in bench_transforms.CELLS for t in bench_transforms.TRANSFORMS}
    assert set(result["requested"]) == want == {r["id"] for r in result["rows"]}
    for record in result["rows"]:
        assert {bench_transforms.AUTO, bench_transforms.REFERENCE} <= set(record["median_ms"])
        assert all(positive(ms) for ms in record["median_ms"].values())
        versus = {p["versus"] for p in record["pairs"]}
        assert bench_transforms.REFERENCE in versus
        # torch.nn is either timed or its error is recorded, never silently absent
        assert (bench_transforms.TORCH_NN in versus) != (bench_transforms.TORCH_NN in record["unsupported"])
        assert all(positive(p["ratio"]) for p in record["pairs"])


def test_gpu_check_cpu_path(tmp_path):
    results = tmp_path / "check"
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(BENCHMARKS / "gpu_check.sh"), "--device", "cpu", "--smoke", "--no-tests",
                           "--results", str(results)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_rows(json.loads((results / "bench.json").read_text()), {**REQUIRED_CPU, **REQUIRED_GPU_EXTRA})
    assert "| row (T, B, I, H[, layers]) | pass |" in (results / "bench.md").read_text()
    assert "torch" in (results / "environment.txt").read_text()
    again = subprocess.run(["bash", str(BENCHMARKS / "gpu_check.sh"), "--device", "cpu", "--smoke", "--no-tests",
                            "--results", str(results)], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "exists" in again.stderr


def test_gpu_quick_grid_puts_the_main_figures_first():
    """gpu_check.sh --quick (a short lease) times this grid first: the book's shape and the alternating loop at
    fastrnns' H=512, H=256 and H=1024 before anything else, every GPU row's shape in the full grid too."""
    quick = [bench_recurrent.row_id(*r) for r in bench_recurrent.GRIDS["gpu-quick"]]
    assert quick[:4] == ["layers/book/lstm", "layers/fastrnns/lstm", "layers/h256/lstm", "layers/h1024/lstm"]
    assert set(quick) <= {bench_recurrent.row_id(*r) for r in bench_recurrent.GRIDS["gpu"]}
