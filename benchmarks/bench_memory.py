"""Peak memory (RSS) of a training program with torch.nn's LSTM against the same program with seqtorch's,
each in a process of its own, measured by ``/usr/bin/time -f %M``.

A drop-in must not double a program's memory (issue 22). The program: the sentiment-analysis notebook's
model (an ``Embedding(25002, 100)``, a 2-layer bidirectional ``batch_first`` LSTM with H=256 and dropout 0.5
over a PackedSequence, dropout and a ``Linear(512, 1)``, BCEWithLogitsLoss, Adam), B=64, training steps
over batches whose longest review is about 200 tokens, the length varying from batch to batch as a
bucketing loader's do (which is what a cache of buffers of one size each would get wrong). The parent
runs the two versions in turn, ``--rounds`` times each, and reports the median peak RSS of each and their
ratio; the children's own peaks are what ``/usr/bin/time`` says.

    python benchmarks/bench_memory.py --threads 2 --out runs/memory.json
    python benchmarks/bench_memory.py --quick      # smoke test: a tiny model, one round
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

TIME = "/usr/bin/time"
IMPLEMENTATIONS = ("torch.nn", "seqtorch")
FULL = dict(vocab=25002, embedding=100, hidden=256, batch=64, max_len=200, steps=4)
QUICK = dict(vocab=50, embedding=8, hidden=8, batch=4, max_len=12, steps=2)


def child(implementation: str, sizes: dict, threads: int | None) -> None:
    """One training run of the notebook's program with ``implementation``'s LSTM (the process measured)."""
    import torch
    from torch import nn

    if threads:
        torch.set_num_threads(threads)
    import seqtorch

    lstm_cls = nn.LSTM if implementation == "torch.nn" else seqtorch.LSTM

    class RNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = nn.Embedding(sizes["vocab"], sizes["embedding"], padding_idx=1)
            self.rnn = lstm_cls(sizes["embedding"], sizes["hidden"], num_layers=2, bidirectional=True, dropout=0.5,
                                batch_first=True)
            self.fc = nn.Linear(sizes["hidden"] * 2, 1)
            self.dropout = nn.Dropout(0.5)

        def forward(self, text: torch.Tensor, text_lengths: torch.Tensor) -> torch.Tensor:
            embedded = self.dropout(self.embedding(text))
            packed = nn.utils.rnn.pack_padded_sequence(embedded, text_lengths.to("cpu"), batch_first=True)
            _, (hidden, _) = self.rnn(packed)
            hidden = self.dropout(torch.cat((hidden[-2, :, :], hidden[-1, :, :]), dim=1))
            return self.fc(hidden)

    torch.manual_seed(0)
    model = RNN()
    optimizer = torch.optim.Adam(model.parameters())
    criterion = nn.BCEWithLogitsLoss()
    gen = torch.Generator().manual_seed(1)
    B, longest = sizes["batch"], sizes["max_len"]
    for step in range(sizes["steps"]):
        T = int(longest * (0.8 + 0.4 * torch.rand((), generator=gen).item()))  # this batch's longest review
        lengths = torch.randint(max(1, T // 4), T + 1, (B,), generator=gen)
        lengths[0] = T
        lengths = lengths.sort(descending=True).values
        text = torch.randint(2, sizes["vocab"], (B, T), generator=gen)
        labels = torch.randint(0, 2, (B,), generator=gen).float()
        optimizer.zero_grad()
        loss = criterion(model(text, lengths).squeeze(1), labels)
        loss.backward()
        optimizer.step()


def peak_rss_mb(implementation: str, quick: bool, threads: int | None) -> float:
    """Run one child under /usr/bin/time; its peak RSS in MB."""
    command = [TIME, "-f", "%M", sys.executable, __file__, "--child", implementation]
    command += ["--quick"] if quick else []
    command += ["--threads", str(threads)] if threads else []
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    if done.returncode != 0:
        raise RuntimeError(f"the {implementation} run failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return int(done.stderr.strip().splitlines()[-1]) / 1024


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each version, in turn (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in the children")
    parser.add_argument("--quick", action="store_true", help="smoke test: a tiny model, one round")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--child", choices=IMPLEMENTATIONS, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.child:
        child(args.child, sizes, args.threads)
        return {}
    if not Path(TIME).exists():
        raise SystemExit(f"bench_memory.py needs {TIME} (GNU time) to measure a process's peak RSS")
    if args.out and Path(args.out).exists() and not args.overwrite:
        raise SystemExit(f"--out {args.out} exists (a previous run's results); pass --overwrite to replace it")
    rounds = 1 if args.quick else args.rounds
    peaks: dict[str, list[float]] = {name: [] for name in IMPLEMENTATIONS}
    for _ in range(rounds):
        for name in IMPLEMENTATIONS:
            peaks[name].append(peak_rss_mb(name, args.quick, args.threads))
    median = {name: statistics.median(values) for name, values in peaks.items()}
    result = {"sizes": sizes, "threads": args.threads, "pool_mb_env": os.environ.get("SEQTORCH_POOL_MB"),
              "peak_rss_mb": peaks, "median_mb": median, "ratio": median["seqtorch"] / median["torch.nn"]}
    print("| program | torch.nn peak RSS | seqtorch peak RSS | ratio |\n|---|---|---|---|")
    print(f"| sentiment LSTM training (B={sizes['batch']}, T~{sizes['max_len']}, E={sizes['embedding']}, "
          f"H={sizes['hidden']}, 2 layers, bidirectional, packed) | {median['torch.nn']:.0f} MB | "
          f"{median['seqtorch']:.0f} MB | {result['ratio']:.2f}x |")
    print(f"(median of {rounds}; every run: {json.dumps(peaks)})")
    if args.out:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import harness

        harness.write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
