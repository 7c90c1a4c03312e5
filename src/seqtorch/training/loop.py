"""The training loop: ``fit`` built from small named steps (train an epoch, evaluate, save, report).

One process or many (torchrun + DistributedDataParallel) run the same code. Every rank trains
on its shard and evaluates its shard of the validation data; sums are all-reduced so every rank
sees the same metrics; only rank 0 prints and writes files.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .checkpoint import (
    CHECKPOINT_FORMAT,
    as_written,
    atomic_torch_save,
    atomic_write_json,
    capture_rng_state,
    load_checkpoint,
    load_checkpoint_or_previous,
    read_json,
    restore_rng_state,
    save_checkpoint,
)
from .config import TrainConfig, config_to_dict, flag_name
from .errors import ResumeError
from .interrupt import reported, uninterrupted
from .loaders import TrainLoaderFn, eval_loader, to_device, train_loader_factory
from .meters import MetricSums
from .optim import make_optimizer
from .numerics import NonFiniteError, nonfinite_in_batch
from .outdir import (
    BEST_FILE, CURVES_FILE, HISTORY_FILE, LAST_FILE, METRICS_FILE, PREVIOUS_FILE, prepare_out_dir,
)
from .plots import RefLine, plot_history
from .runfiles import CheckpointError, RunFileError, SaveError, keep_copy
from .runtime import Runtime, seed_everything
from .samplers import derive_seed
from .summary import count_parameters, model_summary
from .tasks import Task

METRICS_FIELDS = (
    "task", "monitor", "mode", "best_epoch", "best_value", "best_val", "test", "epochs",
    "train_seconds", "wall_seconds", "device", "world_size", "num_parameters",
    "num_trainable_parameters", "torch_version", "resumed_from_epoch", "config",
)

# Fields whose change between a run and its --resume is expected (they do not change the maths).
_RESUME_FREE_FIELDS = {"epochs", "resume", "overwrite", "out", "progress", "num_workers", "device",
                       "collective_timeout"}


@dataclass
class TrainState:
    """What survives between epochs (and across --resume)."""

    epoch: int = 0  # completed epochs
    history: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    best_value: float | None = None


@reported  # Ctrl-C: what last.pt holds and the command that resumes the run (interrupt.py)
def fit(
    model: nn.Module,
    task: Task,
    cfg: TrainConfig,
    rt: Runtime,
    *,
    train: Dataset | TrainLoaderFn,
    val: Dataset,
    test: Dataset | None = None,
    collate_fn: Callable | None = None,
    extra: dict | None = None,
    reference_lines: Sequence[RefLine] = (),
) -> dict:
    """Train ``model`` for ``cfg.epochs`` epochs, keep the best epoch by ``task.monitor``, test it.

    ``train`` is a map-style Dataset (shuffled per epoch from (seed, epoch)) or a callable
    ``make_train_loader(epoch, rank, world_size) -> iterable of batches`` whose output depends
    only on its arguments (and the script's config). ``val``/``test`` are map-style Datasets.
    Writes history.json, curves.png, last.pt, best.pt and metrics.json to ``cfg.out`` (rank 0)
    and returns the metrics.json content. On return the model holds the best epoch's weights.
    An ``out`` that holds another run is refused unless ``cfg.resume`` or ``cfg.overwrite``, and
    one that cannot be written is refused, both before training (see
    :func:`~seqtorch.training.outdir.prepare_out_dir`).
    """
    started = time.perf_counter()
    out = Path(cfg.out)
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(METRICS_FIELDS))
    if clash:  # checked before training, not after hours of it
        raise ValueError(f"extra metrics keys {clash} clash with the fields fit writes: {METRICS_FIELDS}")
    if rt.is_main:
        prepare_out_dir(cfg)
    model.to(rt.device)
    eval_bs = cfg.eval_batch_size or cfg.batch_size
    make_train_loader = train_loader_factory(
        train, cfg.batch_size, cfg.seed, collate_fn, cfg.num_workers, rt.device.type == "cuda"
    )
    val_loader = eval_loader(val, eval_bs, rt, collate_fn, cfg.num_workers)
    test_loader = eval_loader(test, eval_bs, rt, collate_fn, cfg.num_workers) if test is not None else None
    if rt.is_main:
        log(rt, f"device {describe_device(rt.device)}, {rt.world_size} process(es), writing to {out}")
        print_summary(model, task, val, eval_bs, collate_fn, rt)

    optimizer = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, keras_faithful=not cfg.torch_defaults)
    state = TrainState()
    resumed_from = None
    if cfg.resume:
        resumed_from = resume(out / LAST_FILE, model, optimizer, state, cfg, rt)
        rt.run_on_main(lambda: refresh_history_files(out, state.history, task, reference_lines))

    train_model = wrap_for_training(model, rt)
    for epoch in range(state.epoch, cfg.epochs):
        t0 = time.perf_counter()
        loader = make_train_loader(epoch, rt.rank, rt.world_size)
        try:
            train_metrics = train_one_epoch(
                train_model, task, loader, optimizer, rt, epoch=epoch, epochs=cfg.epochs, progress=cfg.progress,
                skip_nonfinite=cfg.skip_nonfinite,
            )
        except NonFiniteError as exc:
            kept = f"{out / LAST_FILE} (epoch {state.epoch})" if state.epoch else "no checkpoint (first epoch)"
            raise NonFiniteError(f"{exc}. Training stopped; the run's last good checkpoint is {kept}. "
                                 f"Lower --lr (or fix the data) and continue with --resume, or pass "
                                 f"--skip-nonfinite to skip such batches") from None
        val_metrics = evaluate(model, task, val_loader, rt)
        record = {"epoch": epoch + 1, **train_metrics, **{f"val_{k}": v for k, v in val_metrics.items()}}
        record["seconds"] = time.perf_counter() - t0
        state.history.append(record)
        state.epoch = epoch + 1
        improved = task.is_improvement(record[task.monitor], state.best_value)
        if improved:
            state.best_epoch, state.best_value = epoch + 1, record[task.monitor]
        save_epoch(model, optimizer, state, task, cfg, rt, improved, reference_lines)
        log(rt, format_epoch_line(record, cfg.epochs, task.metric_names, improved))

    test_metrics = evaluate_best(model, task, test_loader, out, state, rt)
    metrics = build_metrics(model, task, cfg, rt, state, test_metrics, resumed_from, started, extra)
    if rt.is_main:
        try:
            atomic_write_json(out / METRICS_FILE, metrics)
        except SaveError as exc:
            raise exc.with_hint(f"Training is complete ({out / LAST_FILE} holds epoch {state.epoch}): free "
                                f"space (or fix the error) and run again with --resume to write it") from exc.cause
        log(rt, format_final_line(metrics, out))
    return metrics


def train_one_epoch(
    model: nn.Module,
    task: Task,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    rt: Runtime,
    *,
    epoch: int = 0,
    epochs: int = 1,
    progress: bool = True,
    skip_nonfinite: bool = False,
) -> dict[str, float]:
    """One pass over ``loader``; returns the epoch's mean loss and metrics over all ranks.

    The numbers are those of the model as it trains (dropout on, weights changing), as Keras
    reports them. Running values are shown in the progress bar of rank 0. A batch with a NaN or
    inf loss or gradient raises :class:`~.numerics.NonFiniteError` before its optimizer step, or,
    with ``skip_nonfinite``, is skipped and counted (``skipped_batches`` in the result).
    """
    model.train()
    check_equal_steps(loader, rt)
    sums = MetricSums(task, rt.device)
    total = len(loader) if hasattr(loader, "__len__") else None
    # disable=None lets tqdm hide itself when stderr is not a terminal (logs, CI).
    bar = tqdm(
        loader, total=total, desc=f"Epoch {epoch + 1}/{epochs}", leave=False, dynamic_ncols=True,
        disable=True if not (progress and rt.is_main) else None, file=sys.stderr,
    )
    steps = skipped = 0
    for steps, batch in enumerate(bar, start=1):
        batch = to_device(batch, rt.device)
        output, target = task.forward_batch(model, batch)
        loss = task.loss_fn(output, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        bad = nonfinite_in_batch(loss, model, rt)  # before the step: no weight ever takes the value
        if bad is not None:
            if not skip_nonfinite:
                raise NonFiniteError(f"non-finite {bad} at epoch {epoch + 1}, batch {steps}")
            skipped += 1
            continue
        optimizer.step()
        sums.add(loss, output, target)
        # Reading the sums synchronises a GPU; do it only every few steps.
        if not bar.disable and (steps % 10 == 1 or steps == total):
            bar.set_postfix({k: f"{v:.4f}" for k, v in sums.means().items()}, refresh=False)
    bar.close()
    if steps == 0:
        raise RuntimeError(f"the training loader yielded no batches in epoch {epoch + 1} (rank {rt.rank})")
    if skipped == steps:
        raise NonFiniteError(f"every batch of epoch {epoch + 1} ({steps}) had a non-finite loss or gradient")
    means = sums.reduced_means(rt.distributed)
    return {**means, "skipped_batches": skipped} if skip_nonfinite else means


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, loader: Iterable, rt: Runtime | None = None) -> dict[str, float]:
    """Mean loss and metrics of ``model`` over ``loader`` (over all ranks' shards when distributed).

    Runs the unwrapped module: evaluation shards may differ in size, and a DDP forward would
    expect every rank to take part in each step.
    """
    model = unwrap(model)
    device = rt.device if rt is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    sums = MetricSums(task, device)
    try:
        for batch in loader:
            output, target = task.forward_batch(model, to_device(batch, device))
            sums.add(task.loss_fn(output, target), output, target)
    finally:
        model.train(was_training)
    return sums.reduced_means(rt is not None and rt.distributed)


# --- steps of fit ---------------------------------------------------------------------------


def wrap_for_training(model: nn.Module, rt: Runtime) -> nn.Module:
    """DistributedDataParallel under torchrun (it broadcasts rank 0's weights), else the model."""
    if not rt.distributed:
        return model
    device_ids = [rt.device.index] if rt.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def check_equal_steps(loader: Iterable, rt: Runtime) -> None:
    """DDP ranks must take the same number of steps, or the gradient all-reduce would hang."""
    if not rt.distributed or not hasattr(loader, "__len__"):
        return
    counts = [None] * rt.world_size
    dist.all_gather_object(counts, len(loader))
    if len(set(counts)) != 1:
        raise RuntimeError(f"training loaders have different lengths per rank: {counts}; DDP needs equal steps")


def print_summary(model: nn.Module, task: Task, val: Dataset, batch_size: int, collate_fn, rt: Runtime) -> None:
    """Keras-style summary on the first validation batch (no RNG is consumed: eval mode)."""
    batch = next(iter(eval_loader(val, batch_size, None, collate_fn)), None)
    if batch is None:
        raise ValueError("the validation set is empty")
    log(rt, model_summary(model, task, to_device(batch, rt.device)))


def _trained_with_torch_defaults(config: dict) -> bool:
    """Whether the run whose config dict this is used torch's defaults rather than the Keras recipe.

    Runs from before the Keras recipe became the default recorded ``keras_faithful`` instead, and
    used torch's defaults unless it was set.
    """
    if "torch_defaults" in config:
        return bool(config["torch_defaults"])
    return not config.get("keras_faithful", False)


def resume(path: Path, model: nn.Module, optimizer, state: TrainState, cfg: TrainConfig, rt: Runtime) -> int | None:
    """Load model, optimizer, history, best-so-far and this rank's RNG states from ``path``.

    Returns the number of completed epochs it resumes from, or None when there is no checkpoint.
    """
    if not path.exists():
        log(rt, f"--resume: no checkpoint at {path}; starting from scratch")
        return None
    previous = path.with_name(PREVIOUS_FILE)
    ckpt, used = load_checkpoint_or_previous(path, previous, map_location="cpu")
    if used != path:  # the newest was damaged: the good one takes its place before training goes on
        rt.run_on_main(lambda: keep_copy(previous, path))
    old_config = {**ckpt["config"], "torch_defaults": _trained_with_torch_defaults(ckpt["config"])}
    if old_config["torch_defaults"] != cfg.torch_defaults:
        # Refused, not warned: the weights and the optimizer state load either way (same shapes),
        # so the run would go on silently under the other recipe.
        recipes = {True: "torch's defaults (--torch-defaults)", False: "the Keras recipe (the default)"}
        fix = "pass --torch-defaults" if old_config["torch_defaults"] else "drop --torch-defaults"
        raise ResumeError(f"--resume: {path} was trained with {recipes[old_config['torch_defaults']]}, "
                          f"this run asks for {recipes[cfg.torch_defaults]}; {fix} to continue it")
    # Said first: a changed architecture or optimizer is the usual reason the loads below fail.
    changed = {
        k: (old_config.get(k), v) for k, v in config_to_dict(cfg).items()
        if k not in _RESUME_FREE_FIELDS and old_config.get(k) != v
    }
    if changed:
        log(rt, f"warning: config differs from the checkpoint's (old, new): {changed}")
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        flags = "; ".join(f"{flag_name(k)} {old!r} there, {new!r} here" for k, (old, new) in changed.items())
        raise ResumeError(f"--resume: {path} was trained with another model or optimizer ({flags or e}). "
                          f"Give the flags it was trained with, or start a new run (--overwrite, or "
                          f"another --out).") from e
    state.epoch = ckpt["epoch"]
    state.history = list(ckpt["history"])
    state.best_epoch, state.best_value = ckpt["best"]["epoch"], ckpt["best"]["value"]
    if ckpt["world_size"] == rt.world_size:
        restore_rng_state(ckpt["rng"][rt.rank])
    else:
        # Different process count: exact replay is impossible; keep runs reproducible at least.
        log(rt, f"warning: checkpoint from {ckpt['world_size']} processes, now {rt.world_size}; RNG reseeded")
        seed_everything(derive_seed(cfg.seed, state.epoch, rt.rank) % 2**32)
    log(rt, f"resumed from {used} after epoch {state.epoch}")
    return state.epoch


@uninterrupted  # an epoch's files are written together, even if Ctrl-C arrives meanwhile
def save_epoch(model, optimizer, state: TrainState, task: Task, cfg: TrainConfig, rt: Runtime,
               improved: bool, reference_lines: Sequence[RefLine]) -> None:
    """best.pt (if improved), last.pt (the one before kept as last.prev.pt), history.json, curves.png.

    Collective: every rank calls it. A failed write (a full disk) stops every rank with one
    message naming the file and the error and saying what the run's files hold.
    """
    rng = gather_rng_states(rt)  # every rank's stream, so a resumed DDP run replays all of them
    out = Path(cfg.out)
    config = config_to_dict(cfg)
    model = unwrap(model)

    def write() -> None:
        try:
            if improved:
                atomic_torch_save(out / BEST_FILE, {
                    "format": CHECKPOINT_FORMAT, "epoch": state.epoch, "model": model.state_dict(),
                    "monitor": task.monitor, "value": state.best_value, "config": config,
                })
            save_checkpoint(out / LAST_FILE, {
                "format": CHECKPOINT_FORMAT, "epoch": state.epoch, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "history": state.history,
                "best": {"epoch": state.best_epoch, "value": state.best_value},
                "config": config, "world_size": rt.world_size, "rng": rng,
            }, previous=out / PREVIOUS_FILE)
        except SaveError as exc:
            raise exc.with_hint(_continue_from(out, state.epoch - 1)) from exc.cause
        try:
            write_history_files(out, state.history, task, reference_lines)
        except SaveError as exc:
            raise exc.with_hint(_continue_from(out, state.epoch)) from exc.cause

    rt.run_on_main(write)


def _continue_from(out: Path, epoch: int) -> str:
    """What a user does after a failed save, when last.pt holds ``epoch`` completed epochs."""
    if not epoch:
        return "Training stopped before any epoch was saved: free space (or fix the error) and run again with --overwrite"
    return (f"Training stopped: {out / LAST_FILE} holds epoch {epoch}. Free space (or fix the error) and "
            f"continue with --resume")


def write_history_files(out: Path, history: list[dict], task: Task, reference_lines: Sequence[RefLine]) -> None:
    """history.json and curves.png, both derived from ``history`` (rank 0)."""
    atomic_write_json(out / HISTORY_FILE, history)
    plot_history(history, out / CURVES_FILE, task.metric_names, reference_lines)


def refresh_history_files(out: Path, history: list[dict], task: Task, reference_lines: Sequence[RefLine]) -> None:
    """Rewrite history.json and curves.png from a resumed checkpoint's ``history`` unless they hold it
    already: a save that stopped after last.pt (a full disk) or a damaged copy left them behind."""
    if not history:
        return
    try:
        current = read_json(out / HISTORY_FILE)
    except (OSError, RunFileError):
        current = None
    if current == as_written(history) and (out / CURVES_FILE).exists():
        return
    write_history_files(out, history, task, reference_lines)


def gather_rng_states(rt: Runtime) -> list[dict]:
    """Each rank's RNG states, indexed by rank (a collective under DDP)."""
    mine = capture_rng_state()
    if not rt.distributed:
        return [mine]
    states: list = [None] * rt.world_size
    dist.all_gather_object(states, mine)
    return states


def evaluate_best(model: nn.Module, task: Task, test_loader, out: Path, state: TrainState, rt: Runtime) -> dict | None:
    """Load best.pt into ``model`` (every rank) and evaluate the test set; None without either."""
    rt.barrier()  # rank 0 has finished writing best.pt
    if state.best_epoch is None:
        log(rt, "no epoch produced a finite monitored value: no best checkpoint, no test evaluation")
        return None
    try:
        best = load_checkpoint(out / BEST_FILE)
    except CheckpointError as exc:
        raise exc.with_fix(f"It holds the weights of epoch {state.best_epoch}, the run's best, which no "
                           f"other file keeps: restore it from a copy, or train again with --overwrite "
                           f"(the other checkpoints are not affected)") from None
    if best.get("epoch") != state.best_epoch:
        raise CheckpointError(out / BEST_FILE, f"holds epoch {best.get('epoch')}, but {LAST_FILE} says the "
                                               f"run's best epoch is {state.best_epoch}",
                              f"A save stopped between the two files: run again with --resume and "
                              f"--epochs {max(state.epoch, best.get('epoch') or 0)} or more")
    unwrap(model).load_state_dict(best["model"])
    if test_loader is None:
        return None
    return evaluate(model, task, test_loader, rt)


def build_metrics(model, task: Task, cfg: TrainConfig, rt: Runtime, state: TrainState,
                  test_metrics: dict | None, resumed_from: int | None, started: float, extra: dict) -> dict:
    total, trainable = count_parameters(model)
    best_record = state.history[state.best_epoch - 1] if state.best_epoch else {}
    metrics: dict[str, Any] = {
        "task": task.name,
        "monitor": task.monitor,
        "mode": task.mode,
        "best_epoch": state.best_epoch,
        "best_value": state.best_value,
        "best_val": {k: v for k, v in best_record.items() if k.startswith("val_")},
        "test": test_metrics,
        "epochs": state.epoch,
        "train_seconds": sum(h["seconds"] for h in state.history),
        "wall_seconds": time.perf_counter() - started,
        "device": describe_device(rt.device),
        "world_size": rt.world_size,
        "num_parameters": total,
        "num_trainable_parameters": trainable,
        "torch_version": torch.__version__,
        "resumed_from_epoch": resumed_from,
        "config": config_to_dict(cfg),
    }
    assert tuple(metrics) == METRICS_FIELDS
    metrics.update(extra)
    return metrics


# --- reporting ------------------------------------------------------------------------------


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def format_epoch_line(record: dict, epochs: int, names: Sequence[str], improved: bool) -> str:
    """``Epoch 3/10 - 12.3s - loss: 0.4123 - acc: 0.8123 - val_loss: 0.3512 - val_acc: 0.8590 *``"""
    parts = [f"Epoch {record['epoch']}/{epochs}", f"{record['seconds']:.1f}s"]
    parts += [f"{k}: {record[k]:.4f}" for k in names]
    parts += [f"val_{k}: {record['val_' + k]:.4f}" for k in names]
    if record.get("skipped_batches"):
        parts.append(f"skipped {record['skipped_batches']} non-finite batches")
    return " - ".join(parts) + (" *" if improved else "")


def format_final_line(metrics: dict, out: Path) -> str:
    test = metrics["test"]
    test_text = ", ".join(f"{k}: {v:.4f}" for k, v in test.items()) if test else "none"
    best = metrics["best_value"]
    best_text = f"{best:.4f}" if best is not None else "none"
    return (
        f"best {metrics['monitor']} {best_text} at epoch {metrics['best_epoch']}; "
        f"test ({BEST_FILE}): {test_text}; files in {out}"
    )


def log(rt: Runtime, text: str) -> None:
    if rt.is_main:
        print(text, flush=True)

