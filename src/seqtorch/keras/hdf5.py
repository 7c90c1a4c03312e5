"""HDF5 at arm's length: files are read in a child process, and the rest of the importer walks a snapshot.

h5py (an optional extra) and libhdf5 are not safe on damaged files: flipped bytes in a legacy ``.h5``
crash the reading process or make it loop. :func:`read_hdf5` therefore runs
:mod:`.hdf5_snapshot` in a child process, one per file, under a memory limit (RLIMIT_AS, where the
platform has it) and a time limit, and returns what it answered: every group and dataset of the file, their attributes
and arrays, as :class:`Group` and :class:`Dataset` objects that answer the few h5py calls the layouts
make (``keys``, ``in``, ``[path]``, ``get``, ``visit``, ``attrs``, ``name``, ``[()]``). Whatever goes
wrong in the child (a crash, a hang, a refusal, an exhausted limit) is a :class:`KerasFileError`
naming the file the user gave. The children are forked by one small server process, started at the
first file and kept (it imports h5py once, and never reads a file itself): after the first file,
reading one costs a fork, not an interpreter start.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import KerasFileError

_SNAPSHOT = Path(__file__).with_name("hdf5_snapshot.py")
_REFUSED, _UNREADABLE, _TIMEOUT = 3, 4, 124  # the answers' statuses (see hdf5_snapshot)
#: Time a child may take: a Keras file is read in well under a second; 20 s, and more at a slow disk's
#: pace for a large file, then libhdf5 counts as hung (damaged files make it loop).
TIME_LIMIT_S, TIME_PER_MIB_S = 20.0, 0.5
#: Memory a child may map: the interpreter with numpy and h5py, and the file's arrays several times over.
MEMORY_LIMIT_BYTES, MEMORY_PER_FILE_BYTE = 2 << 30, 8


def require_h5py():
    """The h5py module, or an ImportError that says how to install it."""
    try:
        import h5py
    except ImportError:
        raise ImportError("reading Keras' HDF5 files (.keras, .h5) needs h5py: pip install 'seqtorch[keras]' "
                          "(or pip install h5py)") from None
    return h5py


class Node:
    """A group or dataset of a snapshot: ``name`` (its HDF5 path) and ``attrs`` (a dict of text,
    numbers and lists of them)."""

    def __init__(self, name: str, attrs: dict) -> None:
        self.name = name
        self.attrs = attrs


class Dataset(Node):
    """An array of the file; ``dataset[()]`` is the numpy array."""

    def __init__(self, name: str, attrs: dict, array: np.ndarray) -> None:
        super().__init__(name, attrs)
        self._array = array

    def __getitem__(self, key):
        if key != ():
            raise TypeError("a snapshot's dataset is read whole: dataset[()]")
        return self._array


class Group(Node):
    """A group: its members by name, reached with ``group["a/b"]`` as in h5py."""

    def __init__(self, name: str, attrs: dict) -> None:
        super().__init__(name, attrs)
        self.members: dict[str, Node] = {}

    def get(self, path: str, default=None) -> Node | None:
        node: Node = self
        for part in (p for p in path.split("/") if p):
            if not isinstance(node, Group) or part not in node.members:
                return default
            node = node.members[part]
        return node

    def __getitem__(self, path: str) -> Node:
        node = self.get(path)
        if node is None:
            raise KeyError(f"{self.name.rstrip('/')}/{path} is not in the file")
        return node

    def __contains__(self, path: str) -> bool:
        return self.get(path) is not None

    def keys(self) -> list[str]:
        return list(self.members)

    def visit(self, func: Callable[[str], object]) -> None:
        """``func(relative path)`` for every group and dataset below this one (h5py's ``visit``)."""
        def walk(group: Group, prefix: str) -> None:
            for name, node in group.members.items():
                func(prefix + name)
                if isinstance(node, Group):
                    walk(node, prefix + name + "/")
        walk(self, "")


def read_hdf5(source: str | bytes, path: str) -> Group:
    """The root group of the HDF5 file ``source`` (a file name, or the file's bytes), read in a child
    process (see the module docstring). ``path`` is the file the user gave, for messages."""
    require_h5py()
    payload = b"B" + source if isinstance(source, bytes) else b"P" + os.fsencode(os.path.abspath(source))
    size = len(payload) if isinstance(source, bytes) else os.path.getsize(source)
    limit_s = TIME_LIMIT_S + TIME_PER_MIB_S * size / 2**20
    status, answer = _SERVER.read(payload, MEMORY_LIMIT_BYTES + MEMORY_PER_FILE_BYTE * size, limit_s)
    reason = answer.decode("utf-8", "replace").strip() if status else ""
    if status == _REFUSED:
        raise KerasFileError(f"{path}: not a Keras file's HDF5 content: {reason}")
    if status == _UNREADABLE:
        raise KerasFileError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {reason}")
    if status == _TIMEOUT:
        raise KerasFileError(f"{path}: reading the HDF5 data took longer than {limit_s:.0f} s; the file is "
                             f"damaged (the HDF5 library loops on it)")
    if status < 0:
        name = signal.Signals(-status).name if -status in signal.valid_signals() else f"signal {-status}"
        raise KerasFileError(f"{path}: the HDF5 library crashed reading it ({name}): the file is damaged")
    return _tree(answer, path)


class _Server:
    """The process that runs :mod:`.hdf5_snapshot`'s server: started at the first file, kept for the
    next ones (it forks a fresh child per file, so only the first file waits for imports)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        atexit.register(self.close)

    def read(self, payload: bytes, memory: int, limit_s: float) -> tuple[int, bytes]:
        """(status, answer) of one request (see hdf5_snapshot's protocol)."""
        request = struct.pack("<QQd", len(payload), memory, limit_s) + payload
        with self._lock:
            if not hasattr(os, "fork"):  # the server reads in its own process: one per file
                try:
                    done = subprocess.run(_command(), input=request, capture_output=True, timeout=limit_s,
                                          env=_environment())
                except subprocess.TimeoutExpired:
                    return _TIMEOUT, b""
                return _answer(done.stdout, done.returncode)
            if self._proc is None or self._proc.poll() is not None:
                self._proc = subprocess.Popen(_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                              stderr=subprocess.DEVNULL, env=_environment())
            try:
                self._proc.stdin.write(request)
                self._proc.stdin.flush()
                # The server kills a child at limit_s; waiting longer only guards against the server.
                return _answer(_read(self._proc.stdout, limit_s + 60.0), self._proc.poll())
            except (OSError, RuntimeError):
                self.close_locked()
                raise

    def close(self) -> None:
        with self._lock:
            self.close_locked()

    def close_locked(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None


def _command() -> list[str]:
    return [sys.executable, "-c", _SNAPSHOT.read_text(encoding="utf-8")]


def _environment() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "HDF5_USE_FILE_LOCKING": "FALSE"}


def _read(stream, limit_s: float) -> bytes:
    """Everything of one answer from ``stream``, waiting at most ``limit_s`` seconds for each part."""
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            if not select.select([stream], [], [], limit_s)[0]:
                raise RuntimeError(f"the process reading HDF5 files ({_SNAPSHOT.name}) did not answer in "
                                   f"{limit_s:.0f} s")
            chunk = os.read(stream.fileno(), n - len(data))
            if not chunk:
                raise RuntimeError(f"the process reading HDF5 files ({_SNAPSHOT.name}) ended unexpectedly")
            data += chunk
        return data

    header = exactly(struct.calcsize("<iQ"))
    return header + exactly(struct.unpack("<iQ", header)[1])


def _answer(data: bytes, returncode: int | None) -> tuple[int, bytes]:
    if len(data) < struct.calcsize("<iQ"):
        raise RuntimeError(f"the process reading HDF5 files ({_SNAPSHOT.name}) ended without an answer "
                           f"(exit status {returncode})")
    status, size = struct.unpack("<iQ", data[:12])
    return status, data[12:12 + size]


_SERVER = _Server()


def _tree(output: bytes, path: str) -> Group:
    """The snapshot the child printed, as Groups and Datasets."""
    try:
        with np.load(io.BytesIO(output), allow_pickle=False) as npz:
            layout = json.loads(npz["tree"].tobytes())
            arrays = {key: npz[key] for key in npz.files if key != "tree"}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:  # the child's own output: never expected
        raise KerasFileError(f"{path}: reading the HDF5 data failed ({err})") from None
    root = Group("/", layout["/"]["attrs"])
    for name in sorted((n for n in layout if n != "/"), key=lambda n: n.count("/")):
        entry = layout[name]
        parent_name, _, leaf = name.rpartition("/")
        parent = root.get(parent_name)
        node = Group(name, entry["attrs"]) if entry["kind"] == "group" else \
            Dataset(name, entry["attrs"], arrays[entry["array"]])
        parent.members[leaf] = node
    return root


def _text(value) -> str:
    return value if isinstance(value, str) else str(value)


def attr_text(node: Node, name: str) -> str | None:
    """The string attribute ``name`` of a group, or None when absent."""
    return _text(node.attrs[name]) if name in node.attrs else None


def attr_texts(node: Node, name: str) -> list[str]:
    """A list-of-strings attribute. Keras splits one too large for an HDF5 object header into
    ``name0``, ``name1``, ...; those are joined. Absent: an empty list."""
    def texts(value) -> list[str]:
        return [_text(v) for v in value] if isinstance(value, list) else [_text(value)]

    if name in node.attrs:
        return texts(node.attrs[name])
    values, chunk = [], 0
    while f"{name}{chunk}" in node.attrs:
        values.extend(texts(node.attrs[f"{name}{chunk}"]))
        chunk += 1
    return values


def read_array(node: Group, key: str, path: str) -> np.ndarray:
    """The dataset ``node[key]`` as a numpy array; a missing one is a :class:`KerasFileError`."""
    item = node.get(key)
    if not isinstance(item, Dataset):
        raise KerasFileError(f"{path}: expected an array at {node.name.rstrip('/')}/{key}, found "
                             f"{'nothing' if item is None else 'a group'}")
    return item[()]

