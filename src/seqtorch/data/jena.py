"""The Jena climate table (book section 6.3): fetch, verify, parse, cache, window and batch.

The data is the Max Planck Institute for Biogeochemistry's weather record at Jena, 2009-2016:
one row every 10 minutes, a quoted header (``"Date Time"`` then 14 features) and rows like
``01.01.2009 00:10:00,996.52,-8.02,...``. No official checksum exists, so a file is accepted on
its *structure* (header, 15 fields per line, numeric cells, ``dd.mm.yyyy HH:MM:SS`` timestamps in
time order) and compared, as a warning only, with the md5 and size a public project recorded.

The preparation follows the book exactly (see :class:`WindowSpec`, :class:`Splits` and
:func:`book_sequential_batches`): drop the timestamps, normalize with the mean and std of the
first 200,000 rows, sample windows of ``lookback // step`` rows ending at a random row of the
training range, and walk the validation and test ranges in the book generator's order. The
generator is replaced by a map-style :class:`JenaWindows` dataset (item = the row where a window
ends) plus batch samplers, so DataLoader workers and DDP work.

Layout: constants -> loading (bytes, structure checks, parse, binary cache, summary) ->
preparation (normalization, index arithmetic, dataset, samplers) -> the common-sense baseline.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from seqtorch.data.download import cache_dir, download, sha256sum
from seqtorch.data.errors import DataFileError, DataNotFoundError
from seqtorch.fileio import read_cache_entry, write_cache_entry

__all__ = [
    "JENA_URL", "JENA_FILENAME", "COLUMNS", "FEATURES", "TEMPERATURE", "WIND_SPEED",
    "FULL_ROWS", "REFERENCE_MD5", "REFERENCE_BYTES", "SENTINEL",
    "JenaSummary", "JenaTable", "JenaChecksumWarning", "JenaFileError",
    "fetch_jena", "load_jena", "parse_jena_csv", "clean_sentinels",
    "WindowSpec", "Splits", "normalize", "book_eval_steps", "book_sequential_batches",
    "JenaWindows", "RandomWindowBatchSampler", "JenaSplits", "SplitError", "check_split", "prepare_jena",
    "naive_mae",
]

# ----------------------------------------------------------------------------- constants

JENA_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/jena_climate_2009_2016.csv.zip"
JENA_FILENAME = "jena_climate_2009_2016.csv"

COLUMNS = (
    "Date Time", "p (mbar)", "T (degC)", "Tpot (K)", "Tdew (degC)", "rh (%)", "VPmax (mbar)",
    "VPact (mbar)", "VPdef (mbar)", "sh (g/kg)", "H2OC (mmol/mol)", "rho (g/m**3)", "wv (m/s)",
    "max. wv (m/s)", "wd (deg)",
)
FEATURES = COLUMNS[1:]
#: Column of the temperature in the feature array (after "Date Time" is dropped), as in the book.
TEMPERATURE = FEATURES.index("T (degC)")
#: Feature columns of the wind speeds, where the real file holds -9999 sentinels.
WIND_SPEED = (FEATURES.index("wv (m/s)"), FEATURES.index("max. wv (m/s)"))

FULL_ROWS = 420_551
#: md5 and size of the extracted CSV as recorded by a public project (not an official checksum).
REFERENCE_MD5 = "959915f05bfafef18e471a97ae679535"
REFERENCE_BYTES = 43_164_220
SENTINEL = -9999.0

_HEADER = ",".join(f'"{name}"' for name in COLUMNS).encode()
_TIMESTAMP_LEN = 19  # "dd.mm.yyyy HH:MM:SS"
_STEP_S = 600  # 10 minutes
# Bump when the parsed layout or what the parser accepts changes, so old caches are ignored.
# 2: files cut inside their last row are refused (version 1 cached them).
_CACHE_VERSION = "2"


class JenaFileError(DataFileError, ValueError):
    """A Jena file (CSV or zip) that is not the Jena record's format: cut short, damaged, or another
    table. The message names the file, the line and what was expected."""


class JenaChecksumWarning(UserWarning):
    """The CSV differs from the md5/size a public project recorded (a warning: no official one exists)."""


# ----------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class JenaSummary:
    """What was loaded: size, time span, gaps, repeated timestamps, sentinels and the md5 check.

    Gaps and sentinels are reported, never rejected: the real file has both.
    """

    source: str
    rows: int
    first: str
    last: str
    span_steps: int  # 10-minute steps from first to last timestamp, inclusive
    gaps: int  # intervals longer than 10 minutes
    missing_steps: int  # 10-minute steps absent inside those gaps
    largest_gap_minutes: int
    repeated_timestamps: int  # intervals of zero length
    off_grid_intervals: int  # intervals that are not a multiple of 10 minutes
    sentinels: dict = field(default_factory=dict)  # feature name -> count of -9999 cells
    csv_md5: str = ""
    csv_bytes: int = 0
    matches_reference: bool = False
    cleaned: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        """A few human-readable lines."""
        full = "" if self.rows == FULL_ROWS else f" (the full file has {FULL_ROWS:,})"
        sentinels = ", ".join(f"{k}: {v}" for k, v in self.sentinels.items() if v) or "none"
        action = "clipped to 0 (--clean)" if self.cleaned else "kept as in the book"
        ref = "matches" if self.matches_reference else "differs from"
        note = "" if self.matches_reference else (
            " (a warning only: no official checksum exists, and the structure checks passed)")
        return "\n".join([
            f"Jena climate: {self.source}",
            f"  rows: {self.rows:,}{full}, {self.first} .. {self.last}",
            f"  gaps: {self.gaps} ({self.missing_steps:,} missing 10-minute steps of "
            f"{self.span_steps:,}; largest {self.largest_gap_minutes} min); repeated timestamps: "
            f"{self.repeated_timestamps}; off-grid intervals: {self.off_grid_intervals}",
            f"  sentinels ({SENTINEL:g}): {sentinels}; {action}",
            f"  csv md5 {self.csv_md5}, {self.csv_bytes:,} bytes: {ref} the recorded "
            f"{REFERENCE_MD5}, {REFERENCE_BYTES:,} bytes{note}",
        ])


@dataclass(frozen=True)
class JenaTable:
    """The parsed file.

    timestamps: (N,) datetime64[s]; values: (N, 14) float64 in :data:`FEATURES` order.
    """

    timestamps: np.ndarray
    values: np.ndarray
    summary: JenaSummary


def fetch_jena(url: str = JENA_URL, root: str | os.PathLike | None = None) -> Path:
    """Download the canonical zip into ``root`` (default ``cache_dir()/'jena'``) unless present.

    No checksum is published, so the download is checked for size only by the server's
    Content-Length here; :func:`load_jena` checks the structure and removes a bad download.
    """
    root = Path(root) if root is not None else cache_dir() / "jena"
    return download(url, root / (JENA_FILENAME + ".zip"), sha256=None, desc=JENA_FILENAME + ".zip")


def load_jena(
    source: str | os.PathLike | None = None,
    *,
    expected_rows: int | None = None,
    clean: bool = False,
    cache: bool = True,
    url: str = JENA_URL,
) -> JenaTable:
    """Load the Jena table from a ``.zip``/``.csv`` path, or download the canonical zip.

    Args:
        source: path of ``jena_climate_2009_2016.csv`` or of the zip holding it; None downloads
            ``url`` to the cache (once) and then requires :data:`FULL_ROWS` rows.
        expected_rows: required row count (None: any count; the summary still reports it).
        clean: clip the wind-speed columns at 0, turning the -9999 sentinels into 0 (as the
            TensorFlow tutorial does). The book keeps them: the default.
        cache: keep a binary copy of the parsed table in ``cache_dir()/'jena'``, keyed by the
            sha256 of the source file, so later loads skip the text parse.
        url: where to download from when ``source`` is None.

    Raises:
        DataNotFoundError: ``source`` does not exist (a ``FileNotFoundError``).
        JenaFileError: the file cannot be read or its structure is not the Jena format (a
            ``ValueError``; the message names the path, the line and what was expected); a
            downloaded file that fails is deleted first.
        DownloadError: the download failed.
    Warns:
        JenaChecksumWarning: the CSV's md5/size differ from the recorded ones.
    """
    downloaded = source is None
    if downloaded:
        path = fetch_jena(url)
        expected_rows = FULL_ROWS if expected_rows is None else expected_rows
    else:
        path = Path(source)
        if not path.is_file():
            raise DataNotFoundError(
                f"Jena data not found: {path} is {'a folder' if path.is_dir() else 'not there'}; give "
                f"the path of {JENA_FILENAME} or of its .zip, or no path at all to download it")
        try:
            path.open("rb").close()
        except OSError as exc:  # a file that exists but cannot be read (permissions)
            raise DataFileError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    try:
        timestamps, values, md5, n_bytes = _load_parsed(path, cache)
        if expected_rows is not None and len(values) != expected_rows:
            raise JenaFileError(
                f"{path}: expected {expected_rows:,} data rows, found {len(values):,}; the file "
                f"is truncated or not the full Jena record"
            )
    except JenaFileError as exc:
        if downloaded:
            path.unlink(missing_ok=True)  # never leave a bad download in the cache as if complete
            raise JenaFileError(f"{exc}. The downloaded file was deleted; try again.") from exc
        raise
    summary = _summarize(str(path), timestamps, values, md5, n_bytes, clean)
    if not summary.matches_reference:
        warnings.warn(
            f"{path}: the CSV's md5 {md5} ({n_bytes:,} bytes) differs from the recorded md5 "
            f"{REFERENCE_MD5} ({REFERENCE_BYTES:,} bytes). No official checksum exists; the "
            f"structure checks passed, so the file is used.",
            JenaChecksumWarning, stacklevel=2,
        )
    if clean:
        values = clean_sentinels(values)
    return JenaTable(timestamps, values, summary)


def clean_sentinels(values: np.ndarray) -> np.ndarray:
    """Copy of ``values`` (N, 14) with the wind speeds clipped at 0 (-9999 sentinels become 0)."""
    out = np.array(values, dtype=np.float64, copy=True)
    for col in WIND_SPEED:
        np.maximum(out[:, col], 0.0, out=out[:, col])
    return out


def parse_jena_csv(data: bytes, name: str = "<bytes>") -> tuple[np.ndarray, np.ndarray]:
    """Check and parse the bytes of a Jena CSV.

    Returns (timestamps (N,) datetime64[s], values (N, 14) float64). Line endings ``\\n`` or
    ``\\r\\n``; the last row may end without one (the real file's does). Raises JenaFileError naming
    ``name``, the line and the problem when the header, the number of fields, a timestamp, a
    cell or the time order is off, and says "truncated" when the file stops short: empty, ending
    inside the header or inside its last row, or zero-filled (where a crash left no data).
    """
    if not data:
        raise JenaFileError(f"{name}: the file is empty (0 bytes): it is truncated. Fetch it again.")
    nul = data.find(b"\0")
    if nul >= 0:  # never in a text file; what a crash leaves where the data was not yet written
        raise JenaFileError(
            f"{name}: NUL bytes from byte {nul:,} on, where text should be: the file is "
            f"truncated (not completely written). Fetch it again."
        )
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
        if data.endswith(b"\r"):  # cut between the two bytes of the last line ending
            data = data[:-1]
    newline = data.find(b"\n")
    header = data if newline < 0 else data[:newline]
    if header.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark some editors add
        header = header[3:]
    if header != _HEADER:
        if newline < 0 and _HEADER.startswith(header):
            raise JenaFileError(f"{name}: the file ends inside its header, after {len(data)} bytes: "
                             f"it is truncated. Fetch it again.")
        raise JenaFileError(
            f"{name}: the header is not the Jena header.\n  expected: {_HEADER.decode()}\n"
            f"  found:    {header[:400].decode('utf-8', 'replace')}"
        )
    complete_last_line = data.endswith(b"\n")
    body = data[newline + 1:].rstrip(b"\n") if newline >= 0 else b""
    if not body:
        raise JenaFileError(f"{name}: no data rows after the header")
    buf = np.frombuffer(body, dtype=np.uint8)
    starts = np.concatenate([[0], np.flatnonzero(buf == ord("\n")) + 1])
    ends = np.concatenate([starts[1:] - 1, [len(buf)]])
    commas = np.flatnonzero(buf == ord(","))
    first_comma = np.searchsorted(commas, starts)
    n_commas = np.searchsorted(commas, ends) - first_comma
    bad = np.flatnonzero(n_commas != len(COLUMNS) - 1)
    if bad.size:
        i = int(bad[0])
        cut = i == len(starts) - 1 and not complete_last_line
        raise JenaFileError(
            f"{name}: line {i + 2} has {n_commas[i] + 1} fields, expected {len(COLUMNS)}"
            f"{' (the file ends inside this line: it is truncated)' if cut else ''}: "
            f"{_line(body, starts, ends, i)!r}"
        )
    if not complete_last_line:
        _check_last_row_complete(body, starts, ends, name)
    timestamps = _parse_timestamps(buf, starts, commas[first_comma], name, body, ends)
    values = _parse_values(body, name, starts, ends)
    _check_order(timestamps, name)
    return timestamps, values


def _check_last_row_complete(body: bytes, starts, ends, name: str) -> None:
    """A last row without a line ending must not have been cut inside its last number.

    The file writes every number with a fixed count of decimals (two), so a last cell with fewer
    decimals than the row above it has (``352.9``, ``352.``, ``352``, or nothing) was cut.
    """
    def last_cell(i: int) -> bytes:
        line = body[starts[i]:ends[i]]
        return line[line.rindex(b",") + 1:]

    def decimals(cell: bytes) -> int:
        return len(cell) - cell.index(b".") - 1 if b"." in cell else -1

    cell = last_cell(len(starts) - 1)
    above = last_cell(len(starts) - 2) if len(starts) > 1 else b"0"
    if not cell or decimals(cell) < decimals(above):
        raise JenaFileError(
            f"{name}: the file ends inside its last row (line {len(starts) + 1}), whose last cell "
            f"reads {cell.decode('utf-8', 'replace')!r} where the row above has "
            f"{above.decode('utf-8', 'replace')!r}: it is truncated. Fetch it again."
        )


def _line(body: bytes, starts, ends, i: int) -> str:
    return body[starts[i]:ends[i]][:200].decode("utf-8", "replace")


def _parse_timestamps(buf, starts, first_commas, name, body, ends) -> np.ndarray:
    """(N,) datetime64[s] from the ``dd.mm.yyyy HH:MM:SS`` first field of every line."""
    bad = np.flatnonzero(first_commas - starts != _TIMESTAMP_LEN)
    if bad.size:
        i = int(bad[0])
        raise JenaFileError(
            f"{name}: line {i + 2}: the timestamp is not 'dd.mm.yyyy HH:MM:SS': "
            f"{_line(body, starts, ends, i)!r}"
        )
    raw = buf[starts[:, None] + np.arange(_TIMESTAMP_LEN)]  # (N, 19) uint8
    digit_at = [0, 1, 3, 4, 6, 7, 8, 9, 11, 12, 14, 15, 17, 18]
    literal = {2: ".", 5: ".", 10: " ", 13: ":", 16: ":"}
    ok = ((raw[:, digit_at] >= ord("0")) & (raw[:, digit_at] <= ord("9"))).all(axis=1)
    for pos, char in literal.items():
        ok &= raw[:, pos] == ord(char)
    digits = raw.astype(np.int64) - ord("0")

    def number(first: int, width: int) -> np.ndarray:
        out = np.zeros(len(raw), dtype=np.int64)
        for k in range(first, first + width):
            out = out * 10 + digits[:, k]
        return out

    day, month, year = number(0, 2), number(3, 2), number(6, 4)
    hour, minute, second = number(11, 2), number(14, 2), number(17, 2)
    # Built from the fields with integer arithmetic (numpy's string-to-datetime cast crashes on
    # an invalid date in a large array), so every range is checked here explicitly.
    ok &= (month >= 1) & (month <= 12) & (hour <= 23) & (minute <= 59) & (second <= 59)
    months = np.where(ok, (year - 1970) * 12 + month - 1, 0).astype("datetime64[M]")
    first_day = months.astype("datetime64[D]")
    month_days = ((months + 1).astype("datetime64[D]") - first_day).astype(np.int64)
    ok &= (day >= 1) & (day <= month_days)
    bad = np.flatnonzero(~ok)
    if bad.size:
        i = int(bad[0])
        raise JenaFileError(
            f"{name}: line {i + 2}: the timestamp is not a valid 'dd.mm.yyyy HH:MM:SS': "
            f"{_line(body, starts, ends, i)[:_TIMESTAMP_LEN]!r}"
        )
    seconds = (day - 1) * 86_400 + hour * 3_600 + minute * 60 + second
    return first_day.astype("datetime64[s]") + seconds.astype("timedelta64[s]")


def _parse_values(body: bytes, name: str, starts, ends) -> np.ndarray:
    """(N, 14) float64 from fields 2..15; a non-numeric or non-finite cell is a ValueError."""
    try:
        values = np.loadtxt(io.BytesIO(body), delimiter=",", usecols=range(1, len(COLUMNS)),
                            dtype=np.float64, ndmin=2, comments=None)
    except ValueError:
        values = None  # find the cell ourselves, to name its line and column
    if values is not None:
        bad_rows = np.flatnonzero(~np.isfinite(values).all(axis=1))
        if not bad_rows.size:
            return values
        candidates = bad_rows
    else:
        candidates = range(len(starts))
    for i in candidates:
        # The whole line (_line shortens it): a long number cut short would read as finite.
        cells = body[starts[i]:ends[i]].decode("utf-8", "replace").split(",")
        for col, cell in enumerate(cells[1:], start=1):
            try:
                # numpy's parser, unlike float(), takes no digit separators ("1_000")
                number = float("nan") if "_" in cell else float(cell)
            except ValueError:
                number = float("nan")
            if not np.isfinite(number):
                shown = cell if len(cell) <= 40 else f"{cell[:37]}... ({len(cell):,} characters)"
                raise JenaFileError(
                    f"{name}: line {i + 2}, column {COLUMNS[col]!r}: expected a finite number, "
                    f"found {shown!r}"
                )
    raise JenaFileError(f"{name}: a cell could not be read as a number")  # unreachable in practice


def _check_order(timestamps: np.ndarray, name: str) -> None:
    steps = np.diff(timestamps.astype(np.int64))
    back = np.flatnonzero(steps < 0)
    if back.size:
        i = int(back[0])
        raise JenaFileError(
            f"{name}: timestamps are not in time order: line {i + 3} ({timestamps[i + 1]}) comes "
            f"after line {i + 2} ({timestamps[i]})"
        )


def _read_source(path: Path) -> bytes:
    """The CSV bytes of a ``.csv`` file or of the Jena CSV inside a ``.zip``."""
    if not zipfile.is_zipfile(path):
        if path.suffix.lower() == ".zip":
            raise JenaFileError(f"{path}: not a readable zip archive (truncated or corrupt download?)")
        return path.read_bytes()
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist()
                     if n.lower().endswith(".csv") and not n.startswith("__MACOSX/")]
            exact = [n for n in names if n.rsplit("/", 1)[-1] == JENA_FILENAME]
            chosen = exact or names
            if len(chosen) != 1:
                raise JenaFileError(
                    f"{path}: expected one {JENA_FILENAME} in the archive, found CSV members "
                    f"{names or 'none'}"
                )
            return archive.read(chosen[0])
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error, NotImplementedError, RuntimeError) as exc:
        # a damaged archive: bad CRC or headers, a compression method or encryption flag flipped on
        raise JenaFileError(f"{path}: the zip archive could not be read ({type(exc).__name__}: {exc})") from exc


def _load_parsed(path: Path, cache: bool) -> tuple[np.ndarray, np.ndarray, str, int]:
    """(timestamps, values, csv md5, csv bytes), from the binary cache when the source is unchanged."""
    cached = None
    if cache:
        folder, digest = cache_dir() / "jena", sha256sum(path)
        cached = folder / f"parsed-v{_CACHE_VERSION}-{digest}.npz"
        hit = read_cache_entry(cached, _read_parsed)
        if hit is not None:
            return hit
    data = _read_source(path)
    timestamps, values = parse_jena_csv(data, name=str(path))
    md5, n_bytes = hashlib.md5(data).hexdigest(), len(data)
    if cached is not None:
        arrays = dict(timestamps=timestamps.astype(np.int64), values=values, md5=np.array(md5),
                      bytes=np.array(n_bytes))
        write_cache_entry(cached, lambda f: np.savez(f, **arrays))
        for old in folder.glob(f"parsed-v*-{digest}.npz"):  # this file parsed by older versions
            if old != cached:
                old.unlink(missing_ok=True)
    return timestamps, values, md5, n_bytes


def _read_parsed(path: Path) -> tuple[np.ndarray, np.ndarray, str, int]:
    """A cache entry written by :func:`_load_parsed`; ValueError if its arrays do not fit."""
    with np.load(path, allow_pickle=False) as z:
        timestamps, values, md5, n_bytes = z["timestamps"], z["values"], str(z["md5"]), int(z["bytes"])
    if not (timestamps.ndim == 1 and timestamps.dtype == np.int64 and values.dtype == np.float64
            and values.shape == (len(timestamps), len(FEATURES)) and len(md5) == 32):
        raise ValueError(f"inconsistent arrays: timestamps {timestamps.dtype}{timestamps.shape}, "
                         f"values {values.dtype}{values.shape}, md5 {md5!r}")
    return timestamps.astype("datetime64[s]"), values, md5, n_bytes


def _summarize(source, timestamps, values, md5, n_bytes, cleaned) -> JenaSummary:
    seconds = timestamps.astype(np.int64)
    steps = np.diff(seconds)
    gaps = steps > _STEP_S
    return JenaSummary(
        source=source,
        rows=len(values),
        first=str(timestamps[0]),
        last=str(timestamps[-1]),
        span_steps=int((seconds[-1] - seconds[0]) // _STEP_S) + 1,
        gaps=int(gaps.sum()),
        missing_steps=int((steps[gaps] // _STEP_S - 1).sum()),
        largest_gap_minutes=int(steps.max() // 60) if steps.size else 0,
        repeated_timestamps=int((steps == 0).sum()),
        off_grid_intervals=int((steps % _STEP_S != 0).sum()),
        sentinels={name: int((values[:, j] == SENTINEL).sum()) for j, name in enumerate(FEATURES)},
        csv_md5=md5,
        csv_bytes=n_bytes,
        matches_reference=(md5 == REFERENCE_MD5 and n_bytes == REFERENCE_BYTES),
        cleaned=cleaned,
    )


# ----------------------------------------------------------------------------- preparation


@dataclass(frozen=True)
class WindowSpec:
    """How a sample is cut (the book's defaults).

    A window ending at row ``r`` holds rows ``r - lookback, r - lookback + step, ..., r - step``
    (``lookback // step`` rows); its target is column ``target`` at row ``r + delay``.
    """

    lookback: int = 1440  # 10 days of 10-minute rows
    step: int = 6  # one row per hour
    delay: int = 144  # 24 hours ahead
    target: int = TEMPERATURE

    def __post_init__(self):
        for name in ("lookback", "step", "delay"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lookback % self.step:
            # The book allocates lookback // step rows and fills range(r - lookback, r, step).
            raise ValueError(
                f"lookback ({self.lookback}) must be a multiple of step ({self.step}), as the "
                f"book's generator requires"
            )

    @property
    def timesteps(self) -> int:
        return self.lookback // self.step


@dataclass(frozen=True)
class Splits:
    """The book's row ranges: train [0, train_end), validation [train_end+1, val_end), test after.

    Mean and std come from rows [0, train_end). Defaults: 200,000 and 300,000, as in the book.
    """

    train_end: int = 200_000
    val_end: int = 300_000

    @property
    def val_start(self) -> int:
        return self.train_end + 1

    @property
    def test_start(self) -> int:
        return self.val_end + 1


def normalize(values: np.ndarray, train_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The book's normalization: ``(values - mean) / std`` with both taken over ``values[:train_rows]``.

    values: (N, F). Returns (normalized (N, F) float64, mean (F,), std (F,)).
    """
    values = np.asarray(values, dtype=np.float64)
    if not 1 < train_rows <= len(values):
        raise ValueError(f"train_rows must be in [2, {len(values)}], got {train_rows}")
    mean = values[:train_rows].mean(axis=0)
    centered = values - mean
    std = centered[:train_rows].std(axis=0)  # the book takes the std after subtracting the mean
    if (std == 0).any():
        raise ValueError(f"constant columns in the first {train_rows} rows: "
                         f"{[FEATURES[j] for j in np.flatnonzero(std == 0)]}")
    return centered / std, mean, std


def book_eval_steps(min_index: int, end: int, lookback: int, batch_size: int) -> int:
    """The book's number of evaluation batches: ``(end - min_index - lookback) // batch_size``.

    The book uses ``end = 300000`` for validation and ``end = len(float_data)`` for test (not the
    generator's ``max_index``): 769 and 930 batches on the full file.
    """
    return (end - min_index - lookback) // batch_size


def book_sequential_batches(
    min_index: int, max_index: int, lookback: int, batch_size: int, n_batches: int
) -> list[np.ndarray]:
    """The end rows of the first ``n_batches`` batches of the book's ``generator(shuffle=False)``.

    Reproduces its state machine: ``i`` starts at ``min_index + lookback``; before each batch,
    ``if i + batch_size >= max_index: i = min_index + lookback``; the batch is
    ``arange(i, min(i + batch_size, max_index))`` and ``i`` advances by its length. On the full
    file the 930th test batch is therefore the first one again (the book evaluates it twice).
    """
    if min_index + lookback >= max_index:
        raise ValueError(f"empty range: min_index + lookback = {min_index + lookback} >= "
                         f"max_index = {max_index}")
    batches, i = [], min_index + lookback
    for _ in range(n_batches):
        if i + batch_size >= max_index:
            i = min_index + lookback
        rows = np.arange(i, min(i + batch_size, max_index))
        i += len(rows)
        batches.append(rows)
    return batches


class JenaWindows(Dataset):
    """Map-style dataset of book windows; the index is the row where the window ends.

    ``dataset[r]`` -> (window (lookback // step, F) float32, target () float32) with
    ``window = data[r - lookback : r : step]`` and ``target = data[r + delay, spec.target]``.
    Valid ``r``: ``lookback <= r < N - delay``. ``len()`` is N (rows), so samplers give rows.
    """

    def __init__(self, data: np.ndarray | torch.Tensor, spec: WindowSpec = WindowSpec(),
                 dtype: torch.dtype = torch.float32):
        data = torch.as_tensor(np.asarray(data), dtype=dtype)
        if data.ndim != 2:
            raise ValueError(f"data must be (N, F), got shape {tuple(data.shape)}")
        self.data, self.spec = data.contiguous(), spec

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, row: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = int(row)
        s = self.spec
        if not s.lookback <= row < len(self) - s.delay:
            raise IndexError(f"window end row {row} outside [{s.lookback}, {len(self) - s.delay})")
        return self.data[row - s.lookback:row:s.step], self.data[row + s.delay, s.target]

    def batch(self, rows) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather many windows at once: (B, lookback // step, F) and (B,)."""
        rows = torch.as_tensor(np.asarray(rows), dtype=torch.long)
        s = self.spec
        offsets = torch.arange(-s.lookback, 0, s.step)
        return self.data[rows[:, None] + offsets], self.data[rows + s.delay, s.target]


class RandomWindowBatchSampler(Sampler):
    """The book's training batches: ``randint(low, high, size=batch_size)``, ``steps`` per epoch.

    Yields lists of end rows (use as a DataLoader ``batch_sampler``). The draw is seeded by
    ``(seed, epoch)`` (call :meth:`set_epoch`), so an epoch is reproducible and a resumed run
    sees the same batches. ``batch_size`` is per process, as in the training config: under DDP
    every rank draws the same global batch of ``batch_size * world_size`` rows and keeps
    ``rows[rank::world_size]``, so the ranks together see exactly what one process with the
    global batch would.
    """

    def __init__(self, low: int, high: int, batch_size: int, steps: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        if high <= low:
            raise ValueError(f"empty training range: low={low} >= high={high}")
        if batch_size < 1 or steps < 1:
            raise ValueError(f"batch_size and steps must be >= 1, got {batch_size} and {steps}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank={rank}, "
                             f"world_size={world_size}")
        self.low, self.high, self.batch_size, self.steps = low, high, batch_size, steps
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        for _ in range(self.steps):
            rows = rng.integers(self.low, self.high, size=self.batch_size * self.world_size)
            yield rows[self.rank::self.world_size].tolist()


@dataclass
class JenaSplits:
    """Everything training needs, prepared the book's way.

    data: (N, 14) float64 normalized; mean, std: (14,); dataset: windows over ``data``;
    train_range: (low, high) for random end rows; val_batches / test_batches: the book's
    evaluation batches (lists of end-row arrays).
    """

    data: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    spec: WindowSpec
    splits: Splits
    batch_size: int
    dataset: JenaWindows
    train_range: tuple[int, int]
    val_batches: list[np.ndarray]
    test_batches: list[np.ndarray]

    @property
    def target_std(self) -> float:
        """Std of the target column: multiply a normalized MAE by it to get degrees Celsius."""
        return float(self.std[self.spec.target])

    def eval_rows(self, which: str) -> np.ndarray:
        """End rows of the book's validation or test pass, batches concatenated in order."""
        batches = {"val": self.val_batches, "test": self.test_batches}
        if which not in batches:
            raise ValueError(f"which must be 'val' or 'test', got {which!r}")
        return np.concatenate(batches[which])

    def eval_dataset(self, which: str) -> Subset:
        """Map-style dataset of the book's validation or test windows, in the book's order.

        ``len()`` is ``batches * batch_size``; items are (window (T, F), target ()). A mean
        over its items is the book's mean over batches (every book batch is full).
        """
        return Subset(self.dataset, self.eval_rows(which).tolist())

    def train_loader_factory(self, steps: int, seed: int, batch_size: int | None = None,
                             num_workers: int = 0):
        """``make(epoch, rank, world_size) -> DataLoader`` of ``steps`` random book batches.

        ``batch_size`` is per process (default: ``self.batch_size // world_size``). A
        deterministic function of (seed, epoch, rank), as ``seqtorch.training.fit`` needs for
        resume; every rank yields ``steps`` batches. Batches are (windows (B, T, F), targets (B,)).
        """
        def make(epoch: int, rank: int = 0, world_size: int = 1) -> DataLoader:
            per_rank = batch_size if batch_size is not None else self.batch_size // world_size
            sampler = RandomWindowBatchSampler(*self.train_range, per_rank, steps, seed,
                                               rank, world_size)
            sampler.set_epoch(epoch)
            return DataLoader(self.dataset, batch_sampler=sampler, num_workers=num_workers)
        return make


class SplitError(ValueError):
    """The rows cannot hold the windows and splits asked for (:func:`check_split` says why)."""


def check_split(rows: int, spec: WindowSpec, splits: Splits, batch_size: int) -> None:
    """Raise :class:`SplitError` unless ``rows`` rows hold the book's three ranges for ``spec`` and at
    least one full validation and one full test batch of ``batch_size`` windows."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not spec.lookback < splits.train_end < splits.val_end < rows - spec.delay - 1:
        raise SplitError(
            f"need lookback ({spec.lookback}) < train_end ({splits.train_end}) < val_end "
            f"({splits.val_end}) < rows - delay - 1 ({rows - spec.delay - 1})"
        )
    val_steps = book_eval_steps(splits.val_start, splits.val_end, spec.lookback, batch_size)
    test_steps = book_eval_steps(splits.test_start, rows, spec.lookback, batch_size)
    if val_steps < 1 or test_steps < 1:
        raise SplitError(f"too few rows for one full batch: {val_steps} validation and "
                         f"{test_steps} test batches of {batch_size}")


def prepare_jena(values: np.ndarray, spec: WindowSpec = WindowSpec(), splits: Splits = Splits(),
                 batch_size: int = 128) -> JenaSplits:
    """Normalize ``values`` (N, 14) and build the book's train/validation/test batches.

    As in the book: train end rows ``randint(lookback, train_end)``; validation walks
    ``[val_start + lookback, val_end)`` for ``(val_end - val_start - lookback) // batch_size``
    batches; test walks ``[test_start + lookback, N - delay - 1)`` for
    ``(N - test_start - lookback) // batch_size`` batches. Raises :class:`SplitError` when the rows
    cannot hold them (:func:`check_split`).
    """
    n = len(values)
    check_split(n, spec, splits, batch_size)
    data, mean, std = normalize(values, splits.train_end)
    test_max = n - spec.delay - 1  # the book's default max_index
    val_steps = book_eval_steps(splits.val_start, splits.val_end, spec.lookback, batch_size)
    test_steps = book_eval_steps(splits.test_start, n, spec.lookback, batch_size)
    return JenaSplits(
        data=data, mean=mean, std=std, spec=spec, splits=splits, batch_size=batch_size,
        dataset=JenaWindows(data, spec),
        train_range=(spec.lookback, splits.train_end),
        val_batches=book_sequential_batches(splits.val_start, splits.val_end, spec.lookback,
                                            batch_size, val_steps),
        test_batches=book_sequential_batches(splits.test_start, test_max, spec.lookback,
                                             batch_size, test_steps),
    )


# ----------------------------------------------------------------------------- baseline


def naive_mae(data: np.ndarray, batches: list[np.ndarray], spec: WindowSpec = WindowSpec()) -> float:
    """The book's common-sense baseline: predict the window's last target value.

    data: (N, F) normalized. For each batch, ``mean(|data[r - step, t] - data[r + delay, t]|)``
    (``r - step`` is the last row of the window); the result is the mean of the batch means, as
    in the book's ``evaluate_naive_method``. Multiply by the target's std for degrees.
    """
    column = np.asarray(data, dtype=np.float64)[:, spec.target]
    maes = [np.abs(column[rows - spec.step] - column[rows + spec.delay]).mean() for rows in batches]
    return float(np.mean(maes))
