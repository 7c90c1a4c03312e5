"""A tiny IMDB archive in the official on-disk format (``aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt``
in a gzipped tarball), with one planted sentiment word per review so that a model can learn it.

Used by the script, example and docs tests, and usable outside pytest.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

CUES = {"pos": ["great", "fun", "superb"], "neg": ["bad", "boring", "awful"]}


def write_aclimdb_tarball(path: str | Path, train: int = 80, test: int = 40, seed: int = 0) -> Path:
    """Write ``train`` and ``test`` reviews per label to the tarball ``path``; return it.

    Each review is 4 to 11 filler words with one cue word of its label planted at random, then
    ``.<br /><br />The end.`` (the tags Keras' tokenizer turns into the word ``br``).
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    filler = [f"w{i}" for i in range(40)]
    with tarfile.open(path, "w:gz") as tar:
        for split, n in (("train", train), ("test", test)):
            for label in ("pos", "neg"):
                for i in range(n):
                    words = list(rng.choice(filler, size=rng.integers(4, 12)))
                    words.insert(int(rng.integers(len(words))), str(rng.choice(CUES[label])))
                    data = (" ".join(words) + ".<br /><br />The end.").encode()
                    rating = 7 if label == "pos" else 2
                    info = tarfile.TarInfo(f"aclImdb/{split}/{label}/{i}_{rating}.txt")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return path
