"""Generic training machinery shared by the book's scripts (IMDB classification, Jena regression).

A script builds a config (:class:`TrainConfig` + :func:`add_common_args`), calls :func:`setup`,
builds its data and model, and hands them to :func:`fit` with a :class:`Task`; its ``__main__`` is
``cli.run(main)``, which prints a :class:`UserError` as one message and says how to resume after
Ctrl-C (:class:`RunInterrupted`).
:func:`fit` documents the files it writes (history.json, metrics.json, curves.png, best.pt, last.pt);
:func:`prepare_out_dir` says when an output directory is refused.
"""

from ..fileio import atomic_write
from .checkpoint import (
    CHECKPOINT_FORMAT,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    capture_rng_state,
    load_checkpoint,
    load_checkpoint_or_previous,
    read_json,
    restore_rng_state,
    save_checkpoint,
)
from .config import TrainConfig, add_common_args, config_from_args, config_to_dict, flag_name
from .errors import ConfigError, ResumeError, SetupError, UserError
from .interrupt import RunInterrupted
from .loaders import eval_loader, to_device, train_loader_factory
from .errors import UserError
from .loop import evaluate, fit, train_one_epoch, unwrap
from .meters import MetricSums
from .optim import KerasAdam, KerasRMSprop, make_optimizer
from .numerics import NonFiniteError
from .outdir import RUN_FILES, RunDirectoryError, claimed_out_dir, prepare_out_dir
from .plots import RefLine, plot_history
from .runfiles import CheckpointError, RunFileError, SaveError, UnverifiedFileWarning
from .runtime import PeerLostError, RunStoppedError, Runtime, resolve_device, seed_everything, setup
from .samplers import RandomStepsSampler, ShardedEvalSampler, derive_seed
from .summary import count_parameters, model_summary
from .tasks import (
    Task,
    binary_accuracy,
    binary_classification_task,
    default_forward_batch,
    regression_task,
)

__all__ = [
    "CHECKPOINT_FORMAT", "CheckpointError", "ConfigError", "KerasAdam", "KerasRMSprop", "MetricSums",
    "NonFiniteError", "PeerLostError", "RUN_FILES", "RandomStepsSampler", "RefLine", "ResumeError",
    "RunDirectoryError", "RunFileError", "RunInterrupted", "RunStoppedError", "Runtime", "SaveError", "SetupError",
    "ShardedEvalSampler", "Task", "TrainConfig", "UnverifiedFileWarning", "UserError", "add_common_args",
    "atomic_torch_save", "load_checkpoint_or_previous", "read_json", "save_checkpoint",
    "atomic_write", "atomic_write_bytes", "atomic_write_json", "binary_accuracy",
    "binary_classification_task", "capture_rng_state", "claimed_out_dir", "config_from_args",
    "config_to_dict",
    "count_parameters", "default_forward_batch", "derive_seed", "eval_loader", "evaluate", "fit",
    "flag_name", "load_checkpoint", "make_optimizer", "model_summary", "plot_history", "prepare_out_dir",
    "regression_task",
    "resolve_device", "restore_rng_state", "seed_everything", "setup", "to_device",
    "train_loader_factory", "train_one_epoch", "unwrap",
]
