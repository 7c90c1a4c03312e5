"""Forecast the temperature 24 hours ahead on the Jena climate record (book section 6.3).

    python scripts/train_jena.py --model gru --out runs/jena_gru            # downloads the data once
    python scripts/train_jena.py --data jena_climate_2009_2016.csv.zip --model naive
    torchrun --nproc-per-node 2 scripts/train_jena.py --batch-size 64 ...  # DDP: 2 x 64 = the book's 128

The models are the book's Keras models: Keras' initializers, one trained bias per gate, the Keras 2
GRU (reset_after=False), glorot-uniform Dense layers and Keras' RMSprop update rule; --torch-defaults
trains them with torch's defaults instead (torch's initialization, two biases, torch's GRU,
torch.optim.RMSprop). The other defaults are the book's too: lookback 1440 rows (10 days), one row
in 6 (hourly), 144 rows (24 h) ahead, batches of 128, 500 random training batches per epoch, 20
epochs, RMSprop with Keras' defaults, MAE loss; validation rows 200,001-300,000 and test rows
300,001-end walked as the book's generator does. Writes history.json, metrics.json, curves.png,
best.pt and last.pt to --out (``--model naive`` writes metrics.json only: the common-sense
baseline); an --out that already holds a run is refused unless --resume (continue it) or
--overwrite (replace it). Ctrl-C stops a run; the message gives the command that resumes it.

A quick run: fewer batches per epoch and fewer epochs (about two minutes on 2 cores, most of it the
validation and test passes over the full file):

    python scripts/train_jena.py --model gru --epochs 2 --steps-per-epoch 50 --out runs/jena-quick

A file shorter than the book's (its split needs more than 300,000 rows): a split that fits it,
and a shorter window if it is very short, e.g. for 20,000 rows

    python scripts/train_jena.py --data my_jena.csv --train-end 10000 --val-end 15000 \
        --lookback 240 --delay 24 --epochs 2 --steps-per-epoch 50 --out runs/jena-small
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass

from seqtorch.data.jena import (
    JenaChecksumWarning, SplitError, Splits, WindowSpec, check_split, load_jena, naive_mae, prepare_jena,
)
from seqtorch.models.jena import MODEL_NAMES, build_jena_model
from seqtorch.training import (
    ConfigError, RefLine, TrainConfig, add_common_args, atomic_write_json, claimed_out_dir, cli,
    config_from_args, config_to_dict, fit, regression_task, setup,
)

MODELS = ("naive", *MODEL_NAMES)


@dataclass
class JenaConfig(TrainConfig):
    data: str | None = None  # .csv or .zip; None downloads the canonical zip to the cache
    model: str = "gru"
    epochs: int = 20
    batch_size: int = 128
    steps_per_epoch: int = 500
    lookback: int = 1440
    step: int = 6
    delay: int = 144
    train_end: int = 200_000
    val_end: int = 300_000
    clean: bool = False
    out: str = "runs/jena"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.model not in MODELS:
            raise ConfigError(f"--model must be one of {MODELS}, got {self.model!r}")
        if self.model == "naive" and self.resume:
            # The baseline trains nothing: resuming would only put its metrics.json beside the
            # files of the run in out.
            raise ConfigError("--resume continues a training run; --model naive trains nothing "
                              "(use --overwrite to replace the run in --out)")
        if self.steps_per_epoch < 1:
            raise ConfigError(f"--steps-per-epoch must be >= 1, got {self.steps_per_epoch}")
        try:
            WindowSpec(self.lookback, self.step, self.delay)
        except ValueError as exc:
            raise ConfigError(f"{exc} (--lookback, --step, --delay)") from exc


def build_parser() -> argparse.ArgumentParser:
    d = JenaConfig()
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, d)
    g = parser.add_argument_group("jena")
    g.add_argument("--data", default=d.data, help="jena_climate_2009_2016.csv or its .zip "
                   "(default: download to $SEQTORCH_DATA or ~/.cache/seqtorch)")
    g.add_argument("--model", choices=MODELS, default=d.model, help="default %(default)s")
    g.add_argument("--steps-per-epoch", dest="steps_per_epoch", type=int, default=d.steps_per_epoch,
                   help="random training batches per epoch (default %(default)s); 50 for a quick run")
    g.add_argument("--lookback", type=int, default=d.lookback, help="rows in a window (default %(default)s)")
    g.add_argument("--step", type=int, default=d.step, help="keep one row in STEP (default %(default)s)")
    g.add_argument("--delay", type=int, default=d.delay, help="rows ahead to predict (default %(default)s)")
    g.add_argument("--train-end", dest="train_end", type=int, default=d.train_end,
                   help="training rows [0, TRAIN_END); also the normalization rows (default %(default)s; "
                        "lower it, with --val-end, for a file shorter than the book's)")
    g.add_argument("--val-end", dest="val_end", type=int, default=d.val_end,
                   help="validation rows [TRAIN_END+1, VAL_END); test after (default %(default)s)")
    g.add_argument("--clean", action="store_true", default=d.clean,
                   help="clip the wind speeds at 0 (the -9999 sentinels become 0); the book keeps them")
    return parser


def check_split_fits(rows: int, spec: WindowSpec, splits: Splits, batch_size: int, source: str) -> None:
    """ConfigError naming the flags, and a split that fits, when ``rows`` cannot hold the split asked for."""
    try:
        check_split(rows, spec, splits, batch_size)
    except SplitError as exc:
        raise ConfigError(
            f"{source} has {rows:,} rows, too few for --train-end {splits.train_end} --val-end "
            f"{splits.val_end} with --lookback {spec.lookback} --delay {spec.delay} and batches of "
            f"{batch_size} ({exc}). {quick_split(rows, spec, batch_size)}") from exc


def quick_split(rows: int, spec: WindowSpec, batch_size: int) -> str:
    """A suggestion: the book's proportions of the rows (200,000 and 300,000 of 420,551), with the
    book's window if it fits, else a shorter one."""
    train_end, val_end = rows * 200 // 420, rows * 300 // 420
    for lookback, delay in ((spec.lookback, spec.delay), (40 * spec.step, 4 * spec.step),
                            (4 * spec.step, 2 * spec.step)):
        try:
            check_split(rows, WindowSpec(lookback, spec.step, delay), Splits(train_end, val_end), batch_size)
        except SplitError:
            continue
        window = "" if lookback == spec.lookback else f" --lookback {lookback} --delay {delay}"
        return f"For this file try --train-end {train_end} --val-end {val_end}{window}."
    return "The file is too short for even a small split: give a longer one."


def main(argv: list[str] | None = None) -> dict:
    cfg = config_from_args(JenaConfig, build_parser().parse_args(argv))
    spec, splits = WindowSpec(cfg.lookback, cfg.step, cfg.delay), Splits(cfg.train_end, cfg.val_end)
    # A bad --out is refused before the data is read; a bad --data leaves no empty --out behind.
    with setup(cfg) as rt, claimed_out_dir(cfg, claim=rt.is_main):
        t0 = time.perf_counter()
        with rt.main_first(), warnings.catch_warnings():  # rank 0 downloads and parses first
            # The summary printed below says whether the md5 differs; the warning would say it again.
            warnings.simplefilter("ignore", JenaChecksumWarning)
            table = load_jena(cfg.data, clean=cfg.clean)
        # The book's evaluation batches are global batches: batch_size per process x processes.
        check_split_fits(len(table.values), spec, splits, cfg.batch_size * rt.world_size, table.summary.source)
        prep = prepare_jena(table.values, spec, splits, cfg.batch_size * rt.world_size)
        load_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        baseline = {which: naive_mae(prep.data, batches, spec)
                    for which, batches in (("val", prep.val_batches), ("test", prep.test_batches))}
        extra = {
            "model": cfg.model,
            "baseline_val_mae": baseline["val"],
            "baseline_val_mae_celsius": baseline["val"] * prep.target_std,
            "baseline_test_mae": baseline["test"],
            "baseline_test_mae_celsius": baseline["test"] * prep.target_std,
            "target_std_celsius": prep.target_std,
            "val_batches": len(prep.val_batches),
            "test_batches": len(prep.test_batches),
            "data": table.summary.to_dict(),
            "timings": {"load_seconds": load_seconds, "baseline_seconds": time.perf_counter() - t0},
        }
        if rt.is_main:
            print(table.summary.format())
            print(f"common-sense baseline: val MAE {baseline['val']:.4f} "
                  f"({extra['baseline_val_mae_celsius']:.2f} C), test MAE {baseline['test']:.4f} "
                  f"({extra['baseline_test_mae_celsius']:.2f} C)", flush=True)
        if cfg.model == "naive":
            metrics = {**extra, "config": config_to_dict(cfg)}
        else:
            model = build_jena_model(cfg.model, table.values.shape[1], spec.timesteps,
                                     keras_faithful=not cfg.torch_defaults, backend=cfg.backend)
            metrics = fit(
                model, regression_task(loss="mae"), cfg, rt,
                train=prep.train_loader_factory(cfg.steps_per_epoch, cfg.seed, cfg.batch_size,
                                                cfg.num_workers),
                val=prep.eval_dataset("val"), test=prep.eval_dataset("test"), extra=extra,
                reference_lines=[RefLine("mae", baseline["val"], "common-sense baseline (val)")],
            )
            # Degrees: a normalized MAE times the temperature's std (normalization is affine).
            best_val = metrics["best_val"].get("val_mae")
            test = (metrics["test"] or {}).get("mae")
            metrics["best_val_mae_celsius"] = None if best_val is None else best_val * prep.target_std
            metrics["test_mae_celsius"] = None if test is None else test * prep.target_std
        if rt.is_main:
            atomic_write_json(f"{cfg.out}/metrics.json", metrics)
        return metrics


if __name__ == "__main__":
    cli.run(main)
