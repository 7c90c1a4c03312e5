#!/usr/bin/env bash
# The GPU check: the CUDA tests and the GPU benchmark grid against cuDNN, in one prepared call.
#
#   benchmarks/gpu_check.sh [--results DIR] [--device cuda|cpu] [--quick | --smoke] [--no-tests]
#
# Into DIR (default runs/gpu_check-<UTC time>; an existing DIR is refused, never overwritten):
#   environment.txt        nvidia-smi, and the torch, CUDA, cuDNN and Triton versions
#   tests.txt              pytest's output: tests/ops/test_ops_triton.py and tests/ops/test_alternating_graphs.py
#                          (on a GPU the kernels run compiled, not in the interpreter, and the graphs are
#                          real CUDA graphs) and every other test marked `cuda`
#   bench.json, bench.md   benchmarks/bench_recurrent.py against cuDNN (TF32 off), inference and
#                          forward+backward, with the alternating loop (H > 128) also timed with CUDA graphs
#                          (SEQTORCH_CUDA_GRAPHS) beside it
# The full check (8 minutes): the tests first (TESTS_LIMIT, 270 s), then --grid gpu (BENCH_LIMIT, 180 s):
# book, word LM small/medium, Jena, fastrnns (T100 B64 I=H=512), H in 32/128/256/512/1024, the cell steps,
# the new cells.
# --quick (a short lease, under 5 minutes): the figures first, --grid gpu-quick (150 s): book, fastrnns
# (H=512), H=256 and H=1024, LSTM then GRU, then the cell steps and the word LM; then the tests, stopping at
# the first failure (90 s). The benchmark rewrites bench.json and bench.md after each row, so a run cut
# short keeps the rows it measured (bench.json then says "complete": false). Exit status: 0 when the tests
# passed and the benchmark completed, else the first failure's.
#
# --smoke runs the same benchmark path at tiny shapes, in seconds: with --device cpu --no-tests, the
# CPU-side check of this script (tests/benchmarks/test_benchmarks.py runs it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
RESULTS="" DEVICE=cuda MODE=full RUN_TESTS=1

usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --results) RESULTS="$2"; shift 2 ;;
        --device) DEVICE="$2"; shift 2 ;;
        --quick) MODE=quick; shift ;;
        --smoke) MODE=smoke; shift ;;
        --no-tests) RUN_TESTS=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument '$1' (expected --results DIR, --device cuda|cpu, --quick, --smoke, --no-tests)" >&2
           exit 2 ;;
    esac
done
case "$DEVICE" in cuda|cpu) ;; *) echo "gpu_check.sh: --device must be cuda or cpu, got '$DEVICE'" >&2; exit 2 ;; esac
case "$MODE" in
    full) GRID=gpu; ROW_SECONDS=1; TESTS_LIMIT="${TESTS_LIMIT:-270}"; BENCH_LIMIT="${BENCH_LIMIT:-180}"; PYTEST_STOP=() ;;
    quick) GRID=gpu-quick; ROW_SECONDS=0.5; TESTS_LIMIT="${TESTS_LIMIT:-90}"; BENCH_LIMIT="${BENCH_LIMIT:-150}"
           PYTEST_STOP=(-x) ;;
    smoke) GRID=gpu; ROW_SECONDS=1; TESTS_LIMIT="${TESTS_LIMIT:-270}"; BENCH_LIMIT="${BENCH_LIMIT:-180}"; PYTEST_STOP=() ;;
esac
SMOKE=()
[ "$MODE" = smoke ] && SMOKE=(--quick)  # bench_recurrent.py's tiny shapes

cd "$ROOT"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's seqtorch, installed or not
RESULTS="${RESULTS:-runs/gpu_check-$(date -u +%Y%m%dT%H%M%SZ)}"
if [ -e "$RESULTS" ]; then
    echo "gpu_check.sh: $RESULTS exists (a previous check's results); name another --results" >&2
    exit 2
fi
if [ "$DEVICE" = cuda ] && ! "$PYTHON" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    echo "gpu_check.sh: torch sees no CUDA GPU here (torch.cuda.is_available() is False); --device cpu runs the CPU path" >&2
    exit 2
fi
mkdir -p "$RESULTS"
echo "gpu_check.sh: results in $RESULTS ($MODE)"

{
    date -u
    command -v nvidia-smi >/dev/null && nvidia-smi || echo "(no nvidia-smi)"
    "$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn",
torch.backends.cudnn.version(), "device", torch.cuda.get_device_name() if torch.cuda.is_available() else "none")'
    "$PYTHON" -c 'import triton; print("triton", triton.__version__)' 2>/dev/null || echo "triton: not installed"
} > "$RESULTS/environment.txt" 2>&1

# The CUDA tests: tests/ops/test_ops_triton.py whole (on a GPU its kernels run compiled), and the tests marked
# `cuda` in any other test file, at any depth under tests/ (grep finds the files, so the rest of the suite is not
# even collected).
run_tests() {
    # whole files whose tests run the real kernels (and, for the alternating loop, real CUDA graphs) on a GPU
    timeout "$TESTS_LIMIT" "$PYTHON" -m pytest -q -p no:cacheprovider "${PYTEST_STOP[@]}" tests/ops/test_ops_triton.py \
        tests/ops/test_alternating_graphs.py || return $?
    local others
    others=$(grep -rl --include='test_*.py' 'mark\.cuda' tests | grep -v '^tests/ops/test_\(ops_triton\|alternating_graphs\)\.py$' || true)
    [ -z "$others" ] || timeout "$TESTS_LIMIT" "$PYTHON" -m pytest -q -p no:cacheprovider "${PYTEST_STOP[@]}" -m cuda $others
}

status=0
tests() {
    [ "$RUN_TESTS" = 1 ] || return 0
    echo "gpu_check.sh: CUDA tests (limit ${TESTS_LIMIT}s) -> $RESULTS/tests.txt"
    local tests_status=0
    run_tests > "$RESULTS/tests.txt" 2>&1 || tests_status=$?
    tail -n 3 "$RESULTS/tests.txt"
    if [ "$tests_status" != 0 ]; then
        echo "gpu_check.sh: the CUDA tests failed or ran out of time (status $tests_status)" >&2
        [ "$status" != 0 ] || status=$tests_status
    fi
}

bench() {
    echo "gpu_check.sh: benchmark grid $GRID (limit ${BENCH_LIMIT}s) -> $RESULTS/bench.json, bench.md"
    local bench_status=0
    # --budget keeps the grid inside the time limit (rows it cannot begin are listed in bench.json as untimed);
    # a --smoke run times every row.
    local budget=()
    [ ${#SMOKE[@]} -gt 0 ] || budget=(--budget "$((BENCH_LIMIT - 30))")
    timeout "$BENCH_LIMIT" "$PYTHON" benchmarks/bench_recurrent.py --device "$DEVICE" --grid "$GRID" \
        --row-seconds "$ROW_SECONDS" "${budget[@]}" --cuda-graphs "${SMOKE[@]}" --out "$RESULTS/bench.json" --markdown "$RESULTS/bench.md" \
        > "$RESULTS/bench.log" 2>&1 || bench_status=$?
    if [ "$bench_status" != 0 ]; then
        echo "gpu_check.sh: the benchmark failed or ran out of time (status $bench_status); see $RESULTS/bench.log" >&2
        [ "$status" != 0 ] || status=$bench_status
    fi
    [ -f "$RESULTS/bench.md" ] && cat "$RESULTS/bench.md"
}

if [ "$MODE" = quick ]; then  # a short lease: the figures first
    bench
    tests
else
    tests
    bench
fi
exit "$status"
