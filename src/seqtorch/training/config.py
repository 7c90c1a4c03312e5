"""The training configuration: one dataclass, its command-line flags, and a plain-dict form.

Scripts extend :class:`TrainConfig` with their own fields (nanoGPT style: a config object with
argparse overrides), call :func:`add_common_args` on their parser, add their own flags, and build
the config with :func:`config_from_args`. A field ``batch_size`` is the flag ``--batch-size``
(:func:`flag_name`), so a bad value is reported with the flag a user typed: a
:class:`~seqtorch.training.errors.ConfigError`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass
from typing import Any, TypeVar

from .cli import add_debug_flag
from ..ops.dispatch import BACKENDS
from .errors import ConfigError

OPTIMIZERS = ("rmsprop", "adam")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainConfig:
    """Settings every training script shares. Subclass it to add a script's own fields."""

    epochs: int = 10
    # Per process: under torchrun the effective batch is batch_size * world_size.
    batch_size: int = 32
    eval_batch_size: int | None = None  # None -> batch_size
    optimizer: str = "rmsprop"
    lr: float = 1e-3
    backend: str = "auto"  # passed to the model by the script; fit itself never reads it
    device: str = "auto"
    seed: int = 0
    out: str = "runs/default"
    resume: bool = False
    overwrite: bool = False  # replace a run already in ``out`` (else training there is refused)
    # The book's recipe (Keras' initializers, one bias per gate, the Keras 2 GRU, Keras' optimizer
    # update rules) is the default because the scripts are the book's; this opts out of it.
    torch_defaults: bool = False
    num_workers: int = 0
    progress: bool = True
    # A batch whose loss or gradient is NaN/inf stops training (the default) or, with this, is
    # skipped without a step and counted in the history ("skipped_batches").
    skip_nonfinite: bool = False
    # Seconds a DDP collective waits for the other processes before the run stops with a message.
    collective_timeout: float = 600.0

    def __post_init__(self) -> None:
        validate_config(self)


def flag_name(field: str) -> str:
    """The command-line flag of a config field: ``batch_size`` -> ``--batch-size``."""
    return "--" + field.replace("_", "-")


def validate_config(cfg: TrainConfig) -> None:
    """Raise ConfigError (a ValueError) naming the flag, the expected values and the actual one."""
    for field, low in (("epochs", 0), ("batch_size", 1), ("seed", 0), ("num_workers", 0)):
        if getattr(cfg, field) < low:
            raise ConfigError(f"{flag_name(field)} must be >= {low}, got {getattr(cfg, field)}")
    if cfg.eval_batch_size is not None and cfg.eval_batch_size < 1:
        raise ConfigError(f"--eval-batch-size must be >= 1 (or left out: --batch-size), got {cfg.eval_batch_size}")
    for field, choices in (("optimizer", OPTIMIZERS), ("backend", BACKENDS), ("device", DEVICES)):
        if getattr(cfg, field) not in choices:
            raise ConfigError(f"{flag_name(field)} must be one of {choices}, got {getattr(cfg, field)!r}")
    if not cfg.lr > 0:
        raise ConfigError(f"--lr must be > 0, got {cfg.lr}")
    if not cfg.collective_timeout > 0:
        raise ConfigError(f"--collective-timeout must be > 0 seconds, got {cfg.collective_timeout}")
    if cfg.resume and cfg.overwrite:
        raise ConfigError("--resume (continue the run in --out) and --overwrite (replace it) exclude "
                          "each other: pass one")


def add_common_args(
    parser: argparse.ArgumentParser, defaults: TrainConfig | None = None
) -> argparse.ArgumentParser:
    """Add the shared flags to ``parser``; their defaults come from ``defaults``.

    The ``dest`` of every flag is the config field name (``--batch-size`` -> ``batch_size``), so
    :func:`config_from_args` can pick them up by name.
    """
    d = defaults if defaults is not None else TrainConfig()
    g = parser.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=d.epochs,
                   help="passes over the training data (default %(default)s); 1 or 2 for a quick run")
    g.add_argument(
        "--batch-size", dest="batch_size", type=int, default=d.batch_size,
        help="training examples per step, per process: under torchrun the global batch is this times "
             "the process count (default %(default)s)",
    )
    g.add_argument(
        "--eval-batch-size", dest="eval_batch_size", type=int, default=d.eval_batch_size,
        help="examples per validation and test step; changes the speed, not the numbers (default: "
             "--batch-size)",
    )
    g.add_argument(
        "--optimizer", choices=OPTIMIZERS, default=d.optimizer,
        help="the update rule, with Keras' defaults: rmsprop rho 0.9, eps 1e-7; adam betas (0.9, 0.999), "
             "eps 1e-7 (default %(default)s)",
    )
    g.add_argument("--lr", type=float, default=d.lr, help="learning rate (default %(default)s)")
    g.add_argument("--backend", choices=BACKENDS, default=d.backend,
                   help="seqtorch's recurrent kernels: auto picks triton on a GPU, else cpu_fused (C++), else "
                        "the reference loop; every backend computes the same numbers (default %(default)s)")
    g.add_argument("--device", choices=DEVICES, default=d.device,
                   help="auto: cuda if a GPU is visible, else cpu (default %(default)s)")
    g.add_argument("--seed", type=int, default=d.seed,
                   help="seeds the initial weights, dropout and the data order: the same seed gives the same "
                        "run on CPU (default %(default)s)")
    g.add_argument("--out", default=d.out,
                   help="the run's folder: history.json, metrics.json, curves.png, best.pt, last.pt "
                        "(default %(default)s)")
    g.add_argument(
        "--resume", action="store_true", default=d.resume,
        help="continue the run in OUT from its last.pt, e.g. after Ctrl-C; --epochs may be raised to "
             "train it longer (starts fresh if OUT holds no run)",
    )
    g.add_argument(
        "--overwrite", action="store_true", default=d.overwrite,
        help="replace the run in OUT: its files (best.pt, last.pt, history.json, metrics.json, "
             "curves.png) are deleted before training. Without --overwrite or --resume, training "
             "into an OUT that holds a run is refused",
    )
    recipe = g.add_mutually_exclusive_group()
    recipe.add_argument(
        "--torch-defaults", dest="torch_defaults", action="store_true", default=d.torch_defaults,
        help="use torch's defaults instead of the book's Keras recipe: torch's initialization, two "
             "trained biases, torch's GRU (reset_after=True), torch.optim's update rules",
    )
    # Before the Keras recipe became the default it had to be asked for; commands and scripts
    # written then still pass this flag, so it is accepted and changes nothing.
    recipe.add_argument(
        "--keras-faithful", dest="keras_faithful_alias", action="store_true",
        help="accepted for older commands; does nothing: the Keras recipe is the default "
             "(Keras' initializers, one bias per gate, the Keras 2 GRU, Keras' optimizer update "
             "rules). Not allowed with --torch-defaults",
    )
    g.add_argument(
        "--num-workers", dest="num_workers", type=int, default=d.num_workers,
        help="DataLoader worker processes (default %(default)s)",
    )
    g.add_argument(
        "--no-progress", dest="progress", action="store_false", default=d.progress,
        help="hide the per-batch progress bar",
    )
    g.add_argument(
        "--skip-nonfinite", dest="skip_nonfinite", action="store_true", default=d.skip_nonfinite,
        help="skip a batch whose loss or gradient is NaN or inf (no step; counted as skipped_batches "
             "in the history) instead of stopping the run at the first one",
    )
    g.add_argument(
        "--collective-timeout", dest="collective_timeout", type=float, default=d.collective_timeout,
        metavar="SECONDS", help="under torchrun: how long a process waits for the others before the "
                                "run stops with a message (default %(default)s)",
    )
    add_debug_flag(g)
    return parser


C = TypeVar("C", bound=TrainConfig)


def config_from_args(cls: type[C], args: argparse.Namespace) -> C:
    """Build ``cls`` from the entries of ``args`` that are fields of ``cls``.

    Entries of ``args`` that are not fields are ignored (a script may have flags it handles
    itself); fields absent from ``args`` keep their dataclass default.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"config_from_args expects a dataclass type, got {cls!r}")
    values = vars(args)
    kwargs = {f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values}
    return cls(**kwargs)


def config_to_dict(cfg: Any) -> dict:
    """The config as a plain dict of JSON types, safe for json.dump and torch.load(weights_only=True)."""
    if not dataclasses.is_dataclass(cfg):
        raise TypeError(f"expected a dataclass config, got {type(cfg).__name__}")
    return {k: _plain(v) for k, v in dataclasses.asdict(cfg).items()}


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    # Anything else (an enum, a torch.dtype) is recorded by its text so the file stays loadable.
    return str(value)
