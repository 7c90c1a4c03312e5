"""The masks/resets benchmark runs (``--quick``: tiny shapes) and reports each pass against lengths."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_sequences  # noqa: E402


def test_bench_sequences_quick_reports_every_pass(tmp_path):
    result = bench_sequences.main(["--quick", "--threads", "1", "--out", str(tmp_path / "r.json")])
    assert result["complete"] and [r["pass"] for r in result["rows"]] == ["inference", "fwd+bwd"]
    for record in result["rows"]:
        assert {p["candidate"] for p in record["pairs"]} == {"mask (30% holes)", "resets (2%)"}
        assert all(p["versus"] == "lengths" and p["ratio"] > 0 for p in record["pairs"])
