"""The program that reads an HDF5 file for :mod:`.hdf5`, in a child process: h5py in, a plain snapshot out.

libhdf5 is not written for damaged files: a few flipped bytes in a legacy ``.h5`` can crash the process
that reads it (a segmentation fault) or make it loop. So seqtorch never lets libhdf5 read a Keras file
in the user's process: this program runs in a child (``python -c`` with this file's text, importing
only numpy and h5py), under a memory and a time limit, and prints what the file holds as an ``.npz``
on stdout: every group and dataset reachable from the root, their attributes, and the arrays. A
crash, a hang or an exhausted limit ends the child; the parent reports it as a damaged file.

Refused before any array is read (exit status 3, the reason on stderr): links other than hard links
(Keras writes none; an external link would read another file), hard-link cycles, datasets stored in
other files, datasets that are not numbers, and datasets that declare more bytes than the file stores
for them (a damaged size: Keras does not compress). Any other error reading the file: exit status 4.

Output: ``tree`` (uint8, UTF-8 JSON ``{path: {"kind": "group" | "dataset", "attrs": {...}, "array":
"a<i>"}}``, paths like ``/model_weights/lstm``) and the arrays ``a0``, ``a1``, ...
Usage: ``python -c "<this file's text>" FILE``, or ``-`` to read the file's bytes from stdin.
"""

import io
import json
import sys

REFUSED, UNREADABLE = 3, 4
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


def main(argv):
    import numpy as np

    source = io.BytesIO(sys.stdin.buffer.read()) if argv[1] == "-" else argv[1]
    try:
        tree, arrays = snapshot(source)
    except Refused as err:
        sys.stderr.write(str(err))
        return REFUSED
    except MemoryError:
        sys.stderr.write("it needs more memory than a Keras file of its size can")
        return UNREADABLE
    except Exception as err:  # h5py's errors for damaged files have many types; the parent names the file
        sys.stderr.write(f"{type(err).__name__}: {err}")
        return UNREADABLE
    out = io.BytesIO()
    np.savez(out, tree=np.frombuffer(json.dumps(tree).encode(), dtype=np.uint8), **arrays)
    sys.stdout.buffer.write(out.getvalue())
    return 0


if __name__ == "__main__":
    del sys.path[0]  # run with -c: the working directory, which must not shadow numpy or h5py
    sys.exit(main(sys.argv))
