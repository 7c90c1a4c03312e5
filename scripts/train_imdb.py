"""Train the book's IMDB sentiment classifiers (Deep Learning with Python, 6.2).

    python scripts/train_imdb.py --data /path/to/aclImdb_v1.tar.gz --model lstm
    torchrun --nproc_per_node 2 scripts/train_imdb.py --model gru --out runs/imdb-gru

The models are the book's Keras models: Keras' initializers, one trained bias per gate, the Keras 2
GRU (reset_after=False) and Keras' RMSprop update rule. --torch-defaults trains the same
architectures with torch's defaults instead (torch's initialization, two biases, torch's GRU,
torch.optim.RMSprop). --torch-nn swaps seqtorch's recurrent layer for torch.nn's, started from the
same initial weights, under either recipe (torch.nn has no reset_after=False GRU, so --model gru
--torch-nn needs --torch-defaults).

--data: aclImdb_v1.tar.gz, an extracted aclImdb/ directory, Keras' imdb.npz, a directory holding
one of them, "keras" (download imdb.npz), or nothing (download the official archive to the cache).
Writes history.json, metrics.json, curves.png, best.pt and last.pt to --out; an --out that already
holds a run is refused unless --resume (continue it) or --overwrite (replace it). Ctrl-C stops a run;
the message gives the command that resumes it.

A quick run: one epoch of the small SimpleRNN over reviews cut to their last 100 words (about a
minute on 2 cores, validation accuracy about 0.8; the first read of the reviews takes about 15 s more
to tokenize them, then they are cached):

    python scripts/train_imdb.py --model simplernn --epochs 1 --maxlen 100 --out runs/imdb-quick
"""

from __future__ import annotations

import argparse
import dataclasses

from seqtorch.data.imdb import load_imdb
from seqtorch.models.imdb import MODEL_KINDS, ImdbModelConfig, build_model
from seqtorch.training import (
    ConfigError,
    TrainConfig,
    add_common_args,
    binary_classification_task,
    claimed_out_dir,
    cli,
    config_from_args,
    fit,
    flag_name,
    setup,
)


@dataclasses.dataclass
class ImdbConfig(TrainConfig):
    """The book's settings: 10 epochs, batch 128, RMSprop, 10,000 words, reviews cut to 500."""

    epochs: int = 10
    batch_size: int = 128
    out: str = "runs/imdb"
    data: str | None = None
    model: str = "lstm"
    hidden: int = 32
    layers: int = 1
    bidirectional: bool = False
    embed_dim: int | None = None  # None: 32 for the RNNs, 8 for dense (the book's)
    dropout: float = 0.0
    input_dropout: float = 0.0
    recurrent_dropout: float = 0.0
    val_split: float = 0.2
    maxlen: int = 500
    num_words: int = 10000
    padding: str = "pre"
    mask: bool = False  # with --padding pre: skip the padding with a mask
    strip_html: bool = False
    data_seed: int = 113  # Keras' imdb.load_data shuffle seed: the book's train/val split
    torch_nn: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        for field, low in (("hidden", 1), ("layers", 1), ("maxlen", 1), ("num_words", 4)):
            if getattr(self, field) < low:
                raise ConfigError(f"{flag_name(field)} must be >= {low}, got {getattr(self, field)}")
        if self.embed_dim is not None and self.embed_dim < 1:
            raise ConfigError(f"--embed-dim must be >= 1, got {self.embed_dim}")
        for field in ("dropout", "input_dropout", "recurrent_dropout"):
            if not 0.0 <= getattr(self, field) < 1.0:
                raise ConfigError(f"{flag_name(field)} must be in [0, 1), got {getattr(self, field)}")


def parse_config(argv=None) -> ImdbConfig:
    d = ImdbConfig()
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, d)
    g = parser.add_argument_group("imdb")
    g.add_argument("--data", default=d.data, help="data source (see above); default: download")
    g.add_argument("--model", choices=MODEL_KINDS, default=d.model)
    g.add_argument("--hidden", type=int, default=d.hidden, help="recurrent units per direction")
    g.add_argument("--layers", type=int, default=d.layers, help="stacked recurrent layers")
    g.add_argument("--bidirectional", action="store_true", default=d.bidirectional)
    g.add_argument("--embed-dim", dest="embed_dim", type=int, default=d.embed_dim)
    g.add_argument("--dropout", type=float, default=d.dropout, help="between stacked layers")
    g.add_argument("--input-dropout", dest="input_dropout", type=float, default=d.input_dropout,
                   help="Keras' dropout")
    g.add_argument("--recurrent-dropout", dest="recurrent_dropout", type=float,
                   default=d.recurrent_dropout, help="Keras' recurrent_dropout")
    g.add_argument("--val-split", dest="val_split", type=float, default=d.val_split)
    g.add_argument("--maxlen", type=int, default=d.maxlen,
                   help="words kept per review (default %(default)s); 100 makes each step 5x shorter, "
                        "for a quick run")
    g.add_argument("--num-words", dest="num_words", type=int, default=d.num_words)
    g.add_argument("--padding", choices=("pre", "post"), default=d.padding,
                   help="pre: the book's; post: words first and lengths passed to the model")
    g.add_argument("--mask", action="store_true", default=d.mask,
                   help="with --padding pre (the book's), skip the padding with a mask: the layer no longer "
                        "reads it (post padding skips it with lengths= already)")
    g.add_argument("--strip-html", dest="strip_html", action="store_true", default=d.strip_html,
                   help="drop '<br />' before tokenizing raw text (Keras keeps it as 'br')")
    g.add_argument("--data-seed", dest="data_seed", type=int, default=d.data_seed)
    g.add_argument("--torch-nn", dest="torch_nn", action="store_true", default=d.torch_nn,
                   help="run torch.nn's recurrent layer instead of seqtorch's, from the same initial "
                        "weights, to compare (with the Keras recipe torch.nn's bias_hh stays at zero); "
                        "no --input-dropout, --recurrent-dropout or --padding post, and --model gru only "
                        "with --torch-defaults")
    cfg = config_from_args(ImdbConfig, parser.parse_args(argv))
    if cfg.mask and cfg.padding == "post":
        parser.error("--mask is for --padding pre: with --padding post the model skips the padding with lengths=")
    if not 0.0 < cfg.val_split < 1.0:
        parser.error(f"--val-split must be in (0, 1), got {cfg.val_split}")
    # Said here, before minutes of data loading, rather than when the model is built.
    if cfg.torch_nn and cfg.model == "gru" and not cfg.torch_defaults:
        parser.error("--torch-nn --model gru needs --torch-defaults: the book's GRU "
                     "(reset_after=False, the default) has no torch.nn equivalent; torch.nn's GRU is "
                     "reset_after=True")
    torch_nn_lacks = [flag for flag, used in (("--input-dropout", cfg.input_dropout), ("--recurrent-dropout",
                      cfg.recurrent_dropout), ("--padding post", cfg.padding == "post"), ("--mask", cfg.mask))
                      if used]
    if cfg.torch_nn and torch_nn_lacks:
        parser.error(f"--torch-nn: torch.nn's layers have no equivalent of {', '.join(torch_nn_lacks)}")
    return cfg


def main(argv=None) -> dict:
    cfg = parse_config(argv)
    model_cfg = ImdbModelConfig(
        kind=cfg.model, num_words=cfg.num_words, embed_dim=cfg.embed_dim, hidden=cfg.hidden,
        layers=cfg.layers, bidirectional=cfg.bidirectional, dropout=cfg.dropout,
        input_dropout=cfg.input_dropout, recurrent_dropout=cfg.recurrent_dropout,
        use_lengths=cfg.padding == "post", use_mask=cfg.mask, maxlen=cfg.maxlen,
        keras_faithful=not cfg.torch_defaults,
        backend=cfg.backend, torch_nn=cfg.torch_nn,
    )
    # A bad --out is refused before the data is read; a bad --data leaves no empty --out behind.
    with setup(cfg) as rt, claimed_out_dir(cfg, claim=rt.is_main):
        with rt.main_first():  # rank 0 tokenizes and fills the cache; the others then read it
            data = load_imdb(cfg.data, num_words=cfg.num_words, maxlen=cfg.maxlen,
                             padding=cfg.padding, seed=cfg.data_seed, val_split=cfg.val_split,
                             strip_html=cfg.strip_html, progress=cfg.progress and rt.is_main)
        model = build_model(model_cfg)
        dataset = {"source": cfg.data or "aclImdb_v1.tar.gz (download)", "train": len(data.train),
                   "val": len(data.val), "test": len(data.test)}
        return fit(model, binary_classification_task(), cfg, rt, train=data.train, val=data.val,
                   test=data.test, extra={"dataset": dataset,
                                          "model_config": dataclasses.asdict(model_cfg)})


if __name__ == "__main__":
    cli.run(main)
