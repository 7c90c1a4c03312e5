"""The scripts' command-line wrapper (training/cli.py), Ctrl-C inside a run (training/interrupt.py) and the
--out folder a failed run leaves (outdir.claimed_out_dir), in-process.

The same behaviour end to end, through real subprocesses, is in tests/scripts/.
"""

from __future__ import annotations

import os
import signal
import sys

import pytest

from seqtorch.data.errors import DataFileError, DataNotFoundError, DownloadError
from seqtorch.training import (
    CHECKPOINT_FORMAT,
    ConfigError,
    ResumeError,
    RunDirectoryError,
    RunInterrupted,
    SetupError,
    TrainConfig,
    UserError,
    atomic_torch_save,
    claimed_out_dir,
    cli,
)
from seqtorch.training.interrupt import describe_run, uninterrupted


@pytest.mark.parametrize("error, base", [(ConfigError, ValueError), (ResumeError, RuntimeError),
                                         (SetupError, RuntimeError), (RunDirectoryError, RuntimeError),
                                         (DataNotFoundError, FileNotFoundError), (DataFileError, ValueError),
                                         (DataFileError, RuntimeError), (DownloadError, RuntimeError)])
def test_user_errors_keep_their_old_bases(error, base):
    assert issubclass(error, UserError) and issubclass(error, base)
    assert error("message").exit_code == 2


def test_a_user_error_is_one_message_and_exit_2(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train_x.py"])

    def main(argv):
        raise ConfigError("--lr must be > 0, got 0.0")

    with pytest.raises(SystemExit) as info:
        cli.run(main, ["--lr", "0"])
    assert info.value.code == 2
    assert capsys.readouterr().err == "train_x.py: error: --lr must be > 0, got 0.0\n"


def test_fixes_are_printed_as_commands(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["scripts/train_x.py", "--out", "r", "--overwrite"])
    monkeypatch.setattr(sys, "orig_argv", ["python3", "-u", "scripts/train_x.py", "--out", "r", "--overwrite"])
    for name in (cli.RERUN_ENV, "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)

    def main(argv):
        raise RunDirectoryError("r holds a run", fixes=(("--resume", "continue it"),))

    with pytest.raises(SystemExit):
        cli.run(main, ["--out", "r", "--overwrite"])
    err = capsys.readouterr().err.splitlines()
    assert err == ["train_x.py: error: r holds a run",
                   "  continue it: python3 -u scripts/train_x.py --out r --resume"]


def test_commands_under_make_and_torchrun(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["scripts/train_imdb.py", "--epochs", "3"])
    monkeypatch.setenv(cli.RERUN_ENV, "make train")
    monkeypatch.setenv(cli.RERUN_VAR_ENV, "TRAIN_ARGS")
    monkeypatch.setenv(cli.RERUN_ARGS_ENV, "")
    assert cli.rerun_command(["--epochs", "3"], "--resume") == "make train TRAIN_ARGS=--resume"
    monkeypatch.setenv(cli.RERUN_ARGS_ENV, "--epochs 3 --overwrite")
    assert cli.rerun_command([], "--resume") == "make train TRAIN_ARGS='--epochs 3 --resume'"
    assert cli.rerun_command([], "") == "make train TRAIN_ARGS='--epochs 3'"
    assert cli.rerun_command([], None) == "make train TRAIN_ARGS='--epochs 3 --overwrite'"  # as it was
    monkeypatch.delenv(cli.RERUN_ENV)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert (cli.rerun_command(["--epochs", "3"], "--resume")
            == "torchrun --nproc_per_node 2 scripts/train_imdb.py --epochs 3 --resume")


def test_a_bug_keeps_its_traceback_and_debug_shows_a_user_errors(monkeypatch):
    def bug(argv):
        raise IndexError("a bug")

    with pytest.raises(IndexError, match="a bug"):
        cli.run(bug, [])

    def mistake(argv):
        raise ConfigError("bad")

    with pytest.raises(ConfigError):
        cli.run(mistake, ["--debug"])
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    with pytest.raises(ConfigError):
        cli.run(mistake, [])


def test_ctrl_c_exits_130_with_what_the_run_holds(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train_x.py"])
    monkeypatch.delenv(cli.RERUN_ENV, raising=False)

    def main(argv):
        raise RunInterrupted("Epoch 3 of 9 was cut short; r/last.pt holds epoch 2.", (("--resume", "resume it"),))

    with pytest.raises(SystemExit) as info:
        cli.run(main, ["--out", "r"])
    assert info.value.code == 130
    err = capsys.readouterr().err
    assert "interrupted (Ctrl-C). Epoch 3 of 9 was cut short" in err and "resume it: " in err
    assert err.rstrip().endswith("--out r --resume")


def test_ctrl_c_outside_training_gives_the_command_as_it_was(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train_x.py"])
    monkeypatch.delenv(cli.RERUN_ENV, raising=False)

    def main(argv):
        raise KeyboardInterrupt  # while the data is read: no epoch under way

    with pytest.raises(SystemExit) as info:
        cli.run(main, ["--out", "r", "--resume"])
    err = capsys.readouterr().err
    assert info.value.code == 130 and "No training was under way" in err
    assert err.rstrip().endswith("--out r --resume")  # the same command, --resume kept


def test_an_epochs_files_are_written_even_if_ctrl_c_arrives_meanwhile():
    written = []

    @uninterrupted
    def save():
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of the writes
        for name in ("best.pt", "last.pt", "history.json"):
            written.append(name)

    # Python's own handler, as a script starts with: in a long pytest process a library imported by an
    # earlier test may have installed its own, which uninterrupted leaves in charge (by design)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            save()
        assert written == ["best.pt", "last.pt", "history.json"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, previous)


def test_describe_run_reads_last_pt(tmp_path):
    message, fixes = describe_run(tmp_path, 10, "val_acc")
    assert "No epoch of 10 had finished" in message and fixes == (("", "start it again"),)
    atomic_torch_save(tmp_path / "last.pt", {"format": CHECKPOINT_FORMAT, "epoch": 4,
                                             "best": {"epoch": 3, "value": 0.875}})
    message, fixes = describe_run(tmp_path, 10, "val_acc")
    assert message == (f"Epoch 5 of 10 was cut short (its batches are dropped); {tmp_path / 'last.pt'} holds "
                       f"epoch 4 (best val_acc 0.8750 at epoch 3).")
    assert fixes == (("--resume", "resume it"),)
    assert "test evaluation was cut short" in describe_run(tmp_path, 4, "val_acc")[0]
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    message, fixes = describe_run(tmp_path, 10, "val_acc")
    assert "cannot be read" in message and fixes == (("--overwrite", "start it again"),)


def test_a_failed_run_leaves_no_empty_out_folder(tmp_path):
    out = tmp_path / "runs" / "new"
    with pytest.raises(DataNotFoundError), claimed_out_dir(TrainConfig(out=str(out))):
        assert out.is_dir()  # made before the data is read, so a bad --out fails first
        raise DataNotFoundError("no data")
    assert not (tmp_path / "runs").exists()
    # A folder that was there, or that the run wrote into, stays.
    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(KeyboardInterrupt), claimed_out_dir(TrainConfig(out=str(kept / "run"))):
        (kept / "run" / "history.json").write_text("[]")
        raise KeyboardInterrupt
    assert (kept / "run" / "history.json").is_file()
    with claimed_out_dir(TrainConfig(out=str(tmp_path / "fine"))):
        pass
    assert (tmp_path / "fine").is_dir()


def test_data_errors_name_the_file_and_are_user_errors(tmp_path):
    from seqtorch.data.download import download
    from seqtorch.data.jena import load_jena

    with pytest.raises(DownloadError, match="could not open"):
        download((tmp_path / "absent.zip").as_uri(), tmp_path / "dest.zip")
    with pytest.raises(DataNotFoundError, match="is a folder"):
        load_jena(tmp_path)
