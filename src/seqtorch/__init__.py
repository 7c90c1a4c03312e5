"""seqtorch: SimpleRNN, LSTM and GRU for PyTorch, written by hand and drop-in compatible with torch.nn.

    import seqtorch
    lstm = seqtorch.LSTM(32, 64, num_layers=2, batch_first=True, recurrent_dropout=0.2, init="keras")
    output, (h_n, c_n) = lstm(x, lengths=lengths)        # x: (B, T, 32)
"""

from . import functional
from ._validation import NotATensorError
from .cells import GRUCell, LSTMCell, SimpleRNNCell
from .functional import available_backends
from .layers import GRU, LSTM, SimpleRNN

__version__ = "0.1.0"

__all__ = ["SimpleRNN", "LSTM", "GRU", "SimpleRNNCell", "LSTMCell", "GRUCell", "NotATensorError", "functional",
           "available_backends", "__version__"]
