"""What a mask with holes, and resets, cost against ``lengths=`` (issue 21's row), side by side in one run.

At the book's shape (T=500, B=128, I=H=32, an LSTM), three calls over the same batch: ``lengths=`` (each
sequence right-padded), ``mask=`` with the same number of valid steps per sequence but 30% of the steps masked
at random positions (holes), and ``resets=`` at 2% of the steps. Inference and forward + backward, each on
the implementation ``backend="auto"`` picks. Ratios are the mask's (or the resets') time over lengths' (lower is
better; about 1.00x means a mask costs what lengths cost).

    python benchmarks/bench_sequences.py --threads 1
"""

from __future__ import annotations

import argparse
import sys

import torch

import harness
import seqtorch

PASSES = ("inference", "fwd+bwd")


def inputs(T: int, B: int, I: int, device: torch.device) -> dict:
    """The batch and the three ways of marking its steps; the same valid-step count per sequence."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(T, B, I, generator=gen).to(device)
    holes = torch.rand(T, B, generator=gen) < 0.3
    lengths = (~holes).sum(0).clamp(min=1)
    resets = torch.rand(T, B, generator=gen) < 0.02
    return dict(x=x, lengths=lengths.to(device), mask=(~holes).to(device), resets=resets.to(device))


def jobs(layer: torch.nn.Module, data: dict, pass_: str) -> list[harness.Job]:
    variants = {"lengths": dict(lengths=data["lengths"]), "mask (30% holes)": dict(mask=data["mask"]),
                "resets (2%)": dict(resets=data["resets"])}
    x = data["x"]
    out = []
    for name, kwargs in variants.items():
        if pass_ == "inference":
            def fn(kwargs=kwargs):
                with torch.no_grad():
                    layer(x, **kwargs)
        else:
            def fn(kwargs=kwargs):
                output, _ = layer(x, **kwargs)
                output.sum().backward()
        out.append(harness.Job(name, fn, lambda: layer.zero_grad(set_to_none=True)))
    return out


def table(records: list[dict]) -> str:
    lines = []
    for r in records:
        ratios = {p["candidate"]: f"{p['ratio']:.2f}x" for p in r["pairs"]}
        lines.append([r["pass"], harness.time_text(r["median_ms"]["lengths"]),
                      harness.time_text(r["median_ms"]["mask (30% holes)"]), ratios["mask (30% holes)"],
                      harness.time_text(r["median_ms"]["resets (2%)"]), ratios["resets (2%)"]])
    return harness.markdown_table(["pass", "lengths", "mask (30% holes)", "mask / lengths", "resets (2%)",
                                   "resets / lengths"], lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_common_arguments(parser)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    T, B, I, H = (6, 4, 3, 5) if args.quick else (500, 128, 32, 32)
    run = harness.Run.start(args, device, settings={"shape": dict(T=T, B=B, I=I, H=H), "requested": list(PASSES)},
                            measurements=len(PASSES))
    torch.manual_seed(0)
    layer = seqtorch.LSTM(I, H, device=device)
    data = inputs(T, B, I, device)
    records = []
    for pass_ in PASSES:
        if run.out_of_time():
            break
        summary = harness.summarize(harness.measure(jobs(layer, data, pass_), run.timer, run.budget))
        pairs = [harness.pair(summary, name, "lengths") for name in ("mask (30% holes)", "resets (2%)")]
        record = {"id": pass_, "pass": pass_, **summary, "pairs": pairs}
        print(f"# {pass_}: " + ", ".join(f"{p['candidate']} {p['ratio']:.2f}x" for p in pairs)
              + harness.busy_note(record), file=sys.stderr, flush=True)
        records.append(record)
        run.save(records, table(records))
    return run.finish(records, table(records))


if __name__ == "__main__":
    main()
