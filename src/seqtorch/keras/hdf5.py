"""HDF5 at arm's length: files are read in a child process, and the rest of the importer walks a snapshot.

h5py (an optional extra) and libhdf5 are not safe on damaged files: flipped bytes in a legacy ``.h5``
crash the reading process or make it loop. :func:`read_hdf5` therefore runs
:mod:`.hdf5_snapshot` in a child process, under a memory limit (RLIMIT_AS, where the platform has it)
and a time limit, and returns what it printed: every group and dataset of the file, their attributes
and arrays, as :class:`Group` and :class:`Dataset` objects that answer the few h5py calls the layouts
make (``keys``, ``in``, ``[path]``, ``get``, ``visit``, ``attrs``, ``name``, ``[()]``). Whatever goes
wrong in the child (a crash, a hang, a refusal, an exhausted limit) is a :class:`KerasFileError`
naming the file the user gave. The cost is one short-lived process per file read (about 0.2 s).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import KerasFileError

_SNAPSHOT = Path(__file__).with_name("hdf5_snapshot.py")
_REFUSED, _UNREADABLE = 3, 4  # the child's exit statuses (see hdf5_snapshot)
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
    data = source if isinstance(source, bytes) else None
    size = len(data) if data is not None else os.path.getsize(source)
    limit_s = TIME_LIMIT_S + TIME_PER_MIB_S * size / 2**20
    memory = MEMORY_LIMIT_BYTES + MEMORY_PER_FILE_BYTE * size
    cmd = [sys.executable, "-c", _SNAPSHOT.read_text(encoding="utf-8"), "-" if data is not None else str(source)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "HDF5_USE_FILE_LOCKING": "FALSE"}
    try:
        done = subprocess.run(cmd, input=data if data is not None else b"", capture_output=True, timeout=limit_s,
                              env=env, preexec_fn=_limit_memory(memory))
    except subprocess.TimeoutExpired:
        raise KerasFileError(f"{path}: reading the HDF5 data took longer than {limit_s:.0f} s; the file is "
                             f"damaged (the HDF5 library loops on it)") from None
    reason = done.stderr.decode("utf-8", "replace").strip()
    if done.returncode == _REFUSED:
        raise KerasFileError(f"{path}: not a Keras file's HDF5 content: {reason}")
    if done.returncode == _UNREADABLE:
        raise KerasFileError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {reason}")
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name if -done.returncode in signal.valid_signals() else "a signal"
        raise KerasFileError(f"{path}: the HDF5 library crashed reading it ({name}): the file is damaged")
    if done.returncode != 0:
        if "No module named 'h5py'" in reason:  # h5py is on this process's sys.path, not the child's
            raise ImportError(f"reading Keras' HDF5 files needs h5py where {sys.executable} finds it "
                              f"without this process's sys.path changes: pip install h5py")
        raise KerasFileError(f"{path}: reading the HDF5 data failed (exit status {done.returncode}): "
                             f"{reason[-500:]}")
    return _tree(done.stdout, path)


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


def _limit_memory(limit: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that caps the child's address space (None where the platform cannot)."""
    if os.name != "posix":
        return None
    try:
        import resource
    except ImportError:
        return None

    def cap() -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        new = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (new, hard))
    return cap


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

