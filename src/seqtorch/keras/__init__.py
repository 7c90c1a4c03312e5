"""Keras models and weights in seqtorch: ``load_model`` and ``load_weights``.

    import seqtorch.keras
    model = seqtorch.keras.load_model("imdb_lstm.keras")   # a torch.nn.Module, eval mode
    probabilities = model(word_ids)                         # (B, T) int -> (B, 1), as Keras' predict

    model = seqtorch.models.imdb.RNNClassifier("lstm", 10000, 32, 32, keras_faithful=True)
    seqtorch.keras.load_weights(model, "imdb_lstm.weights.h5")   # a module written by hand

Reads ``.keras`` archives (Keras 3), ``.weights.h5`` (Keras 3) and legacy HDF5 ``.h5`` files (Keras 2's
``model.save`` and ``save_weights``). Needs h5py (``pip install 'seqtorch[keras]'``), not Keras.
The files: :mod:`.files`; the config: :mod:`.config`; the weight mapping: :mod:`.mapping`.
"""

from .errors import KerasFileError, KerasImportError, UnsupportedKerasError, WeightMismatchError
from .load import load_model, load_weights
from .modules import Dense, KerasRecurrent, KerasSequential

__all__ = ["load_model", "load_weights", "KerasSequential", "KerasRecurrent", "Dense", "KerasImportError",
           "KerasFileError", "UnsupportedKerasError", "WeightMismatchError"]
