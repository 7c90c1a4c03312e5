"""The timing harness the benchmarks share: interleaved repetitions, medians and ratios, the run's record.

A benchmark hands :func:`measure` a list of named jobs (zero-argument callables) that do the same work
in different ways. After one warm-up round (allocator, lazy initialisation, kernel compilation), which
also sizes the repetitions to a time budget, the jobs run interleaved (A B C, B C A, C A B, ...), so a
change in the machine's load hits every job alike; :func:`summarize` turns the times into medians and
minima, :func:`pair` into the ratio of one job to another. On GPU the times are CUDA events, on CPU
``time.perf_counter``; on a shared CPU read the ratios, not the absolute times. :class:`Run` holds what
every script does around the timing: the common flags, the environment, the JSON and markdown files.

Imported by the scripts beside it (``python benchmarks/<script>.py`` puts this folder on ``sys.path``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from seqtorch.fileio import atomic_write


@dataclass
class Job:
    """One way of doing a row's work: ``fn()`` does it once; ``before()``, untimed, runs before each call
    (clearing gradients, say)."""

    name: str
    fn: Callable[[], None]
    before: Callable[[], None] = lambda: None


class Timer:
    """Wall time of a callable: CUDA events on GPU, perf_counter on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __call__(self, fn: Callable[[], None]) -> float:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1e3
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start


@dataclass(frozen=True)
class Budget:
    """How long to time a row: ``seconds`` after the warm-up, within ``min_reps`` and ``max_reps``."""

    seconds: float
    min_reps: int
    max_reps: int

    def reps(self, round_s: float) -> int:
        return int(min(self.max_reps, max(self.min_reps, self.seconds // max(round_s, 1e-9))))


def measure(jobs: list[Job], timer: Timer, budget: Budget) -> dict[str, list[float]]:
    """Seconds per call of each job, over interleaved repetitions (who goes first rotates)."""
    start = time.perf_counter()
    for job in jobs:  # warm-up; also sizes the repetitions
        job.before()
        job.fn()
    reps = budget.reps(time.perf_counter() - start)
    times: dict[str, list[float]] = {job.name: [] for job in jobs}
    for rep in range(reps):
        for job in jobs[rep % len(jobs):] + jobs[: rep % len(jobs)]:
            job.before()
            times[job.name].append(timer(job.fn))
    return times


def summarize(times: dict[str, list[float]]) -> dict:
    """Per job: the median and the minimum (ms), and every time (ms)."""
    return {"reps": min(len(ts) for ts in times.values()),
            "median_ms": {name: statistics.median(ts) * 1e3 for name, ts in times.items()},
            "min_ms": {name: min(ts) * 1e3 for name, ts in times.items()},
            "times_ms": {name: [t * 1e3 for t in ts] for name, ts in times.items()}}


def pair(summary: dict, candidate: str, versus: str, **extra) -> dict:
    """Job ``candidate`` against job ``versus`` of one :func:`summarize`: both medians and their ratio (the
    figure the tables show), and the ratio of the minima."""
    median, least = summary["median_ms"], summary["min_ms"]
    return {"candidate": candidate, "versus": versus, **extra, "candidate_ms": median[candidate],
            "versus_ms": median[versus], "ratio": median[candidate] / median[versus],
            "ratio_of_min": least[candidate] / least[versus]}


def check_same(name: str, got: torch.Tensor, baseline: str, want: torch.Tensor, atol: float) -> None:
    """Raise if two candidates that should compute the same numbers do not: a ratio between programs that
    compute different things would mean nothing. (A sanity guard of the benchmark, not a parity test.)"""
    if got.shape != want.shape:
        raise RuntimeError(f"{name} returns shape {tuple(got.shape)}, {baseline} {tuple(want.shape)}")
    diff = (got.double() - want.double()).abs().max().item() if got.numel() else 0.0
    if not diff <= atol:
        raise RuntimeError(f"{name} computes other numbers than {baseline}: max |difference| {diff:.3g} "
                           f"> {atol:g} (same weights and input)")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__


def environment(device: torch.device) -> dict:
    """What a figure depends on: the device, the versions, the threads, the command."""
    env = {"device": device_name(device), "device_type": device.type, "torch": torch.__version__,
           "triton": triton_version(), "threads": torch.get_num_threads(), "python": platform.python_version(),
           "command": " ".join(sys.argv)}
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
        env["tf32"] = torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32
    return env


def set_tf32(device: torch.device, allowed: bool) -> None:
    """TF32 on or off for cuDNN and cuBLAS. Off (full float32) by default in the benchmarks: seqtorch's
    Triton kernels multiply in IEEE float32, and cuDNN's RNNs would otherwise use TF32 (PyTorch's default
    for cuDNN), a different, less precise computation."""
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = allowed
        torch.backends.cuda.matmul.allow_tf32 = allowed


def check_out_path(path: str | None, overwrite: bool, flag: str = "--out") -> None:
    """Refuse, before any timing, to replace a previous run's results unless asked to."""
    if path is not None and Path(path).exists() and not overwrite:
        raise SystemExit(f"{flag} {path} exists (a previous run's results); pass --overwrite to replace it, "
                         f"or name another file")


def write_json(path: str, result: dict) -> None:
    atomic_write(path, lambda f: json.dump(result, f, indent=1), mode="w")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every benchmark takes: the device, threads, repetitions and the output files."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repetitions per row and pass (default: as many as --budget allows, 5 to 50)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds per row and pass after the warm-up (default 3 on CPU, 2 on GPU)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: every row at a tiny shape, 2 repetitions (the figures mean nothing)")
    parser.add_argument("--tf32", action="store_true", help="GPU: let cuDNN and cuBLAS use TF32 (default off)")
    parser.add_argument("--out", default=None, help="write the results as JSON here (rewritten after each row)")
    parser.add_argument("--markdown", default=None, help="write the markdown table here (it is printed anyway)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out and --markdown if they exist")


@dataclass
class Run:
    """One benchmark run: the timer and budget its flags ask for, its environment and settings, and its
    results, saved to ``--out`` after each row (``"complete": false`` until the last), so a run cut
    short (a time limit) still leaves what it measured."""

    args: argparse.Namespace
    timer: Timer
    budget: Budget
    header: dict

    @classmethod
    def start(cls, args: argparse.Namespace, device: torch.device, settings: dict) -> "Run":
        check_out_path(args.out, args.overwrite)
        check_out_path(args.markdown, args.overwrite, "--markdown")
        if args.threads:
            torch.set_num_threads(args.threads)
        set_tf32(device, args.tf32)
        if args.quick:
            budget = Budget(0.0, 2, 2)
        elif args.repeats:
            budget = Budget(0.0, args.repeats, args.repeats)
        else:
            budget = Budget(args.budget if args.budget is not None else 2.0 if device.type == "cuda" else 3.0, 5, 50)
        return cls(args, Timer(device), budget, {**environment(device), "quick": args.quick, **settings})

    def save(self, records: list[dict], markdown: str, complete: bool = False) -> dict:
        """Write the results so far to ``--out`` (JSON) and ``--markdown`` (the environment and the table)."""
        result = {**self.header, "complete": complete, "rows": records}
        if self.args.out:
            write_json(self.args.out, result)
        if self.args.markdown:
            text = f"{self.environment_line()}\n\n{markdown}\n" + ("" if complete else "\n(incomplete)\n")
            atomic_write(self.args.markdown, lambda f: f.write(text), mode="w")
        return result

    def finish(self, records: list[dict], markdown: str) -> dict:
        """Save the complete results; print the environment line and the table."""
        print(self.environment_line())
        print(markdown)
        return self.save(records, markdown, complete=True)

    def environment_line(self) -> str:
        h = self.header
        return (f"device: {h['device']} ({h['device_type']}), torch {h['torch']}, triton {h['triton']}, "
                f"threads {h['threads']}" + (" (--quick: tiny shapes, figures meaningless)" if h["quick"] else ""))


def time_text(ms: float, calls: int = 1) -> str:
    """``43.2 ms`` for a whole run, ``15.3 us/call`` for a run of ``calls`` calls."""
    if calls > 1:
        return f"{ms * 1e3 / calls:.1f} us/call"
    return f"{ms:.1f} ms" if ms >= 0.1 else f"{ms * 1e3:.1f} us"


def markdown_table(header: list[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out)
