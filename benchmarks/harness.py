"""The timing harness the benchmarks share: interleaved repetitions, medians and ratios, the run's record.

A benchmark hands :func:`measure` a list of named jobs (zero-argument callables) that do the same work
in different ways. After one warm-up round (allocator, lazy initialisation, kernel compilation), which
also sizes the repetitions to a time budget, the jobs run interleaved (A B C, B C A, C A B, ...), so a
change in the machine's load hits every job alike; :func:`summarize` turns the times into medians and
minima, :func:`pair` into the ratio of one job to another: seqtorch's time over the other's, so lower is
better and under 1.00x seqtorch is faster (:data:`RATIO_LEGEND`, printed above every table). On GPU the
times are CUDA events, on CPU ``time.perf_counter``; on a shared CPU read the ratios, not the absolute
times, and mind the warning a run prints when its repetitions spread widely (:data:`BUSY_SPREAD`: the
machine was busy). :class:`Run` holds what every script does around the timing: the common flags, the
environment, the time budget of the whole run (``--budget``), the JSON and markdown files.

Imported by the scripts beside it (``python benchmarks/<script>.py`` puts this folder on ``sys.path``).
"""

from __future__ import annotations

import argparse
import json
import os
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


RATIO_LEGEND = "ratio = seqtorch's time / the other's (lower is better: under 1.00x seqtorch is faster)"
# A job whose repetitions' interquartile range exceeds this fraction of their median ran on a busy machine:
# on a quiet one the spread is a few percent. Judged from 5 repetitions on (fewer say little).
BUSY_SPREAD, SPREAD_MIN_REPS = 0.2, 5


class Deadline:
    """The whole run's time budget (``--budget``), shared out among the measurements still to come."""

    def __init__(self, seconds: float, measurements: int) -> None:
        self.end = time.perf_counter() + seconds
        self.left = max(measurements, 1)

    def share(self) -> float:
        """Seconds for the next measurement: what is left over the measurements left (this one counted)."""
        seconds = max(self.end - time.perf_counter(), 0.0) / self.left
        self.left = max(self.left - 1, 1)
        return seconds

    def passed(self) -> bool:
        return time.perf_counter() >= self.end


@dataclass(frozen=True)
class Budget:
    """How long to time a row: ``seconds`` after the warm-up (at most the ``deadline``'s share, when the
    run has a budget), within ``min_reps`` and ``max_reps``."""

    seconds: float
    min_reps: int
    max_reps: int
    deadline: Deadline | None = None

    def reps(self, round_s: float) -> int:
        seconds = self.seconds if self.deadline is None else min(self.seconds, self.deadline.share())
        return int(min(self.max_reps, max(self.min_reps, seconds // max(round_s, 1e-9))))


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
    """Per job: the median and the minimum (ms), every time (ms), and the spread of the repetitions
    (interquartile range over median; None under :data:`SPREAD_MIN_REPS` repetitions)."""
    return {"reps": min(len(ts) for ts in times.values()),
            "median_ms": {name: statistics.median(ts) * 1e3 for name, ts in times.items()},
            "min_ms": {name: min(ts) * 1e3 for name, ts in times.items()},
            "times_ms": {name: [t * 1e3 for t in ts] for name, ts in times.items()},
            "spread": {name: spread(ts) for name, ts in times.items()}}


def spread(times: list[float]) -> float | None:
    """(third quartile - first quartile) / median of one job's repetitions."""
    if len(times) < SPREAD_MIN_REPS:
        return None
    q1, _, q3 = statistics.quantiles(times, n=4)
    return (q3 - q1) / statistics.median(times)


def busy_note(record: dict) -> str:
    """`` (spread 34%: busy machine)`` when a job of this record spread beyond :data:`BUSY_SPREAD`, else ``""``."""
    worst = max((v for v in record.get("spread", {}).values() if v is not None), default=None)
    return "" if worst is None or worst <= BUSY_SPREAD else f" (spread {worst:.0%}: busy machine)"


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
           "command": " ".join(sys.argv), "cpus": os.cpu_count(),
           # the 1-minute load average when the run starts (other processes wanting the CPUs)
           "load": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
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
    """The flags every benchmark takes: the device, threads, repetitions, time and the output files."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repetitions per row and pass (default: as many as --row-seconds allows, "
                             "5 to 50)")
    parser.add_argument("--row-seconds", dest="row_seconds", type=float, default=None,
                        help="seconds per row and pass after the warm-up (default 3 on CPU, 2 on GPU)")
    parser.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                        help="bound on the whole run's time: each row and pass gets at most its share of what "
                             "is left (and at least 5 repetitions), and once it is spent the rows not yet "
                             "begun are left out (the JSON says which); the run may pass it by about one row")
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
    def start(cls, args: argparse.Namespace, device: torch.device, settings: dict, measurements: int = 1) -> "Run":
        """``measurements``: how many rows x passes the run will time, to share ``--budget`` among them."""
        check_out_path(args.out, args.overwrite)
        check_out_path(args.markdown, args.overwrite, "--markdown")
        if args.budget is not None and not args.budget > 0:
            raise SystemExit(f"--budget must be a positive number of seconds, got {args.budget}")
        if args.threads:
            torch.set_num_threads(args.threads)
        set_tf32(device, args.tf32)
        deadline = Deadline(args.budget, measurements) if args.budget is not None else None
        if args.quick:
            budget = Budget(0.0, 2, 2, deadline)
        elif args.repeats:
            budget = Budget(0.0, args.repeats, args.repeats, deadline)
        else:
            seconds = args.row_seconds if args.row_seconds is not None else 2.0 if device.type == "cuda" else 3.0
            budget = Budget(seconds, 5, 50, deadline)
        header = {**environment(device), "quick": args.quick, "budget_s": args.budget, **settings}
        print(f"{cls.environment_line_of(header)}\n{RATIO_LEGEND}", file=sys.stderr, flush=True)
        return cls(args, Timer(device), budget, header)

    def out_of_time(self) -> bool:
        """Whether ``--budget`` is spent: the caller starts no further row."""
        return self.budget.deadline is not None and self.budget.deadline.passed()

    def save(self, records: list[dict], markdown: str, complete: bool = False) -> dict:
        """Write the results so far to ``--out`` (JSON) and ``--markdown`` (the environment, the ratio
        legend, the table and any warnings)."""
        done = {r["id"] for r in records}  # at the end, the requested rows that --budget left out
        untimed = [row for row in self.header.get("requested", []) if row not in done] if complete else []
        result = {**self.header, "complete": complete and not untimed, "rows": records, "untimed": untimed}
        if self.args.out:
            write_json(self.args.out, result)
        if self.args.markdown:
            notes = "".join(f"\n{line}\n" for line in self.warnings(records, untimed))
            text = (f"{self.environment_line()}\n{RATIO_LEGEND}\n\n{markdown}\n{notes}"
                    + ("" if complete else "\n(incomplete)\n"))
            atomic_write(self.args.markdown, lambda f: f.write(text), mode="w")
        return result

    def finish(self, records: list[dict], markdown: str) -> dict:
        """Save the results; print the environment line, the ratio legend, the table and the warnings
        (a busy machine, rows left out for ``--budget``)."""
        result = self.save(records, markdown, complete=True)
        print(self.environment_line())
        print(RATIO_LEGEND)
        print(markdown)
        for line in self.warnings(records, result["untimed"]):
            print(line, file=sys.stderr)
        return result

    def warnings(self, records: list[dict], untimed: list[str]) -> list[str]:
        lines = []
        busy = [r for r in records if busy_note(r)]
        if busy:
            lines.append(f"warning: the machine was busy: in {len(busy)} of {len(records)} measurements the "
                         f"repetitions spread by more than {BUSY_SPREAD:.0%} (interquartile range / median; a "
                         f"few percent on a quiet machine): {', '.join(sorted({r['id'] for r in busy})[:8])}"
                         f"{' ...' if len({r['id'] for r in busy}) > 8 else ''}. The ratios are timed side by "
                         f"side, so load hits both sides, but they are less certain: rerun on a quieter machine.")
        if untimed:
            lines.append(f"warning: --budget {self.header['budget_s']:g} s was spent before {len(untimed)} "
                         f"row(s) began; not timed: {', '.join(untimed)}")
        return lines

    def environment_line(self) -> str:
        return self.environment_line_of(self.header)

    @staticmethod
    def environment_line_of(h: dict) -> str:
        load = f", load {h['load']:.1f} on {h['cpus']} CPUs" if h.get("load") is not None else ""
        return (f"device: {h['device']} ({h['device_type']}), torch {h['torch']}, triton {h['triton']}, "
                f"threads {h['threads']}{load}"
                + (" (--quick: tiny shapes, figures meaningless)" if h["quick"] else ""))


def time_text(ms: float, calls: int = 1) -> str:
    """``43.2 ms`` for a whole run, ``15.3 us/call`` for a run of ``calls`` calls."""
    if calls > 1:
        return f"{ms * 1e3 / calls:.1f} us/call"
    return f"{ms:.1f} ms" if ms >= 0.1 else f"{ms * 1e3:.1f} us"


def markdown_table(header: list[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out)
