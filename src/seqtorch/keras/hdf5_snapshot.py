"""The program that reads HDF5 files for :mod:`.hdf5`, away from the user's process: h5py in, plain data out.

libhdf5 is not written for damaged files: a few flipped bytes in a legacy ``.h5`` can crash the process
that reads it (a segmentation fault) or make it loop. So seqtorch never lets libhdf5 read a Keras file
in the user's process. This program (run as ``python -c`` with this file's text, importing only numpy
and h5py) is a small server: it imports h5py once, then for each request forks a fresh child that
reads that one file under a memory limit (RLIMIT_AS) and a time limit, and exits. A crash or a hang
costs that child only; the server, which never reads a file itself, reports it and serves the next
request from the clean state it forked from. No process reads two files: a damaged file can leave
libhdf5 in any state.

A child answers with what the file holds: every group and dataset reachable from the root, their
attributes and arrays, as an ``.npz`` (``tree``: UTF-8 JSON ``{path: {"kind": "group" | "dataset",
"attrs": {...}, "array": "a<i>"}}`` with paths like ``/model_weights/lstm``; ``a0``, ``a1``, ...:
the arrays). Refused before any array is read (status 3): links other than hard links (Keras writes
none; an external link would read another file), hard-link cycles, datasets stored in other files,
datasets that are not numbers, and datasets that declare more bytes than the file stores for them (a
damaged size: Keras does not compress). Any other error reading the file: status 4.

Protocol, on stdin and stdout: a request is ``<QQd`` (payload length, memory limit in bytes, time
limit in seconds) and the payload (``P`` + a path, or ``B`` + the file's bytes); the answer is ``<iQ``
(status: 0, 3, 4, 124 for a timeout, or minus the signal that killed the child; payload length) and
the payload (the ``.npz``, or the reason). Where there is no fork (Windows), the server reads the one
request in its own process and exits; the parent starts one per file.
"""

import io
import json
import struct
import sys

REFUSED, UNREADABLE, TIMEOUT = 3, 4, 124
MAX_OBJECTS = 100_000  # far more groups and datasets than any Keras model has


class Refused(Exception):
    """The file holds something no Keras file holds; the message says what."""


def _plain(value, where):
    """An attribute's value as JSON: text, numbers, or lists of them."""
    import numpy as np

    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise Refused(f"attribute {where} is not UTF-8 text") from None
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        number = value.item() if hasattr(value, "item") else value
        return number if number == number and abs(number) != float("inf") else str(number)
    if isinstance(value, np.ndarray) and value.dtype.kind in "SOUbiuf":
        return [_plain(v, where) for v in value.ravel().tolist()]
    raise Refused(f"attribute {where} has a value of type {type(value).__name__}")


def _attrs(obj, where):
    return {str(name): _plain(obj.attrs[name], f"{where}@{name}") for name in obj.attrs}


def snapshot(source):
    """(tree, arrays) of the HDF5 file ``source`` (a path or a binary file object)."""
    import h5py
    import numpy as np

    tree, arrays, seen = {}, {}, set()
    with h5py.File(source, "r") as f:
        pending = [("/", f)]
        while pending:
            where, group = pending.pop()
            info = h5py.h5o.get_info(group.id)
            if (info.fileno, info.addr) in seen:
                raise Refused(f"group {where} is reached twice (a hard-link cycle)")
            seen.add((info.fileno, info.addr))
            tree[where] = {"kind": "group", "attrs": _attrs(group, where)}
            for name in group.keys():
                path = where.rstrip("/") + "/" + name
                if len(tree) + len(pending) > MAX_OBJECTS:
                    raise Refused(f"more than {MAX_OBJECTS:,} groups and datasets")
                link = group.get(name, getlink=True)
                if not isinstance(link, h5py.HardLink):
                    raise Refused(f"{path} is a {type(link).__name__}; a Keras file holds hard links only")
                item = group[name]
                if isinstance(item, h5py.Group):
                    pending.append((path, item))
                elif isinstance(item, h5py.Dataset):
                    tree[path] = {"kind": "dataset", "attrs": _attrs(item, path), "array": _dataset(item, path,
                                                                                                     arrays)}
                else:
                    raise Refused(f"{path} is a {type(item).__name__}, neither a group nor a dataset")
    return tree, arrays


def _dataset(dset, path, arrays):
    """Check ``dset`` and read it into ``arrays``; return its key there."""
    import numpy as np

    if dset.dtype.kind not in "biuf":
        raise Refused(f"dataset {path} holds {dset.dtype} values, not numbers")
    if dset.is_virtual or dset.external:
        raise Refused(f"dataset {path} is stored in other files")
    declared = int(np.prod(dset.shape, dtype=np.float64) * dset.dtype.itemsize)
    stored = dset.id.get_storage_size()
    if declared > stored and not dset._filters:
        raise Refused(f"dataset {path} declares shape {dset.shape} ({declared:,} bytes) but the file stores "
                      f"{stored:,} bytes of it")
    if declared > 1032 * stored + (1 << 20):  # compressed beyond what deflate can reach
        raise Refused(f"dataset {path} declares {declared:,} bytes, stored compressed in {stored:,}")
    key = f"a{len(arrays)}"
    arrays[key] = np.asarray(dset[()])
    return key


def read_one(payload, memory):
    """(status, bytes) for one request's payload: run in a fresh child (or a process of its own)."""
    try:
        import resource

        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        resource.setrlimit(resource.RLIMIT_AS, (memory if hard == resource.RLIM_INFINITY else min(memory, hard),
                                                hard))
    except (ImportError, ValueError, OSError):  # no such limit on this platform: the time limit remains
        pass
    import numpy as np

    import os

    source = io.BytesIO(payload[1:]) if payload[:1] == b"B" else os.fsdecode(payload[1:])
    try:
        tree, arrays = snapshot(source)
        out = io.BytesIO()
        np.savez(out, tree=np.frombuffer(json.dumps(tree).encode(), dtype=np.uint8), **arrays)
        return 0, out.getvalue()
    except Refused as err:
        return REFUSED, str(err).encode()
    except MemoryError:
        return UNREADABLE, b"it needs more memory than a Keras file of its size can"
    except Exception as err:  # h5py's errors for damaged files have many types; the parent names the file
        return UNREADABLE, f"{type(err).__name__}: {err}".encode()


def _read_exactly(stream, n):
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _forked(payload, memory, limit_s):
    """(status, bytes) of :func:`read_one` run in a forked child, which is killed after ``limit_s``."""
    import os
    import select
    import signal
    import time

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one file, then out, whatever happens (it must never return to serve)
        try:
            os.close(read_end)
            status, data = read_one(payload, memory)
            with os.fdopen(write_end, "wb") as out:
                out.write(struct.pack("<i", status) + data)
        finally:
            os._exit(0)
    os.close(write_end)
    chunks, deadline, timed_out = [], time.monotonic() + limit_s, False
    with os.fdopen(read_end, "rb", buffering=0) as answer:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([answer], [], [], left)[0]:
                timed_out = True
                os.kill(pid, signal.SIGKILL)
                break
            chunk = answer.read(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    _, wait_status = os.waitpid(pid, 0)
    if timed_out:
        return TIMEOUT, b""
    if os.WIFSIGNALED(wait_status):
        return -os.WTERMSIG(wait_status), b""
    data = b"".join(chunks)
    if len(data) < 4:
        return UNREADABLE, b"the reading process ended without an answer"
    return struct.unpack("<i", data[:4])[0], data[4:]


def serve(stdin, stdout):
    import h5py  # noqa: F401 - imported once, before any fork: each child starts with it loaded
    import numpy  # noqa: F401

    import os

    while True:
        header = _read_exactly(stdin, struct.calcsize("<QQd"))
        if header is None:
            return  # the parent closed the pipe: it has exited
        size, memory, limit_s = struct.unpack("<QQd", header)
        payload = _read_exactly(stdin, size)
        if payload is None:
            return
        if hasattr(os, "fork"):
            status, data = _forked(payload, memory, limit_s)
        else:
            status, data = read_one(payload, memory)
        stdout.write(struct.pack("<iQ", status, len(data)) + data)
        stdout.flush()
        if not hasattr(os, "fork"):
            return


if __name__ == "__main__":
    del sys.path[0]  # run with -c: the working directory, which must not shadow numpy or h5py
    serve(sys.stdin.buffer, sys.stdout.buffer)
