"""The IMDB movie-review sentiment data set (Maas et al., ACL 2011), prepared the way Keras does.

Sources (see :func:`load_imdb`):

1. the official ``aclImdb_v1.tar.gz``, downloaded to ``cache_dir()/imdb`` when absent and checked
   against its published sha256;
2. a local copy given by path: the tarball itself (any ``*.tar.gz`` / ``*.tgz`` / ``*.tar`` in the
   aclImdb layout), an extracted ``aclImdb/`` directory, or a directory holding either;
3. Keras' pre-tokenized ``imdb.npz`` (+ ``imdb_word_index.json`` for decoding), downloaded or local.

Raw reviews are read straight from the archive in one streaming pass (nothing is extracted, so
nothing half-extracted can be left behind); members that could escape a target directory
(absolute paths, ``..``), links and device files are refused. Each review is tokenized with
Keras' ``text_to_word_sequence`` rules and words are ranked by their count in the training reviews
(Keras' ``Tokenizer``; see :mod:`seqtorch.data.text`). The train reviews are read ``neg`` then
``pos`` (the book's order), each in increasing file id; that order fixes ties in the ranking.

``<br />`` tags: Keras' filters turn them into the word ``br``, and Keras' own ``imdb.npz`` kept it
(``br`` is rank 7 of ``imdb_word_index.json``). To stay faithful to the book, ``strip_html=False``
is the default; ``strip_html=True`` removes the tags first.

The word ranks become Keras ``imdb.load_data`` ids: ``start_char`` (1) opens each review, a word
of rank ``r`` gets id ``r + index_from`` (3), ids outside ``[skip_top, num_words)`` become
``oov_char`` (2) (or are dropped if ``oov_char`` is None), exactly as Keras applies
``num_words`` after the ``index_from`` shift (so ``num_words=10000`` keeps ranks 1..9996).
Words never seen in training are out of vocabulary. Train and test are shuffled with
``np.random.RandomState(seed)`` (Keras: seed 113, train first, then test with the same generator),
then padded/truncated to ``maxlen`` (``pad_sequences``; ``'pre'`` by default as in the book) and
the last ``val_split`` of the shuffled training set becomes the validation set (Keras'
``validation_split``).

The tokenized corpus (ranks, before those settings) is cached as a plain ``.npz`` (no pickle) in
``cache_dir()/imdb``, keyed by the tokenizer settings and the source's identity (resolved path,
size and mtime); a second load takes about a second.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import json
import lzma
import os
import re
import tarfile
import tokenize
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..fileio import read_cache_entry, write_cache_entry
from .download import cache_dir, download, sha256sum
from .errors import DataFileError, DataNotFoundError
from .text import KERAS_FILTERS, Vocabulary, pad_sequences, strip_html_breaks, text_to_word_sequence

__all__ = [
    "ACLIMDB_URL",
    "ACLIMDB_SHA256",
    "ACLIMDB_SIZE",
    "KERAS_NPZ_URL",
    "KERAS_NPZ_SHA256",
    "KERAS_WORD_INDEX_URL",
    "KERAS_WORD_INDEX_SHA256",
    "ImdbCorpus",
    "ImdbData",
    "ImdbFileError",
    "TokenSequenceDataset",
    "load_imdb",
    "read_corpus",
    "fetch_aclimdb",
    "fetch_keras_imdb",
    "keras_ids",
]

ACLIMDB_URL = "http://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
ACLIMDB_SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
ACLIMDB_SIZE = 84_125_825
KERAS_NPZ_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/imdb.npz"
KERAS_NPZ_SHA256 = "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"
KERAS_WORD_INDEX_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/imdb_word_index.json"
KERAS_WORD_INDEX_SHA256 = "027313fe9a320280f3bf0fac5baf58c4a683cf39a7ed9c3d3d3912bde4284cf6"

SPLITS = ("train", "test")
LABELS = ("neg", "pos")  # label index 0, 1; also the order reviews are read in (the book's)
_CACHE_FORMAT = 2  # 2: sources with a review twice or bad npz dtypes are refused, not cached
# Groups: the top folder (aclImdb/, or none), split, label, file id, rating.
_REVIEW = re.compile(r"^(?:\./)?(?:([^/]+)/)?(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")
_LAYOUT = "aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt"




class ImdbFileError(DataFileError, RuntimeError):
    """An IMDB source (archive, directory, imdb.npz, word index) that cannot be read: damaged, cut
    short, in another layout, or holding values Keras' files do not. The message names the file."""


# ----------------------------------------------------------------------------------------------
# Corpus: word ranks per review, the cacheable result of reading and tokenizing a source


@dataclass
class ImdbCorpus:
    """Reviews as word ranks (1 = most frequent training word, 0 = unknown), in source order.

    For split ``s`` in ("train", "test"): ``ranks[s]`` (total,) int32 is every review's ranks
    concatenated, ``offsets[s]`` (N + 1,) int64 delimits review ``i`` as
    ``ranks[s][offsets[s][i]:offsets[s][i + 1]]``, ``labels[s]`` (N,) int8 is 0 (neg) or 1 (pos).
    ``vocab`` maps ranks back to words (None if unknown, e.g. imdb.npz without its word index).
    """

    ranks: dict[str, np.ndarray]
    offsets: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    vocab: Vocabulary | None

    def save(self, path: Path) -> None:
        """Write as a plain (pickle-free) .npz, atomically."""
        arrays = {}
        for s in SPLITS:
            arrays[f"{s}_ranks"] = self.ranks[s]
            arrays[f"{s}_offsets"] = self.offsets[s]
            arrays[f"{s}_labels"] = self.labels[s]
        if self.vocab is not None:
            arrays["vocab_words"] = np.frombuffer(self.vocab.to_bytes(), dtype=np.uint8)
            arrays["vocab_counts"] = np.asarray(self.vocab.counts, dtype=np.int64)
        write_cache_entry(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, path: Path) -> "ImdbCorpus":
        with np.load(path, allow_pickle=False) as f:
            ranks = {s: f[f"{s}_ranks"] for s in SPLITS}
            offsets = {s: f[f"{s}_offsets"] for s in SPLITS}
            labels = {s: f[f"{s}_labels"] for s in SPLITS}
            vocab = None
            if "vocab_words" in f.files:
                vocab = Vocabulary.from_bytes(f["vocab_words"].tobytes(), f["vocab_counts"].tolist())
        corpus = cls(ranks, offsets, labels, vocab)
        corpus.validate(str(path))
        return corpus

    def validate(self, origin: str) -> None:
        """Raise :class:`ImdbFileError` if the arrays are inconsistent (a damaged file)."""
        for s in SPLITS:
            r, o, y = self.ranks[s], self.offsets[s], self.labels[s]
            ok = (
                r.ndim == 1 and o.ndim == 1 and y.ndim == 1 and o.size == y.size + 1
                and o.size > 0 and o[0] == 0 and o[-1] == r.size and bool(np.all(np.diff(o) >= 0))
                and bool(np.all((y == 0) | (y == 1))) and y.size > 0
            )
            if not ok:
                raise ImdbFileError(
                    f"{origin}: inconsistent '{s}' arrays (ranks {r.shape}, offsets {o.shape}, "
                    f"labels {y.shape}); the file is damaged: delete it and load again"
                )


# ----------------------------------------------------------------------------------------------
# Reading raw reviews: from a tarball (streamed) or an extracted directory


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    """Refuse tar members that could escape an extraction directory or are not regular files."""
    name = member.name
    parts = Path(name).parts
    if name.startswith(("/", "\\")) or os.path.isabs(name) or ".." in parts:
        raise ImdbFileError(
            f"refusing {archive}: member {name!r} has an absolute path or '..' (it would escape "
            f"the target directory). This is not the aclImdb archive; download it again."
        )
    if not (member.isfile() or member.isdir()):
        kind = "link" if (member.issym() or member.islnk()) else "device or special file"
        raise ImdbFileError(
            f"refusing {archive}: member {name!r} is a {kind}; the aclImdb archive holds only "
            f"regular files and directories. Download it again."
        )


# Compressed streams by their first bytes. Python's decompressing file objects raise EOFError when
# the data ends before the stream's end marker, which tarfile's own stream reader does not: with it, an
# archive cut short just looks like a smaller archive (and was reported as a "missing split").
_COMPRESSIONS = ((b"\x1f\x8b", gzip.GzipFile), (b"BZh", bz2.BZ2File), (b"\xfd7zXZ\x00", lzma.LZMAFile))


def _open_tar_stream(archive: Path, stack: contextlib.ExitStack):
    """The archive's tar bytes as a file object, decompressed as its first bytes say."""
    raw = stack.enter_context(open(archive, "rb"))
    head = raw.read(6)
    raw.seek(0)
    for magic, opener in _COMPRESSIONS:
        if head.startswith(magic):
            return stack.enter_context(opener(fileobj=raw, mode="rb"))
    return raw


def _iter_tar_reviews(archive: Path, progress: bool):
    """Yield (split, label, file_id, raw bytes) for each review of a tarball, in one pass."""
    try:
        with contextlib.ExitStack() as stack:
            # "r|": a forward-only stream, so the archive is decompressed exactly once.
            stream = _open_tar_stream(archive, stack)
            tar = stack.enter_context(tarfile.open(fileobj=stream, mode="r|"))
            bar = stack.enter_context(tqdm(desc=f"reading {archive.name}", unit=" files",
                                           disable=not progress, leave=False))
            trees: dict[str | None, str] = {}  # top folder -> its first review, to name both
            for member in tar:
                _check_member(member, archive)
                match = _REVIEW.match(member.name) if member.isfile() else None
                if match:
                    trees.setdefault(match[1], member.name)
                    if len(trees) > 1:
                        (a, first_a), (b, first_b) = list(trees.items())[:2]
                        raise ImdbFileError(
                            f"refusing {archive}: it holds two review trees, {a or '.'!r} "
                            f"({first_a}) and {b or '.'!r} ({first_b}); their reviews would be "
                            f"counted twice. The official archive holds one, {_LAYOUT}: pass "
                            f"an archive or directory with a single tree."
                        )
                    data = tar.extractfile(member).read()
                    yield match[2], match[3], int(match[4]), data
                    bar.update()
            # tarfile stops quietly where the data stops; a complete archive ends with a zero block.
            if tar.fileobj.tell() < tar.offset + tarfile.BLOCKSIZE:
                raise _damaged(archive, "the tar data stops without the end-of-archive block",
                               truncated=True)
            while stream.read(1 << 20):  # the padding after it, to the compressed stream's end and checksum
                pass
    except EOFError as exc:  # the compressed stream ends before its end marker
        raise _damaged(archive, f"{exc.args[0] if exc.args else exc}", truncated=True) from exc
    except tarfile.ReadError as exc:
        raise _damaged(archive, str(exc), truncated="unexpected end" in str(exc)) from exc
    except (tarfile.TarError, zlib.error, OSError) as exc:
        raise _damaged(archive, f"{type(exc).__name__}: {exc}", truncated=False) from exc


def _damaged(archive: Path, detail: str, truncated: bool) -> ImdbFileError:
    size = archive.stat().st_size if archive.exists() else 0
    truncated = truncated or size == 0
    what = (f"is truncated (cut short at {size:,} bytes; the official aclImdb_v1.tar.gz has "
            f"{ACLIMDB_SIZE:,}): {detail}" if truncated else f"is corrupt ({detail})")
    return ImdbFileError(
        f"{archive} {what}. Delete it and download it again (official archive: {ACLIMDB_URL}, "
        f"sha256 {ACLIMDB_SHA256})."
    )


def _iter_dir_reviews(root: Path, progress: bool):
    """Yield (split, label, file_id, raw bytes) for each review under an extracted aclImdb dir."""
    for split in SPLITS:
        for label in LABELS:
            folder = root / split / label
            if not folder.is_dir():
                continue  # reported as a missing split by the caller
            entries = [e for e in os.scandir(folder) if e.name.endswith(".txt")]
            for entry in tqdm(entries, desc=f"reading {split}/{label}", disable=not progress,
                              leave=False):
                match = _REVIEW.match(f"{split}/{label}/{entry.name}")
                if match:
                    yield split, label, int(match[4]), Path(entry.path).read_bytes()


def _tokenizer_settings(strip_html: bool) -> dict:
    return {"filters": KERAS_FILTERS, "lower": True, "split": " ", "strip_html": strip_html}


def _corpus_from_reviews(reviews, origin: str, strip_html: bool) -> ImdbCorpus:
    """Tokenize (split, label, id, bytes) reviews; rank words over the training reviews."""
    groups: dict[tuple[str, str], list[tuple[int, list[str]]]] = {
        (s, lab): [] for s in SPLITS for lab in LABELS
    }
    for split, label, file_id, data in reviews:
        # errors="replace": one bad byte must not lose a review (the official files are UTF-8).
        text = data.decode("utf-8", errors="replace")
        if strip_html:
            text = strip_html_breaks(text)
        groups[(split, label)].append((file_id, text_to_word_sequence(text)))
    for (split, label), items in groups.items():
        if not items:
            raise ImdbFileError(
                f"{origin}: no reviews found under aclImdb/{split}/{label}/ (missing split). "
                f"Expected the layout of the official archive, {_LAYOUT}; pass "
                f"aclImdb_v1.tar.gz or an extracted aclImdb directory."
            )
        items.sort(key=lambda item: item[0])
        ids = np.array([file_id for file_id, _ in items])
        twice = np.flatnonzero(ids[1:] == ids[:-1])
        if twice.size:
            raise ImdbFileError(
                f"{origin}: under {split}/{label}/ the review id {ids[twice[0]]} occurs twice (the "
                f"same review in two files, or two copies of the tree); the official layout "
                f"{_LAYOUT} has each id once. Pass a clean copy of the data."
            )

    def ordered(split):
        return [(lab_i, toks) for lab_i, lab in enumerate(LABELS) for _, toks in groups[(split, lab)]]

    vocab = Vocabulary.from_token_lists(toks for _, toks in ordered("train"))
    ranks, offsets, labels = {}, {}, {}
    for split in SPLITS:
        items = ordered(split)
        encoded = [vocab.encode(toks) for _, toks in items]
        lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
        offsets[split] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        ranks[split] = np.fromiter(
            (r for e in encoded for r in e), dtype=np.int32, count=int(offsets[split][-1])
        )
        labels[split] = np.fromiter((lab for lab, _ in items), dtype=np.int8, count=len(items))
    return ImdbCorpus(ranks, offsets, labels, vocab)


# ----------------------------------------------------------------------------------------------
# Keras' imdb.npz


def _corpus_from_keras_npz(npz: Path, sha256: str, word_index: Path | None) -> ImdbCorpus:
    """Read Keras' imdb.npz after verifying its checksum.

    Its x arrays are object arrays of Python lists, stored as pickles; ``np.load`` must unpickle
    them (``allow_pickle=True``), and unpickling can run code embedded in the file. That is
    acceptable only for a file whose sha256 matches the published one (Keras makes the same
    check): a tampered file fails the check before any byte is unpickled. The lists are turned
    into plain int arrays at once, so the cache never needs pickle.

    A file can still be damaged and match a digest the user passed (``npz_sha256`` of their own
    copy). So every array's declared size is checked against the bytes stored for it before
    numpy allocates it (:func:`_check_npy_sizes`), and any error that unpickling or reading raises
    (damaged pickles raise nearly any exception type) is an :class:`ImdbFileError` naming the file.
    """
    actual = sha256sum(npz)
    if actual != sha256.lower():
        raise ImdbFileError(
            f"sha256 mismatch for {npz}: expected {sha256}, got {actual}. Refusing to unpickle "
            f"it. Delete it and download it again from {KERAS_NPZ_URL}."
        )
    _check_npy_sizes(npz)
    try:
        with np.load(npz, allow_pickle=True) as f:  # safe only because the checksum matched
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in f.files]
            if missing:
                raise ImdbFileError(
                    f"{npz} lacks {missing} (has {f.files}); expected Keras' imdb.npz with "
                    f"x_train, y_train, x_test, y_test (missing split)"
                )
            raw = {s: (f[f"x_{s}"], f[f"y_{s}"]) for s in SPLITS}
    except ImdbFileError:
        raise
    except Exception as exc:  # a damaged zip or pickle: unpickling raises any exception type (see above)
        raise ImdbFileError(f"{npz} is corrupt ({type(exc).__name__}: {exc}); delete it and download "
                            f"it again") from exc

    ranks, offsets, labels = {}, {}, {}
    for s, (x, y) in raw.items():
        for name, array in ((f"x_{s}", x), (f"y_{s}", y)):
            if array.ndim != 1:
                raise ImdbFileError(f"{npz}: {name} has shape {array.shape}; Keras' imdb.npz holds one "
                                    f"entry per review (a 1-D array)")
        if len(x) != len(y):
            raise ImdbFileError(f"{npz}: x_{s} has {len(x)} reviews but y_{s} has {len(y)} labels")
        ranks[s], offsets[s] = _npz_word_ids(x, f"{npz}: x_{s}")
        labels[s] = _npz_labels(y, f"{npz}: y_{s}")
    vocab = _vocab_from_word_index(word_index) if word_index is not None else None
    corpus = ImdbCorpus(ranks, offsets, labels, vocab)
    corpus.validate(str(npz))
    return corpus


def _check_npy_sizes(npz: Path) -> None:
    """Refuse an array whose header declares more data than its member stores (a damaged size that
    would make numpy allocate terabytes). Plain arrays need shape x itemsize bytes; each element of
    an object array at least one byte of pickle."""
    try:
        with zipfile.ZipFile(npz) as archive:
            for info in archive.infolist():
                if info.filename.endswith(".npy"):
                    with archive.open(info) as member:
                        _check_npy_size(npz, info, member)
    except (ValueError, SyntaxError, tokenize.TokenError, EOFError, OSError, zipfile.BadZipFile, zlib.error,
            NotImplementedError, RuntimeError) as exc:  # a damaged zip (a compression method or the
        # encryption flag flipped on: NotImplementedError, RuntimeError) or npy header
        raise ImdbFileError(f"{npz} is corrupt ({type(exc).__name__}: {exc}); delete it and download "
                            f"it again") from exc


def _check_npy_size(npz: Path, info: zipfile.ZipInfo, member) -> None:
    version = np.lib.format.read_magic(member)
    read_header = getattr(np.lib.format, f"read_array_header_{version[0]}_{version[1]}", None)
    if read_header is None:
        raise ImdbFileError(f"{npz}: {info.filename} is in npy format {version}, not one Keras writes")
    shape, _, dtype = read_header(member)
    stored = info.file_size - member.tell()
    need = float(np.prod(shape, dtype=np.float64)) * (1 if dtype.hasobject else dtype.itemsize)
    if need > stored:
        raise ImdbFileError(f"{npz}: {info.filename} declares {shape} values of {dtype} ({need:,.0f} bytes) "
                            f"but stores {stored:,} bytes; the file is damaged: delete it and download it again")


_INT32_MAX = int(np.iinfo(np.int32).max)


def _npz_word_ids(x, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(ranks (total,) int32, offsets (N + 1,) int64) from one review per entry of ``x``.

    Each review must be a sequence of integer word ids in [0, 2**31 - 1]: floats, strings,
    negative or larger ids are refused (``where`` names the file and the array), never coerced.
    """
    reviews = []
    for i, seq in enumerate(x):
        if isinstance(seq, (str, bytes)) or not hasattr(seq, "__len__"):
            raise ImdbFileError(f"{where}, review {i}: expected a sequence of word ids, got "
                               f"{type(seq).__name__} {seq!r:.60}")
        try:
            ids = np.asarray(seq)
        except (ValueError, TypeError):  # ragged nesting, objects numpy cannot lay out
            ids = np.asarray([None])
        if ids.size == 0:
            reviews.append(np.zeros(0, dtype=np.int64))  # asarray([]) is float64: not a float id
            continue
        if ids.ndim != 1 or ids.dtype.kind not in "iu":
            kind = {"f": "float", "U": "str", "S": "bytes", "O": "mixed or too large"}.get(
                ids.dtype.kind, ids.dtype.name)
            raise ImdbFileError(
                f"{where}, review {i}: word ids must be integers, got {kind} values (dtype "
                f"{ids.dtype}, shape {ids.shape}, first {ids.ravel()[0]!r})"
            )
        reviews.append(ids)
    lengths = np.array([r.size for r in reviews], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = np.concatenate(reviews) if reviews else np.zeros(0, dtype=np.int64)
    out_of_range = np.flatnonzero((flat < 0) | (flat > _INT32_MAX))
    if out_of_range.size:
        at = int(out_of_range[0])
        review = int(np.searchsorted(offsets, at, side="right")) - 1
        raise ImdbFileError(
            f"{where}, review {review}: word id {flat[at]} is outside [0, {_INT32_MAX}] "
            f"(ids are ranks: 0 for an unknown word, 1 for the most frequent)"
        )
    return flat.astype(np.int32), offsets


def _npz_labels(y, where: str) -> np.ndarray:
    """(N,) int8 labels from ``y``, which must hold the integers 0 and 1 only."""
    y = np.asarray(y)
    if y.ndim != 1 or y.dtype.kind not in "biu":
        raise ImdbFileError(f"{where}: labels must be a 1-D array of integers 0 and 1, got dtype "
                           f"{y.dtype}, shape {y.shape}")
    bad = np.flatnonzero((y != 0) & (y != 1))
    if bad.size:
        raise ImdbFileError(f"{where}: labels must be 0 or 1, found {y[bad[0]]!r} at index "
                           f"{int(bad[0])}")
    return y.astype(np.int8)


def _vocab_from_word_index(path: Path) -> Vocabulary:
    """Vocabulary from Keras' imdb_word_index.json ({word: rank}, ranks 1..N)."""
    try:
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, nested too deep
        raise ImdbFileError(f"{path}: not Keras' imdb_word_index.json ({exc})") from exc
    if not (isinstance(index, dict) and all(type(r) is int for r in index.values())):
        raise ImdbFileError(f"{path}: not Keras' imdb_word_index.json (a JSON object of word: rank)")
    words = sorted(index, key=index.__getitem__)
    if [index[w] for w in words] != list(range(1, len(words) + 1)):
        raise ImdbFileError(f"{path}: ranks are not 1..{len(words)}; not Keras' imdb_word_index.json")
    return Vocabulary(words)


# ----------------------------------------------------------------------------------------------
# Sources: resolve what the user gave, download the canonical files when asked


def fetch_aclimdb(url: str = ACLIMDB_URL, sha256: str = ACLIMDB_SHA256,
                  expected_size: int | None = ACLIMDB_SIZE) -> Path:
    """Download the official aclImdb_v1.tar.gz to ``cache_dir()/imdb`` if absent; return its path."""
    return download(url, cache_dir() / "imdb" / "aclImdb_v1.tar.gz", sha256,
                    desc="aclImdb_v1.tar.gz", expected_size=expected_size)


def fetch_keras_imdb(url: str = KERAS_NPZ_URL, sha256: str = KERAS_NPZ_SHA256,
                     word_index_url: str = KERAS_WORD_INDEX_URL,
                     word_index_sha256: str = KERAS_WORD_INDEX_SHA256) -> tuple[Path, Path]:
    """Download Keras' imdb.npz and imdb_word_index.json to ``cache_dir()/imdb`` if absent."""
    folder = cache_dir() / "imdb"
    npz = download(url, folder / "imdb.npz", sha256, desc="imdb.npz")
    word_index = download(word_index_url, folder / "imdb_word_index.json", word_index_sha256,
                          desc="imdb_word_index.json")
    return npz, word_index


def _is_tarball(path: Path) -> bool:
    return path.name.endswith((".tar.gz", ".tgz", ".tar"))


def _resolve(source) -> tuple[str, Path]:
    """Map a user's ``source`` to ("tar" | "dir" | "npz", path)."""
    if source is None or source == "aclimdb":
        return "tar", fetch_aclimdb()
    if source == "keras":
        return "npz", fetch_keras_imdb()[0]
    path = Path(source).expanduser()
    if not path.exists():
        raise DataNotFoundError(
            f"IMDB source {str(path)!r} does not exist; give aclImdb_v1.tar.gz, an extracted "
            f"aclImdb directory, Keras' imdb.npz or a directory holding one of them, or no source "
            f"at all (no --data) to download the official archive"
        )
    if path.is_file():
        if path.suffix == ".npz":
            return "npz", path
        if _is_tarball(path):
            return "tar", path
        raise DataFileError(f"{path}: expected a .tar.gz/.tgz/.tar archive or imdb.npz, got a "
                            f"{path.suffix or 'suffix-less'} file")
    # A directory: an aclImdb tree itself, one containing it, a tarball, or imdb.npz.
    if (path / "train").is_dir() or (path / "test").is_dir():
        return "dir", path
    if (path / "aclImdb").is_dir():
        return "dir", path / "aclImdb"
    tarballs = sorted(p for p in path.iterdir() if p.is_file() and _is_tarball(p))
    preferred = [p for p in tarballs if p.name.startswith("aclImdb")] or tarballs
    if len(preferred) == 1:
        return "tar", preferred[0]
    if len(preferred) > 1:
        raise DataFileError(f"{path} holds several archives {[p.name for p in preferred]}; give the "
                            f"path of one")
    if (path / "imdb.npz").is_file():
        return "npz", path / "imdb.npz"
    raise DataNotFoundError(
        f"{path} holds no aclImdb/ directory, no aclImdb*.tar.gz and no imdb.npz "
        f"(found {sorted(p.name for p in path.iterdir())[:10]})"
    )


def _identity(kind: str, path: Path) -> dict:
    """What identifies a source's content cheaply: resolved path, size and mtime.

    For an extracted directory, the mtimes of the four review folders (adding or removing a file
    changes them; editing a review in place does not: delete the cache to force a re-read).
    """
    path = path.resolve()
    if kind == "dir":
        stamps = {
            f"{s}/{lab}": (path / s / lab).stat().st_mtime_ns
            for s in SPLITS for lab in LABELS if (path / s / lab).is_dir()
        }
        return {"kind": kind, "path": str(path), "mtimes": stamps}
    st = path.stat()
    return {"kind": kind, "path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def read_corpus(source=None, *, strip_html: bool = False, npz_sha256: str = KERAS_NPZ_SHA256,
                use_cache: bool = True, progress: bool = True) -> ImdbCorpus:
    """Read and tokenize an IMDB source into word ranks, using the cache when possible.

    Args:
        source: None or "aclimdb" (download the official archive), "keras" (download imdb.npz),
            or a path (see the module docstring).
        strip_html: remove ``<br />`` tags before tokenizing (raw text sources only).
        npz_sha256: the digest a local imdb.npz must have before it is unpickled.
        use_cache: read/write the tokenized corpus in ``cache_dir()/imdb``.
        progress: show tqdm bars.
    """
    kind, path = _resolve(source)
    settings = {"format": _CACHE_FORMAT, "source": _identity(kind, path)}
    if kind != "npz":
        settings["tokenizer"] = _tokenizer_settings(strip_html)
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]
    cached = cache_dir() / "imdb" / f"corpus-{key}.npz"
    if use_cache:
        corpus = read_cache_entry(cached, ImdbCorpus.load)  # None: absent or damaged, rebuilt below
        if corpus is not None:
            return corpus

    if kind == "npz":
        word_index = path.parent / "imdb_word_index.json"
        corpus = _corpus_from_keras_npz(path, npz_sha256,
                                        word_index if word_index.is_file() else None)
    elif kind == "tar":
        corpus = _corpus_from_reviews(_iter_tar_reviews(path, progress), str(path), strip_html)
    else:
        corpus = _corpus_from_reviews(_iter_dir_reviews(path, progress), str(path), strip_html)
    if use_cache:
        corpus.save(cached)
    return corpus


# ----------------------------------------------------------------------------------------------
# Keras' id conventions, shuffling, padding and the torch Datasets


def keras_ids(ranks: np.ndarray, offsets: np.ndarray, *, num_words: int | None = 10000,
              skip_top: int = 0, start_char: int | None = 1, oov_char: int | None = 2,
              index_from: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Turn word ranks into ``keras.datasets.imdb.load_data`` ids (vectorised).

    Args:
        ranks: (total,) word ranks, 0 = unknown word; offsets: (N + 1,) review boundaries.

    Returns:
        (ids (total',) int64, offsets' (N + 1,) int64). ``start_char`` is prepended, a rank
        ``r > 0`` becomes ``r + index_from``; then, like Keras (and including the start char),
        any id outside ``[skip_top, num_words)`` (and any unknown word) becomes ``oov_char``,
        or is dropped if ``oov_char`` is None. ``num_words=None`` keeps every word.
    """
    ranks = np.asarray(ranks, dtype=np.int64)
    offsets = np.asarray(offsets, dtype=np.int64)
    n = offsets.size - 1
    ids = np.where(ranks > 0, ranks + index_from, -1)  # -1 fails every filter below: OOV
    if start_char is not None:
        with_start = np.empty(ids.size + n, dtype=np.int64)
        starts = offsets[:-1] + np.arange(n)  # each review shifts by the starts before it
        is_start = np.zeros(with_start.size, dtype=bool)
        is_start[starts] = True
        with_start[is_start] = start_char
        with_start[~is_start] = ids
        ids, offsets = with_start, offsets + np.arange(n + 1)
    keep = ids >= skip_top
    if num_words is not None:
        keep &= ids < num_words
    if oov_char is not None:
        ids[~keep] = oov_char
        return ids, offsets
    row = np.repeat(np.arange(n), np.diff(offsets))
    lengths = np.bincount(row[keep], minlength=n)
    return ids[keep], np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


class TokenSequenceDataset(Dataset):
    """Padded token sequences with their lengths and binary labels.

    Item ``i`` is ``(tokens (T,) int64, length () int64, label () float32)``; ``length`` counts
    the real tokens (with ``'pre'`` padding they are the last ``length`` positions, with
    ``'post'`` the first ones).
    """

    def __init__(self, tokens: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor):
        if tokens.ndim != 2 or lengths.shape != tokens.shape[:1] or labels.shape != tokens.shape[:1]:
            raise ValueError(
                f"expected tokens (N, T), lengths (N,), labels (N,); got {tuple(tokens.shape)}, "
                f"{tuple(lengths.shape)}, {tuple(labels.shape)}"
            )
        self.tokens = tokens  # stored int32 to halve memory; items are int64 for nn.Embedding
        self.lengths = lengths
        self.labels = labels

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def __getitem__(self, i):
        return self.tokens[i].long(), self.lengths[i], self.labels[i]


@dataclass
class ImdbData:
    """The prepared splits. ``val`` is None when ``val_split == 0``."""

    train: TokenSequenceDataset
    val: TokenSequenceDataset | None
    test: TokenSequenceDataset
    vocab: Vocabulary | None
    index_from: int = 3

    def decode(self, tokens, start: str = "<START>", oov: str = "?") -> str:
        """Text of one token-id sequence (padding 0 skipped, ids 1 and 2 as start/oov markers)."""
        words = []
        for t in (int(t) for t in tokens):
            if t == 0:
                continue
            r = t - self.index_from
            if r >= 1 and self.vocab is not None and r <= len(self.vocab):
                words.append(self.vocab.words[r - 1])
            else:
                words.append(start if t == 1 else oov)
        return " ".join(words)


def _dataset(ids, offsets, labels, order, maxlen, padding, truncating) -> TokenSequenceDataset:
    tokens, lengths = pad_sequences(ids, offsets, maxlen, padding, truncating, dtype=np.int32)
    return TokenSequenceDataset(
        torch.from_numpy(tokens[order]),
        torch.from_numpy(np.maximum(lengths[order], 1)),  # an empty review still reads one pad step
        torch.from_numpy(labels[order].astype(np.float32)),
    )


def load_imdb(source=None, *, num_words: int | None = 10000, maxlen: int | None = 500,
              padding: str = "pre", truncating: str = "pre", skip_top: int = 0,
              start_char: int | None = 1, oov_char: int | None = 2, index_from: int = 3,
              seed: int = 113, val_split: float = 0.2, strip_html: bool = False,
              npz_sha256: str = KERAS_NPZ_SHA256, use_cache: bool = True,
              progress: bool = True) -> ImdbData:
    """Load IMDB as train/val/test :class:`TokenSequenceDataset` s with Keras' conventions.

    Defaults reproduce the book (``imdb.load_data(num_words=10000)`` then
    ``pad_sequences(maxlen=500)`` and ``validation_split=0.2``): 20,000 train, 5,000 val, 25,000
    test reviews, tokens (500,). See the module docstring for each step; ``source`` as in
    :func:`read_corpus`. ``padding="post"`` puts the words first so a model can use ``lengths``.
    """
    for name, mode in (("padding", padding), ("truncating", truncating)):
        if mode not in ("pre", "post"):
            raise ValueError(f"{name} must be 'pre' or 'post', got {mode!r}")
    if not 0.0 <= val_split < 1.0:
        raise ValueError(f"val_split must be in [0, 1), got {val_split}")
    if num_words is not None and num_words <= index_from:
        raise ValueError(f"num_words must exceed index_from={index_from}, got {num_words}")
    if maxlen is not None and maxlen < 1:
        raise ValueError(f"maxlen must be >= 1 or None, got {maxlen}")

    corpus = read_corpus(source, strip_html=strip_html, npz_sha256=npz_sha256,
                         use_cache=use_cache, progress=progress)
    # Keras shuffles train, then test, with one generator seeded once.
    rng = np.random.RandomState(seed)
    orders = {}
    for s in SPLITS:
        orders[s] = np.arange(corpus.labels[s].size)
        rng.shuffle(orders[s])

    splits = {}
    for s in SPLITS:
        ids, offsets = keras_ids(corpus.ranks[s], corpus.offsets[s], num_words=num_words,
                                 skip_top=skip_top, start_char=start_char, oov_char=oov_char,
                                 index_from=index_from)
        splits[s] = _dataset(ids, offsets, corpus.labels[s], orders[s], maxlen, padding, truncating)

    train_all = splits["train"]
    split_at = int(len(train_all) * (1.0 - val_split))  # Keras 2's validation_split rule
    train = TokenSequenceDataset(train_all.tokens[:split_at], train_all.lengths[:split_at],
                                 train_all.labels[:split_at])
    val = None
    if split_at < len(train_all):
        val = TokenSequenceDataset(train_all.tokens[split_at:], train_all.lengths[split_at:],
                                   train_all.labels[split_at:])
    return ImdbData(train, val, splits["test"], corpus.vocab, index_from)
