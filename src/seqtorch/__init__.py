"""seqtorch: SimpleRNN, LSTM and GRU for PyTorch, written by hand and drop-in compatible with torch.nn.

    import seqtorch
    lstm = seqtorch.LSTM(32, 64, num_layers=2, batch_first=True, recurrent_dropout=0.2, init="keras")
    output, (h_n, c_n) = lstm(x, lengths=lengths)        # x: (B, T, 32)

Every torch.nn recurrent class name is here too (``getattr(seqtorch, name)`` works where a program
does ``getattr(nn, name)``): ``seqtorch.RNN`` is :class:`SimpleRNN`, ``seqtorch.RNNCell`` is
:class:`SimpleRNNCell`, ``RNNBase`` (:class:`Recurrent`, the layer over any cell) and ``RNNCellBase`` (:class:`RecurrentCell`)
the shared bases; each is an instance of torch.nn's class of the same name. :func:`safe_globals` lists
the classes ``torch.load(weights_only=True)`` needs to load a whole pickled model holding seqtorch
modules.
"""

from . import functional
from . import onnx  # registers the ONNX translation of the scan op with torch.onnx's exporter
from ._validation import NotATensorError
from .cells import (GRUCell, IndRNNCell, LayerNormGRUCell, LayerNormLSTMCell, LSTMCell, RecurrentCell,
                    SimpleRNNCell)
from .functional import available_backends
from .layers import GRU, LSTM, IndRNN, LayerNormGRU, LayerNormLSTM, Recurrent, SimpleRNN
from .recurrent_cells import Cell, PointwiseCell
from . import equations  # cells that ship written as their equations

# torch.nn's names: the same classes, so isinstance and pickles agree under either name.
RNN = SimpleRNN
RNNCell = SimpleRNNCell
RNNBase = Recurrent
RNNCellBase = RecurrentCell

__version__ = "0.1.0"


def empty_cache() -> None:
    """Give the memory the CPU scans keep for reuse (their buffer pool's idle blocks) back to the system, as
    ``torch.cuda.empty_cache()`` does for CUDA's cache; :func:`seqtorch.ops.buffers.pool_stats` shows what
    the pool holds."""
    from .ops import buffers  # the kernels load on first use

    buffers.empty_cache()


def safe_globals() -> list[type]:
    """Every seqtorch class a pickled model can hold: the layers, the cells, the models of
    :mod:`seqtorch.models` and what :func:`seqtorch.keras.load_model` builds, for ``torch.load(f, weights_only=True)``::

        with torch.serialization.safe_globals([*seqtorch.safe_globals(), nn.Linear, nn.Embedding]):
            model = torch.load(f, weights_only=True)
        # or once per process: torch.serialization.add_safe_globals(seqtorch.safe_globals())

    The torch.nn classes a model holds besides (``nn.Linear`` ...) are listed by the caller, as for
    any torch.nn model; seqtorch's modules hold nothing else that needs allowing.
    """
    from .keras import modules as keras  # imported here: the models and the importer sit above the layers
    from .models import imdb, jena

    return [SimpleRNN, LSTM, GRU, SimpleRNNCell, LSTMCell, GRUCell, Recurrent, RecurrentCell,
            LayerNormLSTM, LayerNormGRU, IndRNN, LayerNormLSTMCell, LayerNormGRUCell, IndRNNCell,
            imdb.RNNClassifier, imdb.DenseClassifier, imdb.TorchNNTwin,
            jena.DenseRegressor, jena.RecurrentRegressor,
            keras.KerasRecurrent, keras.Dense, keras.KerasSequential]


__all__ = ["SimpleRNN", "LSTM", "GRU", "SimpleRNNCell", "LSTMCell", "GRUCell", "LayerNormLSTM", "LayerNormGRU",
           "IndRNN", "LayerNormLSTMCell", "LayerNormGRUCell", "IndRNNCell", "Recurrent", "RecurrentCell", "Cell",
           "PointwiseCell", "equations",
           "RNN", "RNNCell", "RNNBase",
           "RNNCellBase", "NotATensorError", "functional", "available_backends", "safe_globals", "empty_cache",
           "__version__"]
