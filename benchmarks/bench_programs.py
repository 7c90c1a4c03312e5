"""Two real programs with torch.nn's recurrent classes swapped for seqtorch's: their own model code, timed
side by side in one process.

Programs nobody on the team wrote, run as their drivers run them with the class swapped at run time
(``nn.LSTMCell = seqtorch.LSTMCell``); here the model code takes the class as an argument instead, the
shapes, dtypes and loops are the programs' own:

* ``time-sequence-prediction`` (pytorch/examples ``time_sequence_prediction/train.py``): ``LSTMCell(1, 51)``
  and ``LSTMCell(51, 51)`` and a ``Linear(51, 1)``, float64, called step by step over the 999 steps of a
  (97, 999) batch of sine waves (``generate_sine_wave.py``'s: T=20, L=1000, N=100, the first 3 kept for
  the test). Rows: ``closure`` (what LBFGS evaluates up to 20 times per step: zero_grad, forward, MSE
  loss, backward) and ``predict`` (no_grad, the 3 test waves and 1000 future steps).
* ``pos-tagger`` (pytorch/tutorials ``beginner_source/nlp/sequence_models_tutorial.py``): ``Embedding(9, 6)``,
  ``LSTM(6, 6)``, ``Linear(6, 3)``, log_softmax, NLLLoss and SGD(lr=0.1) over the tutorial's two sentences
  (5 and 4 words), batch 1. Rows: ``epoch`` (both sentences: zero_grad, forward, loss, backward, step; the
  tutorial runs 300 of them, 600 LSTM calls) and ``tag`` (the forward under no_grad, as it prints at the end).

Before timing, both versions of each program are checked to compute the same numbers (same weights, float64).
The table gives each row's medians and the ratio seqtorch / torch.nn (under 1: seqtorch is faster).

    OMP_NUM_THREADS=1 python benchmarks/bench_programs.py --threads 1 --out runs/programs.json
    python benchmarks/bench_programs.py --quick     # smoke test: a few steps
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import harness
import seqtorch

TORCH_NN, SEQTORCH = "torch.nn", "seqtorch"
CHECK_ATOL = 1e-8  # the sameness check, float64


# ---- time_sequence_prediction ---------------------------------------------------------------------

class Sequence(nn.Module):
    """time_sequence_prediction's model, with the cell class as an argument."""

    def __init__(self, cell_cls: type) -> None:
        super().__init__()
        self.lstm1 = cell_cls(1, 51)
        self.lstm2 = cell_cls(51, 51)
        self.linear = nn.Linear(51, 1)

    def forward(self, input: torch.Tensor, future: int = 0) -> torch.Tensor:
        outputs = []
        h_t = torch.zeros(input.size(0), 51, dtype=torch.double)
        c_t = torch.zeros(input.size(0), 51, dtype=torch.double)
        h_t2 = torch.zeros(input.size(0), 51, dtype=torch.double)
        c_t2 = torch.zeros(input.size(0), 51, dtype=torch.double)
        for input_t in input.split(1, dim=1):
            h_t, c_t = self.lstm1(input_t, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        for _ in range(future):
            h_t, c_t = self.lstm1(output, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        return torch.cat(outputs, dim=1)


def sine_waves(T: int = 20, L: int = 1000, N: int = 100, seed: int = 2) -> torch.Tensor:
    """generate_sine_wave.py's data: N waves of L points, each shifted by a random offset."""
    rng = np.random.RandomState(seed)
    x = np.empty((N, L), "int64")
    x[:] = np.array(range(L)) + rng.randint(-4 * T, 4 * T, N).reshape(N, 1)
    return torch.from_numpy(np.sin(x / 1.0 / T).astype("float64"))


# ---- the POS tagger --------------------------------------------------------------------------------

TRAINING_DATA = [("The dog ate the apple".split(), ["DET", "NN", "V", "DET", "NN"]),
                 ("Everybody read that book".split(), ["NN", "V", "DET", "NN"])]
TAGS = {"DET": 0, "NN": 1, "V": 2}


class LSTMTagger(nn.Module):
    """The tutorial's tagger, with the LSTM class as an argument."""

    def __init__(self, lstm_cls: type, embedding_dim: int, hidden_dim: int, vocab_size: int,
                 tagset_size: int) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.word_embeddings = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = lstm_cls(embedding_dim, hidden_dim)
        self.hidden2tag = nn.Linear(hidden_dim, tagset_size)

    def forward(self, sentence: torch.Tensor) -> torch.Tensor:
        embeds = self.word_embeddings(sentence)
        lstm_out, _ = self.lstm(embeds.view(len(sentence), 1, -1))
        tag_space = self.hidden2tag(lstm_out.view(len(sentence), -1))
        return F.log_softmax(tag_space, dim=1)


def prepare_sequence(seq: list[str], to_ix: dict[str, int]) -> torch.Tensor:
    return torch.tensor([to_ix[w] for w in seq], dtype=torch.long)


# ---- the rows --------------------------------------------------------------------------------------

def time_sequence_jobs(quick: bool) -> tuple[dict[str, list[harness.Job]], Callable[[], None]]:
    """The rows of time_sequence_prediction (each a pair of jobs) and its sameness check."""
    data = sine_waves()
    steps = 5 if quick else data.shape[1] - 1
    input, target, test_input = data[3:, :steps], data[3:, 1:steps + 1], data[:3, :steps]
    future = 5 if quick else 1000
    torch.manual_seed(0)
    models = {TORCH_NN: Sequence(nn.LSTMCell).double()}
    models[SEQTORCH] = Sequence(seqtorch.LSTMCell).double()
    models[SEQTORCH].load_state_dict(models[TORCH_NN].state_dict())
    criterion = nn.MSELoss()

    def closure(model: nn.Module) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            model.zero_grad()
            loss = criterion(model(input), target)
            loss.backward()
            return loss
        return run

    def predict(model: nn.Module) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with torch.no_grad():
                return model(test_input, future=future)
        return run

    def check() -> None:
        losses = {name: closure(model)() for name, model in models.items()}
        harness.check_same(SEQTORCH, losses[SEQTORCH], TORCH_NN, losses[TORCH_NN], CHECK_ATOL)
        for p, q in zip(models[SEQTORCH].parameters(), models[TORCH_NN].parameters()):
            harness.check_same(SEQTORCH + " gradient", p.grad, TORCH_NN, q.grad, CHECK_ATOL)
        harness.check_same(SEQTORCH, predict(models[SEQTORCH])(), TORCH_NN, predict(models[TORCH_NN])(), CHECK_ATOL)

    rows = {"closure": [harness.Job(name, closure(m)) for name, m in models.items()],
            "predict": [harness.Job(name, predict(m)) for name, m in models.items()]}
    return rows, check


def pos_tagger_jobs(quick: bool) -> tuple[dict[str, list[harness.Job]], Callable[[], None]]:
    """The rows of the POS tagger (each a pair of jobs) and its sameness check."""
    word_to_ix: dict[str, int] = {}
    for sentence, _ in TRAINING_DATA:
        for word in sentence:
            word_to_ix.setdefault(word, len(word_to_ix))
    data = [(prepare_sequence(s, word_to_ix), prepare_sequence(t, TAGS)) for s, t in TRAINING_DATA]
    torch.manual_seed(1)
    models = {TORCH_NN: LSTMTagger(nn.LSTM, 6, 6, len(word_to_ix), len(TAGS))}
    models[SEQTORCH] = LSTMTagger(seqtorch.LSTM, 6, 6, len(word_to_ix), len(TAGS))
    models[SEQTORCH].load_state_dict(models[TORCH_NN].state_dict())
    optimizers = {name: torch.optim.SGD(m.parameters(), lr=0.1) for name, m in models.items()}
    loss_function = nn.NLLLoss()

    def epoch(name: str) -> Callable[[], None]:
        model, optimizer = models[name], optimizers[name]

        def run() -> None:
            for sentence_in, targets in data:
                model.zero_grad()
                loss = loss_function(model(sentence_in), targets)
                loss.backward()
                optimizer.step()
        return run

    def tag(name: str) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with torch.no_grad():
                return models[name](data[0][0])
        return run

    def check() -> None:
        doubled = {name: LSTMTagger(cls, 6, 6, len(word_to_ix), len(TAGS)).double()
                   for name, cls in ((TORCH_NN, nn.LSTM), (SEQTORCH, seqtorch.LSTM))}
        doubled[SEQTORCH].load_state_dict(doubled[TORCH_NN].state_dict())
        for sentence_in, targets in data:
            losses = {}
            for name, model in doubled.items():
                model.zero_grad()
                losses[name] = loss_function(model(sentence_in), targets)
                losses[name].backward()
            harness.check_same(SEQTORCH, losses[SEQTORCH], TORCH_NN, losses[TORCH_NN], CHECK_ATOL)
            for p, q in zip(doubled[SEQTORCH].parameters(), doubled[TORCH_NN].parameters()):
                harness.check_same(SEQTORCH + " gradient", p.grad, TORCH_NN, q.grad, CHECK_ATOL)

    rows = {"epoch": [harness.Job(name, epoch(name)) for name in models],
            "tag": [harness.Job(name, tag(name)) for name in models]}
    return rows, check


PROGRAMS = {"time-sequence-prediction": time_sequence_jobs, "pos-tagger": pos_tagger_jobs}
TABLE_HEADER = ["program", "row", "seqtorch time", "torch.nn time", "ratio"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_common_arguments(parser)
    parser.add_argument("--only", nargs="+", choices=list(PROGRAMS), default=None, help="only these programs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.device != "cpu":
        raise SystemExit(f"--device {args.device}: these programs run on CPU (their own code makes CPU tensors)")
    device = torch.device("cpu")
    programs = args.only or list(PROGRAMS)
    run = harness.Run.start(args, device, settings={"programs": programs})
    records, lines = [], []
    for program in programs:
        rows, check = PROGRAMS[program](args.quick)
        check()
        for row, jobs in rows.items():
            summary = harness.summarize(harness.measure(jobs, run.timer, run.budget))
            pair = harness.pair(summary, SEQTORCH, TORCH_NN)
            records.append({"id": f"{program}/{row}", "program": program, "row": row, **summary, "pairs": [pair]})
            lines.append([program, row, harness.time_text(pair["candidate_ms"]), harness.time_text(pair["versus_ms"]),
                          f"{pair['ratio']:.2f}x"])
            print(f"# {program}/{row}: reps={summary['reps']} {pair['ratio']:.2f}x (min/min "
                  f"{pair['ratio_of_min']:.2f}x)", file=sys.stderr, flush=True)
            run.save(records, harness.markdown_table(TABLE_HEADER, lines))
    return run.finish(records, harness.markdown_table(TABLE_HEADER, lines))


if __name__ == "__main__":
    main()
